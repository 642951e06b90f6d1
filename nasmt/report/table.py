"""The trial table: every trial of every run (failed and stopped too), then every
reference model (status "reference", named in the `reference` column), sortable and
filterable on the page. With a single-task reference, a Δm column gives every row's
multi-task gain against it (validation). Runs whose trials record a sharing family or a
balancing method (`metrics.sharing`, `metrics.balance`) get a text column for each.

Rows are compact arrays (one value per column); the page looks every value up by its
column's `key`, never by position, so adding a column shifts nothing.

A finalized trial's metric columns hold its search-budget values and the `final.*`
columns its full-budget ones, side by side; `drawn` holds, per row, the objective
values every view draws the row at (`load.drawn_metrics`: the final ones where
present), which the page uses for the selection ring and the "best" cards.

When a run holds one-shot candidates, a `weights` column says where each trial's drawn
numbers come from: inherited (supernet weights), trained, or finalized
(`oneshot.weights_of`)."""

from __future__ import annotations

from typing import NamedTuple

from nasmt.report.load import ReportContext
from nasmt.report.oneshot import has_inherited, weights_of
from nasmt.report.references import single_task, trial_delta_m
from nasmt.report.sharing import COLORINGS, category_of
from nasmt.report.style import rounded, rounded_many
from nasmt.run import COST_OBJECTIVES

MAX_REASON = 2000  # characters of a failure reason kept (tracebacks can be long; the page shows one line)
FEASIBLE_TEXT = {True: "ok", False: "over"}  # the budget column
REFERENCE = "reference"  # the status of a reference row
DELTA_M_LABEL = "Δm vs single-task (%)"


class _Column(NamedTuple):
    key: str
    label: str
    type: str  # "run" (run index) | "int" | "text" | "bool" | "num"
    objective: bool = False


class _TableInfo(NamedTuple):
    columns: list[_Column]
    rows: list[list]  # global row order (`ReportContext.rows`)
    drawn: list[list]  # per row: the objective values as the views draw them (None where missing)

    def index(self, key: str) -> int:
        return [c.key for c in self.columns].index(key)


def _metric_keys(ctx: ReportContext) -> list[str]:
    """Objectives first, then the cost metrics and per-task metrics any trial recorded."""
    present = {k for r in ctx.runs for t in (*r.trials, *r.baselines) for k in t.metrics}
    keys = [o.name for o in ctx.objectives]
    candidates = list(COST_OBJECTIVES)
    for r in ctx.runs:
        for t in r.suite.tasks:
            candidates += [f"{t.ident}.{t.metric}", f"{t.ident}.error"]
    for m in candidates:
        if m in present and m not in keys:
            keys.append(m)
    return keys


def _reference_rows(ctx: ReportContext, metric_keys: list[str]) -> list[dict]:
    return [
        {m: rounded(b.value(m)) for m in metric_keys} | {
            "run": ri, "number": None, "status": REFERENCE, "front": 0, "reference": ctx.reference_label(ri, b),
            "delta_m": rounded(b.delta_m_val), "time_s": rounded(b.timings.get("total_s")), "feasible": "",
            "hash": "", "error": "", "weights": "",
        }
        for _, ri, b in ctx.reference_rows()
    ]


FINAL = "final."  # column key prefix of a finalized trial's full-budget metrics


def _final_columns(ctx: ReportContext) -> list[_Column]:
    """Full-budget finish (nasmt finalize): each objective's final validation value next
    to the search-budget one, and the final test mean error."""
    if not any(t.is_finalized for _, t in ctx.rows()):
        return []
    cols = [_Column(f"{FINAL}{o.name}", f"final {ctx.label(o.name)}", "num") for o in ctx.objectives]
    return cols + [_Column(f"{FINAL}test.mean_error", "final test mean error", "num")]


def _final_cells(t, columns: list[_Column]) -> dict:
    out = {}
    for c in columns:
        name = c.key[len(FINAL):]
        src = (t.final or {}).get("test", {}) if name.startswith("test.") else (t.final or {}).get("metrics", {})
        out[c.key] = rounded(src.get(name.removeprefix("test.")))
    return out


