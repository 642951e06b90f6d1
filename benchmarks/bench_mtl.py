"""Multi-task depth, measured: the best architecture per sharing family and per loss
balancing method at equal search compute, against the single-task and hard-shared
baselines, on three suites; and whether the task-affinity prior helps.

    python benchmarks/bench_mtl.py [--quick] [--suites people,fair,multimnist]

Suites: tasks/people.toml (3 tasks: binary, multiclass, regression), MultiMNIST (2 tasks,
a fixed subset of composites) and tasks/fair.toml (5 tasks: binary, 2 multiclass, 2
regression). Spaces: search_spaces/mtl.grammar (vector suites) and
search_spaces/conv_mtl.grammar (images), each restricted per cell by rewriting rules:

  family hard | mmoe | ple | tree : `mix` fixed to identity / mmoe / ple, branches tap
                                    (tree: every task joins a group); balancing searched
  balance <method>               : the whole sharing space; `train` fixed to that method

Every cell is one real `nasmt search` per seed (random sampler, the same seeds, the same
number of trials and epochs per trial in every cell of a suite: equal search compute,
see BUDGETS); per seed its best trial by validation mean_error is exported (`nasmt
export`) and the export's test metrics reported, with Δm against the single-task
networks of `nasmt baselines` (same budget, split, optimizer), and parameters; a cell's
figure is the mean over seeds. With the same seed, the balancing cells sample the same
architectures (the train decisions come last), so they differ only in the method. The
affinity study (fair suite): `nasmt affinity`, then the full mtl space searched with and
without `--affinity` on 4 seeds; the best validation mean_error and the hypervolume
(mean_error, params; normalized over those 8 runs) of each.

Writes reports/bench_mtl.json; runs are kept under runs/bench-mtl/ (removed first).
About 35 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.suites import multimnist_suite  # noqa: E402
from nasmt.baselines import run_baselines  # noqa: E402
from nasmt.baselines.record import SINGLE_TASK, delta_m, read_baselines  # noqa: E402
from nasmt.data.suite import load_suite  # noqa: E402
from nasmt.export import export_run  # noqa: E402
from nasmt.run import TrialStatus, read_trials  # noqa: E402
from nasmt.run.pareto import HV_REFERENCE, hypervolume  # noqa: E402
from nasmt.search import SearchConfig, run_search  # noqa: E402
from nasmt.search.affinity import measure  # noqa: E402
from nasmt.space.vocab import BALANCE_METHODS  # noqa: E402

FAMILIES = ("hard", "mmoe", "ple", "tree")
SPACES = {"vector": ROOT / "search_spaces" / "mtl.grammar", "image": ROOT / "search_spaces" / "conv_mtl.grammar"}


def rule_lines(text: str, name: str) -> tuple[int, int]:
    """[start, end) line indices of rule `name` (its continuation lines included)."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if re.match(rf"{name}\s*=", ln))
    end = start + 1
    while end < len(lines) and lines[end].lstrip().startswith("|"):
        end += 1
    return start, end


def set_rule(text: str, name: str, body: str | None) -> str:
    """`text` with rule `name` replaced by `name = body` (None: removed)."""
    lines = text.splitlines()
    a, b = rule_lines(text, name)
    lines[a:b] = [] if body is None else [f"{name} = {body}"]
    return "\n".join(lines) + "\n"


def alternative(text: str, name: str, first_op: str) -> str:
    """The alternative of rule `name` that starts with `first_op`, without its weight."""
    a, b = rule_lines(text, name)
    for ln in text.splitlines()[a:b]:
        alt = ln.split("=", 1)[1] if ln.lstrip().startswith(name) else ln.lstrip()[1:]
        alt = re.sub(r"\[[0-9.]+\]\s*$", "", alt.split("#")[0]).strip()
        if alt.startswith(first_op):
            return alt
    raise KeyError(first_op)


