"""The HTML report: self-contained page, every view, escaping, and the data (`*_info`)
functions behind the figures. Most tests read the shared real search run `tiny_run`;
tests that change a run work on `run_copy`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import nasmt
from nasmt.errors import RunDirError, UserError
from nasmt.report import (
    arch_info,
    build_payload,
    encode_decision,
    export_command,
    front_staircase,
    genome_columns,
    genome_info,
    hypervolume_info,
    importance_info,
    load_runs,
    pareto_info,
    payload_json,
    resolve_objectives,
    run_grammar,
    table_info,
    task_matrix_info,
    write_report,
)
from nasmt.run import (
    Objective,
    hypervolume,
    hypervolume_2d,
    hypervolume_history,
    read_trials,
    objective_matrix,
    pareto_mask,
    pareto_mask_naive,
    pareto_trials,
)

EVIL = "<script>alert(1)</script>"
EVIL_ERR = "<img src=x onerror=alert(2)> & </script><b>"
VIEWS = ["plot-pareto", "plot-hypervolume", "plot-tasks", "plot-genome", "plot-importance", "plot-arch",
         "trial-table", "export-cmd", "run-info"]


def _payload(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="nasmt-data">(.*?)</script>', html, re.S)
    assert m, "no embedded data"
    return json.loads(m.group(1))


def _rewrite(run: Path, fn) -> None:
    for name in ("run.json", "trials.jsonl"):
        p = run / name
        p.write_text(fn(p.read_text(encoding="utf-8")), encoding="utf-8")


def _append(run: Path, rec: dict) -> None:
    with open(run / "trials.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")


def _objs(*names):
    return [Objective(n, "min") for n in names]


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
    for view in VIEWS:
        assert f'id="{view}"' in report_html, view
    p = _payload(report_html)
    assert set(p["figures"]) == {"pareto", "hypervolume", "tasks", "genome", "importance"}
    for name, fig in p["figures"].items():
        assert "data" in fig and "layout" in fig, name
    trials = read_trials(tiny_run)
    assert len(p["table"]["rows"]) == len(trials)
    assert p["mode"] == "report"
    assert p["selected"] is not None
    # every recorded architecture can be drawn
    for t in trials:
        if t.get("spec"):
            assert t["spec"]["hash"] in p["archs"]
    assert [o["name"] for o in p["objectives"]] == ["mean_error", "params"]


def test_report_default_path_and_cli(run_copy):
    out = write_report([run_copy])
    assert out == run_copy / "report.html" and out.stat().st_size > 1_000_000
    r = nasmt("report", run_copy, "-o", run_copy / "cli.html", "--objectives", "left.error,right.error")
    assert Path(r.stdout.strip()) == run_copy / "cli.html"
    p = _payload((run_copy / "cli.html").read_text(encoding="utf-8"))
    assert [o["name"] for o in p["objectives"]] == ["left.error", "right.error"]


def test_report_escapes_user_strings(run_copy, tmp_path):
    # a task named like a script, everywhere the name can appear (suite, metrics, genome,
    # branches, grammar text), and a failed trial whose reason is markup
    _rewrite(run_copy, lambda s: s.replace("left", EVIL))
    run = json.loads((run_copy / "run.json").read_text(encoding="utf-8"))
    run["grammar"]["text"] += f"\n# {EVIL}\n"
    (run_copy / "run.json").write_text(json.dumps(run), encoding="utf-8")
    _append(run_copy, {"number": 999, "status": "failed", "error": EVIL_ERR, "spec": None})
    out = write_report([run_copy], out=tmp_path / "evil.html")
    html = out.read_text(encoding="utf-8")
    assert EVIL not in html
    assert "<img src=x" not in html
    assert "</script><b>" not in html
    # only our own script tags: every </script> closes one we opened
    assert html.lower().count("</script>") == len(re.findall(r"<script[\s>]", html, re.I))
    p = _payload(html)  # the data itself still carries the exact strings
    assert p["runs"][0]["tasks"][0]["name"] == EVIL
    assert EVIL in p["runs"][0]["grammar"]
    reasons = [r[-1] for r in p["table"]["rows"] if r[1] == 999]
    assert reasons == [EVIL_ERR]
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


# ----------------------------------------------------------------------------- Pareto data


def test_pareto_info_matches_records(tiny_run):
    runs = load_runs([tiny_run])
    objs = resolve_objectives(runs, None)
    info = pareto_info(runs, objs)
    trials = read_trials(tiny_run)
    comp = [t for t in trials if t["status"] == "complete"]
    r = info["runs"][0]
    assert list(r["number"]) == [t["number"] for t in comp]
    for n, v in zip(r["number"], r["values"]):
        t = next(t for t in comp if t["number"] == n)
        assert v[0] == pytest.approx(t["metrics"]["mean_error"], rel=1e-5)
        assert v[1] == t["metrics"]["params"]
    # the front agrees with an independent O(n^2) check and with results.pareto_trials
    naive = pareto_mask_naive(objective_matrix(comp, objs))
    assert list(r["front"]) == list(naive)
    assert {int(n) for n in r["number"][r["front"]]} == {t["number"] for t in pareto_trials(trials, objs)}
    assert info["budgets"] == []
    assert [o["label"] for o in info["objectives"]] == ["mean error", "parameters"]


def test_pareto_info_budget_and_predicted_latency(run_copy):
    run = json.loads((run_copy / "run.json").read_text())
    run["config"]["max_bytes"] = 60000
    (run_copy / "run.json").write_text(json.dumps(run))
    recs = [json.loads(l) for l in (run_copy / "trials.jsonl").read_text().splitlines() if l.strip()]
    for i, rec in enumerate(recs):
        if rec["status"] == "complete":
            rec["metrics"]["latency_ms"] = 1.0 + i
            if i % 2 == 0:
                rec["metrics"]["predicted_latency_ms"] = 1.5 + i
    (run_copy / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    runs = load_runs([run_copy])

    objs = resolve_objectives(runs, "size_bytes,latency_ms")
    info = pareto_info(runs, objs)
    assert info["budgets"] == [{"axis": 0, "value": 60000.0, "key": "max_bytes", "run": runs[0].name}]
    pairs = info["runs"][0]["counterparts"]
    assert pairs and all(set(p) == {1} for _, p in pairs)
    vals = info["runs"][0]["values"]
    for pi, p in pairs:  # predicted = measured + 0.5 by construction
        assert p[1] == pytest.approx(vals[pi, 1] + 0.5)

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
    h = hypervolume_info(runs, objs)
    assert len(h["ref"]) == 3 and h["runs"][0]["hv"][-1] > 0


def test_front_staircase():
    objs = [Objective("a", "min"), Objective("b", "min")]
    st = front_staircase(np.array([[3.0, 1.0], [1.0, 3.0], [2.0, 2.0]]), objs)
    assert st.tolist() == [[1, 3], [2, 3], [2, 2], [3, 2], [3, 1]]
    objs = [Objective("a", "max"), Objective("b", "min")]  # raw values, max-objective sorted descending
    st = front_staircase(np.array([[1.0, 1.0], [3.0, 3.0]]), objs)
    assert st.tolist() == [[3, 3], [1, 3], [1, 1]]


def test_multi_run_overlay(tiny_run, run_copy, tmp_path):
    out = write_report([tiny_run, run_copy], out=tmp_path / "two.html")
    p = _payload(out.read_text(encoding="utf-8"))
    assert [r["name"] for r in p["runs"]] == ["tiny", "run"]
    assert p["runs"][0]["symbol"] != p["runs"][1]["symbol"]
    symbols = {t["marker"]["symbol"] for t in p["figures"]["pareto"]["data"]
               if t.get("mode") == "markers" and t.get("name") != "selected" and "stopped" not in t.get("name", "")}
    assert symbols == {p["runs"][0]["symbol"], p["runs"][1]["symbol"]}
    n = len(read_trials(tiny_run))
    assert len(p["table"]["rows"]) == 2 * n
    assert {r[0] for r in p["table"]["rows"]} == {0, 1}


# ----------------------------------------------------------------------------- other views' data


def test_hypervolume_info(tiny_run):
    runs = load_runs([tiny_run])
    objs = resolve_objectives(runs, None)
    h = hypervolume_info(runs, objs)
    hv = h["runs"][0]["hv"]
    assert np.all(np.diff(hv) >= -1e-12)
    comp = [t for t in read_trials(tiny_run) if t["status"] == "complete"]
    M = objective_matrix(comp, objs)
    norm = (M - h["lo"]) / np.where(h["hi"] > h["lo"], h["hi"] - h["lo"], 1.0)
    assert hv[-1] == pytest.approx(hypervolume_2d(norm, np.array([1.1, 1.1])))


def test_task_matrix_info(tiny_run):
    runs = load_runs([tiny_run])
    info = task_matrix_info(runs, resolve_objectives(runs, None))
    assert [t["ident"] for t in info["tasks"]] == ["left", "right"]
    comp = [t for t in read_trials(tiny_run) if t["status"] == "complete"]
    r = info["runs"][0]
    assert r["errors"].shape == (len(comp), 2)
    for n, e in zip(r["number"], r["errors"]):
        t = next(t for t in comp if t["number"] == n)
        assert e[0] == pytest.approx(t["metrics"]["left.error"], rel=1e-5)
        assert e[1] == pytest.approx(t["metrics"]["right.error"], rel=1e-5)


def test_encode_decision():
    d = encode_decision(["b", "a", None, "b"])
    assert d["kind"] == "categorical"
    assert d["ticktext"] == ["—", "a", "b"] and d["tickvals"] == [-1, 0, 1]
    assert d["values"].tolist() == [1, 0, -1, 1]
    d = encode_decision([16, 32, 16])
    assert d["ticktext"] == ["16", "32"] and d["values"].tolist() == [0, 1, 0]
    d = encode_decision([i / 100 for i in range(40)] + [None])
    assert d["kind"] == "numeric" and np.isnan(d["values"][-1])


def test_genome_decodes_weighted_alternatives(tiny_run):
    runs = load_runs([tiny_run])
    g = run_grammar(runs[0])
    assert g is not None
    trials = [t for t in runs[0].trials if t.get("spec")]
    raw = genome_columns(trials)
    dec = genome_columns(trials, g)
    alts = [n for n in raw if n.endswith(".alt") and any(isinstance(v, float) for v in raw[n])]
    assert alts, "conv.grammar has weighted alternatives"
    labels = {a.label for r in g.rules.values() for a in r.alts}
    for n in alts:
        assert all(v is None or v in labels for v in dec[n]), (n, dec[n])
    info = genome_info(runs, resolve_objectives(runs, None))
    assert info["n"] == len([t for t in trials if t["status"] == "complete"])
    assert 0 < len(info["decisions"]) <= 10
    assert all(len(d["values"]) == info["n"] for d in info["decisions"])


def _synthetic_run(tiny_run, n: int):
    """RunData over the tiny run's suite whose objective depends only on decision `a`."""
    from nasmt.report import RunData

    base = load_runs([tiny_run])[0]
    rng = np.random.default_rng(0)
    trials = []
    for i in range(n):
        a, b = rng.choice(["x", "y", "z"]), int(rng.integers(1, 9))
        err = {"x": 0.1, "y": 0.5, "z": 0.9}[a] + rng.normal(0, 0.01)
        trials.append({
            "number": i, "status": "complete", "error": None,
            "spec": {"genome": {"a": str(a), "b": b, "c": float(rng.random())}, "hash": f"h{i}", "stages": [], "branches": []},
            "metrics": {"mean_error": err, "params": 1000 + b * 10 + rng.normal(0, 50)},
        })
    return RunData(base.path, "synthetic", {"objectives": [], "config": {}}, base.suite, trials)


