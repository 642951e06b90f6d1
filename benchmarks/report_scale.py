"""Issue 19's report measurements at one-shot scale (run by benchmarks/bench_report.py;
measures, asserts nothing). SYNTHETIC records (bench_report.synthetic_trial), 3 objectives
(mean_error, params, size_bytes).

  * build: `write_report` wall and CPU seconds, HTML size, at 10^3, 10^4, 10^5 trials;
  * Chromium (headless, software WebGL): navigation -> the page's `nasmtReadyAt`
    (Pareto plot, selection, table drawn: interactive), selecting the last row
    (`nasmt.select`, as a plot click does), sorting by a click on an objective's header;
  * read: `read_trials` and `trials_frame` of the 10^5-line trials.jsonl, against the
    old read path (stdlib json per line with the collector running, row dicts) in the
    same run;
  * dashboard: a 10^4-trial run served by `nasmt dashboard` (a subprocess) while 10
    records are appended before each poll: the delta poll's HTTP time and bytes, the
    page's whole refresh (fetch + apply + redraw, `nasmt.poll()` in Chromium), against
    the old poll in the same run (re-read the run, rebuild every view, send everything);
  * the old code's build (the commit given by --baseline-ref, extracted with `git
    archive` into a temporary folder) at the sizes it finishes.
"""

from __future__ import annotations

import gc
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _timed(fn, *a, **k):
    t, c = time.perf_counter(), time.process_time()
    out = fn(*a, **k)
    return time.perf_counter() - t, time.process_time() - c, out


# ----------------------------------------------------------------------------- read


def old_read_trials(run_dir: Path):
    """The read path before issue 19: stdlib json per line, the cyclic GC running."""
    from nasmt.run import TrialRecord

    lines = (Path(run_dir) / "trials.jsonl").read_text(encoding="utf-8", errors="replace").split("\n")
    by_num = {}
    for line in lines:
        if line.strip():
            r = TrialRecord.from_json(json.loads(line))
            by_num[r.number] = r
    return [by_num[k] for k in sorted(by_num)]


def old_trials_frame(run_dir: Path):
    import pandas as pd

    rows = []
    for r in old_read_trials(run_dir):
        row = {"number": r.number, "status": r.status.value, "error": r.error, "interrupted": r.interrupted,
               "recovered": r.recovered, "finished_at": r.finished_at, "total_s": r.timings.get("total_s"),
               "arch_hash": r.arch_hash}
        row.update({f"metrics.{k}": v for k, v in r.metrics.items()})
        rows.append(row)
    return pd.DataFrame(rows).set_index("number", drop=False)


def bench_read(run_dir: Path) -> dict:
    from nasmt.run import read_trials, trials_frame

    out = {"records": None}
    for name, fn in (("read_trials", read_trials), ("trials_frame", trials_frame),
                     ("old_read_trials", old_read_trials), ("old_trials_frame", old_trials_frame)):
        gc.collect()
        wall, cpu, res = _timed(fn, run_dir)
        out[f"{name}_s"], out[f"{name}_cpu_s"] = wall, cpu
        out["records"] = len(res)
        del res
    out["read_trials_speedup"] = out["old_read_trials_s"] / out["read_trials_s"]
    out["trials_frame_speedup"] = out["old_trials_frame_s"] / out["trials_frame_s"]
    return out


# ----------------------------------------------------------------------------- build + browser


def page_times(driver, html: Path, until) -> dict:
    """Interactive time, then select (the last row) and sort (an objective's header) times."""
    driver.get(html.as_uri())
    ready = until(driver, "return window.nasmtReadyAt || null")
    sel = driver.execute_script("""
        const n = JSON.parse(document.body.dataset.rows) - 1, t0 = performance.now();
        window.nasmt.select(n, true); return performance.now() - t0;""")
    sort = driver.execute_script("""
        const th = Array.from(document.querySelectorAll('#trial-table thead th')).find(t => t.classList.contains('obj'));
        const t0 = performance.now(); th.click(); const a = performance.now() - t0;
        const t1 = performance.now(); th.click(); return [a, performance.now() - t1];""")
    last = driver.execute_script("""
        const t0 = performance.now(), next = document.getElementById('next');
        const n = JSON.parse(document.body.dataset.rows); let clicks = 0;
        while (!next.disabled && clicks < 1000) { next.click(); clicks++; }
        return [performance.now() - t0, clicks, document.getElementById('pager-text').textContent];""")
    return {"interactive_ms": ready, "select_ms": sel, "sort_ms": sort[0], "sort_desc_ms": sort[1],
            "page_to_last_ms": last[0], "pager_clicks": last[1], "pager_text": last[2]}