def cell_grammar(base: str, family: str | None = None, method: str | None = None) -> str:
    t = base
    if family is not None:
        mix = {"hard": "identity()", "tree": "identity()"}.get(family) or alternative(base, "mix", family)
        t = set_rule(t, "mix", mix)
        if family == "tree":
            t = set_rule(t, "branch", alternative(base, "branch", "join"))
        else:
            branch = alternative(base, "branch", "tap")
            if family in ("mmoe", "ple"):  # every task reads the mixture (else a trial may bypass it: hard sharing)
                branch = re.sub(r"tap\(at=[^)]*\)", "tap(at=last)", branch)
            t = set_rule(set_rule(t, "branch", branch), "group", None)
    if method is not None:
        optim = re.search(r"optim\([^)]*\)", base).group(0)
        t = set_rule(t, "train", f"balance(method={method}) {optim}")
    return drop_unused(t)


def drop_unused(text: str) -> str:
    """`text` without the rules the restriction left unused (e.g. a branch layer rule)."""
    from nasmt.errors import GrammarError
    from nasmt.space.grammar import parse_grammar

    while True:
        try:
            parse_grammar(text)
            return text
        except GrammarError as e:
            m = re.search(r"rule '(\w+)' is never used", str(e))
            if not m:
                raise
            text = set_rule(text, m.group(1), None)


def search(space_text: str, suite: Path, out: Path, trials: int, epochs: float, seed: int,
           affinity: Path | None = None) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    g = out.parent / f"{out.name}.grammar"
    g.write_text(space_text)
    run_search(SearchConfig(space=str(g), tasks=str(suite), out=str(out), objectives="mean_error,params",
                            trials=trials, epochs=epochs, seed=seed, sampler="random", quiet=True,
                            affinity=str(affinity) if affinity else None))
    return out


def complete(run: Path):
    return [r for r in read_trials(run) if r.status == TrialStatus.COMPLETE]


def best(run: Path):
    return min(complete(run), key=lambda r: r.metrics["mean_error"])


def cell(run: Path, suite, single: dict, work: Path) -> dict:
    """The best trial of a run (validation mean_error), exported; its test metrics and Δm."""
    r = best(run)
    exp = export_run(run, work / "exports" / run.name, trial=r.number, quantized=False, force=True)
    arch = json.loads((exp / "arch.json").read_text())
    test = arch["test_metrics"]
    return {
        "run": str(run.relative_to(ROOT)), "trial": r.number, "sharing": r.metrics["sharing"],
        "balance": r.metrics["balance"], "val_mean_error": r.metrics["mean_error"], "params": arch["cost"]["params"],
        "test_metrics": {f"{t.ident}.{t.metric}": test.get(f"{t.ident}.{t.metric}") for t in suite.tasks},
        "test_delta_m_vs_single": delta_m(test, single, suite),
        "trials": len(complete(run)),
        "compute_s": sum((x.timings or {}).get("total_s", 0.0) for x in complete(run)),
        "backward_s": sum((x.timings or {}).get("backward_s") or 0.0 for x in complete(run)),
    }


def baselines(suite_file: Path, work: Path, epochs: float, seed: int) -> tuple[dict, dict]:
    out = work / "baselines"
    run_baselines(suite_file, out, epochs=epochs, seed=seed, quiet=True)
    suite = load_suite(suite_file)
    recs = {b.name: b for b in read_baselines(out / "baselines.jsonl")}
    single = recs[SINGLE_TASK].test_metrics
    rows = {}
    for name, b in recs.items():
        rows[name] = {"label": b.label, "test_metrics": {f"{t.ident}.{t.metric}": b.test_metrics.get(f"{t.ident}.{t.metric}")
                                                         for t in suite.tasks},
                      "test_delta_m_vs_single": b.delta_m_test, "params": b.metrics.get("params")}
    return single, rows


