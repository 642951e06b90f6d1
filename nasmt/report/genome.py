"""The grammar-decisions view: parallel coordinates of the decisions (genome) of the
complete trials against the objectives, most important decisions first."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from nasmt.report.load import ReportContext, RunData
from nasmt.report.style import empty_figure, esc, rounded, short, style
from nasmt.run import TrialRecord, TrialStatus
from nasmt.space.grammar import Grammar, Rule, parse_grammar

MAX_GENOME_DIMS = 10  # decisions shown (parallel coordinates get unreadable past ~10 axes)
# lines drawn: every front trial + a fixed random sample of the rest (WebGL parcoords
# stays interactive in software rendering up to a few thousand lines)
MAX_GENOME_LINES = 3000
SAMPLE_SEED = 0  # the sample is seeded so that it is stable across live refreshes
# numbers with at most this many distinct values are shown as categories (ticks per value)
MAX_NUMERIC_CATEGORIES = 16
# objective axes with values this large get SI-suffixed ticks (12.3k) instead of digits
SI_TICKS_FROM = 1000
ABSENT = "—"  # tick label of "this trial did not make the decision"


class _Decision(NamedTuple):
    name: str
    kind: str  # "categorical" (integer codes, -1 = absent) | "numeric" (NaN = absent)
    values: np.ndarray
    tickvals: list[int] | None = None
    ticktext: list[str] | None = None


class _Axis(NamedTuple):
    name: str
    label: str
    values: np.ndarray  # NaN where missing


class _GenomeInfo(NamedTuple):
    n: int  # trials drawn
    n_all: int  # complete trials
    run: np.ndarray  # run index of each line
    runs: list[str]  # run names
    objectives: list[_Axis]
    decisions: list[_Decision]
    n_decisions: int  # decisions that vary (before the cut to `max_dims`)


def _alt_rule(name: str, grammar: Grammar) -> Rule | None:
    """The weighted rule a `<path>.alt` decision chooses in (None if not one)."""
    if not name.endswith(".alt"):
        return None
    for part in reversed(name.split(".")[:-1]):
        if part.isdigit():
            continue
        r = grammar.rules.get(part)
        return r if r is not None and r.weighted and len(r.alts) > 1 else None
    return None


def _alt_label(rule: Rule, u):
    """The label of the alternative a float decision picks (`Rule.pick`, as derivation)."""
    if not isinstance(u, (int, float)) or isinstance(u, bool):
        return u
    return rule.pick(u).label


def genome_columns(trials: list[TrialRecord], grammar: Grammar | None = None) -> dict[str, list]:
    """decision name -> value per trial (None where the trial did not make it).

    With the run's `grammar`, the float `<path>.alt` decisions of weighted rules are
    shown as the alternative they picked (as derivation does)."""
    genomes = [t.genome for t in trials]
    names = dict.fromkeys(k for g in genomes for k in g)
    cols = {n: [g.get(n) for g in genomes] for n in names}
    if grammar is not None:
        for n, vals in cols.items():
            rule = _alt_rule(n, grammar)
            if rule is not None:
                cols[n] = [_alt_label(rule, v) for v in vals]
    return cols


def run_grammar(run: RunData) -> Grammar | None:
    """The run's grammar parsed from run.json (None when absent or unparseable)."""
    g = run.grammar
    text = g.get("text")
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        return parse_grammar(text, file=str(g.get("file") or "<run>"), name=g.get("name"))
    except Exception:  # a grammar this version cannot read (any reason): show raw decision values
        return None


def encode_decision(name: str, values: list) -> _Decision:
    """Integer codes (categorical, with tick labels) or floats (numeric) for one decision.

    Numbers with at most `MAX_NUMERIC_CATEGORIES` distinct values and everything else
    (strings, bools, mixed) are categorical: codes 0..m-1 in sorted order, `—` (code -1)
    where absent. More distinct numbers are numeric; absent values are NaN.
    """
    present = [v for v in values if v is not None]
    numeric = present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
    distinct = sorted(set(present), key=lambda v: (str(type(v)), v) if numeric else (0, str(v)))
    if numeric and len(distinct) > MAX_NUMERIC_CATEGORIES:
        return _Decision(name, "numeric", np.array([np.nan if v is None else float(v) for v in values]))
    index = {v: i for i, v in enumerate(distinct)}
    codes = np.array([-1 if v is None else index[v] for v in values], dtype=float)
    ticks, tickvals = [str(v) for v in distinct], list(range(len(distinct)))
    if (codes < 0).any():
        ticks, tickvals = [ABSENT] + ticks, [-1] + tickvals
    return _Decision(name, "categorical", codes, tickvals, ticks)


