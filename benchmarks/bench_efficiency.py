"""Sample efficiency: hypervolume against cumulative trial compute, per search strategy.

    python benchmarks/bench_efficiency.py [--quick] [--seeds 3] [--trials 12]

For each suite (MultiMNIST on a fixed subset of composites, and tasks/people.toml), each
seed, each sampler (random, tpe, nsga2, evolution) and each scheduler (fifo, mo-asha), a
real `nasmt search` with objectives mean_error,params and the same trial budget. For every
run: the hypervolume of the Pareto set after each finished trial (objectives min-max
normalized over all runs of that suite, reference point 1.1, as the report does) against
the cumulative compute of its trials (the trials' own seconds, stopped trials included),
so Ray start-up and idle time do not count.

Headline: for each strategy, the compute it needs to reach random search's (fifo) final
hypervolume (mean over seeds of the per-seed ratio compute_strategy / compute_random; a
run that never reaches it counts as not reaching it). Writes reports/bench_efficiency.json.
Runs are kept under runs/bench-eff/ and reused when the script is run again.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.suites import multimnist_suite  # noqa: E402
from nasmt.run import HV_REFERENCE, Objective, TrialStatus, hypervolume_history, objective_matrix, read_trials  # noqa: E402

SAMPLERS = ("random", "tpe", "nsga2", "evolution")
SCHEDULERS = ("fifo", "mo-asha")
OBJ = [Objective("mean_error", "min"), Objective("params", "min")]


def suites(quick: bool, work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    mm = work / "mm_eff.toml"
    mm.write_text(multimnist_suite("mm-eff", n_train=2048 if quick else 4096, n_val=1024, n_test=1024))
    return {
        "multimnist": (ROOT / "search_spaces" / "conv.grammar", mm),
        "people": (ROOT / "search_spaces" / "mlp.grammar", ROOT / "tasks" / "people.toml"),
    }


def run_one(space: Path, suite: Path, out: Path, sampler: str, scheduler: str, seed: int, trials: int,
            epochs: float) -> float:
    if (out / "run.json").exists() and sum(t.status == TrialStatus.COMPLETE for t in read_trials(out)) >= trials:
        return float("nan")  # done earlier: reuse
    if out.exists():
        import shutil

        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "nasmt.cli", "search", "--space", str(space), "--tasks", str(suite),
           "--objectives", "mean_error,params", "--trials", str(trials), "--epochs", str(epochs),
           "--sampler", sampler, "--scheduler", scheduler, "--seed", str(seed), "--out", str(out), "--quiet"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - t0


def curve(out: Path, lo: np.ndarray, hi: np.ndarray) -> dict:
    """(cumulative compute seconds, hypervolume) after each finished trial."""
    recs = sorted(read_trials(out), key=lambda t: t.finished_at or 0.0)
    compute = np.cumsum([float(t.timings.get("total_s", 0.0)) for t in recs])
    M = objective_matrix([t if t.is_front_candidate else _blank(t) for t in recs], OBJ)
    span = np.where(hi > lo, hi - lo, 1.0)
    hv = hypervolume_history((M - lo) / span, np.full(len(OBJ), HV_REFERENCE))
    return {"compute_s": compute.tolist(), "hv": hv.tolist(),
            "complete": sum(t.status == TrialStatus.COMPLETE for t in recs),
            "stopped": sum(t.status == TrialStatus.STOPPED for t in recs)}


def _blank(t):
    from dataclasses import replace

    return replace(t, metrics={})


def compute_to_reach(c: dict, target: float) -> float | None:
    for s, h in zip(c["compute_s"], c["hv"]):
        if h >= target - 1e-12:
            return s
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller subset and budget (a smoke run)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--epochs", type=float, default=2.0, help="per trial (mo-asha's rungs: 1, then 2)")
    ap.add_argument("--runs", default=str(ROOT / "runs" / "bench-eff"))
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench_efficiency.json"))
    a = ap.parse_args()
    runs = Path(a.runs)
    res = {"benchmark": "bench_efficiency", "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
           "objectives": [o.to_json() for o in OBJ], "trials": a.trials, "epochs": a.epochs, "seeds": a.seeds,
           "reference_point": HV_REFERENCE, "suites": {}}
    for name, (space, suite) in suites(a.quick, runs).items():
        wall = {}
        for seed in range(a.seeds):
            for sampler in SAMPLERS:
                for sched in SCHEDULERS:
                    out = runs / name / f"{sampler}-{sched}-s{seed}"
                    wall[out.name] = run_one(space, suite, out, sampler, sched, seed, a.trials, a.epochs)
                    print(f"{name} {out.name} done", flush=True)
        # normalization over every complete within-budget trial of every run of the suite
        allm = np.vstack([objective_matrix([t for t in read_trials(p) if t.is_front_candidate], OBJ)
                          for p in (runs / name).iterdir() if (p / "run.json").exists()])
        lo, hi = np.nanmin(allm, axis=0), np.nanmax(allm, axis=0)
        curves = {p.name: curve(p, lo, hi) for p in sorted((runs / name).iterdir()) if (p / "run.json").exists()}
        summary = {}
        for sampler in SAMPLERS:
            for sched in SCHEDULERS:
                key = f"{sampler}-{sched}"
                ratios, reached, final_hv, total = [], 0, [], []
                for seed in range(a.seeds):
                    base = curves[f"random-fifo-s{seed}"]
                    c = curves[f"{key}-s{seed}"]
                    need = compute_to_reach(c, base["hv"][-1])
                    final_hv.append(c["hv"][-1])
                    total.append(c["compute_s"][-1])
                    if need is not None:
                        reached += 1
                        ratios.append(need / base["compute_s"][-1])
                summary[key] = {
                    "reached_random_final_hv": f"{reached}/{a.seeds}",
                    "compute_ratio_to_random_mean": float(np.mean(ratios)) if ratios else None,
                    "speedup_vs_random": (1.0 / float(np.mean(ratios))) if ratios else None,
                    "final_hv_mean": float(np.mean(final_hv)), "total_compute_s_mean": float(np.mean(total)),
                }
        res["suites"][name] = {"space": str(space.relative_to(ROOT)), "suite": str(suite.name),
                               "summary": summary, "curves": curves,
                               "search_wall_s": {k: v for k, v in wall.items() if v == v}}
    default = "tpe-fifo"
    best = {n: max(s["summary"].items(), key=lambda kv: kv[1]["speedup_vs_random"] or 0)[0]
            for n, s in res["suites"].items()}
    res["headline"] = {
        "goal": "the default strategy reaches random search's final hypervolume with >= 3x less compute",
        "default": default,
        "default_speedup": {n: s["summary"][default]["speedup_vs_random"] for n, s in res["suites"].items()},
        "best_strategy": best,
    }
    Path(a.out).write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
    print(json.dumps(res["headline"], indent=1))


if __name__ == "__main__":
    main()
