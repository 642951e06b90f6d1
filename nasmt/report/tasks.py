"""The per-task trade-off view: each task's error against every other task's, one point
per complete trial (a scatter for two tasks, a scatter matrix for more)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from nasmt.report.density import BINS_2D, EXACT_POINTS, Grid, density_2d, make_grid, sample
from nasmt.report.load import ReportContext
from nasmt.report.style import GL_THRESHOLD, empty_figure, esc, run_color, run_symbol, style
from nasmt.run import TrialStatus


class _Task(NamedTuple):
    ident: str
    name: str


class _TaskMatrixRun(NamedTuple):
    name: str
    g: np.ndarray  # global row index of each point
    number: np.ndarray
    errors: np.ndarray  # (n, tasks) `<task>.error`, NaN where the trial has none
    front: np.ndarray


class _TaskMatrixInfo(NamedTuple):
    tasks: list[_Task]
    runs: list[_TaskMatrixRun]


def _error_key(ident: str) -> str:
    return f"{ident}.error"


def get_task_matrix_info(ctx: ReportContext) -> _TaskMatrixInfo:
    """Per-task errors (`<task>.error`) of every complete trial with at least one."""
    tasks: dict[str, str] = {}
    for r in ctx.runs:
        for t in r.suite.tasks:
            tasks.setdefault(t.ident, t.name)
    g0, out, front = 0, [], ctx.front_flags()
    for ri, r in enumerate(ctx.runs):
        shown = [(gi, t) for gi, t in enumerate(r.trials, start=g0) if t.status == TrialStatus.COMPLETE]
        cols = [[rv[gi] for gi, _ in shown] for rv in (ctx.rounded_values(_error_key(i)) for i in tasks)]
        keep = [k for k in range(len(shown)) if any(c[k] is not None for c in cols)]
        errs = [[np.nan if c[k] is None else c[k] for c in cols] for k in keep]
        shown = [shown[k] for k in keep]
        g0 += len(r.trials)
        out.append(_TaskMatrixRun(
            r.name, np.array([gi for gi, _ in shown], dtype=np.int64), np.array([t.number for _, t in shown], dtype=np.int64),
            np.array(errs, dtype=float).reshape(len(errs), len(tasks)),
            np.array([front[gi] for gi, _ in shown], dtype=bool),
        ))
    return _TaskMatrixInfo([_Task(i, n) for i, n in tasks.items()], out)


def _traces(go, ri: int, r: _TaskMatrixRun, tasks: list[_Task], single: bool, grid: Grid | None = None) -> list:
    """Front and other trials; with a `grid` (more than `EXACT_POINTS` points) the other
    trials as a density (two tasks) or a seeded sample of them (a scatter matrix)."""
    out = []
    for gname, m in (("front", r.front), ("other", ~r.front)):
        if not m.any():
            continue
        on = gname == "front"
        if grid is not None and not on:
            n_other = int(m.sum())
            if len(tasks) == 2:
                name = f"other (density, {n_other:,})" if single else f"{esc(r.name)} · other (density, {n_other:,})"
                out.append(density_2d(go, grid, r.errors[m], run_color(ri), name, esc(r.name), "trials"))
                continue
            keep = sample(np.flatnonzero(m), EXACT_POINTS // 2)
            m = np.zeros_like(m)
            m[keep] = True
            gname = f"other (sample of {len(keep):,} of {n_other:,})"
        common = dict(
            customdata=np.stack([r.g[m], r.number[m]], axis=1).tolist(),
            name=gname if single else f"{esc(r.name)} · {gname}",
            marker=dict(color=run_color(ri), symbol=run_symbol(ri), size=9 if on else 6, opacity=1.0 if on else 0.3,
                        line=dict(width=0.5, color="white")),
        )
        if len(tasks) == 2:  # one panel: a plain scatter (a splom of 2 with half hidden is empty)
            cls = go.Scattergl if len(r.g) > GL_THRESHOLD else go.Scatter
            out.append(cls(x=r.errors[m, 0], y=r.errors[m, 1], mode="markers",
                           hovertemplate="<b>trial %{customdata[1]}</b><br>%{x:.4f}, %{y:.4f}<extra></extra>", **common))
        else:
            dims = [dict(label=esc(f"{t.name} error"), values=r.errors[m, j]) for j, t in enumerate(tasks)]
            out.append(go.Splom(dimensions=dims, showupperhalf=False, diagonal=dict(visible=False),
                                hovertemplate="<b>trial %{customdata[1]}</b><extra></extra>", **common))
    return out


def task_matrix_figure(info: _TaskMatrixInfo):
    import plotly.graph_objects as go

    tasks = info.tasks
    if len(tasks) < 2:
        return empty_figure("one task: no per-task trade-off to show")
    fig = go.Figure()
    single = len(info.runs) == 1
    grid = None
    if sum(len(r.g) for r in info.runs) > EXACT_POINTS:
        grid = make_grid(np.vstack([r.errors[:, :2] for r in info.runs]), [False, False], BINS_2D)
    for ri, r in enumerate(info.runs):
        fig.add_traces(_traces(go, ri, r, tasks, single, grid))
    layout = dict(margin=dict(l=60, r=20, t=20, b=50), legend=dict(orientation="h", y=1.1, x=0), uirevision="tasks",
                  hovermode="closest")
    if len(tasks) == 2:
        layout["xaxis"] = dict(title=dict(text=esc(f"{tasks[0].name} error ↓")))
        layout["yaxis"] = dict(title=dict(text=esc(f"{tasks[1].name} error ↓")))
    fig.update_layout(**layout)
    return style(fig)
