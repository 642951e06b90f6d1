"""What the page says about the reference models (`nasmt.baselines`): each trial's
multi-task gain Δm against its run's single-task networks, and, for runs with a
LightGBM reference (vector suites), a plain sentence on whether the best searched
network beats it on each task.

Trials are scored on the validation split only, so every comparison here is on the
validation split (LightGBM was early-stopped on that same split)."""

from __future__ import annotations

from nasmt.baselines import LIGHTGBM, SINGLE_TASK, BaselineRecord, delta_m
from nasmt.baselines.compare import verdict, versus
from nasmt.report.load import ReportContext
from nasmt.run import TrialRecord, front_candidates


def _named(ctx: ReportContext, ri: int, name: str) -> BaselineRecord | None:
    return next((b for b in ctx.runs[ri].baselines if b.name == name), None)


def single_task(ctx: ReportContext, ri: int) -> BaselineRecord | None:
    """Run `ri`'s single-task reference (Δm is measured against it), if it has one."""
    return _named(ctx, ri, SINGLE_TASK)


def trial_delta_m(ctx: ReportContext, ri: int, t: TrialRecord) -> float | None:
    """Δm (%, validation) of a trial against its run's single-task networks."""
    ref = single_task(ctx, ri)
    return None if ref is None else delta_m(t.metrics, ref.metrics, ctx.runs[ri].suite)


def _best_trial(records: list[TrialRecord]) -> TrialRecord | None:
    """The complete within-budget trial with the lowest validation mean_error."""
    scored = [t for t in front_candidates(records) if t.value("mean_error") is not None]
    return min(scored, key=lambda t: (t.value("mean_error"), t.number), default=None)


def lightgbm_verdict(ctx: ReportContext, ri: int) -> str | None:
    """One sentence: does run `ri`'s best searched network (lowest validation mean error)
    beat its LightGBM reference on each task's metric? None without a LightGBM reference."""
    gb = _named(ctx, ri, LIGHTGBM)
    if gb is None:
        return None
    r = ctx.runs[ri]
    who = f"{r.name}: " if len(ctx.runs) > 1 else ""
    best = _best_trial(r.trials)
    if best is None:
        return f"{who}no complete trial yet to compare with LightGBM."
    wins, losses = versus(best.metrics, gb.metrics, r.suite)
    return verdict(f"{who}on the validation split, the best searched network (trial {best.number}, lowest mean error)",
                   wins, losses, "LightGBM")


def reference_notes(ctx: ReportContext) -> list[str]:
    """The page's sentences about the references (one per run with a LightGBM reference)."""
    notes = [lightgbm_verdict(ctx, ri) for ri in range(len(ctx.runs))]
    return [n[0].upper() + n[1:] for n in notes if n]
