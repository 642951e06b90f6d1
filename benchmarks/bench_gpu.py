"""GPU figures (GitHub issue 11): trial throughput, search overhead, GPU shares, bf16,
and the cost of more tasks; one script, sized to finish in under 8 minutes on one GPU.

    python benchmarks/bench_gpu.py [--device cuda|cpu] [--smoke] [--out reports/bench_gpu.json]

Writes reports/bench_gpu.json. Every figure comes from this run on this machine, and
every ratio compares two measurements made here (training speeds alternated and
repeated, the median counts; each search once):
- throughput: one fixed MultiMNIST architecture of `conv.grammar` (a fixed genome replayed
  through the grammar), training samples/s of `nasmt.train.train` vs a plain hand-written
  torch loop (AdamW, same batch size, same model, the train split already on the device);
  ratio nasmt / plain, goal >= 0.8;
- search: a real `nasmt search` (CLI, Ray Tune + Optuna, random sampler) of 16 trials vs
  the same architectures, read back from the run, trained and evaluated one after another
  in one process with the same budget; ratio search / plain loop, goal <= 1.1;
- gpu_shares: the wall time of that search at `--gpus-per-trial` 1, 0.5 and 0.25 (the
  seeded random sampler should propose the same architectures at every share; the JSON
  says whether it did);
- bf16: throughput of the fixed architecture with TrainConfig(bf16=True) and (bf16=False);
- tasks: time per training step of the fixed design on an 8-task suite vs a 1-task suite
  (suite files written to a temporary folder; every task branches off the same trunk
  with the same branch); ratio 8 / 1, goal <= 1.3.
`--device cpu --smoke` runs every part at toy sizes (the CI smoke test; on a CPU there
are no GPU shares and autocast is off, the JSON says so): its numbers are not GPU figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nasmt.data import load_data  # noqa: E402
from nasmt.data.suite import load_suite  # noqa: E402
from nasmt.model.build import build  # noqa: E402
from nasmt.run import TrialStatus, load_run, read_trials  # noqa: E402
from nasmt.search.context import SEED_STRIDE  # noqa: E402
from nasmt.space.derive import replay  # noqa: E402
from nasmt.space.grammar import load_grammar  # noqa: E402
from nasmt.space.spec import ArchSpec  # noqa: E402
from nasmt.train import TrainConfig, TrainHook, evaluate, train  # noqa: E402

GOALS = {  # figure -> (comparison, bound), from the issue; the wall-time goal is "under 8 minutes"
    "throughput_ratio": (">=", 0.8),
    "search_vs_plain_ratio": ("<=", 1.1),
    "tasks_8_vs_1_step_ratio": ("<=", 1.3),
    "total_wall_s": ("<=", 480.0),
}
GPU_SHARES = (1.0, 0.5, 0.25)
OBJECTIVES = "mean_error,params"
SEARCH_SEED = 0
MANY_TASKS = 8
TARGETS = ("left", "right")  # the MultiMNIST targets; the 8-task suite alternates them

# The fixed architecture: decisions of conv.grammar by name; a weighted rule's `.alt` is
# given as its alternative's label. A mid-sized design: stem conv(16) (stage 1), stage 2
# two conv(32) blocks and a maxpool, stage 3 dwsep(48) + residual and a strided conv(48);
# every task taps the last stage with flatten-fc(64) (flatten keeps where a digit is).
TRUNK = {
    "trunk.stem.conv.c": 16, "trunk.stage.n": 2,
    "trunk.stage.0.block.n": 2, "trunk.stage.0.down.alt": "maxpool",
    "trunk.stage.0.block.0.alt": "conv", "trunk.stage.0.block.0.conv.c": 32, "trunk.stage.0.block.0.conv.k": 3,
    "trunk.stage.0.block.1.alt": "conv", "trunk.stage.0.block.1.conv.c": 32, "trunk.stage.0.block.1.conv.k": 3,
    "trunk.stage.1.block.n": 2, "trunk.stage.1.down.alt": "conv", "trunk.stage.1.down.conv.c": 48,
    "trunk.stage.1.block.0.alt": "dwsep", "trunk.stage.1.block.0.dwsep.c": 48, "trunk.stage.1.block.0.dwsep.k": 3,
    "trunk.stage.1.block.1.alt": "residual",
}
BRANCH = {"tap": "last", "bconv.n": 0, "head.pool.alt": "flatten", "head.fc.n": 1, "head.fc.h": 64,
          "head.dropout.p": 0.0}
FP32 = {"w": "fp32", "a": "fp32"}  # precision decisions: training builds fp32 whatever they say
ALT_GRID = 1000  # candidate values of a float `.alt` decision, to find one that picks a label


@dataclass(frozen=True)
class Sizes:
    steps: int  # timed optimizer steps per throughput measurement
    warmup: int  # untimed steps first (CUDA context, cuDNN algorithm choice, allocator)
    repeats: int  # alternated measurements per figure; the median counts
    batch_size: int  # as a search trains (TrainConfig's default)
    trials: int  # complete trials per search
    epochs: float  # training budget per trial in the searches ...
    search_steps: int | None  # ... or in steps (smoke)


FULL = Sizes(steps=400, warmup=50, repeats=3, batch_size=TrainConfig.batch_size, trials=16, epochs=10.0,
             search_steps=None)
SMOKE = Sizes(steps=4, warmup=1, repeats=1, batch_size=TrainConfig.batch_size, trials=2, epochs=1.0, search_steps=4)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, dev: torch.device) -> float:
    """Seconds `fn()` takes, queued device work included."""
    sync(dev)
    t0 = time.perf_counter()
    fn()
    sync(dev)
    return time.perf_counter() - t0


def medians(fns: dict, repeats: int) -> dict:
    """Median seconds of each no-argument timer, the timers alternated `repeats` times."""
    runs: dict = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            runs[k].append(fn())
    return {k: statistics.median(v) for k, v in runs.items()}


def alt_value(grammar, decision: str, label: str) -> float:
    """A float for a weighted rule's `.alt` decision that picks alternative `label`
    (through `Rule.pick`, the one mapping); the rule is the decision's last named part."""
    rule = grammar.rules[next(p for p in reversed(decision.split(".")[:-1]) if not p.isdigit())]
    return next(u for u in ((i + 0.5) / ALT_GRID for i in range(ALT_GRID)) if rule.pick(u).label == label)


