"""Which trial `nasmt export` exports: `--trial N`, `--pick knee | best:<objective>`
among complete, within-budget trials only, and `--objectives` for the knee."""

import dataclasses
import json

import numpy as np
import pytest

from conftest import nasmt
from nasmt.errors import RunDirError, UserError
from nasmt.export import choose_trial
from nasmt.run import TRIALS_FILE, TrialStatus, read_trials, write_jsonl


def _exported_trial(out) -> int:
    return json.loads((out / "arch.json").read_text())["trial"]


def _spoil(rec, how: str):
    """`rec` as a trial that must never be picked."""
    if how == "failed":
        return dataclasses.replace(rec, status=TrialStatus.FAILED, error="RuntimeError: boom", error_type="RuntimeError")
    if how == "stopped":
        return dataclasses.replace(rec, status=TrialStatus.STOPPED, error="stopped early by the scheduler")
    return rec.with_metrics(feasible=False)  # over a hard budget


def _rewrite(run_dir, records) -> None:
    write_jsonl(run_dir / TRIALS_FILE, [r.to_json() for r in records])


def test_pick_skips_failed_stopped_and_over_budget_trials(run_copy, tmp_path):
    """The three best trials by params are spoiled (failed, stopped, over budget): the
    CLI picks the fourth."""
    records = read_trials(run_copy)
    assert len(records) == 4 and all(r.is_front_candidate for r in records)
    order = sorted(records, key=lambda r: r.metrics["params"])
    spoiled = {r.number: _spoil(r, how) for r, how in zip(order, ("failed", "stopped", "over_budget"))}
    _rewrite(run_copy, [spoiled.get(r.number, r) for r in records])
    out = tmp_path / "exp"
    nasmt("export", run_copy, "--pick", "best:params", "--out", out, "--no-quantized")
    assert _exported_trial(out) == order[3].number


@pytest.mark.parametrize("how", ["failed", "stopped", "over_budget"])
@pytest.mark.parametrize("pick", ["best:mean_error", "best:params", "knee"])
def test_choose_never_picks_a_spoiled_trial(run_copy, how, pick):
    records = read_trials(run_copy)
    chosen = choose_trial(run_copy, None, pick)
    _rewrite(run_copy, [_spoil(r, how) if r.number == chosen.number else r for r in records])
    again = choose_trial(run_copy, None, pick)
    assert again.number != chosen.number and again.is_front_candidate


def test_pick_best_is_the_best_value(tiny_run):
    records = read_trials(tiny_run)
    for name in ("params", "mean_error", "flops"):
        assert choose_trial(tiny_run, None, f"best:{name}").number == min(records, key=lambda r: r.metrics[name]).number
    best_left = max(records, key=lambda r: r.metrics["left.accuracy"]).number
    assert choose_trial(tiny_run, None, "best:left.accuracy").number == best_left  # a max objective


def _knee_by_hand(records, names: list[str]) -> int:
    """Pareto front by pairwise domination, then the point nearest the ideal after
    min-max normalization (all objectives minimized)."""
    pts = np.array([[r.metrics[n] for n in names] for r in records], float)
    front = [i for i, p in enumerate(pts) if not any((q <= p).all() and (q < p).any() for q in pts)]
    F = pts[front]
    span = np.where(F.max(0) > F.min(0), F.max(0) - F.min(0), 1.0)
    return records[front[int(np.argmin(np.linalg.norm((F - F.min(0)) / span, axis=1)))]].number


def test_export_objectives_choose_the_knee(tiny_run, tmp_path):
    """`export --objectives a,b` picks the knee over a,b, not over the run's objectives."""
    records = read_trials(tiny_run)
    default = _knee_by_hand(records, ["mean_error", "params"])
    assert choose_trial(tiny_run, None, "knee").number == default
    pairs = [["right.error", "flops"], ["left.error", "flops"], ["right.error", "params"], ["left.error", "params"],
             ["mean_error", "flops"]]
    differing = [p for p in pairs if _knee_by_hand(records, p) != default]
    assert differing, "every candidate objective pair picks the run's own knee: the test would prove nothing"
    names = differing[0]
    out = tmp_path / "exp"
    nasmt("export", tiny_run, "--objectives", ",".join(names), "--out", out, "--no-quantized")
    assert _exported_trial(out) == _knee_by_hand(records, names)


def test_bad_choices_are_one_line_errors(tiny_run, tmp_path):
    p = nasmt("export", tiny_run, "--trial", "99", "--out", tmp_path / "x", check=False)
    assert p.returncode == 2 and "--trial 99" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "x").exists()
    with pytest.raises(UserError, match="--pick"):
        choose_trial(tiny_run, None, "fastest")
    with pytest.raises(UserError, match="unknown objective"):
        choose_trial(tiny_run, None, "best:nonsense")


def test_trial_must_be_complete(run_copy):
    records = read_trials(run_copy)
    _rewrite(run_copy, [_spoil(records[0], "failed")] + records[1:])
    with pytest.raises(RunDirError, match=f"trial {records[0].number} is failed"):
        choose_trial(run_copy, records[0].number, None)
    assert choose_trial(run_copy, records[1].number, None).number == records[1].number
