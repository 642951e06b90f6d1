"""Plain-language comparisons with a reference model, shared by the report and the model
card: per task, does a network beat the reference on the task's metric?"""

from __future__ import annotations

from nasmt.data.suite import HIGHER_IS_BETTER, TaskSuite
from nasmt.run import objective_label
from nasmt.run.values import finite_or_none


def beats(metric: str, mine: float | None, theirs: float | None) -> bool:
    """Strictly better on `metric` (a tie, or a missing value, is not a win)."""
    if mine is None or theirs is None:
        return False
    return mine > theirs if HIGHER_IS_BETTER[metric] else mine < theirs


def _num(v: float | None) -> str:
    return "no value" if v is None else f"{v:.4g}"


def versus(mine: dict, theirs: dict, suite: TaskSuite) -> tuple[list[str], list[str]]:
    """Per task, "<task> <metric> <mine> vs <theirs>": (where `mine` beats `theirs`, where not).
    `mine` / `theirs` are metric dicts (`<task>.<metric>` keys, finite numbers or absent)."""
    names = {t.ident: t.name for t in suite.tasks}
    wins, losses = [], []
    for t in suite.tasks:
        key = f"{t.ident}.{t.metric}"
        a, b = finite_or_none(mine.get(key)), finite_or_none(theirs.get(key))
        (wins if beats(t.metric, a, b) else losses).append(f"{objective_label(key, names)} {_num(a)} vs {_num(b)}")
    return wins, losses


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def verdict(subject: str, wins: list[str], losses: list[str], reference: str) -> str:
    """"<subject> beats <reference> on ..., but not on ..." (or on every / on no task)."""
    if not losses:
        return f"{subject} beats {reference} on every task: {_join(wins)}."
    if not wins:
        return f"{subject} does not beat {reference} on any task: {_join(losses)}."
    return f"{subject} beats {reference} on {_join(wins)}, but not on {_join(losses)}."