def hv(runs: list[Path]) -> dict:
    """Hypervolume of each run's (mean_error, params) front, min-max normalized over these
    runs, reference point HV_REFERENCE (as the report)."""
    import numpy as np

    pts = {r: np.array([[x.metrics["mean_error"], x.metrics["params"]] for x in complete(r)]) for r in runs}
    allp = np.vstack(list(pts.values()))
    lo, hi = allp.min(0), allp.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    ref = np.full(2, HV_REFERENCE)
    return {str(r.name): float(hypervolume((p - lo) / span, ref)) for r, p in pts.items()}


# per suite: (trials per cell, epochs per trial, seeds); equal within a suite
BUDGETS = {"people": (8, 4.0, 3), "fair": (8, 4.0, 3), "multimnist": (6, 4.0, 1)}
QUICK = (2, 0.5, 1)
AFFINITY_SEEDS = 4


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def seeded_cell(text: str, suite_file: Path, suite, single: dict, sw: Path, name: str, budget) -> dict:
    """One cell over its seeds: each seed a search and the export of its best trial."""
    trials, epochs, seeds = budget
    runs = [cell(search(text, suite_file, sw / f"{name}-s{k}", trials, epochs, k), suite, single, sw)
            for k in range(seeds)]
    return {"seeds": runs, "mean_test_delta_m_vs_single": mean([r["test_delta_m_vs_single"] for r in runs]),
            "mean_params": mean([r["params"] for r in runs]), "mean_compute_s": mean([r["compute_s"] for r in runs]),
            "mean_backward_s": mean([r["backward_s"] for r in runs]),
            "best_sharing": [r["sharing"] for r in runs]}


def affinity_study(work: Path, budget) -> dict:
    """`nasmt affinity` on fair, then the full mtl space with and without --affinity."""
    trials, epochs, _ = budget
    fair = ROOT / "tasks" / "fair.toml"
    aff_dir = work / "fair" / "affinity"
    aff = measure(str(fair), aff_dir, epochs=epochs)
    study = {"affinity": {"tasks": aff["tasks"], "matrix": aff["matrix"], "groups": aff["groups"]}, "runs": {},
             "seeds": AFFINITY_SEEDS, "trials": trials, "epochs": epochs}
    base = SPACES["vector"].read_text()
    runs = []
    for seed in range(AFFINITY_SEEDS):
        for use in (False, True):
            run = search(base, fair, work / "fair" / f"affinity-{'on' if use else 'off'}-s{seed}", trials, epochs,
                         seed, affinity=aff_dir if use else None)
            runs.append(run)
            study["runs"][run.name] = {"best_val_mean_error": best(run).metrics["mean_error"]}
    for k, v in hv(runs).items():
        study["runs"][k]["hypervolume"] = v
    for key in ("best_val_mean_error", "hypervolume"):
        study[f"mean_{key}"] = {side: mean([v[key] for k, v in study["runs"].items() if f"-{tag}-" in k])
                                for side, tag in (("with", "on"), ("without", "off"))}
    study["seeds_better_with"] = sum(
        study["runs"][f"affinity-on-s{k}"]["hypervolume"] > study["runs"][f"affinity-off-s{k}"]["hypervolume"]
        for k in range(AFFINITY_SEEDS))
    return study


def _fmt(v, spec: str = "+.1f") -> str:
    return "n/a" if v is None else format(v, spec)


