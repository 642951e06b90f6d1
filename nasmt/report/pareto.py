"""The Pareto view: every complete or stopped trial in objective space (first 2 or 3
objectives; one objective: value per trial), front points emphasized with the 2-D
attainment staircase, dominated points faded, hard budgets shaded, predicted ->
measured latency pairs joined, and the reference models (`nasmt.baselines`) as
labelled stars (a labelled dashed line where a reference has a value on one plotted
axis only, e.g. LightGBM's error without a parameter count; a line for every reference
in the one-objective view). In a one-shot run, candidates scored with inherited weights
are open markers, trained or finalized ones filled (`oneshot.weights_of`: the kind is
the points' third customdata entry)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from nasmt.report.density import BINS_2D, BINS_3D, EXACT_POINTS, Grid, density_2d, density_3d, make_grid
from nasmt.report.load import ReportContext
from nasmt.report.oneshot import INHERITED, has_inherited, weights_of
from nasmt.report.style import (
    ALERT,
    GL_THRESHOLD,
    MUTED,
    STOPPED_COLOR,
    arrow,
    empty_note,
    esc,
    log_axis,
    rounded,
    run_color,
    run_symbol,
    style,
)
from nasmt.run import Objective, TrialStatus

MAX_PARETO_DIMS = 3  # a 3-D scatter is the most a page can show; further objectives are listed only
# a budget's shaded region reaches this far past the larger of the budget and the worst value
BUDGET_REGION_MARGIN = 1.15
REFERENCE_COLOR = "#212529"  # reference models: near-black stars, whatever their run
REFERENCE_SYMBOL = "star"
REFERENCE_SYMBOL_3D = "diamond"  # 3-D markers know only circle, cross, diamond, square, x (and -open)


class _ParetoRun(NamedTuple):
    name: str
    g: np.ndarray  # global row index (the table row) of each point
    number: np.ndarray  # trial numbers
    values: np.ndarray  # (n, k) raw objective values
    front: np.ndarray  # on the run's Pareto front
    stopped: np.ndarray  # stopped early (the rest are complete)
    counterparts: list[tuple[int, dict[int, float]]]  # (point index, {objective index: counterpart value})
    weights: np.ndarray | None = None  # per point: inherited / trained / finalized (one-shot runs only, else None)


class _Budget(NamedTuple):
    axis: int  # objective index
    value: float
    key: str  # config key in run.json (max_bytes, max_latency_ms)
    run: str  # the run whose config sets it


class _Reference(NamedTuple):
    g: int  # its table row
    label: str
    values: list  # raw objective values, None where the reference has none (LightGBM: params)


class _ParetoInfo(NamedTuple):
    objectives: list[Objective]
    labels: list[str]
    runs: list[_ParetoRun]
    budgets: list[_Budget]
    references: list[_Reference]


def _run_points(ctx: ReportContext, ri: int, g0: int) -> _ParetoRun:
    r, objs = ctx.runs[ri], ctx.objectives
    shown = [(gi, t) for gi, t in enumerate(r.trials, start=g0) if t.status in (TrialStatus.COMPLETE, TrialStatus.STOPPED)]
    front = ctx.front_flags()
    # the drawn metrics (load.drawn_metrics), rounded as the page shows them; column by column
    cols = [[rv[gi] for gi, _ in shown] for rv in (ctx.rounded_values(o.name) for o in objs)]
    keep = [i for i in range(len(shown)) if all(c[i] is not None for c in cols)]
    vals = [[c[i] for c in cols] for i in keep]
    shown = [shown[i] for i in keep]
    pairs = []
    counter = [(j, o.counterpart) for j, o in enumerate(objs) if o.counterpart]
    if counter:
        for k, (_, t) in enumerate(shown):
            pair = {j: rounded(t.value(c)) for j, c in counter}
            pair = {j: v for j, v in pair.items() if v is not None}
            if pair:
                pairs.append((k, pair))
    return _ParetoRun(
        r.name, np.array([gi for gi, _ in shown], dtype=np.int64), np.array([t.number for _, t in shown], dtype=np.int64),
        np.array(vals, dtype=float).reshape(len(vals), len(objs)),
        np.array([front[gi] for gi, _ in shown], dtype=bool),
        np.array([t.status == TrialStatus.STOPPED for _, t in shown], dtype=bool), pairs,
        np.array([weights_of(t) for _, t in shown], dtype=object) if has_inherited(r.trials) else None,
    )


def _budgets(ctx: ReportContext) -> list[_Budget]:
    """Per budgeted objective, the first run whose config sets a positive budget."""
    out = []
    for j, o in enumerate(ctx.objectives):
        if not o.budget_key:
            continue
        for r in ctx.runs:
            val = rounded(r.config.get(o.budget_key))
            if val is not None and val > 0:
                out.append(_Budget(j, float(val), o.budget_key, r.name))
                break
    return out


def get_pareto_info(ctx: ReportContext) -> _ParetoInfo:
    """Points of every complete or stopped trial with all objective values (rounded as
    the page shows them), front flags from the context, budget lines from run.json's
    config, predicted <-> measured counterpart values, and the reference models' values."""
    runs, g = [], 0
    for ri, r in enumerate(ctx.runs):
        runs.append(_run_points(ctx, ri, g))
        g += len(r.trials)
    refs = [_Reference(gi, ctx.reference_label(ri, b), [rounded(b.value(o.name)) for o in ctx.objectives])
            for gi, ri, b in ctx.reference_rows()]
    return _ParetoInfo(list(ctx.objectives), [ctx.label(o.name) for o in ctx.objectives], runs, _budgets(ctx), refs)


