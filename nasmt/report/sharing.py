"""The sharing / balancing view: every complete trial on the first two objectives (the
Pareto view's axes and orientation: x = objective 1, y = objective 2, log axes where the
values span decades; one objective: its value per trial), coloured by a category of the
trial's multi-task design, one trace per category so each has its own colour and legend
entry. A dropdown switches the colouring between

    sharing family    `metrics.sharing`: hard, mmoe, ple, tree, or a "+"-joined combination
    balancing method  `metrics.balance`: equal, uncertainty, dwa, gradnorm, pcgrad, mgda

(both sets of traces are in the figure; the dropdown toggles their visibility). Runs
whose trials record neither field (older runs) have no such view: `get_sharing_info(...)
.colorings` is empty and `sharing_figure` returns None; so do runs where every complete
trial has the same family and the same method (one colour says nothing: a space that
searches neither)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from nasmt.report.load import ReportContext
from nasmt.report.style import GL_THRESHOLD, MUTED, arrow, esc, log_axis, rounded, run_symbol, style
from nasmt.run import Objective, TrialStatus
from nasmt.space.spec import SHARING_FAMILIES
from nasmt.space.vocab import BALANCE_METHODS

# (metrics key, what the dropdown calls it, the known categories in the order the legend lists them)
SHARING = "sharing"
BALANCE = "balance"
COLORINGS = (
    (SHARING, "sharing family", SHARING_FAMILIES),
    (BALANCE, "balancing method", BALANCE_METHODS),
)
MISSING = "not recorded"  # a complete trial without the field (e.g. a run resumed across versions)
# category colours (a known category keeps its colour from report to report; others follow)
CATEGORY_COLORS = ["#3b5bdb", "#e8590c", "#2b8a3e", "#ae3ec9", "#1098ad", "#f08c00", "#c2255c", "#5c940d",
                   "#7048e8", "#0c8599", "#e67700", "#a61e4d"]


class _Category(NamedTuple):
    value: str  # the category (raw text; escaped when drawn)
    color: str
    g: np.ndarray  # global row index (the table row) of each point
    number: np.ndarray  # trial numbers
    run: list[str]  # each point's run name
    run_index: np.ndarray  # each point's run index (marker symbol)
    values: np.ndarray  # (n, k) objective values, k = min(2, objectives)
    front: np.ndarray  # on its run's Pareto front
    other: list[str]  # each point's value of the other colouring ("" when none)


class _Coloring(NamedTuple):
    key: str  # metrics key: "sharing" | "balance"
    label: str  # "sharing family" | "balancing method"
    categories: list[_Category]


class _SharingInfo(NamedTuple):
    objectives: list[Objective]  # the plotted ones (first two)
    labels: list[str]
    colorings: list[_Coloring]  # only those some complete trial records; empty: no view
    n_runs: int

    @property
    def varies(self) -> bool:
        """Some colouring has two or more categories (else the view is not drawn)."""
        return any(len(c.categories) > 1 for c in self.colorings)


def category_of(metrics: dict, key: str) -> str | None:
    """A trial's category for `key` ("sharing" / "balance"): its non-empty string, else None."""
    v = metrics.get(key)
    return v.strip() if isinstance(v, str) and v.strip() else None


def category_order(key: str, values) -> list[str]:
    """Known categories in their documented order, then combinations ("a+b") by their
    parts' order, then anything else alphabetically; `MISSING` last."""
    known = next((k for key_, _, k in COLORINGS if key_ == key), ())
    rank = {v: i for i, v in enumerate(known)}

    def sort_key(v: str):
        if v == MISSING:
            return (3, (), v)
        if v in rank:
            return (0, (rank[v],), v)
        parts = v.split("+")
        if len(parts) > 1 and all(p in rank for p in parts):
            return (1, (len(parts), *(rank[p] for p in parts)), v)
        return (2, (), v)

    return sorted(set(values), key=sort_key)


def _color(key: str, value: str, order: list[str]) -> str:
    if value == MISSING:
        return MUTED
    known = next((k for key_, _, k in COLORINGS if key_ == key), ())
    if value in known:
        return CATEGORY_COLORS[known.index(value) % len(CATEGORY_COLORS)]
    extra = [v for v in order if v not in known and v != MISSING]
    return CATEGORY_COLORS[(len(known) + extra.index(value)) % len(CATEGORY_COLORS)]