def _sample(ctx: ReportContext, rows: list[tuple[int, TrialRecord]], max_lines: int) -> list[tuple[int, TrialRecord]]:
    """Every front trial + a seeded random sample of the others, `max_lines` in all."""
    if len(rows) <= max_lines:
        return rows
    on = [i for i, (ri, t) in enumerate(rows) if ctx.on_front(ri, t)]
    off = [i for i, (ri, t) in enumerate(rows) if not ctx.on_front(ri, t)]
    rng = np.random.default_rng(SAMPLE_SEED)
    k = max(0, max_lines - len(on))
    pick = sorted(on[:max_lines] + list(rng.choice(off, size=min(k, len(off)), replace=False)))
    return [rows[i] for i in pick]


def _decision_columns(ctx: ReportContext, rows: list[tuple[int, TrialRecord]]) -> dict[str, list]:
    """Decision columns over `rows`, each run's decisions decoded by its own grammar."""
    cols: dict[str, list] = {}
    done = 0
    for ri, r in enumerate(ctx.runs):
        part = [t for rj, t in rows if rj == ri]
        for n, v in genome_columns(part, run_grammar(r)).items():
            cols.setdefault(n, [None] * done).extend(v)
        done += len(part)
        for v in cols.values():
            v.extend([None] * (done - len(v)))
    return cols


def get_genome_info(ctx: ReportContext, ranking: list[str] | None = None,
                    max_dims: int = MAX_GENOME_DIMS, max_lines: int = MAX_GENOME_LINES) -> _GenomeInfo:
    """The objectives and up to `max_dims` varying decisions of the complete trials,
    decisions ordered by `ranking` (importance) when given, else by how many trials
    made them and how many values they took."""
    rows = [(ri, t) for ri, t in ctx.rows() if t.status == TrialStatus.COMPLETE]
    n_all = len(rows)
    rows = _sample(ctx, rows, max_lines)
    cols = _decision_columns(ctx, rows)
    usable = {n: v for n, v in cols.items() if len({str(x) for x in v if x is not None}) > 1}
    if ranking:
        order = [n for n in ranking if n in usable] + [n for n in usable if n not in ranking]
    else:
        order = sorted(usable, key=lambda n: (-sum(x is not None for x in usable[n]), -len({str(x) for x in usable[n]}), n))
    M = np.array([[rounded(t.value(o.name)) for o in ctx.objectives] for _, t in rows], dtype=float)
    M = M.reshape(len(rows), len(ctx.objectives))
    return _GenomeInfo(
        n=len(rows), n_all=n_all, run=np.array([ri for ri, _ in rows], dtype=float), runs=[r.name for r in ctx.runs],
        objectives=[_Axis(o.name, ctx.label(o.name), M[:, j]) for j, o in enumerate(ctx.objectives)],
        decisions=[encode_decision(n, usable[n]) for n in order[:max_dims]], n_decisions=len(usable),
    )


def genome_note(info: _GenomeInfo, ranked: bool) -> str:
    """The view's caption: which decisions and trials it shows."""
    return (f"{len(info.decisions)} of {info.n_decisions} varying decisions"
            + (" (most important first)" if ranked else "")
            + (f"; {info.n:,} of {info.n_all:,} trials (every front trial + a random sample)"
               if info.n < info.n_all else ""))


def _objective_dim(o: _Axis) -> dict:
    v = o.values
    finite = np.isfinite(v).any()
    big = finite and np.nanmax(np.abs(v)) >= SI_TICKS_FROM
    # parcoords cannot draw NaN: a missing value sits at the axis' low end
    return dict(label=esc(o.label), tickformat=".3~s" if big else ".3~g",
                values=np.where(np.isnan(v), np.nanmin(v) if finite else 0, v))


def genome_figure(info: _GenomeInfo):
    import plotly.graph_objects as go

    if info.n < 2 or not info.decisions:
        return empty_figure("needs at least 2 complete trials with varying decisions")
    dims = []
    if len(info.runs) > 1:
        dims.append(dict(label="run", values=info.run, tickvals=list(range(len(info.runs))),
                         ticktext=[esc(n) for n in info.runs]))
    for d in info.decisions:
        dim = dict(label=esc(short(d.name)), values=d.values, tickformat=".3~g")
        if d.kind == "categorical":
            dim["tickvals"] = d.tickvals
            dim["ticktext"] = [esc(t) for t in d.ticktext]
        dims.append(dim)
    dims += [_objective_dim(o) for o in info.objectives]
    color = info.objectives[0].values
    high = float(np.nanmax(color)) if np.isfinite(color).any() else 0.0  # a missing value's colour
    fig = go.Figure(go.Parcoords(
        dimensions=dims, labelangle=-18, labelside="top",
        line=dict(color=np.nan_to_num(color, nan=high), colorscale="Viridis", reversescale=True, showscale=True,
                  colorbar=dict(title=dict(text=esc(info.objectives[0].label)), thickness=12)),
        labelfont=dict(size=11), tickfont=dict(size=10),
    ))
    fig.update_layout(margin=dict(l=70, r=40, t=90, b=30), uirevision="genome")
    return style(fig)