def fixed_spec(grammar, suite, data):
    """The fixed architecture for `suite`: TRUNK, and BRANCH for every task."""
    genome = dict(TRUNK)
    n_stages = 1 + TRUNK["trunk.stage.n"]  # the stem is stage 1
    genome.update({f"quant.stage{s}.{k}": v for s in range(1, n_stages + 1) for k, v in FP32.items()})
    for t in suite.tasks:
        genome.update({f"branch.{t.ident}.{k}": v for k, v in BRANCH.items()})
        genome.update({f"quant.{t.ident}.{k}": v for k, v in FP32.items()})
    genome = {k: alt_value(grammar, k, v) if k.endswith(".alt") else v for k, v in genome.items()}
    return replay(grammar, genome, suite.tasks, data.input_shape, data.n_outputs)


def fresh_model(spec, dev: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    return build(spec).to(dev)


def nasmt_timer(spec, suite, data, dev, sz: Sizes, bf16: bool = True):
    """A timer of `sz.steps` steps of nasmt's loop (after `sz.warmup` untimed ones)."""
    def run() -> float:
        model = fresh_model(spec, dev)
        cfg = {"batch_size": sz.batch_size, "device": str(dev), "bf16": bf16}
        train(model, suite, data, TrainConfig(steps=sz.warmup, **cfg))
        return timed(lambda: train(model, suite, data, TrainConfig(steps=sz.steps, **cfg)), dev)
    return run


def plain_timer(spec, data, dev, sz: Sizes):
    """The same as a plain hand-written loop: AdamW with TrainConfig's defaults, summed
    cross-entropies, bf16 autocast on CUDA, uniform random batches, tensors on the device."""
    x = torch.from_numpy(data.x["train"]).to(dev)
    ys = {t: torch.from_numpy(y).to(dev) for t, y in data.y["train"].items()}
    defaults = TrainConfig()

    def steps(model, opt, k):
        for _ in range(k):
            idx = torch.randint(0, x.shape[0], (sz.batch_size,), device=dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                out = model(x[idx])
            loss = sum(F.cross_entropy(out[t].float(), y[idx]) for t, y in ys.items())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def run() -> float:
        model = fresh_model(spec, dev).train()
        opt = torch.optim.AdamW(model.parameters(), lr=defaults.lr, weight_decay=defaults.weight_decay)
        steps(model, opt, sz.warmup)
        return timed(lambda: steps(model, opt, sz.steps), dev)
    return run


class _AutocastSeen(TrainHook):
    """Records whether the forward ran under autocast (the bf16 flag took effect)."""

    def __init__(self, dev: torch.device):
        self.dev, self.seen = dev, set()

    def forward(self, model, x):
        self.seen.add(torch.is_autocast_enabled(self.dev.type))
        return model(x)


def autocast_seen(spec, suite, data, dev, bf16: bool) -> bool:
    hook = _AutocastSeen(dev)
    train(fresh_model(spec, dev), suite, data, TrainConfig(steps=1, device=str(dev), bf16=bf16), hooks=[hook])
    return hook.seen == {True}


def samples_per_s(sz: Sizes, seconds: float) -> float:
    return sz.steps * sz.batch_size / seconds


def bench_throughput(spec, suite, data, dev, sz: Sizes) -> dict:
    s = medians({"nasmt": nasmt_timer(spec, suite, data, dev, sz), "plain": plain_timer(spec, data, dev, sz)},
                sz.repeats)
    return {
        "nasmt_samples_per_s": samples_per_s(sz, s["nasmt"]),
        "plain_samples_per_s": samples_per_s(sz, s["plain"]),
        "throughput_ratio": s["plain"] / s["nasmt"],
        "params": sum(p.numel() for p in build(spec).parameters()),
        "arch": spec.describe(),
        "note": "nasmt includes what a trial's loop does per call (copying the train split to the device, "
                "the OneCycle schedule, a loss read every few steps); the plain loop starts with the data there",
    }


def bench_bf16(spec, suite, data, dev, sz: Sizes) -> dict:
    s = medians({"on": nasmt_timer(spec, suite, data, dev, sz, bf16=True),
                 "off": nasmt_timer(spec, suite, data, dev, sz, bf16=False)}, sz.repeats)
    out = {
        "on_samples_per_s": samples_per_s(sz, s["on"]),
        "off_samples_per_s": samples_per_s(sz, s["off"]),
        "speedup_on_vs_off": s["off"] / s["on"],
        "autocast_seen": {"on": autocast_seen(spec, suite, data, dev, True),
                          "off": autocast_seen(spec, suite, data, dev, False)},
    }
    if dev.type != "cuda":
        out["note"] = "CPU: autocast is off in both runs (bf16 applies on CUDA only); the two are the same loop"
    return out


def write_suite(folder: Path, n_tasks: int, data_options: dict) -> Path:
    """A MultiMNIST suite file of `n_tasks` tasks (targets alternate left / right)."""
    lines = [f'name = "multimnist-{n_tasks}-tasks"', "", "[data]", 'source = "multimnist"']
    lines += [f"{k} = {v!r}" for k, v in data_options.items()]
    for i in range(n_tasks):
        lines += ["", "[[tasks]]", f'name = "task{i}"', 'kind = "multiclass"', f'target = "{TARGETS[i % 2]}"']
    path = folder / f"suite_{n_tasks}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def bench_tasks(grammar, base_suite, dev, sz: Sizes, tmp: Path) -> dict:
    timers, sizes = {}, {}
    for n in (1, MANY_TASKS):
        suite = load_suite(write_suite(tmp, n, base_suite.data.options))
        data = load_data(suite)
        spec = fixed_spec(grammar, suite, data)
        timers[n] = nasmt_timer(spec, suite, data, dev, sz)
        sizes[n] = sum(p.numel() for p in build(spec).parameters())
    s = medians(timers, sz.repeats)
    return {
        "tasks_1_step_ms": 1000 * s[1] / sz.steps,
        f"tasks_{MANY_TASKS}_step_ms": 1000 * s[MANY_TASKS] / sz.steps,
        "tasks_8_vs_1_step_ratio": s[MANY_TASKS] / s[1],
        "params": {str(n): p for n, p in sizes.items()},
        "note": "the same trunk; every task taps its last stage with the same branch (flatten-fc(64)-linear)",
    }


def search(a, sz: Sizes, dev, share: float, out: Path) -> dict:
    """One real `nasmt search` (CLI subprocess): wall time, trials, architectures."""
    cmd = [sys.executable, "-m", "nasmt.cli", "search", "--space", a.space, "--tasks", a.suite,
           "--objectives", OBJECTIVES, "--trials", str(sz.trials), "--sampler", "random",
           "--seed", str(SEARCH_SEED), "--out", str(out), "--quiet"]
    cmd += ["--steps", str(sz.search_steps)] if sz.search_steps else ["--epochs", f"{sz.epochs:g}"]
    cmd += ["--gpus-per-trial", f"{share:g}"] if dev.type == "cuda" else ["--cpus-per-trial", "1"]
    cmd += ["--address", a.address] if a.address else []
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"bench_gpu: {' '.join(cmd)} -> exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    done = [r for r in read_trials(out) if r.status == TrialStatus.COMPLETE]
    flags = " ".join(cmd[3:]).replace(str(out), f"TMP/{out.name}").replace(f"{ROOT}/", "")
    return {"wall_s": wall, "complete": len(done), "flags": flags, "arch_hashes": sorted(r.arch_hash for r in done)}


def plain_search_loop(run: Path, suite, data, dev) -> float:
    """The run's complete architectures trained and evaluated one after another, in this
    process, with the run's budget and each trial's seed; seconds."""
    cfg = load_run(run)["config"]
    records = [r for r in read_trials(run) if r.status == TrialStatus.COMPLETE]

    def loop():
        for r in records:
            seed = SEARCH_SEED * SEED_STRIDE + r.number
            torch.manual_seed(seed)
            model = build(ArchSpec.from_json(r.spec))
            train(model, suite, data, TrainConfig(epochs=cfg["epochs"], steps=cfg["steps"],
                                                  batch_size=cfg["batch_size"], lr=cfg["lr"], seed=seed,
                                                  device=str(dev)))
            evaluate(model, suite, data, "val", str(dev))
    return timed(loop, dev)


def bench_search(a, sz: Sizes, suite, data, dev, tmp: Path) -> dict:
    """The search at the first share vs its plain loop."""
    first = search(a, sz, dev, GPU_SHARES[0], tmp / "search-1")
    plain_s = plain_search_loop(tmp / "search-1", suite, data, dev)
    note = ("the search's wall time includes Ray start-up and what every trial measures besides training "
            "(cost, quantization policy, weights); the plain loop trains and evaluates only")
    if dev.type != "cuda":
        note += "; on CPU the search runs --cpus-per-trial 1 (several trials at once), the loop one"
    return {**first, "plain_loop_s": plain_s, "search_vs_plain_ratio": first["wall_s"] / plain_s, "note": note}


def bench_shares(a, sz: Sizes, dev, tmp: Path, first: dict) -> dict:
    """The same search at each GPU share (`first`: the one at GPU_SHARES[0])."""
    if dev.type != "cuda":
        return {"skipped": "no GPU: --gpus-per-trial needs CUDA (not mapped to --cpus-per-trial)"}
    keys = ("wall_s", "complete", "flags", "arch_hashes")
    shares = {f"{GPU_SHARES[0]:g}": {k: first[k] for k in keys}}
    for share in GPU_SHARES[1:]:
        shares[f"{share:g}"] = search(a, sz, dev, share, tmp / f"search-{share:g}")
    for s in shares.values():
        s["speedup_vs_share_1"] = first["wall_s"] / s["wall_s"]
        s["same_architectures_as_share_1"] = s["arch_hashes"] == first["arch_hashes"]
    return shares


def machine(dev: torch.device) -> dict:
    m = {"device": dev.type, "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
         "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        m.update(gpu=torch.cuda.get_device_name(dev), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                 cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return m


def goals(figures: dict) -> dict:
    ops = {">=": lambda v, b: v >= b, "<=": lambda v, b: v <= b}
    return {k: {"figure": figures[k], "goal": f"{op} {bound:g}", "met": bool(ops[op](figures[k], bound))}
            for k, (op, bound) in GOALS.items()}


def finite(obj):
    """`obj` with floats rounded for reading; a non-finite number is a bug here."""
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"bench_gpu: non-finite figure {obj}")
        return round(obj, 4)
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite(v) for v in obj]
    return obj


def save(res: dict, out: str) -> dict:
    """Write what is measured so far (after every section: a run cut short keeps it)."""
    res = finite(res)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(res, indent=2) + "\n")
    return res


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--smoke", action="store_true", help="toy sizes: checks that every part runs, measures nothing")
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench_gpu.json"))
    ap.add_argument("--epochs", type=float, help=f"training budget per search trial (default {FULL.epochs:g}; "
                    "the knob that sizes the run: three searches and a plain loop train at it)")
    ap.add_argument("--suite", default=str(ROOT / "tasks" / "multimnist.toml"))
    ap.add_argument("--space", default=str(ROOT / "search_spaces" / "conv.grammar"))
    ap.add_argument("--address", default=None, help="the searches join this Ray cluster (HOST:PORT) instead of "
                    "starting one each (their wall time then leaves out a cluster's start-up)")
    a = ap.parse_args()
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_gpu: --device cuda, but torch sees no CUDA device (use --device cpu)")
    return a


