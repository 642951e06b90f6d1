"""The report and the live dashboard at one-shot scale (issue 19), on SYNTHETIC runs:
generated trial records (no training; `"synthetic": true` in run.json and in every
record). No timing is asserted (benchmarks/bench_report.py measures): the 100,000-trial
page holds every Pareto point exactly and its table pages to the last row in Chromium;
a live dashboard's second poll carries only the records appended since the first."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dashboard_helpers import chrome, get, page_payload, serving, values, wait_js
from nasmt.data.suite import load_suite
from nasmt.report import write_report
from nasmt.run import RUN_FILE, TRIALS_FILE, pareto_mask

ROOT = Path(__file__).resolve().parents[2]
OBJECTIVES = ("mean_error", "params", "size_bytes")


def synthetic_run(out: Path, n: int, seed: int = 0, start: int = 0) -> dict[int, list[float]]:
    """A run of n generated records (about 5% failed, 3% stopped, 2% over budget); returns
    trial number -> [mean_error, params, size_bytes] of the complete, within-budget ones."""
    out.mkdir(parents=True, exist_ok=True)
    if not (out / RUN_FILE).exists():
        grammar = ROOT / "search_spaces" / "conv.grammar"
        (out / RUN_FILE).write_text(json.dumps({
            "nasmt_run": 1, "synthetic": True, "suite": load_suite(ROOT / "tests" / "data" / "mm_small.toml").to_dict(),
            "grammar": {"name": "conv", "file": "search_spaces/conv.grammar", "text": grammar.read_text()},
            "objectives": [{"name": o, "direction": "min"} for o in OBJECTIVES], "config": {"trials": n},
        }), encoding="utf-8")
    rng = np.random.default_rng(seed)
    params = np.exp(rng.uniform(np.log(2e3), np.log(3e5), n)).astype(int)
    left = np.clip(0.9 - 0.08 * np.log10(params) + rng.normal(0, 0.05, n), 0.02, 0.95)
    right = np.clip(0.9 - 0.07 * np.log10(params) + rng.normal(0, 0.06, n), 0.02, 0.95)
    size = params * rng.choice([1, 2, 4], n)  # precision: size_bytes is not params * 4
    u = rng.random(n)
    lines, front_candidates = [], {}
    for i in range(n):
        num = start + i
        spec = {"hash": f"s{num:07d}", "genome": {"trunk.stage.n": int(params[i] % 3) + 1,
                                                  "branch.left.tap": str(int(params[i] % 2) + 1)}}
        rec = {"number": num, "synthetic": True, "spec": spec, "timings": {"total_s": 1.0}}
        mean = float((left[i] + right[i]) / 2)
        met = {"mean_error": mean, "params": int(params[i]), "size_bytes": int(size[i]),
               "left.error": float(left[i]), "right.error": float(right[i])}
        if u[i] < 0.05:
            rec.update(status="failed", error="synthetic failure")
        elif u[i] < 0.08:
            rec.update(status="stopped", metrics={"mean_error": mean})
        else:
            feasible = bool(u[i] >= 0.10)
            rec.update(status="complete", metrics={**met, "feasible": feasible})
            if feasible:
                front_candidates[num] = [mean, float(params[i]), float(size[i])]
        lines.append(json.dumps(rec))
    with open(out / TRIALS_FILE, "a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return front_candidates


def test_synthetic_100k_page_holds_every_pareto_point_and_pages_to_the_last_row(tmp_path):
    from selenium.webdriver.common.by import By

    n = 100_000
    cand = synthetic_run(tmp_path / "syn100k", n)
    nums = np.array(sorted(cand))
    M = np.array([cand[k] for k in nums])
    want = set(nums[pareto_mask(M)].tolist())  # the front computed here, independently of the report
    html = write_report([tmp_path / "syn100k"], out=tmp_path / "r.html")
    p = page_payload(html.read_text(encoding="utf-8"))
    assert set(p["runs"][0]["front"]) == want
    assert len(p["table"]["rows"]) == n
    keys = [c["key"] for c in p["table"]["columns"]]
    fi, ni = keys.index("front"), keys.index("number")
    assert {r[ni] for r in p["table"]["rows"] if r[fi]} == want
    # the Pareto view: every front point exact, at its values; the others aggregated (a density)
    traces = p["figures"]["pareto"]["data"]
    front = next(t for t in traces if t.get("name") == "front")
    got = {cd[1]: (x, y, z) for cd, x, y, z in zip(front["customdata"], values(front["x"]), values(front["y"]),
                                                      values(front["z"]))}
    assert set(got) == want
    for k, xyz in got.items():
        assert xyz == pytest.approx(tuple(cand[k]), rel=1e-5)
    dense = [t for t in traces if "density" in str(t.get("name"))]
    assert dense and all(t["type"] == "scatter3d" and "customdata" not in t for t in dense)
    drawn = sum(len(values(t["x"])) for t in traces if t["type"] == "scatter3d")
    assert drawn < 20_000, "dominated points are aggregated, not drawn one by one"
    # the page's table pages through every row to the last one (a real Chromium, its pager button)
    d = chrome(tmp_path)
    try:
        d.get(html.as_uri())
        wait_js(d, "return document.body.dataset.ready === '1'", timeout=120)
        assert d.execute_script("return document.querySelectorAll('#trial-table tbody tr').length") <= 200
        # the pager's buttons: first page, one page on, then the last page (500 pages of 200 rows)
        shown = """const rows = document.querySelectorAll('#trial-table tbody tr');
            return [rows[0].dataset.trial, rows[rows.length - 1].dataset.trial, rows.length,
                    document.getElementById('pager-text').textContent];"""
        d.find_element(By.ID, "first").click()
        first = d.execute_script(shown)
        d.find_element(By.ID, "next").click()
        second = d.execute_script(shown)
        d.find_element(By.ID, "last").click()
        last = d.execute_script(shown)
        at_end = d.execute_script("return [document.getElementById('next').disabled, document.getElementById('last').disabled]")
    finally:
        d.quit()
    assert first == ["0", "199", 200, "rows 1–200 of 100,000"]
    assert second == ["200", "399", 200, "rows 201–400 of 100,000"]
    assert last == ["99800", str(n - 1), 200, "rows 99,801–100,000 of 100,000"]
    assert at_end == [True, True]


def test_live_dashboard_second_poll_carries_only_the_new_records(tmp_path):
    run = tmp_path / "syn"
    synthetic_run(run, 300, seed=1)
    with serving(run) as srv:
        st, _, body = get(srv, "/api/data?delta=1")
        first = json.loads(body)
        assert st == 200 and "delta" not in first and len(first["table"]["rows"]) == 300
        synthetic_run(run, 3, seed=2, start=300)  # a search appends three trials
        st, _, body = get(srv, f"/api/data?delta=1&v={first['version']}")
        d = json.loads(body)
        assert st == 200 and d["delta"] is True and d["base"] == first["version"]
        assert "table" not in d and d["rows_from"] == 300
        keys = [c["key"] for c in first["table"]["columns"]]
        assert [r[keys.index("number")] for r in d["rows"]] == [300, 301, 302]
        assert len(d["drawn"]) == 3
        # the page's front flags after the delta are the whole payload's
        st, _, body = get(srv, "/api/data")
        full = json.loads(body)
        fi = keys.index("front")
        assert d["front_rows"] == [g for g, r in enumerate(full["table"]["rows"]) if r[fi]]
        assert full["version"] == d["version"]
        st, _, body = get(srv, f"/api/data?delta=1&v={d['version']}")
        assert st == 204 and body == b""


def test_rounded_many_gives_what_rounded_gives():
    from nasmt.report.style import rounded, rounded_many

    rng = np.random.default_rng(0)
    vals = np.concatenate([10 ** rng.uniform(-30, 30, 20_000), -(10 ** rng.uniform(-4, 4, 5_000)),
                           (rng.integers(100_000, 999_999, 5_000) * 10 + 5) / 1e7,  # 7 digits ending in 5: ties
                           np.nextafter(10.0 ** np.arange(-20, 20), 0), [0.0, -0.0, np.inf, -np.inf, np.nan]]).tolist()
    vals += [1, True, None, "x", 10**30]
    got, want = rounded_many(vals), [rounded(v) for v in vals]
    assert [(type(g), g) for g in got] == [(type(w), w) for w in want]


def test_live_page_applies_a_delta_as_the_whole_payload_would_show_it(tmp_path, monkeypatch):
    """Chromium on `nasmt dashboard`'s server: after three appended records, one poll (a
    delta whose Pareto figure is a patch) leaves the page with the rows, front flags and
    Pareto points of the whole payload. (The background refresh of the slow views is
    held back, so that the page's version is the server's when they are compared.)"""
    from nasmt.report.live import LiveData

    monkeypatch.setattr(LiveData, "_refresh_slow_later", lambda self, files: None)
    run = tmp_path / "syn"
    synthetic_run(run, 300, seed=1)
    d = chrome(tmp_path)
    try:
        with serving(run) as srv:
            d.get(f"http://127.0.0.1:{srv.server_address[1]}/")
            wait_js(d, "return document.body.dataset.ready === '1'", timeout=60)
            synthetic_run(run, 3, seed=3, start=300)
            d.set_script_timeout(60)
            d.execute_async_script("const done = arguments[arguments.length - 1]; window.nasmt.poll().then(done);")
            page = d.execute_script("""
                const gd = document.getElementById('plot-pareto'), pts = [];
                for (const t of gd.data) if (t.customdata) for (let i = 0; i < t.customdata.length; i++)
                    pts.push([t.customdata[i][1], t.x[i], t.y[i], t.z[i]]);
                const sf = document.getElementById('status-filter'); sf.value = 'front'; sf.dispatchEvent(new Event('change'));
                return {delta: window.nasmtLastDelta, rows: document.body.dataset.rows, pts: pts,
                        version: document.body.dataset.version,
                        front_filter: document.getElementById('pager-text').textContent};""")
            st, _, body = get(srv, "/api/data")
            full = json.loads(body)
    finally:
        d.quit()
    assert page["delta"]["rows"] == 3 and "pareto" in page["delta"]["figures"]
    assert page["rows"] == "303" and page["version"] == full["version"]
    want = sorted([cd[1], x, y, z] for t in full["figures"]["pareto"]["data"] if t.get("customdata")
                  for cd, x, y, z in zip(t["customdata"], values(t["x"]), values(t["y"]), values(t["z"])))
    assert sorted(page["pts"]) == want
    fi = [c["key"] for c in full["table"]["columns"]].index("front")
    k = sum(1 for r in full["table"]["rows"] if r[fi])
    assert page["front_filter"] == f"rows 1–{k} of {k}"  # the rows' Pareto flags, as the page filters on them