def old_tree(ref: str, dest: Path) -> Path | None:
    """The nasmt package at git `ref`, extracted into dest (None when git cannot)."""
    try:
        data = subprocess.run(["git", "archive", ref, "nasmt"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        t.extractall(dest, filter="data")
    return dest


def old_build(tree: Path, run: Path, out: Path, timeout: float) -> dict:
    """write_report of the old code in a subprocess (wall, CPU of the child)."""
    code = ("import sys, time, resource; t = time.perf_counter(); from nasmt.report import write_report; "
            f"write_report([{str(run)!r}], out={str(out)!r}); "
            "r = resource.getrusage(resource.RUSAGE_SELF); print(time.perf_counter() - t, r.ru_utime + r.ru_stime)")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    try:
        p = subprocess.run([sys.executable, "-c", code], env=env, cwd=tree, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"old_build_s": None, "old_build_note": f"did not finish in {timeout:.0f} s"}
    if p.returncode != 0:
        return {"old_build_s": None, "old_build_note": p.stderr.strip().splitlines()[-1][:200]}
    wall, cpu = map(float, p.stdout.split())
    return {"old_build_s": wall, "old_build_cpu_s": cpu, "old_html_mb": out.stat().st_size / 1e6}


def bench_scale(work: Path, sizes: list[int], driver, until, baseline_ref: str | None, old_max: int) -> tuple[list, dict | None]:
    from benchmarks.bench_report import OBJECTIVES_3, make_run
    from nasmt.report import write_report

    tree = old_tree(baseline_ref, work / "old") if baseline_ref else None
    rows, read = [], None
    keep = 10_000 if 10_000 in sizes else min(sizes)  # the dashboard's run
    for n in sizes:
        run = make_run(work / f"scale{n}", n, objectives=OBJECTIVES_3)
        gc.collect()
        wall, cpu, html = _timed(write_report, [run], out=work / f"scale{n}.html")
        p = json.loads(html.read_text(encoding="utf-8").split('id="nasmt-data">', 1)[1].split("</script>", 1)[0])
        row = {"trials": n, "objectives": list(OBJECTIVES_3), "build_s": wall, "build_cpu_s": cpu,
               "html_mb": html.stat().st_size / 1e6, "front": len(p["runs"][0]["front"]),
               "pareto_traces": [t.get("type") + ":" + str(t.get("name")) for t in p["figures"]["pareto"]["data"]]}
        if driver is not None:
            page_times(driver, html, until)  # warm this page size once (first parse of a new page costs more)
            row.update(page_times(driver, html, until))
        if tree is not None and n <= old_max:
            row.update(old_build(tree, run, work / f"old{n}.html", timeout=600))
            if row.get("old_build_s"):
                row["build_speedup_vs_old"] = row["old_build_s"] / row["build_s"]
        elif tree is not None:
            row["old_build_note"] = f"not run above {old_max:,} trials (issue 19: over 10 minutes at 10^5)"
        if n == max(sizes):
            read = bench_read(run)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "pareto_traces"}), flush=True)
        if n != keep:
            shutil.rmtree(run, ignore_errors=True)
    return rows, read


# ----------------------------------------------------------------------------- dashboard


def _get(port: int, path: str) -> tuple[int, bytes, float]:
    import http.client

    t = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body, time.perf_counter() - t


def _append(run: Path, start: int, k: int, rng) -> int:
    from benchmarks.bench_report import synthetic_trial

    with open(run / "trials.jsonl", "a", encoding="utf-8") as f:
        for i in range(k):
            f.write(json.dumps(synthetic_trial(start + i, rng), sort_keys=True) + "\n")
    return start + k


def bench_dashboard(run: Path, driver, until, polls: int = 10, per_poll: int = 10) -> dict:
    """The live dashboard of `run` (10^4 records) while records are appended."""
    from nasmt.report import build_payload, load_runs, payload_json, resolve_objectives
    from nasmt.run import read_trials

    sys.path.insert(0, str(ROOT / "tests" / "report"))
    from dashboard_helpers import free_port, start_dashboard, stop

    rng = np.random.default_rng(7)
    n = len(read_trials(run))
    port = free_port()
    t0 = time.perf_counter()
    proc = start_dashboard(run, port)
    out = {"trials": n, "per_poll_appended": per_poll, "start_s": time.perf_counter() - t0}
    try:
        st, body, _ = _get(port, "/api/data")
        version = json.loads(body)["version"]
        out["full_payload_bytes"] = len(body)
        http_s, http_bytes, kinds = [], [], []
        for _ in range(polls):
            n = _append(run, n, per_poll, rng)
            st, body, dt = _get(port, f"/api/data?delta=1&v={version}")
            d = json.loads(body)
            kinds.append("delta" if d.get("delta") else "full")
            http_s.append(dt)
            http_bytes.append(len(body))
            version = d["version"]
            time.sleep(0.3)
        out.update(delta_poll_s=http_s, delta_poll_median_s=statistics.median(http_s), delta_poll_max_s=max(http_s),
                   delta_bytes_median=statistics.median(http_bytes), kinds=kinds)
        if driver is not None:  # the page's whole refresh: fetch, apply the delta, redraw
            driver.set_script_timeout(300)
            driver.get(f"http://127.0.0.1:{port}/")
            until(driver, "return window.nasmtReadyAt || null")
            page = []
            for _ in range(polls):
                n = _append(run, n, per_poll, rng)
                ms = driver.execute_async_script("""
                    const done = arguments[arguments.length - 1], t0 = performance.now();
                    window.nasmt.poll().then(() => done(performance.now() - t0));""")
                rows = driver.execute_script("return JSON.parse(document.body.dataset.rows)")
                page.append(ms)
                time.sleep(0.3)
            out.update(page_refresh_ms=page, page_refresh_median_ms=statistics.median(page),
                       page_refresh_max_ms=max(page), page_rows_after=rows, records_after=n)
    finally:
        stop(proc)
    # baseline, same run and machine: the old poll re-read the run, rebuilt every view and sent it all
    base = []
    for _ in range(3):
        n = _append(run, n, per_poll, rng)
        t = time.perf_counter()
        rd = load_runs([run])
        body = payload_json(build_payload(rd, resolve_objectives(rd, None), mode="live")).encode()
        base.append(time.perf_counter() - t)
    out.update(old_poll_s=base, old_poll_median_s=statistics.median(base), old_poll_bytes=len(body),
               poll_speedup=statistics.median(base) / out["delta_poll_median_s"],
               bytes_ratio=len(body) / out["delta_bytes_median"])
    return out
