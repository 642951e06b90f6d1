"""One-shot runs in the report: the inheritance check's scatter, and which weights a point has.

`nasmt oneshot-check RUN` (`nasmt.search.oneshot.check`) trains n of a one-shot run's
candidates from scratch and writes RUN/oneshot_check.json; this view draws each checked
candidate at (inherited validation mean_error, from-scratch validation mean_error), one
colour per run, with Kendall's tau and Spearman's rho in the title. It is drawn only for
runs holding that file (`check_info` validates it: RunDirError naming the file and field).

`weights_of` names where a trial's drawn numbers come from: "inherited" (a one-shot
candidate scored on the supernet's weights), "finalized" (retrained or fine-tuned at the full
budget: drawn at its final metrics) or "trained" (an ordinary trial). The Pareto view gives
inherited points open markers and the table a `weights` column, for runs that hold any
inherited candidate."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import NamedTuple

from nasmt.errors import RunDirError
from nasmt.report.load import ReportContext
from nasmt.report.style import esc, rounded, run_color, run_symbol, style
from nasmt.run import TrialStatus

# Written here, not imported: nasmt.search loads Ray and torch, which the report never needs.
# tests/report/test_report_oneshot.py checks they equal nasmt.search.oneshot's.
CHECK_FILE = "oneshot_check.json"  # nasmt.search.oneshot.check.CHECK_FILE
INHERITED_KEY = "inherited"  # nasmt.search.oneshot.bank.INHERITED: the record's train[...] marker
INHERITED, TRAINED, FINALIZED = "inherited", "trained", "finalized"
X_TITLE = "inherited weights: validation mean error"
Y_TITLE = "trained from scratch: validation mean error"


def weights_of(rec) -> str | None:
    """Where a trial's drawn numbers come from (module docstring); None for a trial with
    no metrics (failed, running)."""
    if rec.is_finalized:
        return FINALIZED
    if rec.status not in (TrialStatus.COMPLETE, TrialStatus.STOPPED):
        return None
    return INHERITED if is_inherited(rec) else TRAINED


def is_inherited(rec) -> bool:
    """As nasmt.search.oneshot.bank.is_inherited."""
    return (rec.train or {}).get(INHERITED_KEY) is not None


def has_inherited(trials) -> bool:
    return any(is_inherited(t) for t in trials)


class _CheckInfo(NamedTuple):
    run: str
    ri: int  # run index (colour, symbol)
    g: list[int | None]  # each pair's table row (None: the trial is no longer in trials.jsonl)
    numbers: list[int]
    inherited: list[float]
    scratch: list[float]
    kendall_tau: float | None
    spearman_rho: float | None
    budget: str  # "8 steps" / "1 epochs"


def read_check(run_dir: str | Path) -> dict | None:
    """RUN/oneshot_check.json, None when the run has none."""
    path = Path(run_dir) / CHECK_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RunDirError(f"{path}: not a readable JSON file ({e})") from None


def _number(v, where: str, file: str, integer: bool = False):
    ok = isinstance(v, int) if integer else isinstance(v, (int, float)) and math.isfinite(v)
    if isinstance(v, bool) or not ok:
        raise RunDirError(f"{file}: {where}: expected {'an integer' if integer else 'a finite number'} (got {v!r})")
    return v


def check_info(check: dict, run: str, ri: int, g_of: dict[int, int], file: str = CHECK_FILE) -> _CheckInfo:
    """The check's pairs as drawn (pure; `g_of`: trial number -> table row). RunDirError
    "FILE: FIELD: what is wrong" for a malformed file."""
    pairs = check.get("pairs") if isinstance(check, dict) else None
    if not isinstance(pairs, list) or not all(isinstance(p, dict) for p in pairs):
        raise RunDirError(f"{file}: pairs: expected a list of {{number, inherited, scratch}} objects")
    nums = [_number(p.get("number"), f"pairs[{i}].number", file, True) for i, p in enumerate(pairs)]
    inh = [_number(p.get("inherited"), f"pairs[{i}].inherited", file) for i, p in enumerate(pairs)]
    scr = [_number(p.get("scratch"), f"pairs[{i}].scratch", file) for i, p in enumerate(pairs)]
    corr = {}
    for k in ("kendall_tau", "spearman_rho"):
        corr[k] = None if check.get(k) is None else _number(check.get(k), k, file)
    steps = check.get("steps")
    budget = f"{steps} steps" if steps is not None else f"{check.get('epochs', '?')} epochs"
    return _CheckInfo(run, ri, [g_of.get(n) for n in nums], nums, inh, scr, corr["kendall_tau"],
                      corr["spearman_rho"], budget)


def _fmt(v: float | None) -> str:
    return "undefined" if v is None else f"{v:.3f}"


def check_title(info: _CheckInfo) -> str:
    return (f"Kendall τ = {_fmt(info.kendall_tau)} · Spearman ρ = {_fmt(info.spearman_rho)} "
            f"(n = {len(info.numbers)}, from scratch at {info.budget})")


def oneshot_figure(infos: list[_CheckInfo], several: bool = False):
    """Inherited (x) vs from-scratch (y) validation mean error of every checked candidate;
    points carry [table row, trial number] (clickable like the Pareto view's)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for info in infos:
        name = esc(info.run)
        fig.add_trace(go.Scatter(
            x=[rounded(v) for v in info.inherited], y=[rounded(v) for v in info.scratch], mode="markers",
            name=f"{name}: τ {_fmt(info.kendall_tau)}, ρ {_fmt(info.spearman_rho)}",
            customdata=[[g, n] for g, n in zip(info.g, info.numbers)],
            marker=dict(size=10, color=run_color(info.ri), symbol=run_symbol(info.ri), line=dict(width=1, color="white")),
            hovertemplate="<b>trial %{customdata[1]}</b><br>inherited: %{x}<br>from scratch: %{y}" + f"<extra>{name}</extra>",
        ))
    title = "<br>".join((f"{esc(i.run)}: " if several else "") + check_title(i) for i in infos)
    fig.update_layout(title=dict(text=title, font=dict(size=13)), showlegend=several, hovermode="closest",
                      margin=dict(l=70, r=20, t=40 + 18 * len(infos), b=60),
                      xaxis=dict(title=dict(text=X_TITLE)), yaxis=dict(title=dict(text=Y_TITLE)))
    return style(fig)


def oneshot_check_figure(ctx: ReportContext):
    """The scatter of every run holding RUN/oneshot_check.json; None when none does."""
    infos, g0 = [], 0
    for ri, r in enumerate(ctx.runs):
        check = read_check(r.path)
        if check is not None:
            g_of = {t.number: g for g, t in enumerate(r.trials, start=g0)}
            infos.append(check_info(check, r.name, ri, g_of, str(r.path / CHECK_FILE)))
        g0 += len(r.trials)
    return oneshot_figure(infos, several=len(ctx.runs) > 1) if infos else None
