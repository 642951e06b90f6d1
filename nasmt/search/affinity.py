"""Task affinity in a search: `nasmt affinity` (measure it on a suite) and `--affinity DIR`
(use it as the prior of the group and tap decisions).

Measuring (Fifty et al. 2021, "Efficiently Identifying Task Groupings for Multi-Task
Learning"): a short training run of a fixed hard-shared probe network (every task taps
the last of two shared stages) records the lookahead affinity (an SGD step of
LOOKAHEAD_LR) of every task onto every other (`nasmt.train.affinity`); the result is
`affinity.json` (the CLI adds the heatmap page, `affinity.html`).

Using it: the tasks are partitioned into at most as many groups as the grammar's
join(group=...) names, maximizing the within-group affinity (TAG's selection), and the
first `prior_trials(n)` trials of the search are random derivations whose group and tap
decisions follow that partition (tasks of a group join it; a task alone taps the trunk at
its first choice). They are enqueued like --enqueue genomes, so the sampler learns from
them; nothing else about the search changes.
"""

from __future__ import annotations

from pathlib import Path

from nasmt.errors import UserError
from nasmt.run import AFFINITY_FILE
from nasmt.run.affinity import Affinity, check_affinity, load_affinity
from nasmt.space.derive import derive, group_labels
from nasmt.space.nodes import Op
from nasmt.space.spec import ArchSpec, BranchSpec, OpSpec, StageSpec

PROBE_WIDTH = {"vector": (128, 128), "image": (16, 32)}  # the probe's two shared stages
PROBE_HEAD = 32  # each task's own fc layer
LOOKAHEAD_LR = 0.1  # SGD rate of the lookahead step (the paper's SGD-sized step; AdamW's 3e-3 gives ~1e-6 affinities)
PRIOR_SHARE = 4  # 1 in PRIOR_SHARE of a search's trials follow the affinity partition (at least 1)


def probe_spec(input_shape, n_outputs: dict[str, int]) -> ArchSpec:
    """The fixed hard-shared network affinity is measured on."""
    image = len(input_shape) == 3
    if image:
        c1, c2 = PROBE_WIDTH["image"]
        stages = (StageSpec((OpSpec.from_json({"op": "conv", "k": 3, "c": c1, "s": 2}),)),
                  StageSpec((OpSpec.from_json({"op": "conv", "k": 3, "c": c2, "s": 2}),)))
        head = (OpSpec("gap"), OpSpec.from_json({"op": "fc", "h": PROBE_HEAD, "act": "relu"}))
    else:
        h1, h2 = PROBE_WIDTH["vector"]
        stages = (StageSpec((OpSpec.from_json({"op": "fc", "h": h1, "act": "relu"}),)),
                  StageSpec((OpSpec.from_json({"op": "fc", "h": h2, "act": "relu"}),)))
        head = (OpSpec.from_json({"op": "fc", "h": PROBE_HEAD, "act": "relu"}),)
    branches = tuple(BranchSpec(t, 2, (), head, int(n)) for t, n in n_outputs.items())
    return ArchSpec("affinity-probe", tuple(int(x) for x in input_shape), stages, branches)