def get_table_info(ctx: ReportContext) -> _TableInfo:
    metric_keys = _metric_keys(ctx)
    final_cols = _final_columns(ctx)
    objective_names = {o.name for o in ctx.objectives}
    budgeted = any("feasible" in t.metrics for _, t in ctx.rows())
    has_refs = any(r.baselines for r in ctx.runs)
    has_single = any(single_task(ctx, ri) for ri in range(len(ctx.runs)))
    # multi-task design categories (`metrics.sharing`, `metrics.balance`), when any trial records one
    design = [_Column(key, label, "text") for key, label, _ in COLORINGS
              if any(category_of(t.metrics, key) for _, t in ctx.rows())]
    columns = [
        _Column("run", "run", "run"),
        _Column("number", "trial", "int"),
        *([_Column("reference", "reference", "text")] if has_refs else []),
        _Column("status", "status", "text"),
        _Column("front", "Pareto", "bool"),
        *(_Column(m, ctx.label(m), "num", m in objective_names) for m in metric_keys),
        *final_cols,
        *([_Column("delta_m", DELTA_M_LABEL, "num")] if has_single else []),
        *design,
        *([_Column("weights", "weights", "text")] if has_inherited(t for _, t in ctx.rows()) else []),
        _Column("time_s", "time (s)", "num"),
        *([_Column("feasible", "budget", "text")] if budgeted else []),
        _Column("hash", "architecture", "text"),
        _Column("error", "reason", "text"),
    ]
    rows = ctx.rows()
    trials = [t for _, t in rows]
    # column by column (a 100,000-trial run: one list per column, floats rounded by numpy)
    if any(ctx.searched):  # finalized trials: their search-budget values
        searched = [ctx.search_metrics(ri, t) for ri, t in rows]
        col: dict[str, list] = {m: rounded_many([s.get(m) for s in searched]) for m in metric_keys}
    else:  # the drawn values are the search values (a non-number rounds to None either way)
        col = {m: ctx.rounded_values(m) for m in metric_keys}
    col.update({
        "run": [ri for ri, _ in rows], "number": [t.number for t in trials], "status": [t.status.value for t in trials],
        "front": [int(f) for f in ctx.front_flags()], "reference": [""] * len(rows),
        "delta_m": (rounded_many([trial_delta_m(ctx, ri, t) for ri, t in rows]) if has_single else [None] * len(rows)),
        "time_s": rounded_many([t.timings.get("total_s") for t in trials]),
        "feasible": [FEASIBLE_TEXT.get(t.metrics.get("feasible"), "") for t in trials],
        "hash": ctx.hashes(),
        "error": ["" if t.error is None else str(t.error)[:MAX_REASON] for t in trials],
        "weights": [weights_of(t) or "" for t in trials],
    })
    for c in design:
        col[c.key] = [category_of(t.metrics, c.key) or "" for t in trials]
    finals = [_final_cells(t, final_cols) for t in trials]
    for c in final_cols:
        col[c.key] = [f[c.key] for f in finals]
    refs = [c | {fc.key: None for fc in final_cols} | {dc.key: "" for dc in design}
            for c in _reference_rows(ctx, metric_keys)]
    table = [list(r) for r in zip(*(col[c.key] for c in columns))] if rows else []
    table += [[c[k.key] for k in columns] for c in refs]
    drawn_cols = [ctx.rounded_values(o.name) for o in ctx.objectives]
    drawn = [list(r) for r in zip(*drawn_cols)] if rows and drawn_cols else [[] for _ in rows]
    drawn += [[rounded(b.value(o.name)) for o in ctx.objectives] for _, _, b in ctx.reference_rows()]
    return _TableInfo(columns, table, drawn)


def table_data(info: _TableInfo) -> dict:
    """The table as the page reads it: `columns` (key, label, type, objective), `rows`
    and `drawn` (each row's objective values as the views draw them)."""
    return {"columns": [c._asdict() for c in info.columns], "rows": info.rows, "drawn": info.drawn}