def front_staircase(values: np.ndarray, objectives: list[Objective]) -> np.ndarray:
    """Corner points of the 2-D attainment staircase through front points (raw values)."""
    if len(values) == 0:
        return np.zeros((0, 2))
    sign = np.array([o.sign for o in objectives[:2]])
    mins = values[:, :2] * sign
    order = np.lexsort((mins[:, 1], mins[:, 0]))
    pts = values[order, :2]
    out = [pts[0]]
    for p in pts[1:]:
        out.append(np.array([p[0], out[-1][1]]))
        out.append(p)
    return np.array(out)


# ----------------------------------------------------------------------------- figure


def _hover(labels: list[str], dims: int) -> str:
    parts = ["<b>trial %{customdata[1]}</b>"]
    if dims > 1:
        parts += [f"{lab}: %{{{ax}}}" for ax, lab in zip("xyz", labels)]
    else:
        parts.append(f"{labels[0]}: %{{y}}")
    return "<br>".join(parts)


def _point_traces(go, ri: int, r: _ParetoRun, dims: int, labels: list[str], total: int, single: bool,
                  grid: Grid | None = None) -> list:
    """The run's front, dominated and stopped points; with a `grid` (a view of more than
    `EXACT_POINTS` points) the dominated and stopped ones as a density, the front exact."""
    rname = esc(r.name)
    V = r.values
    groups = [
        ("front", r.front, dict(size=11, opacity=1.0, line=dict(width=1.2, color="white"))),
        ("dominated", ~r.front & ~r.stopped, dict(size=7, opacity=0.28, line=dict(width=0))),
        ("stopped", r.stopped, dict(size=7, opacity=0.35, line=dict(width=1, color=MUTED))),
    ]
    out = []
    for gname, m, mk in groups:
        if not m.any():
            continue
        stopped = gname == "stopped"
        if grid is not None and gname != "front":
            name = f"{gname} (density, {int(m.sum()):,})" if single else f"{rname} · {gname} (density, {int(m.sum()):,})"
            color = STOPPED_COLOR if stopped else run_color(ri)
            pts = np.column_stack([r.number[m], V[m, 0]]) if dims == 1 else V[m, :dims]
            out.append((density_3d if dims >= 3 else density_2d)(go, grid, pts, color, name, rname, f"{gname} trials"))
            continue
        marker = dict(color=STOPPED_COLOR if stopped else run_color(ri), symbol="x" if stopped else run_symbol(ri), **mk)
        cd = np.stack([r.g[m], r.number[m]], axis=1).tolist()
        hover = _hover(labels, dims)
        if r.weights is not None:  # a one-shot run: inherited candidates open, trained / finalized ones filled
            cd = [row + [k] for row, k in zip(cd, r.weights[m])]
            marker["symbol"] = [f"{marker['symbol']}-open" if k == INHERITED else marker["symbol"] for k in r.weights[m]]
            hover += "<br>%{customdata[2]} weights"
        common = dict(mode="markers", name=gname if single else f"{rname} · {gname}", marker=marker, legendgroup=rname,
                      customdata=cd, hovertemplate=hover + f"<extra>{rname}</extra>")
        if dims >= 3:
            marker["size"] = max(3, marker["size"] - 4)  # 3-D markers read larger
            out.append(go.Scatter3d(x=V[m, 0], y=V[m, 1], z=V[m, 2], **common))
        else:
            x, y = (V[m, 0], V[m, 1]) if dims == 2 else (r.number[m], V[m, 0])
            out.append((go.Scattergl if total > GL_THRESHOLD else go.Scatter)(x=x, y=y, **common))
    return out


