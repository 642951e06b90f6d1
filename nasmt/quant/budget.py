"""Size / latency budgets as Optuna constraints and as a feasibility flag."""

from __future__ import annotations

COSTS_ATTR = "nasmt_costs"  # the Optuna trial user attr the searcher stores a trial's costs in
MISSING_VIOLATION = 1.0  # constraint value of a budgeted cost that was not measured: violated


def constraint_values(costs: dict, max_bytes: float | None, max_latency_ms: float | None) -> list[float]:
    """Optuna constraint values (<= 0 is feasible); a missing cost counts as violated.
    Measured latency (latency_ms) wins over predicted (predicted_latency_ms)."""
    out = []
    if max_bytes is not None:
        v = costs.get("size_bytes")
        out.append(float(v) - float(max_bytes) if v is not None else MISSING_VIOLATION)
    if max_latency_ms is not None:
        v = costs.get("latency_ms", costs.get("predicted_latency_ms"))
        out.append(float(v) - float(max_latency_ms) if v is not None else MISSING_VIOLATION)
    return out


def constraints_func(trial, max_bytes: float | None = None, max_latency_ms: float | None = None) -> list[float]:
    """For the Optuna sampler (bind budgets with functools.partial): reads the costs the
    searcher stored in the trial's user attr `nasmt_costs` before `tell`."""
    return constraint_values(trial.user_attrs.get(COSTS_ATTR) or {}, max_bytes, max_latency_ms)


def feasible(metrics: dict, max_bytes: float | None, max_latency_ms: float | None) -> bool:
    return all(v <= 0 for v in constraint_values(metrics, max_bytes, max_latency_ms))