def measure(suite_file: str, out: Path, epochs: float = 2.0, steps: int | None = None, every: int = 5,
            seed: int = 0, batch_size: int = 128, lr: float = 3e-3) -> dict:
    """Measure the suite's inter-task affinity; writes out/affinity.json (the CLI adds the
    heatmap, out/affinity.html)."""
    import torch

    from nasmt.data import load_data_cached
    from nasmt.data.suite import load_suite
    from nasmt.model.build import build
    from nasmt.run import atomic_write_json, ensure_dir
    from nasmt.train import TrainConfig
    from nasmt.train.affinity import measure_affinity, suggest_groups

    if every < 1:
        raise UserError(f"--every: must be at least 1 (got {every})")
    if steps is not None and steps < 1 or steps is None and not epochs > 0:
        raise UserError("--steps / --epochs: must be positive")
    suite = load_suite(suite_file)
    if len(suite.tasks) < 2:
        raise UserError(f"{suite.file}: affinity needs at least two tasks (the suite has {len(suite.tasks)})")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    data = load_data_cached(suite)
    torch.manual_seed(seed)
    spec = probe_spec(data.input_shape, data.n_outputs)
    model = build(spec)
    cfg = TrainConfig(epochs=epochs, steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    try:
        aff = measure_affinity(model, suite, data, cfg, every=every, lookahead_lr=LOOKAHEAD_LR)
    except ValueError as e:  # too few steps for one measurement
        raise UserError(f"--every {every}: {e}") from None
    aff["suite"] = suite.name
    aff["probe"] = spec.arch_json()
    aff["groups"] = suggest_groups(aff["tasks"], aff["matrix"], max_groups=len(aff["tasks"]))
    ensure_dir(out)
    atomic_write_json(out / AFFINITY_FILE, aff)
    return aff


def read_affinity(folder: str | Path, suite) -> Affinity:
    """The affinity.json in `folder`, validated (`nasmt.run.affinity`) and checked against
    `suite` (one line naming the problem)."""
    f = Path(folder) / AFFINITY_FILE
    if not f.is_file():
        raise UserError(f"--affinity {folder}: no {AFFINITY_FILE} there (write one with `nasmt affinity`)")
    aff = check_affinity(load_affinity(f), f)
    tasks = [t.ident for t in suite.tasks]
    if sorted(aff.tasks) != sorted(tasks):
        raise UserError(f"{f}: tasks: measured for {aff.tasks}, but the suite has {tasks}")
    return aff


def prior_trials(n_trials: int) -> int:
    return max(1, n_trials // PRIOR_SHARE)


class _Prior:
    """A trial that answers some decisions from `fixed` (group and tap decisions) and the
    rest from a random Optuna trial."""

    def __init__(self, trial, fixed: dict, taps_first: set[str]):
        self.trial, self.fixed, self.taps_first = trial, fixed, taps_first

    def suggest_categorical(self, name, choices):
        if name in self.fixed and self.fixed[name] in choices:
            return self.fixed[name]
        if name.endswith(".tap") and name.split(".")[1] in self.taps_first and name.startswith("branch."):
            return choices[0]
        return self.trial.suggest_categorical(name, choices)

    def suggest_float(self, name, low, high):
        if name in self.fixed:
            return self.fixed[name]
        return self.trial.suggest_float(name, low, high)


def _alt_with(rule, op: str) -> str | None:
    """The label of the first alternative of `rule` holding op `op` directly."""
    for a in rule.alts:
        if any(isinstance(it.atom, Op) and it.atom.name == op for it in a.items):
            return a.label
    return None


def check_prior(folder, grammar, suite) -> tuple[list[str], Affinity]:
    """(the grammar's group labels, the validated affinity) for `--affinity folder`; one
    line when the grammar has no groups or the file does not fit the suite."""
    labels = group_labels(grammar)
    if not labels:
        raise UserError(f"--affinity: the grammar {grammar.file} has no task groups to set "
                        "(add a 'group' rule and join(group=...) to 'branch', as in search_spaces/mtl.grammar)")
    return labels, read_affinity(folder, suite)


def affinity_genomes(folder, grammar, suite, data, n_trials: int, seed: int) -> tuple[list[dict], list[list[str]]]:
    """(genomes to enqueue, the partition they follow) for `--affinity folder`."""
    import optuna

    from nasmt.train.affinity import suggest_groups

    labels, aff = check_prior(folder, grammar, suite)
    parts = suggest_groups(aff.tasks, aff.matrix, max_groups=len(labels))
    branch = grammar.rules["branch"]
    join_alt, tap_alt = _alt_with(branch, "join"), _alt_with(branch, "tap")
    fixed: dict = {}
    alone: set[str] = set()
    shared = [p for p in parts if len(p) > 1]
    for p in parts:
        for t in p:
            if len(p) > 1:
                label = labels[shared.index(p) % len(labels)]
                if len(branch.alts) > 1:
                    fixed[f"branch.{t}.alt"] = branch.answer(join_alt)
                fixed[f"branch.{t}.group"] = label if not label.isdigit() else int(label)
            else:
                alone.add(t)
                if len(branch.alts) > 1:
                    fixed[f"branch.{t}.alt"] = branch.answer(tap_alt)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    genomes = []
    for _ in range(prior_trials(n_trials)):
        t = study.ask()
        spec = derive(grammar, _Prior(t, fixed, alone), suite.tasks, data.input_shape, data.n_outputs, data.columns)
        genomes.append(spec.genome_dict)
        study.tell(t, 0.0)
    return genomes, parts