def _front_and_latency_traces(go, ri: int, r: _ParetoRun, objectives: list[Objective], single: bool) -> list:
    """2-D only: the front's staircase, and each predicted cost joined to its measurement."""
    rname, out = esc(r.name), []
    if r.front.any():
        stair = front_staircase(r.values[r.front], objectives)
        out.append(go.Scatter(x=stair[:, 0], y=stair[:, 1], mode="lines", hoverinfo="skip", showlegend=False,
                              line=dict(color=run_color(ri), width=1.5, dash="dot"), legendgroup=rname))
    if r.counterparts:
        xs, ys, px, py = [], [], [], []
        for pi, pair in r.counterparts:
            x0, y0 = r.values[pi, 0], r.values[pi, 1]
            x1, y1 = pair.get(0, x0), pair.get(1, y0)
            xs += [x0, x1, None]
            ys += [y0, y1, None]
            px.append(x1)
            py.append(y1)
        out.append(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=MUTED, width=1), hoverinfo="skip",
                              showlegend=False, legendgroup=rname))
        out.append(go.Scatter(x=px, y=py, mode="markers", name="predicted cost" if single else f"{rname} · predicted",
                              marker=dict(symbol="circle-open", size=8, color="#495057"), legendgroup=rname,
                              hovertemplate="predicted<br>%{x}, %{y}<extra></extra>"))
    return out


def _reference_trace(go, refs: list[_Reference], dims: int, labels: list[str]):
    """2-D / 3-D: the references with a value on every plotted axis, as labelled stars."""
    pts = [r for r in refs if dims > 1 and all(v is not None for v in r.values[:dims])]
    if not pts:
        return None
    axes = [f"{lab}: %{{{ax}}}" for ax, lab in zip("xyz", labels[:dims])]
    common = dict(mode="markers+text", name="references", text=[esc(r.label) for r in pts], textposition="top center",
                  textfont=dict(color=REFERENCE_COLOR), customdata=[[r.g, esc(r.label)] for r in pts],
                  marker=dict(symbol=REFERENCE_SYMBOL, size=15, color=REFERENCE_COLOR, line=dict(width=1, color="white")),
                  hovertemplate="<b>%{text}</b> (reference)<br>" + "<br>".join(axes) + "<extra></extra>")
    cols = [[r.values[j] for r in pts] for j in range(dims)]
    if dims >= 3:
        common["marker"].update(size=6, symbol=REFERENCE_SYMBOL_3D)  # 3-D markers read larger
        return go.Scatter3d(x=cols[0], y=cols[1], z=cols[2], **common)
    return go.Scatter(x=cols[0], y=cols[1], **common)


def _reference_lines(go, refs: list[_Reference], dims: int, xs: np.ndarray, ys: np.ndarray) -> list:
    """A labelled dashed line for each reference known on one plotted axis only (1-D:
    every reference with a value), across the range the points span on the other axis."""
    out = []
    for r in refs:
        known = [j for j in range(min(dims, 2)) if r.values[j] is not None]
        vertical = dims == 2 and known == [0]
        other = ys if vertical else xs
        if dims > 2 or len(known) != 1 or not len(other):
            continue
        v, span = r.values[known[0]], [float(np.min(other)), float(np.max(other))]
        x, y = ([v, v], span) if vertical else (span, [v, v])
        out.append(go.Scatter(
            x=x, y=y, mode="lines+text", text=["", esc(r.label)], textposition="top right" if vertical else "top left",
            textfont=dict(color=REFERENCE_COLOR), line=dict(color=REFERENCE_COLOR, width=1.2, dash="dash"),
            name=esc(r.label), showlegend=False, legendgroup="references",
            hovertemplate=f"<b>{esc(r.label)}</b> (reference): {v}<extra></extra>",
        ))
    return out


def _selection_trace(go, dims: int):
    """The selected trial's ring (empty here: the page moves it)."""
    sel = dict(mode="markers", name="selected", showlegend=False, hoverinfo="skip",
               marker=dict(size=20, color="rgba(0,0,0,0)", line=dict(width=3, color=ALERT), symbol="circle"))
    if dims >= 3:
        sel["marker"]["size"] = 10
        return go.Scatter3d(x=[], y=[], z=[], **sel)
    return go.Scatter(x=[], y=[], **sel)