def main():
    a = parse_args()
    t_start = time.perf_counter()
    torch.set_num_threads(1)  # as a trial with one CPU trains
    dev, sz = torch.device(a.device), SMOKE if a.smoke else FULL
    if a.epochs is not None:
        sz = replace(sz, epochs=a.epochs, search_steps=None)
    grammar, suite = load_grammar(a.space), load_suite(a.suite)
    data = load_data(suite)
    spec = fixed_spec(grammar, suite, data)
    res = {"benchmark": "bench_gpu", "finished": False,
           "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "smoke": a.smoke,
           "machine": machine(dev), "suite": suite.name, "sizes": asdict(sz)}
    res["throughput"] = bench_throughput(spec, suite, data, dev, sz)
    save(res, a.out)
    res["bf16"] = bench_bf16(spec, suite, data, dev, sz)
    save(res, a.out)
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        res["tasks"] = bench_tasks(grammar, suite, dev, sz, Path(tmp))
        save(res, a.out)
        res["search"] = bench_search(a, sz, suite, data, dev, Path(tmp))
        save(res, a.out)
        res["gpu_shares"] = bench_shares(a, sz, dev, Path(tmp), res["search"])
    res["total_wall_s"] = time.perf_counter() - t_start
    figures = {**res["throughput"], **res["search"], **res["tasks"], "total_wall_s": res["total_wall_s"]}
    res["goals"] = goals(figures)
    if a.device != "cuda" or a.smoke:
        res["goals_note"] = "the goals are for a full run on one GPU; this run is a smoke test / CPU run"
    res["finished"] = True
    res = save(res, a.out)
    print(json.dumps({k: res[k] for k in ("throughput", "bf16", "tasks", "goals")}, indent=2))


if __name__ == "__main__":
    main()