def get_sharing_info(ctx: ReportContext) -> _SharingInfo:
    """Complete trials with every plotted objective (at their drawn metrics, as on every
    view: `load.drawn_metrics`), grouped by sharing family and by balancing method;
    a colouring is present only if some such trial records its field."""
    objs = list(ctx.objectives[:2])
    if not any(category_of(t.metrics, key) for _, t in ctx.rows() for key, _, _ in COLORINGS):
        return _SharingInfo(objs, [ctx.label(o.name) for o in objs], [], len(ctx.runs))  # no view (no Python loop per point)
    points = []  # (g, run index, record, values)
    g0 = 0
    for ri, r in enumerate(ctx.runs):
        for gi, t in enumerate(r.trials, start=g0):
            if t.status != TrialStatus.COMPLETE:
                continue
            v = [rounded(t.value(o.name)) for o in objs]
            if any(x is None for x in v):
                continue
            points.append((gi, ri, t, v))
        g0 += len(r.trials)
    colorings = []
    for key, label, _ in COLORINGS:
        cats = [category_of(t.metrics, key) for _, _, t, _ in points]
        if not any(cats):
            continue
        other_key = SHARING if key == BALANCE else BALANCE
        cats = [c or MISSING for c in cats]
        order = category_order(key, cats)
        out = []
        for value in order:
            sel = [p for p, c in zip(points, cats) if c == value]
            out.append(_Category(
                value, _color(key, value, order),
                np.array([p[0] for p in sel], dtype=np.int64), np.array([p[2].number for p in sel], dtype=np.int64),
                [ctx.runs[p[1]].name for p in sel], np.array([p[1] for p in sel], dtype=np.int64),
                np.array([p[3] for p in sel], dtype=float).reshape(len(sel), len(objs)),
                np.array([ctx.on_front(p[1], p[2]) for p in sel], dtype=bool),
                [category_of(p[2].metrics, other_key) or "" for p in sel],
            ))
        colorings.append(_Coloring(key, label, out))
    return _SharingInfo(objs, [ctx.label(o.name) for o in objs], colorings, len(ctx.runs))


# ----------------------------------------------------------------------------- figure


def _hover(coloring: _Coloring, labels: list[str], dims: int) -> str:
    other = "balancing method" if coloring.key == SHARING else "sharing family"
    parts = ["<b>trial %{customdata[1]}</b> · %{customdata[4]}", f"{coloring.label}: %{{customdata[2]}}",
             f"{other}: %{{customdata[3]}}"]
    if dims > 1:
        parts += [f"{lab}: %{{{ax}}}" for ax, lab in zip("xy", labels)]
    else:
        parts.append(f"{labels[0]}: %{{y}}")
    return "<br>".join(parts)


def _traces(go, coloring: _Coloring, labels: list[str], dims: int, total: int, n_runs: int, visible: bool) -> list:
    cls = go.Scattergl if total > GL_THRESHOLD else go.Scatter
    out = []
    for c in coloring.categories:
        x, y = (c.values[:, 0], c.values[:, 1]) if dims == 2 else (c.number, c.values[:, 0])
        name = esc(c.value)
        customdata = [[int(g), int(n), name, esc(o) or "–", esc(rn)]
                      for g, n, o, rn in zip(c.g, c.number, c.other, c.run)]
        marker = dict(color=c.color, size=np.where(c.front, 11, 7).tolist(), opacity=0.9,
                      line=dict(width=np.where(c.front, 1.2, 0).tolist(), color="white"))
        if n_runs > 1:
            marker["symbol"] = [run_symbol(int(i)) for i in c.run_index]
        out.append(cls(
            x=x, y=y, mode="markers", name=name, legendgroup=f"{coloring.key}:{name}",
            visible=visible, marker=marker, customdata=customdata,
            hovertemplate=_hover(coloring, labels, dims) + "<extra></extra>",
        ))
    return out


def sharing_figure(info: _SharingInfo):
    """The scatter with one trace per category per colouring and a dropdown between the
    colourings; None when no trial records a sharing family or balancing method, or when
    neither varies (`info.varies`)."""
    if not info.varies:
        return None
    import plotly.graph_objects as go

    dims = len(info.objectives)
    labels = [esc(lab) for lab in info.labels]
    cols = info.colorings
    total = sum(len(c.number) for c in cols[0].categories)
    fig = go.Figure()
    spans = []  # (first trace, trace count) per colouring
    for i, col in enumerate(cols):
        traces = _traces(go, col, labels, dims, total, info.n_runs, visible=i == 0)
        spans.append((len(fig.data), len(traces)))
        fig.add_traces(traces)
    n = len(fig.data)
    buttons = []
    for (start, count), col in zip(spans, cols):
        vis = [start <= k < start + count for k in range(n)]
        buttons.append(dict(label=esc(f"colour by {col.label}"), method="update",
                            args=[{"visible": vis}, {"legend.title.text": esc(col.label)}]))
    all_vals = np.vstack([c.values for c in cols[0].categories]) if total else np.zeros((0, dims))
    if dims == 2:
        axes = {f"{ax}axis": dict(title=dict(text=f"{labels[j]} {arrow(info.objectives[j])}"),
                                  type="log" if log_axis(all_vals[:, j]) else "linear") for j, ax in enumerate("xy")}
    else:
        axes = {"xaxis": dict(title=dict(text="trial")),
                "yaxis": dict(title=dict(text=f"{labels[0]} {arrow(info.objectives[0])}"))}
    fig.update_layout(
        margin=dict(l=70, r=20, t=50, b=60), hovermode="closest", uirevision="sharing",
        legend=dict(title=dict(text=esc(cols[0].label)), itemsizing="constant"), **axes,
        updatemenus=[dict(type="dropdown", direction="down", active=0, buttons=buttons, showactive=True,
                          x=0, xanchor="left", y=1.12, yanchor="top", pad=dict(r=4, t=0))],
    )
    return style(fig)
