"""Benchmark the report / dashboard at scale (measures; asserts nothing).

SYNTHETIC DATA: run directories with 1,000 and 10,000 generated trial records (random
conv-like architectures, plausible params / FLOPs / per-task errors, ~5% failed and ~3%
stopped trials) over the real mm_small suite and conv grammar. No training happens.

Measured:
  * write_report build time and HTML size (1k, 10k trials);
  * page load in headless Chromium (software WebGL, no GPU), 1400x900 window: navigation
    start -> the page's `data-ready` marker (Pareto plot, selection and table drawn:
    interactive), -> the views in the first screen drawn; then the time to draw the
    off-screen views (they are drawn when scrolled near), to select a trial and to sort;
  * baseline in the same run: optuna.visualization.plot_pareto_front of the same trials
    (HTML with plotly.js inline), build time and load until its plot is drawn;
  * nasmt.run.pareto_mask (O(n log n) for 2 objectives) vs an O(n^2) all-pairs check
    on the same points, 10k and 100k (the 100k naive time is extrapolated from a
    sample of rows, and marked so).

  * issue 19 (benchmarks/report_scale.py): build, interactive, select and sort times at
    10^3, 10^4, 10^5 trials with 3 objectives, read_trials / trials_frame at 10^5, the
    live dashboard's delta polls at 10^4 while records are appended; baselines in the
    same run (the old read path, the old full-resend poll, the old code's build).

    python benchmarks/bench_report.py            # writes reports/bench_report.json
    python benchmarks/bench_report.py --quick    # 1k only, no 100k naive
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nasmt.data.suite import load_suite  # noqa: E402
from nasmt.report import write_report  # noqa: E402
from nasmt.run import RUN_FILE, TRIALS_FILE, TrialStatus, pareto_mask, pareto_mask_naive, read_trials  # noqa: E402

SUITE = ROOT / "tests" / "data" / "mm_small.toml"
GRAMMAR = ROOT / "search_spaces" / "conv.grammar"


# ----------------------------------------------------------------------------- synthetic runs


def _op(rng):
    kind = rng.choice(["conv", "dwsep", "residual"], p=[0.5, 0.33, 0.17])
    if kind == "residual":
        return {"op": "residual", "k": 3}
    return {"op": str(kind), "k": int(rng.choice([3, 5])), "c": int(rng.choice([16, 24, 32, 48])), "s": 1}


def synthetic_trial(number: int, rng) -> dict:
    prec = lambda: {"w": str(rng.choice(["fp32", "bf16", "int8", "int4"])), "a": str(rng.choice(["fp32", "int8"]))}  # noqa: E731
    n_stages = int(rng.integers(1, 4))
    genome = {"trunk.stem.conv.c": int(rng.choice([8, 16, 24])), "trunk.stage.n": n_stages}
    stages = [{"ops": [{"op": "conv", "k": 3, "c": genome["trunk.stem.conv.c"], "s": 2}], "precision": prec()}]
    for i in range(n_stages):
        nb = int(rng.integers(1, 3))
        genome[f"trunk.stage.{i}.block.n"] = nb
        ops = []
        for j in range(nb):
            o = _op(rng)
            genome[f"trunk.stage.{i}.block.{j}.alt"] = float(rng.random())
            if "c" in o:
                genome[f"trunk.stage.{i}.block.{j}.{o['op']}.c"] = o["c"]
                genome[f"trunk.stage.{i}.block.{j}.{o['op']}.k"] = o["k"]
            ops.append(o)
        ops.append({"op": "maxpool", "k": 2})
        genome[f"trunk.stage.{i}.down.alt"] = float(rng.random())
        p = prec()
        genome[f"quant.stage{i + 1}.w"], genome[f"quant.stage{i + 1}.a"] = p["w"], p["a"]
        stages.append({"ops": ops, "precision": p})
    branches = []
    for task in ("left", "right"):
        tap = int(rng.integers(1, len(stages) + 1))
        h = int(rng.choice([32, 64, 128]))
        p = prec()
        genome.update({f"branch.{task}.tap": str(tap), f"branch.{task}.head.fc.h": h,
                       f"quant.{task}.w": p["w"], f"quant.{task}.a": p["a"]})
        branches.append({"task": task, "tap": tap, "layers": [], "out": 10, "precision": p,
                         "head": [{"op": "gap"}, {"op": "fc", "h": h, "act": "relu"}, {"op": "dropout", "p": 0.0}]})
    arch = {"space": "conv", "input_shape": [1, 28, 28], "stages": stages, "branches": branches}
    spec = {**arch, "genome": genome,
            "hash": hashlib.sha256(json.dumps(arch, sort_keys=True).encode()).hexdigest()[:16]}
    u = rng.random()
    if u < 0.05:
        return {"number": number, "status": TrialStatus.FAILED.value, "spec": spec, "error": "out of memory: CUDA out of memory (synthetic)",
                "timings": {"total_s": float(rng.random() * 3)}}
    params = int(np.exp(rng.uniform(np.log(2e3), np.log(3e5))))
    left = float(np.clip(0.9 - 0.08 * np.log10(params) + rng.normal(0, 0.05), 0.02, 0.95))
    right = float(np.clip(0.9 - 0.07 * np.log10(params) + rng.normal(0, 0.06), 0.02, 0.95))
    metrics = {
        "params": params, "flops": params * int(rng.integers(40, 160)), "size_bytes": params * 4,
        "left.error": left, "left.accuracy": 1 - left, "right.error": right, "right.accuracy": 1 - right,
        "mean_error": (left + right) / 2,
    }
    if u < 0.08:
        return {"number": number, "status": TrialStatus.STOPPED.value, "spec": spec, "error": "stopped early by the scheduler",
                "metrics": {"mean_error": metrics["mean_error"]}}
    return {"number": number, "status": TrialStatus.COMPLETE.value, "spec": spec, "metrics": metrics, "error": None,
            "timings": {"total_s": float(rng.uniform(2, 20))}}


OBJECTIVES_2 = ("mean_error", "params")
OBJECTIVES_3 = ("mean_error", "params", "size_bytes")  # issue 19's scale runs


def make_run(out: Path, n: int, seed: int = 0, objectives=OBJECTIVES_2) -> Path:
    suite = load_suite(SUITE)
    out.mkdir(parents=True, exist_ok=True)
    run = {
        "nasmt_run": 1, "synthetic": True, "suite": suite.to_dict(),
        "grammar": {"name": "conv", "file": str(GRAMMAR.relative_to(ROOT)), "text": GRAMMAR.read_text()},
        "objectives": [{"name": o, "direction": "min"} for o in objectives],
        "config": {"sampler": "synthetic", "trials": n, "seed": seed},
    }
    (out / RUN_FILE).write_text(json.dumps(run, indent=1))
    rng = np.random.default_rng(seed)
    with open(out / TRIALS_FILE, "w") as f:
        for i in range(n):
            f.write(json.dumps(synthetic_trial(i, rng), sort_keys=True) + "\n")
    return out


def optuna_baseline_html(run_dir: Path, out: Path) -> Path:
    """optuna.visualization.plot_pareto_front of the same complete trials, plotly.js inline."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["minimize", "minimize"])
    trials = [t for t in read_trials(run_dir) if t.status == TrialStatus.COMPLETE]
    study.add_trials([optuna.trial.create_trial(values=[t.metrics["mean_error"], t.metrics["params"]])
                      for t in trials])
    fig = optuna.visualization.plot_pareto_front(study)
    fig.write_html(str(out), include_plotlyjs=True, full_html=True)
    return out


