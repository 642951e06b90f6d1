"""The HTML report on a real run: self-contained page, every view, escaping, errors,
and the views' data checked against the run's records. Most tests read the shared real
search run `tiny_run`; tests that change a run work on `run_copy`. (The views' pure
functions on synthetic records: test_report_views.py.)"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import nasmt
from dashboard_helpers import figure_points, page_payload, table_rows, values
from nasmt.errors import RunDirError, UserError
from nasmt.report import build_payload, export_parts, load_runs, make_context, payload_json, resolve_objectives, write_report
from nasmt.report.arch import get_arch_info
from nasmt.report.genome import genome_columns, get_genome_info, run_grammar
from nasmt.report.hypervolume import get_hypervolume_info
from nasmt.report.pareto import _Budget, get_pareto_info
from nasmt.report.table import get_table_info
from nasmt.report.tasks import get_task_matrix_info
from nasmt.run import (
    RUN_FILE,
    TRIALS_FILE,
    TrialRecord,
    TrialStatus,
    append_record,
    hypervolume_2d,
    objective_matrix,
    pareto_mask_naive,
    pareto_trials,
    read_trials,
    replace_records,
)

EVIL = "<script>alert(1)</script>"
EVIL_ERR = "<img src=x onerror=alert(2)> & </script><b>"


def _rewrite(run: Path, fn) -> None:
    for name in (RUN_FILE, TRIALS_FILE):
        p = run / name
        p.write_text(fn(p.read_text(encoding="utf-8")), encoding="utf-8")


def _context(run: Path, objectives: str | None = None):
    runs = load_runs([run])
    return make_context(runs, resolve_objectives(runs, objectives))


def _complete(run: Path) -> list[TrialRecord]:
    return [t for t in read_trials(run) if t.status == TrialStatus.COMPLETE]


# ----------------------------------------------------------------------------- the page


@pytest.fixture(scope="module")
def report_html(tiny_run, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("report") / "r.html"
    assert write_report([tiny_run], out=out) == out
    return out.read_text(encoding="utf-8")


def test_report_is_self_contained(report_html):
    from plotly.offline import get_plotlyjs

    js = get_plotlyjs()
    assert js in report_html, "plotly.js must be embedded whole"
    page = report_html.replace(js, "")  # (plotly.js itself mentions plot.ly links in strings)
    assert not re.search(r"<script[^>]+src=", page, re.I), "scripts must be inline"
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page, re.I), "no network resources"
    assert "http://" not in page and "https://" not in page


def test_report_has_every_view(report_html, tiny_run):
    p = page_payload(report_html)
    figs = p["figures"]
    assert set(figs) == {"pareto", "hypervolume", "tasks", "genome", "importance"}
    trials = read_trials(tiny_run)
    comp = sorted(t.number for t in trials if t.status == TrialStatus.COMPLETE)
    # every view carries its data: each complete trial is a point of the Pareto and per-task
    # views, a step of the hypervolume line and a line of the parallel coordinates
    assert sorted(figure_points(figs["pareto"])) == comp
    assert sorted(figure_points(figs["tasks"])) == comp
    line = next(t for t in figs["hypervolume"]["data"] if t["mode"] == "lines")
    hv = values(line["y"])
    assert values(line["x"]) == comp and hv[-1] == p["runs"][0]["hypervolume"] > 0
    assert all(b >= a for a, b in zip(hv, hv[1:])), "the front's hypervolume never shrinks"
    dims = figs["genome"]["data"][0]["dimensions"]
    assert [d["label"] for d in dims[-2:]] == ["mean error", "parameters"]
    assert all(len(values(d["values"])) == len(comp) for d in dims) and len(dims) > 2
    # too few trials for importances: the view says why (the page's note and the figure's)
    assert "at least" in p["notes"]["importance"]
    assert figs["importance"]["layout"]["annotations"][0]["text"] == p["notes"]["importance"]
    assert [r["number"] for r in table_rows(p)] == [t.number for t in trials]
    assert p["mode"] == "report"
    assert p["selected"] is not None
    # every recorded architecture can be drawn
    assert {t.arch_hash for t in trials if t.arch_hash} == set(p["archs"])
    assert [o["name"] for o in p["objectives"]] == ["mean_error", "params"]


def test_report_default_path_and_cli(run_copy):
    out = write_report([run_copy])
    assert out == run_copy / "report.html" and out.stat().st_size > 1_000_000
    r = nasmt("report", run_copy, "-o", run_copy / "cli.html", "--objectives", "left.error,right.error")
    assert Path(r.stdout.strip()) == run_copy / "cli.html"
    p = page_payload((run_copy / "cli.html").read_text(encoding="utf-8"))
    assert [o["name"] for o in p["objectives"]] == ["left.error", "right.error"]


def test_report_escapes_user_strings(run_copy, tmp_path):
    # a task named like a script, everywhere the name can appear (suite, metrics, genome,
    # branches, grammar text), and a failed trial whose reason is markup
    _rewrite(run_copy, lambda s: s.replace("left", EVIL))
    run = json.loads((run_copy / RUN_FILE).read_text(encoding="utf-8"))
    run["grammar"]["text"] += f"\n# {EVIL}\n"
    (run_copy / RUN_FILE).write_text(json.dumps(run), encoding="utf-8")
    append_record(run_copy, TrialRecord(999, TrialStatus.FAILED, error=EVIL_ERR))
    out = write_report([run_copy], out=tmp_path / "evil.html")
    html = out.read_text(encoding="utf-8")
    assert EVIL not in html
    assert "<img src=x" not in html
    assert "</script><b>" not in html
    # only our own script tags: every </script> closes one we opened
    assert html.lower().count("</script>") == len(re.findall(r"<script[\s>]", html, re.I))
    p = page_payload(html)  # the data itself still carries the exact strings
    assert p["runs"][0]["tasks"][0]["name"] == EVIL
    assert EVIL in p["runs"][0]["grammar"]
    assert [r["error"] for r in table_rows(p) if r["number"] == 999] == [EVIL_ERR]
    # Plotly renders some HTML: labels drawn by Plotly are escaped
    figs = json.dumps(p["figures"])
    assert EVIL not in figs and "&lt;script&gt;" in figs


def test_payload_json_escapes_markup():
    text = payload_json({"a": "</script><!-- & \u2028"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"a": "</script><!-- & \u2028"}


# ----------------------------------------------------------------------------- errors


def test_not_a_run_dir(tmp_path):
    with pytest.raises(RunDirError, match="not a nasmt run directory"):
        write_report([tmp_path])
    with pytest.raises(RunDirError, match="not found"):
        write_report([tmp_path / "missing"])
    r = nasmt("report", tmp_path, check=False)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "not a nasmt run directory" in r.stderr


def test_unknown_objective(tiny_run, tmp_path):
    with pytest.raises(UserError, match="unknown objective 'bogus'"):
        write_report([tiny_run], out=tmp_path / "x.html", objectives="mean_error,bogus")
    r = nasmt("report", tiny_run, "-o", tmp_path / "x.html", "--objectives", "nope", check=False)
    assert r.returncode == 2 and "unknown objective" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.html").exists()


# ----------------------------------------------------------------------------- the views' data vs the records


def test_pareto_info_matches_records(tiny_run):
    ctx = _context(tiny_run)
    info = get_pareto_info(ctx)
    trials, comp = read_trials(tiny_run), _complete(tiny_run)
    r = info.runs[0]
    assert r.number.tolist() == [t.number for t in comp]
    for n, v in zip(r.number, r.values):
        t = next(t for t in comp if t.number == n)
        assert v[0] == pytest.approx(t.metrics["mean_error"], rel=1e-5)
        assert v[1] == t.metrics["params"]
    # the front agrees with an independent O(n^2) check and with nasmt.run.pareto_trials
    naive = pareto_mask_naive(objective_matrix(comp, ctx.objectives))
    assert r.front.tolist() == naive.tolist()
    assert set(r.number[r.front].tolist()) == {t.number for t in pareto_trials(trials, ctx.objectives)}
    assert info.budgets == []
    assert info.labels == ["mean error", "parameters"]


def test_pareto_info_budget_and_predicted_latency(run_copy):
    run = json.loads((run_copy / RUN_FILE).read_text())
    run["config"]["max_bytes"] = 60000
    (run_copy / RUN_FILE).write_text(json.dumps(run))
    comp = _complete(run_copy)
    replace_records(run_copy, [
        t.with_metrics(latency_ms=1.0 + i, **({"predicted_latency_ms": 1.5 + i} if i % 2 == 0 else {}))
        for i, t in enumerate(comp)
    ])
    runs = load_runs([run_copy])
    objs = resolve_objectives(runs, "size_bytes,latency_ms")
    info = get_pareto_info(make_context(runs, objs))
    assert info.budgets == [_Budget(0, 60000.0, "max_bytes", runs[0].name)]
    pairs = info.runs[0].counterparts
    assert pairs and all(set(p) == {1} for _, p in pairs)
    for pi, p in pairs:  # predicted = measured + 0.5 by construction
        assert p[1] == pytest.approx(info.runs[0].values[pi, 1] + 0.5)

    p = build_payload(runs, objs)
    fig = p["figures"]["pareto"]
    assert any(s["type"] == "rect" and s.get("x0") == 60000.0 for s in fig["layout"]["shapes"])
    assert any(t.get("name") == "predicted cost" for t in fig["data"])


def test_pareto_three_objectives(tiny_run):
    runs = load_runs([tiny_run])
    objs = resolve_objectives(runs, "mean_error,params,flops")
    p = build_payload(runs, objs)
    assert {t["type"] for t in p["figures"]["pareto"]["data"]} == {"scatter3d"}
    assert p["pareto_dims"] == 3
    h = get_hypervolume_info(make_context(runs, objs))
    assert len(h.ref) == 3 and h.runs[0].hv[-1] > 0


def test_multi_run_overlay(tiny_run, run_copy, tmp_path):
    out = write_report([tiny_run, run_copy], out=tmp_path / "two.html")
    p = page_payload(out.read_text(encoding="utf-8"))
    assert [r["name"] for r in p["runs"]] == ["tiny", "run"]
    assert p["runs"][0]["symbol"] != p["runs"][1]["symbol"]
    symbols = {t["marker"]["symbol"] for t in p["figures"]["pareto"]["data"]
               if t.get("mode") == "markers" and t.get("name") != "selected" and "stopped" not in t.get("name", "")}
    assert symbols == {p["runs"][0]["symbol"], p["runs"][1]["symbol"]}
    n = len(read_trials(tiny_run))
    rows = table_rows(p)
    assert len(rows) == 2 * n
    assert {r["run"] for r in rows} == {0, 1}


def test_hypervolume_info(tiny_run):
    ctx = _context(tiny_run)
    h = get_hypervolume_info(ctx)
    hv = h.runs[0].hv
    assert np.all(np.diff(hv) >= -1e-12)
    M = objective_matrix(_complete(tiny_run), ctx.objectives)
    norm = (M - h.lo) / np.where(h.hi > h.lo, h.hi - h.lo, 1.0)
    assert hv[-1] == pytest.approx(hypervolume_2d(norm, np.array([1.1, 1.1])))


def test_task_matrix_info(tiny_run):
    info = get_task_matrix_info(_context(tiny_run))
    assert [t.ident for t in info.tasks] == ["left", "right"]
    comp = _complete(tiny_run)
    r = info.runs[0]
    assert r.errors.shape == (len(comp), 2)
    for n, e in zip(r.number, r.errors):
        t = next(t for t in comp if t.number == n)
        assert e[0] == pytest.approx(t.metrics["left.error"], rel=1e-5)
        assert e[1] == pytest.approx(t.metrics["right.error"], rel=1e-5)


def test_genome_decodes_weighted_alternatives(tiny_run):
    ctx = _context(tiny_run)
    g = run_grammar(ctx.runs[0])
    assert g is not None
    trials = [t for t in ctx.runs[0].trials if t.spec]
    raw = genome_columns(trials)
    dec = genome_columns(trials, g)
    alts = [n for n in raw if n.endswith(".alt") and any(isinstance(v, float) for v in raw[n])]
    assert alts, "conv.grammar has weighted alternatives"
    labels = {a.label for r in g.rules.values() for a in r.alts}
    for n in alts:
        assert all(v is None or v in labels for v in dec[n]), (n, dec[n])
    info = get_genome_info(ctx)
    assert info.n == len([t for t in trials if t.status == TrialStatus.COMPLETE])
    assert 0 < len(info.decisions) <= 10
    assert all(len(d.values) == info.n for d in info.decisions)


def test_arch_info(tiny_run):
    t = next(t for t in read_trials(tiny_run) if t.spec)
    info = get_arch_info(t.spec, {"left": "Left digit"})
    spec = t.spec
    assert len(info.stages) == len(spec["stages"])
    assert [b.tap for b in info.branches] == [b["tap"] for b in spec["branches"]]
    assert [b.out for b in info.branches] == [b["out"] for b in spec["branches"]]
    assert "Left digit" in [b.task for b in info.branches]
    assert info.stages[0].ops[0].startswith(spec["stages"][0]["ops"][0]["op"])
    assert info.hash == spec["hash"]


def test_table_info_and_export_command(run_copy):
    append_record(run_copy, TrialRecord(500, TrialStatus.FAILED, error="CUDA out of memory"))
    append_record(run_copy, TrialRecord(501, TrialStatus.STOPPED, error="stopped early by the scheduler",
                                        metrics={"mean_error": 0.95}))
    ctx = _context(run_copy)
    tab = get_table_info(ctx)
    keys = [c.key for c in tab.columns]
    assert keys[:6] == ["run", "number", "status", "front", "mean_error", "params"]
    byn = {r["number"]: r for r in (dict(zip(keys, row)) for row in tab.rows)}
    assert byn[500]["status"] == "failed" and byn[500]["error"] == "CUDA out of memory"
    assert byn[501]["status"] == "stopped" and byn[501]["front"] == 0
    assert sum(r["front"] for r in byn.values()) == len(pareto_trials(ctx.runs[0].trials, ctx.objectives))
    a, b = export_parts(ctx.runs[0])  # the page shows a + N + b + N
    assert f"{a}3{b}3" == f"nasmt export {run_copy} --trial 3 --out exported/run-t3"
    a, b = export_parts(replace(ctx.runs[0], path=Path("my runs/a;b"), name="a;b"))
    assert shlex.split(f"{a}7{b}7") == ["nasmt", "export", "my runs/a;b", "--trial", "7", "--out", "exported/a;b-t7"]


def test_over_budget_trials_are_never_on_the_front(run_copy):
    comp = _complete(run_copy)
    best = min(comp, key=lambda t: t.metrics["params"])  # always on the (mean_error, params) front
    replace_records(run_copy, [t.with_metrics(feasible=t.number != best.number) for t in comp])
    ctx = _context(run_copy)
    r = get_pareto_info(ctx).runs[0]
    front = set(r.number[r.front].tolist())
    assert best.number not in front
    assert front == {t.number for t in pareto_trials(ctx.runs[0].trials, ctx.objectives)}
    tab = get_table_info(ctx)
    row = next(row for row in tab.rows if row[tab.index("number")] == best.number)
    assert row[tab.index("feasible")] == "over" and row[tab.index("front")] == 0
