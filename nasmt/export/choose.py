"""Which trial to export: `--trial N`, or `--pick knee | best:<objective>` among the
run's front candidates (complete and within budget: `TrialRecord.is_front_candidate`;
failed, stopped and over-budget trials are never picked). When some trials were
finalized (`nasmt finalize`, `--final-epochs`), the pick is among those, by their final
(full-budget) validation metrics."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from nasmt.data.suite import suite_from_json
from nasmt.errors import RunDirError, UserError
from nasmt.run import (
    TrialRecord,
    TrialStatus,
    front_candidates,
    knee_point,
    load_run,
    objectives_from_run,
    pareto_trials,
    parse_objectives,
    read_trials,
)

KNEE = "knee"
BEST = "best:"
SHOWN_NUMBERS = 20  # trial numbers listed in an error message before "..."


def choose_trial(run_dir: Path, trial: int | None, pick: str | None, objectives: str | None = None) -> TrialRecord:
    """The record to export: trial number `trial`, else the `pick` (default: the knee of
    the Pareto front over `objectives`, default the run's)."""
    records = read_trials(run_dir)
    if trial is not None:
        return _by_number(run_dir, records, trial)
    chosen = _choose(run_dir, _by_final(records), pick, objectives)
    return next(r for r in records if r.number == chosen.number)


def _by_final(records: list[TrialRecord]) -> list[TrialRecord]:
    """The finalized front candidates judged by their final metrics, if there are any."""
    final = [r for r in records if r.is_front_candidate and r.is_finalized]
    return [replace(r, metrics=r.metrics_final_first) for r in final] or records


def _choose(run_dir: Path, records: list[TrialRecord], pick: str | None, objectives: str | None) -> TrialRecord:
    pick = pick or KNEE
    if pick != KNEE and not pick.startswith(BEST):
        raise UserError(f"--pick: expected '{KNEE}' or '{BEST}<objective>' (got {pick!r})")
    run = load_run(run_dir)
    suite = suite_from_json(run["suite"])
    objs = parse_objectives(objectives, suite, "--objectives") if objectives else objectives_from_run(run)
    if pick == KNEE:
        front = pareto_trials(records, objs)
        if not front:
            raise RunDirError(f"{run_dir}: no complete, within-budget trial with every objective to pick from")
        return knee_point(front, objs)
    (obj,) = parse_objectives(pick[len(BEST):], suite, f"--pick {BEST}<objective>")
    cand = [r for r in front_candidates(records) if r.value(obj.name) is not None]
    if not cand:
        raise RunDirError(f"{run_dir}: no complete, within-budget trial has a value for {obj.name}")
    return min(cand, key=lambda r: obj.sign * r.value(obj.name))


def _by_number(run_dir: Path, records: list[TrialRecord], number: int) -> TrialRecord:
    rec = next((r for r in records if r.number == number), None)
    if rec is None:
        done = [r.number for r in records if r.status == TrialStatus.COMPLETE]
        raise RunDirError(f"--trial {number}: no such trial in {run_dir} (complete trials: {_listing(done) or 'none'})")
    if rec.status != TrialStatus.COMPLETE:
        raise RunDirError(f"--trial {number}: trial {number} is {rec.status} ({rec.error}); pick a complete trial")
    return rec


def _listing(numbers: list[int]) -> str:
    shown = sorted(numbers)[:SHOWN_NUMBERS]
    return ", ".join(map(str, shown)) + (" ..." if len(numbers) > SHOWN_NUMBERS else "")
