"""The objective catalogue: every quantity a search can optimize, with its default
direction, its label, its hard-budget key in run.json's config and its measured /
predicted counterpart. Per-task objectives (`<task>.<metric>`, `<task>.error`) come
from the suite. One definition, used by search, report and export alike."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nasmt.errors import UserError


@dataclass(frozen=True)
class CostObjective:
    direction: str
    label: str
    budget_key: str | None = None  # config key of the hard budget on this quantity
    counterpart: str | None = None  # measured <-> predicted twin


COST_OBJECTIVES: dict[str, CostObjective] = {
    "mean_error": CostObjective("min", "mean error"),
    "params": CostObjective("min", "parameters"),
    "flops": CostObjective("min", "FLOPs"),
    "size_bytes": CostObjective("min", "size (bytes)", budget_key="max_bytes"),
    "latency_ms": CostObjective("min", "latency (ms)", budget_key="max_latency_ms", counterpart="predicted_latency_ms"),
    "predicted_latency_ms": CostObjective("min", "predicted latency (ms)", budget_key="max_latency_ms",
                                          counterpart="latency_ms"),
}
# cost metrics known before training (from the architecture alone)
STATIC_COSTS = ("params", "flops", "size_bytes", "predicted_latency_ms")


@dataclass(frozen=True)
class Objective:
    name: str  # a metric key in the trial record
    direction: str  # "min" | "max"

    @property
    def sign(self) -> float:
        """+1 to minimize, -1 to maximize: sign * value is always minimized."""
        return 1.0 if self.direction == "min" else -1.0

    @property
    def budget_key(self) -> str | None:
        c = COST_OBJECTIVES.get(self.name)
        return c.budget_key if c else None

    @property
    def counterpart(self) -> str | None:
        c = COST_OBJECTIVES.get(self.name)
        return c.counterpart if c else None

    def label(self, task_names: dict[str, str] | None = None) -> str:
        return objective_label(self.name, task_names or {})

    def to_json(self) -> dict:
        return {"name": self.name, "direction": self.direction}


def objective_label(name: str, task_names: dict[str, str]) -> str:
    """Human label of an objective / metric key (task idents shown by task name)."""
    if name in COST_OBJECTIVES:
        return COST_OBJECTIVES[name].label
    ident, _, metric = name.partition(".")
    if metric and ident in task_names:
        return f"{task_names[ident]} {metric.replace('_', ' ')}"
    return name


def objective_names(suite) -> dict[str, str]:
    """Every objective a suite allows -> its default direction."""
    from nasmt.data.suite import HIGHER_IS_BETTER

    out = {k: c.direction for k, c in COST_OBJECTIVES.items()}
    for t in suite.tasks:
        out[f"{t.ident}.{t.metric}"] = "max" if HIGHER_IS_BETTER[t.metric] else "min"
        out[f"{t.ident}.error"] = "min"
    return out


def parse_objectives(text: str, suite, field: str = "--objectives") -> list[Objective]:
    """`mean_error,params` or `left.accuracy:max,flops`; task names may be used for idents."""
    allowed = objective_names(suite)
    alias = {}
    for t in suite.tasks:
        alias[f"{t.name}.{t.metric}"] = f"{t.ident}.{t.metric}"
        alias[f"{t.name}.error"] = f"{t.ident}.error"
    objs: list[Objective] = []
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(not p for p in parts):
        raise UserError(f"{field}: give a comma-separated list of objectives (e.g. mean_error,params)")
    for p in parts:
        name, _, direction = p.partition(":")
        name = alias.get(name, name)
        if name not in allowed:
            raise UserError(f"{field}: unknown objective {name!r} (choose from {', '.join(allowed)})")
        direction = direction or allowed[name]
        if direction not in ("min", "max"):
            raise UserError(f"{field}: direction of {name!r} must be min or max (got {direction!r})")
        if any(o.name == name for o in objs):
            raise UserError(f"{field}: objective {name!r} listed twice")
        objs.append(Objective(name, direction))
    return objs


def objectives_from_run(run: dict) -> list[Objective]:
    """The objectives recorded in run.json."""
    return [Objective(o["name"], o["direction"]) for o in run.get("objectives") or []]


def objective_matrix(trials, objectives: list[Objective]) -> np.ndarray:
    """(n, k) values to minimize (max objectives negated); NaN where missing.
    `trials`: TrialRecords (or anything with a `metrics` dict)."""
    m = np.full((len(trials), len(objectives)), np.nan)
    mets = [t.metrics for t in trials]
    for j, o in enumerate(objectives):  # column by column (10^5 trials); values as `is_finite_number` takes them
        col = [v if isinstance(v, (int, float)) and not isinstance(v, bool) else np.nan for v in (d.get(o.name) for d in mets)]
        if col:
            a = np.array(col, dtype=float)
            m[:, j] = np.where(np.isfinite(a), o.sign * a, np.nan)
    return m
