"""The hypervolume view: how much of objective space each run's front dominates after
every trial, a step line per run with a marker where a trial improved it."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from nasmt.report.density import EXACT_POINTS
from nasmt.report.load import ReportContext
from nasmt.report.style import empty_note, esc, run_color, run_symbol, style
from nasmt.run import HV_REFERENCE, front_candidates, hypervolume, hypervolume_history, normalize, objective_matrix

# a step smaller than this is float noise, not an improvement of the front
IMPROVEMENT_EPS = 1e-12
NOTE = (f"objectives min-max normalized over complete within-budget trials; "
        f"reference point {HV_REFERENCE:g} in each")


class _HypervolumeRun(NamedTuple):
    name: str
    number: np.ndarray  # trial numbers of the run's complete within-budget trials, ascending
    hv: np.ndarray  # hypervolume after each of them


class _HypervolumeInfo(NamedTuple):
    runs: list[_HypervolumeRun]
    ref: np.ndarray  # reference point (normalized units)
    lo: np.ndarray  # per objective: the values mapped to 0 and 1 (minimized form)
    hi: np.ndarray


def get_hypervolume_info(ctx: ReportContext) -> _HypervolumeInfo:
    """Hypervolume after every trial, per run, in trial-number order: the order the
    sampler proposed the trials (Optuna's number, given when a trial starts), which is
    not the order they finished when trials run concurrently. Each trial stands at its
    drawn metrics (`load.drawn_metrics`: a finalized trial at its full-budget ones, as on
    every view), so the curve ends at the hypervolume of the front the Pareto view draws.

    Objectives are min-max normalized over the front candidates of all runs together
    (so runs compare), the reference point is `HV_REFERENCE` in each objective; the
    hypervolume is of the normalized points.
    """
    comps = [sorted(front_candidates(r.trials), key=lambda t: t.number) for r in ctx.runs]
    mats = [objective_matrix(c, ctx.objectives) for c in comps]
    _, lo, hi = normalize(np.vstack(mats))
    ref = np.full(len(ctx.objectives), HV_REFERENCE)
    out = []
    for r, comp, m in zip(ctx.runs, comps, mats):
        norm = normalize(m, lo, hi)[0]
        hv = hypervolume_history(norm, ref) if len(norm) else np.zeros(0)
        out.append(_HypervolumeRun(r.name, np.array([t.number for t in comp], dtype=np.int64), hv))
    return _HypervolumeInfo(out, ref, lo, hi)


def final_hypervolume(r: _HypervolumeRun) -> float:
    return float(r.hv[-1]) if len(r.hv) else 0.0


def final_hypervolumes(ctx: ReportContext) -> list[float]:
    """Each run's hypervolume after its last trial, as `get_hypervolume_info` ends (same
    normalization and reference point) without the history: one hypervolume per run
    (the live dashboard's cards, every poll)."""
    comps = [front_candidates(r.trials) for r in ctx.runs]
    mats = [objective_matrix(c, ctx.objectives) for c in comps]
    _, lo, hi = normalize(np.vstack(mats))
    ref = np.full(len(ctx.objectives), HV_REFERENCE)
    return [float(hypervolume(normalize(m, lo, hi)[0], ref)) if len(m) else 0.0 for m in mats]


def hypervolume_figure(info: _HypervolumeInfo):
    import plotly.graph_objects as go

    fig = go.Figure()
    single = len(info.runs) == 1
    for ri, r in enumerate(info.runs):
        if len(r.hv) == 0:
            continue
        x, y = r.number, r.hv
        imp = np.r_[True, np.diff(y) > IMPROVEMENT_EPS] & (y > 0)
        if len(x) > EXACT_POINTS:  # the same step line through its steps only (and the last trial)
            steps = np.r_[True, np.diff(y) != 0]
            steps[-1] = True
            x, y, imp = x[steps], y[steps], imp[steps]
        fig.add_trace(go.Scatter(
            x=x, y=y, mode="lines", line=dict(shape="hv", color=run_color(ri), width=2.2), name=esc(r.name),
            hovertemplate="after trial %{x}: %{y:.4f}<extra></extra>", showlegend=not single,
        ))
        fig.add_trace(go.Scatter(
            x=x[imp], y=y[imp], mode="markers", marker=dict(size=7, color=run_color(ri), symbol=run_symbol(ri)),
            name="improved", showlegend=False, hovertemplate="trial %{x} improved the front: %{y:.4f}<extra></extra>",
        ))
    fig.update_layout(
        margin=dict(l=60, r=20, t=20, b=50), xaxis=dict(title=dict(text="trial")),
        yaxis=dict(title=dict(text="hypervolume (normalized)"), rangemode="tozero"),
        legend=dict(orientation="h", y=1.1, x=0), uirevision="hv",
    )
    if not any(len(r.hv) for r in info.runs):
        fig.update_layout(annotations=[empty_note("no complete trial yet")])
    return style(fig)
