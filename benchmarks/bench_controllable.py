"""Controllable deployment (issue 18): one exported network, the trade-off chosen at run time.

    python benchmarks/bench_controllable.py [--quick] [--cells fair,multimnist]
    python benchmarks/bench_controllable.py --thin 8    # then: the same runs exported with --max-candidates 8

Per cell, a real one-shot search through the CLI (`nasmt search --oneshot`, kept under
runs/bench-controllable/<cell>/run and reused when complete), then
`nasmt export RUN --controllable` (timed), and on the export's own generated model.py
(imported from the folder, as a deployer would):

- bytes: the controllable folder's PyTorch part (model.py, shared.safetensors,
  own.safetensors, front.json, preprocessing.json) against the front's candidates exported
  one by one (each: model.py + weights.safetensors + preprocessing.json, written by the plain
  export's `_write_model` from the same inherited network): the sum and the largest single
  one. Goal: at most 1.5x the largest single candidate. Weights alone and the whole folder
  (with the per-candidate ONNX files, which are per candidate by design) are reported too.
- controllability: Spearman's rho between a task's weight and the selected candidate's
  relative quality on that task (its error placed on the front's range; validation, the
  selection's own data, and test), per task, over two sweeps of preference vectors: `axis`
  (that task's weight 0..1, the rest shared equally by the others) and `dirichlet` (the
  vertices, the centre and seeded Dirichlet draws over all tasks at once: with many tasks a
  single weight explains less of the choice); goal >= 0.8 for tasks where the front offers a
  trade-off (the front's best candidate for that task is not the best for every other task).
  Swept with no budget and under the front's median params.
- budgets: latency budgets spread over the front's measured range (after
  `net.measure_latency()` calibrated the table on this machine, as the card tells a deployer
  to) and params budgets; the selected candidate's latency re-measured right after the
  choice: the fraction of budgets it meets (goal 100%).
- switch time between two selections (median of many; goal < 1 ms on CPU, no weight copy:
  the running network's parameters are checked to be views of the shared tensors), and the
  latency of `select(tasks=[one])` against all tasks.

Writes reports/bench_controllable.json after every cell.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nasmt.run import TrialStatus, read_trials  # noqa: E402

OUT = ROOT / "reports" / "bench_controllable.json"
CELLS = {
    "fair": {"suite": "tasks/fair.toml", "space": "search_spaces/mtl.grammar", "trials": 300, "supernet_epochs": 6,
             "batch_size": 128},
    "multimnist": {"suite": "tests/data/mm_small.toml", "space": "search_spaces/conv_mtl.grammar", "trials": 150,
                   "supernet_epochs": 3, "batch_size": 128},
}
QUICK = {"trials": 24, "supernet_epochs": 1}
SWEEP = 200  # Dirichlet preference draws (plus vertices and centre)
AXIS = 21  # steps of one task's weight from 0 to 1 in the axis sweep
BUDGETS = 25  # latency budgets (and as many params budgets)
SWITCHES = 2000
LATENCY_REPEATS = 50


def cli(*args) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nasmt.cli", *map(str, args)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def search(run: Path, c: dict) -> float | None:
    if (run / "supernet" / "state.json").exists() and sum(
            r.status == TrialStatus.COMPLETE for r in read_trials(run)) >= c["trials"]:
        return None  # complete: reuse
    shutil.rmtree(run, ignore_errors=True)
    run.parent.mkdir(parents=True, exist_ok=True)
    return cli("search", "--space", ROOT / c["space"], "--tasks", ROOT / c["suite"], "--oneshot", "--out", run,
               "--trials", c["trials"], "--supernet-epochs", c["supernet_epochs"], "--candidate-batch", 100,
               "--batch-size", c["batch_size"], "--seed", 0, "--quiet")


def folder_bytes(folder: Path, names=None) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and (names is None or p.name in names))


def separate_exports(run: Path, front: dict, dest: Path) -> list[int]:
    """Bytes of each candidate exported alone (model.py + weights + preprocessing)."""
    from nasmt.export.write import _write_model
    from nasmt.search.oneshot import bank as B
    from nasmt.space.spec import ArchSpec

    bank, _, data = B.load_bank(run)
    recs = {r.number: r for r in read_trials(run)}
    shutil.rmtree(dest, ignore_errors=True)
    sizes = []
    for c in front["candidates"]:
        spec = ArchSpec.from_json(c["spec"])
        model = B.inherited_model(bank, spec, data, B.recalibration_of(recs[c["trial"]]))
        _write_model(dest / f"c{c['id']}", model, spec, data.preprocessing, f"trial {c['trial']}")
        sizes.append(folder_bytes(dest / f"c{c['id']}"))
    return sizes


def spearman(a, b) -> float | None:
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None  # undefined: one side constant
    return float(spearmanr(a, b).statistic)


def quality(front: dict, split: str) -> dict:
    """{candidate id: {task: error placed on the front's range}} for `split` errors."""
    key = f"{split}_error"
    cands, out = front["candidates"], {}
    for t in [x["ident"] for x in front["tasks"]]:
        errs = [c[key][t] for c in cands]
        lo, hi = min(errs), max(errs)
        for c in cands:
            out.setdefault(c["id"], {})[t] = (hi - c[key][t]) / (hi - lo) if hi > lo else 1.0
    return out


def _sweep(net, tasks, prefs, budget) -> list:
    return [net.select(budget=budget, preference=dict(zip(tasks, map(float, w))))["id"] for w in prefs]


def controllability(net, front: dict, budget: dict | None, seed: int = 0) -> dict:
    """Two sweeps: `axis` (per task, its weight 0..1 in AXIS steps, the rest shared
    equally by the other tasks) and `dirichlet` (vertices, centre, SWEEP seeded draws over
    all tasks at once). rho per task on validation (what select judges) and test."""
    tasks = [t["ident"] for t in front["tasks"]]
    k = len(tasks)
    rng = np.random.default_rng(seed)
    mixed = [np.eye(k)[i] for i in range(k)] + [np.full(k, 1 / k)] + list(rng.dirichlet(np.ones(k), SWEEP))
    mixed_chosen = _sweep(net, tasks, mixed, budget)
    qv, qt = quality(front, "val"), quality(front, "test")
    best = {t: min(front["candidates"], key=lambda c: c["val_error"][t])["id"] for t in tasks}
    eligible = [c["id"] for c in front["candidates"]
                if budget is None or all(c["costs"][kk] <= v for kk, v in budget.items())]
    per_task = {}
    for j, t in enumerate(tasks):
        ws = np.linspace(0, 1, AXIS)
        axis = [np.array([w if i == j else (1 - w) / (k - 1) for i in range(k)]) for w in ws]
        axis_chosen = _sweep(net, tasks, axis, budget)
        w_mixed = [p[j] for p in mixed]
        per_task[t] = {"tradeoff": any(best[t] != best[u] for u in tasks if u != t),
                       "axis_rho_val": spearman(ws, [qv[i][t] for i in axis_chosen]),
                       "axis_rho_test": spearman(ws, [qt[i][t] for i in axis_chosen]),
                       "axis_choices": axis_chosen,
                       "dirichlet_rho_val": spearman(w_mixed, [qv[i][t] for i in mixed_chosen]),
                       "dirichlet_rho_test": spearman(w_mixed, [qt[i][t] for i in mixed_chosen])}

    def worst(key):
        judged = [v[key] for v in per_task.values() if v["tradeoff"] and v[key] is not None]
        return min(judged) if judged else None

    out = {"budget": budget, "dirichlet_preferences": len(mixed), "axis_steps": AXIS,
           "distinct_choices_dirichlet": len(set(mixed_chosen)), "eligible_candidates": len(eligible),
           "per_task": per_task}
    for key in ("axis_rho_val", "axis_rho_test", "dirichlet_rho_val", "dirichlet_rho_test"):
        out[f"min_{key}_where_tradeoff"] = worst(key)
    out["goal_met_axis_val"] = out["min_axis_rho_val_where_tradeoff"] is not None and out["min_axis_rho_val_where_tradeoff"] >= 0.8
    out["goal_met_dirichlet_val"] = (out["min_dirichlet_rho_val_where_tradeoff"] is not None
                                     and out["min_dirichlet_rho_val_where_tradeoff"] >= 0.8)
    return out


def budgets_met(net, front: dict) -> dict:
    calibrated = net.measure_latency(repeats=LATENCY_REPEATS)  # the deployer's calibration on this machine
    lat = sorted(calibrated.values())
    out = {}
    for cost, values in (("latency_ms", np.linspace(lat[0], lat[-1], BUDGETS)),
                         ("params", np.linspace(min(c["costs"]["params"] for c in front["candidates"]),
                                                max(c["costs"]["params"] for c in front["candidates"]), BUDGETS))):
        rows = []
        for v in values:
            ch = net.select(budget={cost: float(v)})
            if cost == "latency_ms":
                got = net.measure_latency(repeats=LATENCY_REPEATS)[ch["id"]]  # re-measured after the choice
            else:
                got = ch["costs"]["params"]
            rows.append({"budget": float(v), "chosen": ch["id"], "measured": got, "met": bool(got <= v)})
        out[cost] = {"budgets": rows, "fraction_met": sum(r["met"] for r in rows) / len(rows)}
    return out


def switching(net, front: dict) -> dict:
    ids = [c["id"] for c in front["candidates"]]
    a, b = ids[0], ids[-1]
    ts = []
    for _ in range(SWITCHES // 2):
        for i in (a, b):
            t0 = time.perf_counter()
            net.select(candidate=i)
            ts.append(time.perf_counter() - t0)
    tasks = [t["ident"] for t in front["tasks"]]
    pref = [{tasks[0]: 1.0}, {t: 1.0 for t in tasks}]
    tc = []
    for k in range(SWITCHES // 2):
        t0 = time.perf_counter()
        net.select(preference=pref[k % 2])
        tc.append(time.perf_counter() - t0)
    storages = {t.untyped_storage().data_ptr() for t in net.shared.values()}
    not_views = {}
    for i in ids:
        net.select(candidate=i)
        not_views[i] = sum(p.untyped_storage().data_ptr() not in storages for p in net.parameters())
    gates = sum(sum(len(p) > 1 for p in c["sources"].values()) for c in front["candidates"])
    return {"switch_ms_median": 1000 * statistics.median(ts), "select_by_preference_ms_median": 1000 * statistics.median(tc),
            "parameters_not_views": sum(not_views.values()), "ple_gate_parameters_assembled_at_load": gates,
            "goal_met": 1000 * statistics.median(ts) < 1.0 and sum(not_views.values()) == gates}


def task_latency(front: dict) -> dict:
    tasks = [t["ident"] for t in front["tasks"]]
    ratios = {t: [c["task_latency_ms"][t] / c["costs"]["latency_ms"] for c in front["candidates"]] for t in tasks}
    return {"per_task_mean_ratio": {t: float(np.mean(v)) for t, v in ratios.items()},
            "mean_ratio": float(np.mean([x for v in ratios.values() for x in v]))}


def run_cell(name: str, c: dict, quick: bool) -> dict:
    import torch

    torch.set_num_threads(1)
    base = ROOT / "runs" / ("bench-controllable-quick" if quick else "bench-controllable") / name
    run, export = base / "run", base / "export"
    search_s = search(run, c)
    export_s = cli("export", run, "--controllable", "--out", export, "--force")
    front = json.loads((export / "front.json").read_text())
    sep = separate_exports(run, front, base / "separate")
    torch_part = {"model.py", "shared.safetensors", "own.safetensors", "front.json", "preprocessing.json"}
    ctl_torch = folder_bytes(export, torch_part)
    w = front["weights"]
    spec = importlib.util.spec_from_file_location(f"ctl_{name}", export / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net = mod.load()
    params = sorted(x["costs"]["params"] for x in front["candidates"])
    res = {
        "candidates": len(front["candidates"]), "tasks": [t["ident"] for t in front["tasks"]],
        "front_objectives": [o["name"] for o in front["front_objectives"]],
        "search_wall_s": search_s, "export_wall_s": export_s,
        "bytes": {"controllable_torch": ctl_torch, "separate_sum": sum(sep), "largest_single": max(sep),
                  "ratio_to_largest_single": ctl_torch / max(sep), "ratio_to_sum": ctl_torch / sum(sep),
                  "weights_shared_plus_own": w["shared_bytes"] + w["own_bytes"],
                  "weights_largest_single": w["largest_single_bytes"], "weights_separate_sum": w["separate_sum_bytes"],
                  "stored_elements": w["stored_elements"], "union_elements": w["union_elements"],
                  "whole_folder_with_onnx": folder_bytes(export),
                  "goal_met": ctl_torch <= 1.5 * max(sep)},
        "controllability": {"no_budget": controllability(net, front, None),
                            "median_params_budget": controllability(net, front, {"params": params[len(params) // 2]})},
        "budgets": budgets_met(net, front),
        "switch": switching(net, front),
        "task_latency": task_latency(front),
        "max_abs_diff_vs_extracted": max(x["check"]["max_abs_diff_vs_extracted"] for x in front["candidates"]),
        "onnx_max_abs_diff": max((x["onnx"] or {}).get("max_abs_diff_vs_torch", 0.0) for x in front["candidates"]),
        "quantized_artifacts": sum(x["quantized"] is not None for x in front["candidates"]),
    }
    res["budgets"]["goal_met"] = all(v["fraction_met"] == 1.0 for k, v in res["budgets"].items() if k != "goal_met")
    return res


def thin_cell(name: str, k: int) -> dict:
    """The same run exported with --max-candidates k: bytes and controllability."""
    import torch

    torch.set_num_threads(1)
    base = ROOT / "runs" / "bench-controllable" / name
    export = base / f"export-max{k}"
    export_s = cli("export", base / "run", "--controllable", "--out", export, "--force", "--max-candidates", k)
    front = json.loads((export / "front.json").read_text())
    sep = separate_exports(base / "run", front, base / f"separate-max{k}")
    ctl_torch = folder_bytes(export, {"model.py", "shared.safetensors", "own.safetensors", "front.json",
                                      "preprocessing.json"})
    spec = importlib.util.spec_from_file_location(f"ctl_{name}_max{k}", export / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net = mod.load()
    return {"max_candidates": k, "candidates": len(front["candidates"]), "front_size": front["front_size"],
            "export_wall_s": export_s,
            "bytes": {"controllable_torch": ctl_torch, "separate_sum": sum(sep), "largest_single": max(sep),
                      "ratio_to_largest_single": ctl_torch / max(sep), "ratio_to_sum": ctl_torch / sum(sep),
                      "goal_met": ctl_torch <= 1.5 * max(sep)},
            "controllability": {"no_budget": controllability(net, front, None)}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="toy sizes (a smoke run; not written to reports/)")
    ap.add_argument("--cells", default="fair,multimnist", help="cells to run (default %(default)s)")
    ap.add_argument("--thin", type=int, default=None, metavar="K",
                    help="only add, to cells already measured, the export thinned to K candidates (--max-candidates)")
    a = ap.parse_args()
    if a.thin:
        report = json.loads(OUT.read_text())
        for name in a.cells.split(","):
            report["cells"][name]["thinned"] = thin_cell(name, a.thin)
            OUT.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
            print(json.dumps(report["cells"][name]["thinned"]["bytes"], indent=1))
        return
    out = OUT if not a.quick else ROOT / "runs" / "bench_controllable_quick.json"
    report = json.loads(out.read_text()) if out.exists() else {}
    report.update({"benchmark": "bench_controllable", "goals": {
        "bytes": "controllable folder (torch part) <= 1.5x the largest single candidate's export",
        "controllability": "Spearman rho >= 0.8 between a task's weight and the chosen candidate's relative quality, "
                           "where the front offers a trade-off",
        "budgets": "100% of budgets met by the selected candidate when measured",
        "switch": "no weight copy, < 1 ms on CPU"}})
    report.setdefault("cells", {})
    load0 = os.getloadavg()[0]
    for name in a.cells.split(","):
        c = {**CELLS[name], **(QUICK if a.quick else {})}
        t0 = time.perf_counter()
        report["cells"][name] = {**run_cell(name, c, a.quick), "size": c, "wall_s": time.perf_counter() - t0}
        report["budget"] = {"machine": f"{os.cpu_count()} CPUs ({platform.machine()}), shared", "quick": a.quick,
                            "load_average_at_start": load0, "sweep": SWEEP, "budgets_per_cost": BUDGETS,
                            "latency_repeats": LATENCY_REPEATS, "threads": 1}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
        print(json.dumps({k: report["cells"][name][k] for k in ("candidates", "bytes", "switch", "task_latency")},
                         indent=1))
    print(out)


if __name__ == "__main__":
    main()