def test_importance_info(tiny_run):
    objs = _objs("mean_error", "params")
    few = importance_info([_synthetic_run(tiny_run, 3)], objs)
    assert few["importances"] == {} and "at least" in few["message"]
    info = importance_info([_synthetic_run(tiny_run, 60)], objs)
    assert info["message"] is None, info["message"]
    assert info["evaluator"] in ("fANOVA", "PED-ANOVA")
    imp = info["importances"]["mean_error"]
    assert max(imp, key=imp.get) == "a"
    assert set(info["params"]) == {"a", "b", "c"}


def test_arch_info(tiny_run):
    t = next(t for t in read_trials(tiny_run) if t.get("spec"))
    info = arch_info(t["spec"], {"left": "Left digit"})
    spec = t["spec"]
    assert len(info["stages"]) == len(spec["stages"])
    assert [b["tap"] for b in info["branches"]] == [b["tap"] for b in spec["branches"]]
    assert [b["out"] for b in info["branches"]] == [b["out"] for b in spec["branches"]]
    assert "Left digit" in [b["task"] for b in info["branches"]]
    assert info["stages"][0]["ops"][0].startswith(spec["stages"][0]["ops"][0]["op"])
    assert info["hash"] == spec["hash"]
    assert arch_info(None) is None


def test_table_info_and_export_command(run_copy):
    _append(run_copy, {"number": 500, "status": "failed", "error": "CUDA out of memory", "spec": None})
    _append(run_copy, {"number": 501, "status": "stopped", "error": "stopped early by the scheduler",
                       "spec": None, "metrics": {"mean_error": 0.95}})
    runs = load_runs([run_copy])
    objs = resolve_objectives(runs, None)
    tab = table_info(runs, objs)
    keys = [c["key"] for c in tab["columns"]]
    assert keys[:6] == ["run", "number", "status", "front", "mean_error", "params"]
    byn = {r[1]: r for r in tab["rows"]}
    assert byn[500][2] == "failed" and byn[500][-1] == "CUDA out of memory"
    assert byn[501][2] == "stopped" and byn[501][3] == 0
    assert sum(r[3] for r in tab["rows"]) == len(pareto_trials(runs[0].trials, objs))
    assert export_command(runs[0], 3) == f"nasmt export {run_copy} --trial 3 --out exported/run-t3"
    odd = runs[0]
    odd.path, odd.name = Path("my runs/a;b"), "a;b"
    assert export_command(odd, 7) == "nasmt export 'my runs/a;b' --trial 7 --out 'exported/a;b-t7'"