# ----------------------------------------------------------------------------- browser


def chrome():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
              "--enable-unsafe-swiftshader", "--window-size=1400,900", f"--user-data-dir={tempfile.mkdtemp()}"]:
        opts.add_argument(a)
    return webdriver.Chrome(options=opts, service=Service("/usr/bin/chromedriver"))


def _until(driver, js, timeout=300):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = driver.execute_script(js)
        if v:
            return v
        time.sleep(0.05)
    raise TimeoutError(js)


def load_nasmt(driver, html: Path) -> dict:
    driver.get(html.as_uri())
    ready = _until(driver, "return window.nasmtReadyAt || null")  # interactive: Pareto, selection, table
    visible = _until(driver, "return document.getElementById('plot-hypervolume').dataset.drawn ? performance.now() : null")
    rest = driver.execute_script("const t0 = performance.now(); window.nasmt.drawAll(); return performance.now() - t0;")
    # responsiveness: select a trial (as a plot click does) and sort the table by an objective
    sel = driver.execute_script("""
        const n = JSON.parse(document.body.dataset.rows) - 1, t0 = performance.now();
        window.nasmt.select(n, true); return performance.now() - t0;""")
    sort = driver.execute_script("""
        const th = document.querySelectorAll('#trial-table thead th')[3], t0 = performance.now();
        th.click(); return performance.now() - t0;""")
    filt = driver.execute_script("""
        const inp = document.getElementById('filter'); inp.value = 'failed';
        const t0 = performance.now(); inp.dispatchEvent(new Event('input'));
        return t0;""")
    _until(driver, "return document.getElementById('pager-text').textContent.indexOf('of') >= 0 && "
                   "document.querySelectorAll('#trial-table tbody tr').length <= 200")
    rows = driver.execute_script("return document.querySelectorAll('#trial-table tbody tr').length")
    return {"load_ms": ready, "visible_views_ms": visible, "offscreen_views_ms": rest, "select_ms": sel, "sort_ms": sort, "table_rows_in_dom": rows, "_filter_t0": filt}


