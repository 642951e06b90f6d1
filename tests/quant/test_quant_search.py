"""Issue acceptance: a real search with --objectives mean_error,latency_ms,size_bytes and
--max-bytes returns a Pareto set whose points all meet the budget and mix precisions."""

from pathlib import Path

from conftest import CONV_SPACE, SMALL_SUITE, nasmt
from nasmt.quant import effective
from nasmt.run import Objective, TrialStatus, load_run, pareto_trials, read_trials
from nasmt.space.spec import ArchSpec

BUDGET = 60000


def _precisions(spec: ArchSpec) -> set:
    """The precisions the artifact runs (int8 activations imply int8 weights)."""
    return {effective(p.precision) for p in (*spec.stages, *spec.branches)}


def test_budgeted_quantized_search(tmp_path: Path):
    out = tmp_path / "q"
    p = nasmt("search", "--space", CONV_SPACE, "--tasks", SMALL_SUITE,
              "--objectives", "mean_error,latency_ms,size_bytes", "--max-bytes", BUDGET,
              "--trials", 5, "--steps", 20, "--out", out, "--seed", 3)
    assert "latency predictor vs measured" in p.stdout
    run = load_run(out)
    assert run["config"]["max_bytes"] == BUDGET
    trials = read_trials(out)
    assert sum(t.status is TrialStatus.COMPLETE for t in trials) == 5
    for t in trials:
        assert t.metrics["latency_ms"] > 0 and t.metrics["size_bytes"] > 0
        assert t.feasible == (t.metrics["size_bytes"] <= BUDGET)
    front = pareto_trials(trials, [Objective(**o) for o in run["objectives"]])
    assert front, "no trial within budget"
    for t in front:
        assert t.metrics["size_bytes"] <= BUDGET
        assert len(_precisions(ArchSpec.from_json(t.spec))) > 1, f"trial {t.number} runs one precision everywhere"