# ----------------------------------------------------------------------------- results additions


def test_hypervolume_any_dimension():
    ref = np.array([1.0, 1.0, 1.0])
    assert hypervolume(np.array([[0.0, 0.0, 0.0]]), ref) == pytest.approx(1.0)
    # two boxes overlapping in [0.5,1]^3 : 0.5 + 0.5 - 0.25
    pts = np.array([[0.5, 0.0, 0.0], [0.0, 0.5, 0.5]])
    assert hypervolume(pts, ref) == pytest.approx(0.5 + 0.25 - 0.125)
    assert hypervolume(np.array([[2.0, 0.0, 0.0], [np.nan, 0, 0]]), ref) == 0.0
    rng = np.random.default_rng(1)
    P = rng.random((30, 2))
    assert hypervolume(P, np.array([1.1, 1.1])) == pytest.approx(hypervolume_2d(P, np.array([1.1, 1.1])))
    P3 = rng.random((25, 3))  # against Monte Carlo
    X = rng.random((200_000, 3))
    dom = np.zeros(len(X), bool)
    for p in P3:
        dom |= np.all(X >= p, axis=1)
    assert hypervolume(P3, np.ones(3)) == pytest.approx(dom.mean(), abs=0.01)


def test_hypervolume_history_equals_prefix_recomputation():
    rng = np.random.default_rng(2)
    for k in (2, 3):
        P = rng.random((60, k))
        P[5] = np.nan
        P[7] = 2.0  # outside the reference box
        ref = np.full(k, 1.1)
        h = hypervolume_history(P, ref)
        expect = [hypervolume(P[: i + 1], ref) for i in range(len(P))]
        assert h == pytest.approx(expect)