def _budget_shapes(budgets: list[_Budget], all_vals: np.ndarray) -> list[dict]:
    """2-D only: the over-budget region shaded, the budget a dashed line."""
    shapes = []
    for b in budgets:
        if b.axis > 1:
            continue
        col = all_vals[:, b.axis] if len(all_vals) else np.array([b.value])
        far = max(float(np.nanmax(col)), b.value) * BUDGET_REGION_MARGIN
        rect = dict(type="rect", line=dict(width=0), fillcolor="rgba(240,62,62,0.08)", layer="below")
        line = dict(type="line", line=dict(color=ALERT, width=1.5, dash="dash"),
                    label=dict(text=esc(f"budget {b.key} = {b.value:g}"), font=dict(size=11, color="#c92a2a"),
                               textposition="end"))
        if b.axis == 0:
            shapes.append(rect | dict(xref="x", yref="paper", x0=b.value, x1=far, y0=0, y1=1))
            shapes.append(line | dict(xref="x", yref="paper", x0=b.value, x1=b.value, y0=0, y1=1))
        else:
            shapes.append(rect | dict(xref="paper", yref="y", y0=b.value, y1=far, x0=0, x1=1))
            shapes.append(line | dict(xref="paper", yref="y", y0=b.value, y1=b.value, x0=0, x1=1))
    return shapes


def _axes(info: _ParetoInfo, dims: int, all_vals: np.ndarray, labels: list[str]) -> dict:
    objs = info.objectives
    kind = ["log" if log_axis(all_vals[:, j]) else "linear" for j in range(min(dims, all_vals.shape[1]))]
    if dims >= 3:
        return {"scene": {f"{ax}axis": dict(title=dict(text=labels[j]), type=kind[j]) for j, ax in enumerate("xyz")}}
    if dims == 2:
        return {f"{ax}axis": dict(title=dict(text=f"{labels[j]} {arrow(objs[j])}"), type=kind[j]) for j, ax in enumerate("xy")}
    return {"xaxis": dict(title=dict(text="trial")), "yaxis": dict(title=dict(text=f"{labels[0]} {arrow(objs[0])}"))}


def pareto_figure(info: _ParetoInfo):
    import plotly.graph_objects as go

    k = len(info.objectives)
    dims = min(k, MAX_PARETO_DIMS)
    labels = [esc(lab) for lab in info.labels]
    total = sum(len(r.number) for r in info.runs)
    single = len(info.runs) == 1
    all_vals = np.vstack([r.values for r in info.runs]) if total else np.zeros((0, k))
    grid = None
    if total > EXACT_POINTS:  # dominated points as a density (density.py); the front stays exact
        pts = (np.column_stack([np.concatenate([r.number for r in info.runs]), all_vals[:, 0]]) if dims == 1
               else all_vals[:, :dims])
        logs = [False, False] if dims == 1 else [log_axis(all_vals[:, j]) for j in range(dims)]
        grid = make_grid(pts, logs, BINS_3D if dims >= 3 else BINS_2D)
    fig = go.Figure()
    for ri, r in enumerate(info.runs):
        fig.add_traces(_point_traces(go, ri, r, dims, labels, total, single, grid))
        if dims == 2:
            fig.add_traces(_front_and_latency_traces(go, ri, r, info.objectives, single))
    ref = _reference_trace(go, info.references, dims, labels)
    if ref is not None:
        fig.add_trace(ref)
    if dims == 1:
        fig.add_traces(_reference_lines(go, info.references, dims, np.concatenate([r.number for r in info.runs]), all_vals))
    elif dims == 2:
        pts = np.vstack([all_vals[:, :2], *([np.column_stack([ref.x, ref.y])] if ref is not None else [])])
        fig.add_traces(_reference_lines(go, info.references, dims, pts[:, 0], pts[:, 1]))
    fig.add_trace(_selection_trace(go, dims))
    layout = dict(margin=dict(l=70, r=20, t=30, b=60), hovermode="closest", legend=dict(orientation="h", y=1.08, x=0),
                  uirevision="pareto", **_axes(info, dims, all_vals, labels))
    shapes = _budget_shapes(info.budgets, all_vals) if dims == 2 else []
    if shapes:
        layout["shapes"] = shapes
    if total == 0:
        layout["annotations"] = [empty_note("no complete trial with every objective yet")]
    if k > MAX_PARETO_DIMS:
        layout["title"] = dict(text=f"first {MAX_PARETO_DIMS} of {k} objectives shown", font=dict(size=12))
    fig.update_layout(**layout)
    return style(fig)
