"""The trial table: every trial of every run (failed and stopped too), sortable and
filterable on the page.

Rows are compact arrays (one value per column); the page looks every value up by its
column's `key`, never by position, so adding a column shifts nothing."""

from __future__ import annotations

from typing import NamedTuple

from nasmt.report.load import ReportContext
from nasmt.report.style import rounded
from nasmt.run import COST_OBJECTIVES

MAX_REASON = 2000  # characters of a failure reason kept (tracebacks can be long; the page shows one line)
FEASIBLE_TEXT = {True: "ok", False: "over"}  # the budget column


class _Column(NamedTuple):
    key: str
    label: str
    type: str  # "run" (run index) | "int" | "text" | "bool" | "num"
    objective: bool = False


class _TableInfo(NamedTuple):
    columns: list[_Column]
    rows: list[list]  # global row order (`ReportContext.rows`)

    def index(self, key: str) -> int:
        return [c.key for c in self.columns].index(key)


def _metric_keys(ctx: ReportContext) -> list[str]:
    """Objectives first, then the cost metrics and per-task metrics any trial recorded."""
    present = {k for r in ctx.runs for t in r.trials for k in t.metrics}
    keys = [o.name for o in ctx.objectives]
    candidates = list(COST_OBJECTIVES)
    for r in ctx.runs:
        for t in r.suite.tasks:
            candidates += [f"{t.ident}.{t.metric}", f"{t.ident}.error"]
    for m in candidates:
        if m in present and m not in keys:
            keys.append(m)
    return keys


def get_table_info(ctx: ReportContext) -> _TableInfo:
    metric_keys = _metric_keys(ctx)
    objective_names = {o.name for o in ctx.objectives}
    budgeted = any("feasible" in t.metrics for _, t in ctx.rows())
    columns = [
        _Column("run", "run", "run"),
        _Column("number", "trial", "int"),
        _Column("status", "status", "text"),
        _Column("front", "Pareto", "bool"),
        *(_Column(m, ctx.label(m), "num", m in objective_names) for m in metric_keys),
        _Column("time_s", "time (s)", "num"),
        *([_Column("feasible", "budget", "text")] if budgeted else []),
        _Column("hash", "architecture", "text"),
        _Column("error", "reason", "text"),
    ]
    rows = []
    for ri, t in ctx.rows():
        cells = {m: rounded(t.value(m)) for m in metric_keys} | {
            "run": ri, "number": t.number, "status": t.status.value, "front": int(ctx.on_front(ri, t)),
            "time_s": rounded(t.timings.get("total_s")),
            "feasible": FEASIBLE_TEXT.get(t.metrics.get("feasible"), ""),
            "hash": t.arch_hash, "error": "" if t.error is None else str(t.error)[:MAX_REASON],
        }
        rows.append([cells[c.key] for c in columns])
    return _TableInfo(columns, rows)


def table_data(info: _TableInfo) -> dict:
    """The table as the page reads it: `columns` (key, label, type, objective) and `rows`."""
    return {"columns": [c._asdict() for c in info.columns], "rows": info.rows}