def test_pareto_mask_matches_naive():
    rng = np.random.default_rng(3)
    for k in (2, 3):
        P = np.round(rng.random((300, k)) * 20)  # many ties and duplicates
        P[10] = np.nan
        assert pareto_mask(P).tolist() == pareto_mask_naive(P).tolist()


def test_over_budget_trials_are_never_on_the_front(run_copy):
    recs = [json.loads(l) for l in (run_copy / "trials.jsonl").read_text().splitlines() if l.strip()]
    comp = [r for r in recs if r["status"] == "complete"]
    best = min(comp, key=lambda r: r["metrics"]["params"])  # always on the (mean_error, params) front
    for r in comp:
        r["metrics"]["feasible"] = r is not best
    (run_copy / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    runs = load_runs([run_copy])
    objs = resolve_objectives(runs, None)
    info = pareto_info(runs, objs)
    r = info["runs"][0]
    front = {int(n) for n in r["number"][r["front"]]}
    assert best["number"] not in front
    assert front == {t["number"] for t in pareto_trials(runs[0].trials, objs)}
    tab = table_info(runs, objs)
    k = [c["key"] for c in tab["columns"]].index("feasible")
    byn = {row[1]: row for row in tab["rows"]}
    assert byn[best["number"]][k] == "over" and byn[best["number"]][3] == 0