def load_optuna(driver, html: Path) -> dict:
    driver.get(html.as_uri())
    t = _until(driver, """const g = document.querySelector('.js-plotly-plot');
        return g && g._fullLayout && g.querySelector('.main-svg') ? performance.now() : null;""")
    return {"load_ms": t}


# ----------------------------------------------------------------------------- main


def timed(fn, *a, **k):
    t = time.perf_counter()
    out = fn(*a, **k)
    return time.perf_counter() - t, out


def bench_pareto(n: int, rng, naive_rows: int | None = None) -> dict:
    P = rng.random((n, 2))
    P[:, 1] = 1 / (P[:, 0] + 0.05) * rng.uniform(0.8, 1.2, n)  # trade-off shaped cloud
    fast_s = min(timed(pareto_mask, P)[0] for _ in range(3))
    out = {"n": n, "pareto_mask_s": fast_s}
    if naive_rows is None or naive_rows >= n:
        naive_s, m2 = timed(pareto_mask_naive, P)
        assert (m2 == pareto_mask(P)).all()
        out.update(naive_s=naive_s, naive_estimated=False)
    else:  # all-pairs check of a sample of rows against all n, scaled to n rows
        idx = rng.choice(n, naive_rows, replace=False)
        t = time.perf_counter()
        for i in idx:
            dom = np.all(P <= P[i], axis=1) & np.any(P < P[i], axis=1)
            dom.any()
        out.update(naive_s=(time.perf_counter() - t) * n / naive_rows, naive_estimated=True, naive_sampled_rows=naive_rows)
    out["speedup"] = out["naive_s"] / out["pareto_mask_s"]
    return out