def table(path: Path) -> str:
    """The README's markdown tables from a bench_mtl.json."""
    r = json.loads(path.read_text())
    out = []
    for name, d in r["suites"].items():
        b = r["settings"]["budgets"][name]
        out.append(f"**{name}** ({len(d['tasks'])} tasks; {b['trials_per_cell']} trials x {b['epochs_per_trial']:g} "
                   f"epochs per cell, {b['seeds']} seed(s)): test Δm vs single-task, % (mean over seeds), params")
        out.append("")
        out.append("| cell | Δm | params | best trial's sharing (per seed) | trial compute s | backward s |")
        out.append("|---|---|---|---|---|---|")
        for kind, cells in (("family", d["families"]), ("balance", d["balancing"])):
            for k, c in cells.items():
                out.append(f"| {kind} {k} | {_fmt(c['mean_test_delta_m_vs_single'])} | {c['mean_params']:,.0f} | "
                           f"{', '.join(c['best_sharing'])} | {c['mean_compute_s']:.0f} | {c['mean_backward_s']:.1f} |")
        for k, c in d["baselines"].items():
            params = f"{c['params']:,}" if c.get("params") else "-"
            out.append(f"| baseline {k} | {_fmt(c['test_delta_m_vs_single'])} | {params} | | | |")
        out.append("")
    if "affinity_prior" in r:
        a = r["affinity_prior"]
        out.append(f"**affinity prior** (fair, full mtl space, {a['seeds']} seeds x {a['trials']} trials): mean best "
                   f"validation mean_error {a['mean_best_val_mean_error']['with']:.4f} with `--affinity`, "
                   f"{a['mean_best_val_mean_error']['without']:.4f} without; mean hypervolume "
                   f"{a['mean_hypervolume']['with']:.3f} with, {a['mean_hypervolume']['without']:.3f} without "
                   f"(higher is better; better with on {a['seeds_better_with']} of {a['seeds']} seeds); "
                   f"suggested groups {' | '.join(', '.join(g) for g in a['affinity']['groups'])}.")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="2 trials of half an epoch, one seed (a smoke run)")
    ap.add_argument("--suites", default="people,fair,multimnist")
    ap.add_argument("--table", action="store_true", help="print the README tables of reports/bench_mtl.json and stop")
    a = ap.parse_args()
    if a.table:
        print(table(ROOT / "reports" / "bench_mtl.json"))
        return
    torch.set_num_threads(1)
    work = ROOT / "runs" / "bench-mtl"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    mm = work / "mm_mtl.toml"
    mm.write_text(multimnist_suite("mm-mtl", n_train=4096, n_val=1024, n_test=2048))
    suites = {"people": (ROOT / "tasks" / "people.toml", "vector"), "multimnist": (mm, "image"),
              "fair": (ROOT / "tasks" / "fair.toml", "vector")}
    t0 = time.time()
    result = {"settings": {"budgets": {k: dict(zip(("trials_per_cell", "epochs_per_trial", "seeds"), QUICK if a.quick else v))
                                       for k, v in BUDGETS.items()},
                           "sampler": "random", "multimnist_composites": {"train": 4096, "val": 1024, "test": 2048},
                           "selection": "per seed: the best trial by validation mean_error; test metrics of its export",
                           "machine": f"{platform.processor() or platform.machine()}, 2 cores, 1 torch thread per trial"},
              "suites": {}}
    for name in a.suites.split(","):
        suite_file, kind = suites[name]
        budget = QUICK if a.quick else BUDGETS[name]
        suite = load_suite(suite_file)
        base = SPACES[kind].read_text()
        sw = work / name
        single, refs = baselines(suite_file, sw, budget[1], 0)
        fam = {f: seeded_cell(cell_grammar(base, family=f), suite_file, suite, single, sw, f"family-{f}", budget)
               for f in FAMILIES}
        bal = {m: seeded_cell(cell_grammar(base, method=m), suite_file, suite, single, sw, f"balance-{m}", budget)
               for m in BALANCE_METHODS}
        result["suites"][name] = {"suite": str(suite_file.relative_to(ROOT)), "tasks": [t.ident for t in suite.tasks],
                                  "families": fam, "balancing": bal, "baselines": refs}
        print(json.dumps({name: {"families": {k: v["mean_test_delta_m_vs_single"] for k, v in fam.items()},
                                 "balancing": {k: v["mean_test_delta_m_vs_single"] for k, v in bal.items()}}}), flush=True)
    if "fair" in a.suites.split(","):
        result["affinity_prior"] = affinity_study(work, QUICK if a.quick else BUDGETS["fair"])
    result["wall_s"] = time.time() - t0
    out = ROOT / "reports" / "bench_mtl.json"
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(out)


if __name__ == "__main__":
    main()
