"""Each view's pure `get_*_info` function (and its figure) on small synthetic
TrialRecords: no Ray, no training, no run directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import nasmt.report.load as report_load
from nasmt.data.suite import DataDef, TaskDef, TaskSuite
from nasmt.report import RunData, build_payload, make_context
from nasmt.report.arch import get_arch_info
from nasmt.report.genome import encode_decision, genome_columns, genome_figure, get_genome_info, run_grammar
from nasmt.report.hypervolume import get_hypervolume_info, hypervolume_figure
from nasmt.report.importance import get_importance_info, importance_figure
from nasmt.report.page import default_selection
from nasmt.report.pareto import _Budget, front_staircase, get_pareto_info, pareto_figure
from nasmt.report.table import MAX_REASON, get_table_info, table_data
from nasmt.report.tasks import get_task_matrix_info, task_matrix_figure
from nasmt.run import HV_REFERENCE, Objective, TrialRecord, TrialStatus, hypervolume_2d, knee_point

ROOT = Path(__file__).resolve().parents[2]
SUITE = TaskSuite(
    name="syn", data=DataDef(source="multimnist"),
    tasks=(TaskDef("Left digit", "left", "multiclass", "left", "accuracy"),
           TaskDef("right", "right", "multiclass", "right", "accuracy")),
)
C, S, F = TrialStatus.COMPLETE, TrialStatus.STOPPED, TrialStatus.FAILED


def rec(n, status=C, spec=None, error=None, **metrics) -> TrialRecord:
    return TrialRecord(number=n, status=status, spec=spec, metrics=metrics, error=error, timings={"total_s": 1.25})


def run(trials, name="syn", config=None, grammar=None) -> RunData:
    return RunData(Path("/runs") / name, name, {"config": config or {}, "grammar": grammar or {}}, SUITE, trials)


def objs(*names):
    return [Objective(n, "min") for n in names]


def ctx(*runs, objectives=("mean_error", "params")):
    return make_context(list(runs), objs(*objectives))


def mixed_trials() -> list[TrialRecord]:
    """Front {0, 1}; 2 dominated; 3 stopped; 4 failed; 5 lacks params; 6 dominates 1 but is
    over budget (so 1 stays on the front)."""
    return [
        rec(0, mean_error=0.1, params=500),
        rec(1, mean_error=0.2, params=100),
        rec(2, mean_error=0.3, params=600),
        rec(3, S, error="stopped early", mean_error=0.05, params=50),
        rec(4, F, error="boom"),
        rec(5, mean_error=0.01),
        rec(6, mean_error=0.15, params=90, feasible=False),
    ]


# ----------------------------------------------------------------------------- context


def test_context_fronts_and_labels():
    c = ctx(run(mixed_trials()))
    assert c.fronts == [frozenset({0, 1})]
    assert c.label("left.error") == "Left digit error" and c.label("params") == "parameters"
    assert [(ri, t.number) for ri, t in c.rows()] == [(0, n) for n in range(7)]


def test_fronts_computed_once_per_page(monkeypatch):
    calls = []
    real = report_load.front_numbers
    monkeypatch.setattr(report_load, "front_numbers", lambda *a: calls.append(1) or real(*a))
    build_payload([run(mixed_trials(), "a"), run(mixed_trials(), "b")], objs("mean_error", "params"), version="v")
    assert len(calls) == 2, "one front per run per page"


# ----------------------------------------------------------------------------- Pareto


def test_pareto_info_points_front_and_status():
    info = get_pareto_info(ctx(run(mixed_trials())))
    r = info.runs[0]
    assert r.number.tolist() == [0, 1, 2, 3, 6]  # failed and incomplete-objective trials are not drawn
    assert r.g.tolist() == [0, 1, 2, 3, 6]
    assert r.front.tolist() == [True, True, False, False, False]
    assert r.stopped.tolist() == [False, False, False, True, False]
    assert r.values.tolist() == [[0.1, 500], [0.2, 100], [0.3, 600], [0.05, 50], [0.15, 90]]
    assert info.labels == ["mean error", "parameters"] and info.budgets == [] and r.counterparts == []


def test_pareto_info_global_rows_across_runs():
    a, b = run(mixed_trials(), "a"), run(mixed_trials()[:3], "b")
    info = get_pareto_info(ctx(a, b))
    assert info.runs[1].g.tolist() == [7, 8, 9]  # after the 7 rows of run a
    assert info.runs[1].front.tolist() == [True, True, False]


def test_pareto_info_budgets_and_counterparts():
    trials = [rec(0, size_bytes=800, latency_ms=2.0, predicted_latency_ms=2.5),
              rec(1, size_bytes=400, latency_ms=3.0),
              rec(2, size_bytes=300, predicted_latency_ms=1.0)]  # no measured latency: not drawn
    c = ctx(run(trials, config={"max_bytes": 1000, "max_latency_ms": 0}), objectives=("size_bytes", "latency_ms"))
    info = get_pareto_info(c)
    assert info.budgets == [_Budget(0, 1000.0, "max_bytes", "syn")]  # a budget of 0 is none
    assert info.runs[0].counterparts == [(0, {1: 2.5})]
    fig = pareto_figure(info).to_plotly_json()
    assert any(s["type"] == "rect" and s["x0"] == 1000.0 for s in fig["layout"]["shapes"])
    assert any(t.get("name") == "predicted cost" for t in fig["data"])


def test_pareto_figure_traces():
    info = get_pareto_info(ctx(run(mixed_trials())))
    data = pareto_figure(info).to_plotly_json()["data"]
    names = [t.get("name") for t in data]
    assert names[-1] == "selected" and {"front", "dominated", "stopped"} <= set(names)
    front = next(t for t in data if t.get("name") == "front")
    assert [cd[1] for cd in front["customdata"]] == [0, 1]
    three = get_pareto_info(ctx(run(mixed_trials()), objectives=("mean_error", "params", "mean_error")))
    assert {t["type"] for t in pareto_figure(three).to_plotly_json()["data"]} == {"scatter3d"}


def test_front_staircase():
    o = [Objective("a", "min"), Objective("b", "min")]
    st = front_staircase(np.array([[3.0, 1.0], [1.0, 3.0], [2.0, 2.0]]), o)
    assert st.tolist() == [[1, 3], [2, 3], [2, 2], [3, 2], [3, 1]]
    o = [Objective("a", "max"), Objective("b", "min")]  # raw values, max-objective sorted descending
    st = front_staircase(np.array([[1.0, 1.0], [3.0, 3.0]]), o)
    assert st.tolist() == [[3, 3], [1, 3], [1, 1]]


# ----------------------------------------------------------------------------- hypervolume


def test_hypervolume_info_normalizes_over_all_runs():
    a = run(mixed_trials(), "a")
    b = run([rec(0, mean_error=0.5, params=1000), rec(1, mean_error=0.0, params=2000)], "b")
    info = get_hypervolume_info(ctx(a, b))
    # front candidates only (complete, within budget): a 0, 1, 2, 5 and b 0, 1
    assert info.runs[0].number.tolist() == [0, 1, 2, 5] and info.runs[1].number.tolist() == [0, 1]
    assert info.lo.tolist() == [0.0, 100] and info.hi.tolist() == [0.5, 2000]
    assert info.ref.tolist() == [HV_REFERENCE, HV_REFERENCE]
    hv = info.runs[0].hv
    assert hv[1] > hv[0] and hv[3] == hv[2] == hv[1]  # 2 is dominated, 5 lacks an objective
    pts = (np.array([[0.1, 500], [0.2, 100]]) - info.lo) / (info.hi - info.lo)
    assert hv[-1] == pytest.approx(hypervolume_2d(pts, info.ref))
    data = hypervolume_figure(info).to_plotly_json()["data"]
    assert [t["name"] for t in data] == ["a", "improved", "b", "improved"]


# ----------------------------------------------------------------------------- per-task matrix


def test_task_matrix_info():
    trials = [rec(0, **{"left.error": 0.1, "right.error": 0.4, "mean_error": 0.25, "params": 10}),
              rec(1, **{"left.error": 0.3, "mean_error": 0.3, "params": 20}),  # dominated by 0
              rec(2, S, **{"left.error": 0.0, "right.error": 0.0}),  # stopped: not shown
              rec(3, params=1)]  # no task error: not shown
    info = get_task_matrix_info(ctx(run(trials)))
    assert [(t.ident, t.name) for t in info.tasks] == [("left", "Left digit"), ("right", "right")]
    r = info.runs[0]
    assert r.number.tolist() == [0, 1] and r.g.tolist() == [0, 1]
    assert r.errors[0].tolist() == [0.1, 0.4] and r.errors[1, 0] == 0.3 and np.isnan(r.errors[1, 1])
    assert r.front.tolist() == [True, False]
    data = task_matrix_figure(info).to_plotly_json()["data"]
    assert [t["name"] for t in data] == ["front", "other"] and data[0]["type"] == "scatter"
    assert [cd for t in data for cd in t["customdata"]] == [[0, 0], [1, 1]]  # (row, trial number)


# ----------------------------------------------------------------------------- decisions


def test_encode_decision():
    d = encode_decision("x", ["b", "a", None, "b"])
    assert d.kind == "categorical" and d.name == "x"
    assert d.ticktext == ["—", "a", "b"] and d.tickvals == [-1, 0, 1]
    assert d.values.tolist() == [1, 0, -1, 1]
    d = encode_decision("x", [16, 32, 16])
    assert d.ticktext == ["16", "32"] and d.values.tolist() == [0, 1, 0]
    d = encode_decision("x", [i / 100 for i in range(40)] + [None])
    assert d.kind == "numeric" and np.isnan(d.values[-1])


def _genome_trials(n: int, rng) -> list[TrialRecord]:
    out = []
    for i in range(n):
        genome = {"a": str(rng.choice(["x", "y"])), "const": 1, "trunk.stage.0.block.0.alt": float(rng.random())}
        out.append(rec(i, spec={"genome": genome, "hash": f"h{i}"}, mean_error=float(rng.random()),
                       params=int(rng.integers(1, 1000))))
    return out


def test_genome_decodes_weighted_alternatives_with_rule_pick():
    text = (ROOT / "search_spaces" / "conv.grammar").read_text()
    r = run(_genome_trials(12, np.random.default_rng(0)), grammar={"name": "conv", "text": text})
    g = run_grammar(r)
    block = g.rules["block"]
    cols = genome_columns(r.trials, g)
    raw = genome_columns(r.trials)
    assert cols["trunk.stage.0.block.0.alt"] == [block.pick(u).label for u in raw["trunk.stage.0.block.0.alt"]]
    assert run_grammar(run([], grammar={"text": "not a grammar ((("})) is None
    info = get_genome_info(ctx(r))
    assert info.n == info.n_all == 12
    names = [d.name for d in info.decisions]
    assert "const" not in names and set(names) <= {"a", "trunk.stage.0.block.0.alt"}
    assert [o.label for o in info.objectives] == ["mean error", "parameters"]
    ranked = get_genome_info(ctx(r), ranking=["trunk.stage.0.block.0.alt", "a"])
    assert [d.name for d in ranked.decisions] == ["trunk.stage.0.block.0.alt", "a"]
    assert genome_figure(info).to_plotly_json()["data"][0]["type"] == "parcoords"


def test_genome_sample_keeps_every_front_trial():
    trials = _genome_trials(40, np.random.default_rng(1))
    c = ctx(run(trials))
    info = get_genome_info(c, max_lines=10)
    assert info.n == 10 and info.n_all == 40
    drawn = set(info.objectives[1].values.tolist())  # params: integers, exact
    front = {t.metrics["params"] for t in trials if t.number in c.fronts[0]}
    assert len(front) > 1 and front <= drawn
    assert get_genome_info(c, max_lines=10).objectives[0].values.tolist() == info.objectives[0].values.tolist()


# ----------------------------------------------------------------------------- importance


def _importance_run(n: int) -> RunData:
    """Objective depends only on decision `a`."""
    rng = np.random.default_rng(0)
    trials = []
    for i in range(n):
        a, b = rng.choice(["x", "y", "z"]), int(rng.integers(1, 9))
        err = {"x": 0.1, "y": 0.5, "z": 0.9}[a] + rng.normal(0, 0.01)
        spec = {"genome": {"a": str(a), "b": b, "c": float(rng.random())}, "hash": f"h{i}"}
        trials.append(rec(i, spec=spec, mean_error=err, params=1000 + b * 10 + rng.normal(0, 50)))
    return run(trials, "synthetic")


def test_importance_info():
    few = get_importance_info(ctx(_importance_run(3)))
    assert few.importances == {} and "at least" in few.message and few.params == []
    assert importance_figure(few).to_plotly_json()["layout"]["annotations"][0]["text"].startswith("decision importances")
    info = get_importance_info(ctx(_importance_run(60)))
    assert info.message is None, info.message
    assert info.evaluator in ("fANOVA", "PED-ANOVA") and info.n_trials == 60
    imp = info.importances["mean_error"]
    assert max(imp, key=imp.get) == "a"
    mean = {k: sum(i.get(k, 0) for i in info.importances.values()) / 2 for k in "abc"}
    assert info.params == sorted("abc", key=lambda k: -mean[k])  # by mean importance over objectives
    assert info.labels == {"mean_error": "mean error", "params": "parameters"}
    bars = importance_figure(info).to_plotly_json()["data"]
    assert [b["name"] for b in bars] == ["mean error", "parameters"]


# ----------------------------------------------------------------------------- architecture


def test_arch_info():
    spec = {"space": "conv", "input_shape": [1, 28, 28], "hash": "abc",
            "stages": [{"ops": [{"op": "conv", "k": 3, "c": 8}], "precision": {"w": "int8", "a": "fp32"}}],
            "branches": [{"task": "left", "tap": 1, "layers": [], "head": [{"op": "gap"}], "out": 10},
                         {"task": "other", "tap": 2, "layers": [{"op": "conv", "k": 3}], "head": [], "out": 3}]}
    info = get_arch_info(spec, {"left": "Left digit"})
    assert info.stages[0].ops == ["conv c=8 k=3"] and info.stages[0].prec == ("int8", "fp32")
    assert [b.task for b in info.branches] == ["Left digit", "other"]
    assert [b.tap for b in info.branches] == [1, 2] and [b.out for b in info.branches] == [10, 3]
    j = info.to_json()
    assert j["stages"][0]["prec"] == {"w": "int8", "a": "fp32"}
    assert j["branches"][0]["prec"] == {"w": "fp32", "a": "fp32"} and j["branches"][1]["layers"] == ["conv k=3"]
    assert j["hash"] == "abc" and j["input"] == [1, 28, 28]
    assert get_arch_info(None) is None


# ----------------------------------------------------------------------------- table


def test_table_info_columns_by_key():
    trials = mixed_trials() + [rec(7, F, error="x" * (MAX_REASON + 50))]
    trials[0] = rec(0, spec={"hash": "h0"}, **{"mean_error": 0.1, "params": 500, "left.accuracy": 0.9, "flops": 7})
    info = get_table_info(ctx(run(trials)))
    keys = [c.key for c in info.columns]
    assert keys[:7] == ["run", "number", "status", "front", "mean_error", "params", "flops"]
    assert keys[-4:] == ["time_s", "feasible", "hash", "error"]  # `feasible` since one trial records it
    assert [c.key for c in info.columns if c.objective] == ["mean_error", "params"]
    by = {row[info.index("number")]: dict(zip(keys, row)) for row in info.rows}
    assert by[0] == {"run": 0, "number": 0, "status": "complete", "front": 1, "mean_error": 0.1, "params": 500,
                     "flops": 7, "left.accuracy": 0.9, "time_s": 1.25, "feasible": "", "hash": "h0", "error": ""}
    assert by[4]["status"] == "failed" and by[4]["error"] == "boom" and by[4]["mean_error"] is None
    assert by[3]["status"] == "stopped" and by[3]["front"] == 0
    assert by[6]["feasible"] == "over" and by[6]["front"] == 0
    assert len(by[7]["error"]) == MAX_REASON
    data = table_data(info)
    assert data["columns"][1] == {"key": "number", "label": "trial", "type": "int", "objective": False}
    assert "obj_cols" not in data  # the page finds objective columns by key


def test_default_selection_is_the_knee():
    r = run(mixed_trials())
    c = ctx(run([rec(0, F)], "first-empty"), r)
    assert default_selection(c) == 0  # first run has no front: its last trial
    c = ctx(r)
    knee = knee_point([t for t in r.trials if t.number in c.fronts[0]], c.objectives)
    assert default_selection(c) == knee.number  # g == number here
    assert default_selection(ctx(run([]))) is None