def goals(res: dict) -> dict:
    """Issue 19's goals against what was measured (None: not measured in this run)."""
    big = max(res.get("scale") or [{}], key=lambda r: r.get("trials", 0))
    d, rd = res.get("dashboard") or {}, res.get("read") or {}
    got = {
        "build_s <= 10 (10^5)": big.get("build_s"), "interactive_ms <= 3000 (10^5)": big.get("interactive_ms"),
        "select_ms <= 500 (10^5)": big.get("select_ms"), "sort_ms <= 500 (10^5)": big.get("sort_ms"),
        "poll_s <= 0.5 (10^4, delta, HTTP)": d.get("delta_poll_median_s"),
        "page_refresh_ms <= 500 (10^4)": d.get("page_refresh_median_ms"),
        "read_trials_s <= 5 (10^5)": rd.get("read_trials_s"), "trials_frame_s <= 5 (10^5)": rd.get("trials_frame_s"),
    }
    limit = {k: float(k.split("<= ")[1].split(" ")[0]) for k in got}
    return {k: {"measured": v, "met": None if v is None else v <= limit[k]} for k, v in got.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench_report.json"))
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--scale", default="1000,10000,100000",
                    help="issue 19's sizes (3 objectives; benchmarks/report_scale.py); '' to skip")
    ap.add_argument("--baseline-ref", default="a5f42ab",
                    help="git ref of the code before issue 19's report work (its build is the baseline)")
    ap.add_argument("--old-max", type=int, default=10_000, help="largest size the old code is built at")
    a = ap.parse_args(argv)
    sizes = [1000] if a.quick else [1000, 10000]
    work = Path(tempfile.mkdtemp(prefix="nasmt-bench-"))
    res = {"synthetic": True, "note": "synthetic trial records (no training); see benchmarks/bench_report.py",
           "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": __import__("os").cpu_count()},
           "report": [], "pareto_mask": []}
    driver = None if a.no_browser else chrome()
    try:
        if driver is not None:  # warm the browser (first launch / first plotly parse)
            load_optuna(driver, optuna_baseline_html(make_run(work / "warm", 50), work / "warm.html"))
        for n in sizes:
            run = make_run(work / f"syn{n}", n)
            build_s, html = timed(write_report, [run], out=work / f"report{n}.html")
            base_s, base = timed(optuna_baseline_html, run, work / f"optuna{n}.html")
            row = {"trials": n, "build_s": build_s, "html_mb": html.stat().st_size / 1e6,
                   "optuna_build_s": base_s, "optuna_html_mb": base.stat().st_size / 1e6}
            if driver is not None:
                page = load_nasmt(driver, html)
                page.pop("_filter_t0")
                row.update(page)
                row["optuna_load_ms"] = load_optuna(driver, base)["load_ms"]
                row["load_ratio_vs_optuna"] = row["load_ms"] / row["optuna_load_ms"]
            row["build_ratio_vs_optuna"] = build_s / base_s
            res["report"].append(row)
        scale = [int(x) for x in a.scale.split(",") if x.strip()] if not a.quick else [1000]
        if scale:
            from benchmarks.report_scale import bench_dashboard, bench_scale

            res["scale"], res["read"] = bench_scale(work, scale, driver, _until, a.baseline_ref, a.old_max)
            keep = 10_000 if 10_000 in scale else min(scale)
            res["dashboard"] = bench_dashboard(work / f"scale{keep}", driver, _until)
            res["goals"] = goals(res)
        if len(res["report"]) > 1 and driver is not None:
            r1, r10 = res["report"][0], res["report"][-1]
            res["scaling_10k_vs_1k"] = {"build": r10["build_s"] / r1["build_s"], "load": r10["load_ms"] / r1["load_ms"]}
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(work, ignore_errors=True)
    rng = np.random.default_rng(0)
    res["pareto_mask"].append(bench_pareto(10_000, rng))
    if not a.quick:
        res["pareto_mask"].append(bench_pareto(100_000, rng, naive_rows=2000))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")

    print("report (SYNTHETIC trials)")
    print(f"{'trials':>7} {'build s':>8} {'MB':>6} {'load ms':>8} {'select ms':>9} {'sort ms':>8} | {'optuna build s':>14} {'optuna load ms':>14} {'load ratio':>10}")
    for r in res["report"]:
        print(f"{r['trials']:>7} {r['build_s']:>8.2f} {r['html_mb']:>6.1f} {r.get('load_ms', float('nan')):>8.0f} "
              f"{r.get('select_ms', float('nan')):>9.1f} {r.get('sort_ms', float('nan')):>8.1f} | {r['optuna_build_s']:>14.2f} "
              f"{r.get('optuna_load_ms', float('nan')):>14.0f} {r.get('load_ratio_vs_optuna', float('nan')):>10.2f}")
    print("pareto_mask (2 objectives)")
    for p in res["pareto_mask"]:
        est = " (estimated)" if p["naive_estimated"] else ""
        print(f"{p['n']:>7} points: {p['pareto_mask_s'] * 1e3:8.1f} ms vs naive O(n^2) {p['naive_s']:8.1f} s{est}  -> {p['speedup']:,.0f}x")
    if res.get("goals"):
        print("issue 19 goals (SYNTHETIC records, 3 objectives)")
        for k, v in res["goals"].items():
            m = v["measured"]
            print(f"  {k:36s} {'-' if m is None else f'{m:.3f}':>10}  {'met' if v['met'] else 'NOT met' if v['met'] is False else ''}")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
