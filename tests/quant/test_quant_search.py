"""Issue acceptance: a real search with --objectives mean_error,latency_ms,size_bytes and
--max-bytes returns a Pareto set whose points all meet the budget and mix precisions."""

from pathlib import Path

from conftest import CONV_SPACE, SMALL_SUITE, nasmt
from nasmt.run import Objective, load_run, read_trials, pareto_trials
from nasmt.space.spec import ArchSpec

BUDGET = 60000


def test_budgeted_quantized_search(tmp_path: Path):
    out = tmp_path / "q"
    p = nasmt("search", "--space", CONV_SPACE, "--tasks", SMALL_SUITE,
              "--objectives", "mean_error,latency_ms,size_bytes", "--max-bytes", BUDGET,
              "--trials", 5, "--steps", 20, "--out", out, "--seed", 3)
    assert "latency predictor vs measured" in p.stdout
    run = load_run(out)
    assert run["config"]["max_bytes"] == BUDGET
    trials = read_trials(out)
    assert sum(t["status"] == "complete" for t in trials) == 5
    for t in trials:
        m = t["metrics"]
        assert m["latency_ms"] > 0 and m["size_bytes"] > 0
        assert m["feasible"] == (m["size_bytes"] <= BUDGET)
    front = pareto_trials(trials, [Objective(**o) for o in run["objectives"]])
    assert front, "no trial within budget"
    mixed = 0
    for t in front:
        assert t["metrics"]["size_bytes"] <= BUDGET
        spec = ArchSpec.from_json(t["spec"])
        precs = {(s.precision.w, s.precision.a) for s in spec.stages} | {(b.precision.w, b.precision.a) for b in spec.branches}
        mixed += len(precs) > 1
    assert mixed >= 1
