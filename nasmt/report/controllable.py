"""The controllable front in the report: which candidate `select` picks in each
budget / preference region (issue 18, `nasmt export RUN --controllable`).

For a one-shot run (RUN/supernet/state.json), the controllable front is the one the export
ships (`nasmt.run.controllable_front`: inherited, feasible, Pareto over every task's error
and the run's costs), and the choice is `nasmt.run.controllable.select_candidate`, the code
the exported model.py runs. The view is a heatmap: x = a budget on params (the one cost
every record holds; latency is measured at export), y = one task's preference weight from
0 to 1 (the other tasks share the rest equally), colour = the candidate chosen; with more
than two tasks a dropdown picks the task on the y axis. Judged on the records' validation
errors (the export re-evaluates the fp32 network it ships, so a quantized candidate's
numbers there may differ slightly). Drawn for the first one-shot run of the page. `_choices`
answers a whole row of budgets at once, exactly as `select_candidate` would (tested)."""

from __future__ import annotations

import json
import math
from typing import NamedTuple

import numpy as np

from nasmt.report.load import ReportContext
from nasmt.report.style import esc, style
from nasmt.run.controllable import task_quality
from nasmt.run.controllable_front import controllable_front, front_objectives

# Written here, not imported (nasmt.search loads Ray and torch): tests check they equal
# nasmt.search.oneshot.bank's SUPERNET_DIR / STATE_FILE.
SUPERNET_DIR, STATE_FILE = "supernet", "state.json"
WEIGHT_STEPS = 21  # preference weights 0, 0.05, ..., 1
BUDGET_STEPS = 40  # params budgets, log-spaced over the front's range
PALETTE = ["#3b5bdb", "#e8590c", "#2b8a3e", "#ae3ec9", "#1098ad", "#f08c00", "#c2255c", "#5c940d", "#7048e8",
           "#0c8599", "#e67700", "#a61e4d"]


class _ControllableInfo(NamedTuple):
    run: str
    tasks: list[str]  # idents
    labels: dict[str, str]  # ident -> task name
    candidates: list[dict]  # id (position), trial, val_error, costs
    budgets: list[float]  # params budgets (x)
    weights: list[float]  # the y task's weight
    grid: dict[str, list[list[int]]]  # y task -> [weight][budget] -> candidate position


def _budgets(params: list[int]) -> list[float]:
    lo, hi = min(params), max(params)
    if hi <= lo:
        return [float(lo)]
    return [math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * i / (BUDGET_STEPS - 1)) for i in range(BUDGET_STEPS)]


def _choices(cands: list[dict], pref: dict, budgets: list[float]) -> list[int]:
    """select_candidate(cands, {"params": b}, pref) for every budget b at once (-1: nothing
    fits): the same scores, tie order and budget test, the candidates ranked once."""
    weighted = [t for t, w in pref.items() if w > 0]
    quality = task_quality(cands, weighted)
    total = sum(pref[t] for t in weighted)
    scores = [sum(pref[t] * q[t] for t in weighted) / total for q in quality]
    order = sorted(range(len(cands)), key=lambda i: (-round(scores[i], 12), 0.0, cands[i]["costs"]["params"]))
    params = np.array([cands[i]["costs"]["params"] for i in order], dtype=float)
    fits = params[None, :] <= np.asarray(budgets)[:, None] * (1 + 1e-12)
    return [order[int(np.argmax(f))] if f.any() else -1 for f in fits]


def get_controllable_info(ctx: ReportContext) -> _ControllableInfo | None:
    """The first one-shot run's selection map (pure; None when no run is one-shot or its
    front is empty)."""
    for r in ctx.runs:
        state_file = r.path / SUPERNET_DIR / STATE_FILE
        if not state_file.is_file():
            continue
        try:
            epochs = json.loads(state_file.read_text(encoding="utf-8")).get("epochs_done")
        except (OSError, ValueError):
            epochs = None
        front = controllable_front(r.trials, front_objectives(r.run, r.suite), epochs)
        if not front:
            continue
        tasks = [t.ident for t in r.suite.tasks]
        cands = [{"id": i, "trial": rec.number, "val_error": {t: rec.metrics[f"{t}.error"] for t in tasks},
                  "costs": {"params": rec.metrics["params"]}} for i, rec in enumerate(front)]
        budgets = _budgets([c["costs"]["params"] for c in cands])
        weights = [i / (WEIGHT_STEPS - 1) for i in range(WEIGHT_STEPS)]
        grid = {}
        for j, t in enumerate(tasks[:1] if len(tasks) == 2 else tasks):  # two tasks: one map says it all
            rows = []
            for w in weights:
                pref = {u: (w if u == t else (1 - w) / (len(tasks) - 1)) for u in tasks} if len(tasks) > 1 else {t: 1.0}
                if not any(v > 0 for v in pref.values()):
                    pref = {t: 1.0}
                row = _choices(cands, pref, budgets)
                rows.append(row)
            grid[t] = rows
        return _ControllableInfo(r.name, tasks, r.task_names, cands, budgets, weights, grid)
    return None


def _hover(info: _ControllableInfo, c: dict) -> str:
    errs = " · ".join(f"{esc(info.labels.get(t, t))} {c['val_error'][t]:.4f}" for t in info.tasks)
    return f"candidate {c['id']} (trial {c['trial']}): {c['costs']['params']:,} params<br>validation error: {errs}"


def controllable_figure_from(info: _ControllableInfo):
    import plotly.graph_objects as go

    n = len(info.candidates)
    scale = []
    for i in range(n):  # a discrete colour per candidate (the palette, then evenly spaced hues)
        col = PALETTE[i] if n <= len(PALETTE) else f"hsl({round(i * 360 / n)}, 65%, {42 + 12 * (i % 2)}%)"
        scale += [[i / n, col], [(i + 1) / n, col]]
    fig = go.Figure()
    ys = list(info.grid)
    used = sorted({i for g in info.grid.values() for row in g for i in row if i >= 0})  # the colour bar names those picked
    for k, t in enumerate(ys):
        z = info.grid[t]
        text = [[_hover(info, info.candidates[i]) if i >= 0 else "nothing fits" for i in row] for row in z]
        fig.add_trace(go.Heatmap(
            x=[round(b) for b in info.budgets], y=[round(w, 3) for w in info.weights], z=z, zmin=-0.5, zmax=n - 0.5,
            colorscale=scale if n > 1 else [[0, PALETTE[0]], [1, PALETTE[0]]], text=text, visible=k == 0,
            colorbar=dict(title=dict(text="candidate"), tickvals=used,
                          ticktext=[f"{i} (trial {info.candidates[i]['trial']})" for i in used]),
            hovertemplate="params budget ≤ %{x:,}<br>weight %{y}<br>%{text}<extra></extra>", name=esc(info.labels.get(t, t)),
        ))
    buttons = [dict(label=esc(info.labels.get(t, t)), method="update",
                    args=[{"visible": [j == k for j in range(len(ys))]},
                          {"yaxis.title.text": f"preference weight of {esc(info.labels.get(t, t))}"}])
               for k, t in enumerate(ys)]
    first = esc(info.labels.get(ys[0], ys[0]))
    fig.update_layout(
        title=dict(text=f"{esc(info.run)}: the candidate select(budget={{'params': x}}, preference) picks "
                        f"({n} candidates)", font=dict(size=13)),
        xaxis=dict(title=dict(text="params budget"), type="log"),
        yaxis=dict(title=dict(text=f"preference weight of {first}" + (" (the others share the rest)" if len(info.tasks) > 2 else ""))),
        margin=dict(l=70, r=20, t=90, b=60),
        updatemenus=[dict(buttons=buttons, x=1, y=1.2, xanchor="right", yanchor="bottom", showactive=True)]
        if len(ys) > 1 else [],
    )
    return style(fig)


def controllable_figure(ctx: ReportContext):
    """The view, or None when no run of the page is a one-shot run with a front."""
    info = get_controllable_info(ctx)
    return controllable_figure_from(info) if info is not None else None
