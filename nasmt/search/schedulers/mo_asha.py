"""Multi-objective asynchronous successive halving (`--scheduler mo-asha`).

ASHA (Li et al. 2020) stops a trial at a rung (epochs min_epochs * rf^k) unless it is
in the top 1/rf of the trials that reached that rung so far. Here "top" is over all the
search's objectives: trials are ordered by non-dominated rank (NSGA-II's fast
non-dominated sort), ties inside a front broken by crowding distance (boundary points
first), as in MO-ASHA (Schmucker et al. 2021, "Multi-objective asynchronous successive
halving"). Objectives known before training (params, FLOPs, size_bytes, predicted
latency) are in every epoch report, so they count from the first rung; an objective no
trial at a rung knows yet (NaN in every report, e.g. measured latency) is left out of
that comparison. A non-finite value of an objective the others do report (a diverged
regression trial's NaN MAE) ranks worst on that objective: it never erases the objective.

`rung_keeps` is the decision, a pure function; `MOASHAScheduler` is the Tune scheduler
that feeds it. A stopped trial is recorded `stopped` with its last rung's metrics and
never enters a Pareto set.
"""

from __future__ import annotations

import math

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from nasmt.run.pareto import crowding, nondominated_ranks
from nasmt.run.values import is_finite_number


def rung_keeps(candidate: np.ndarray, others: np.ndarray, reduction_factor: float) -> bool:
    """Whether a trial reaching a rung with objective vector `candidate` (to minimize)
    goes on, given the vectors of the trials that reached the rung before it: it must
    be among the first ceil(n / rf) of all n in (rank, -crowding) order."""
    P = np.vstack([others.reshape(-1, len(candidate)), candidate[None, :]]) if len(others) else candidate[None, :]
    P = worst_where_non_finite(P[:, np.isfinite(P).any(axis=0)])  # drop objectives no trial knows yet
    if not P.shape[1]:
        return True
    rank = nondominated_ranks(P)
    crowd = np.zeros(len(P))
    for r in np.unique(rank):
        idx = np.flatnonzero(rank == r)
        crowd[idx] = crowding(P[idx])
    # ties (same front, same crowding, e.g. two boundary points) go against the newcomer
    order = sorted(range(len(P)), key=lambda i: (rank[i], -crowd[i], i == len(P) - 1))
    keep = math.ceil(len(P) / reduction_factor)
    return order.index(len(P) - 1) < keep


def worst_where_non_finite(P: np.ndarray) -> np.ndarray:
    """A copy of the minimization matrix P where each non-finite value is replaced by a
    value worse than every finite value of its column (the column's maximum plus its
    span, or plus 1 when the span is 0): it ranks worst on that objective only."""
    P = np.array(P, dtype=float)
    for j in range(P.shape[1]):
        bad = ~np.isfinite(P[:, j])
        if bad.any() and not bad.all():
            col = P[~bad, j]
            span = col.max() - col.min()
            P[bad, j] = col.max() + (span if span > 0 else 1.0)
    return P


class MOASHAScheduler(FIFOScheduler):
    """Tune scheduler: decides at each rung with `rung_keeps` over the objectives."""

    def __init__(self, objectives, max_epochs: int, min_epochs: int = 1, reduction_factor: float = 2,
                 time_attr: str = "epoch"):
        super().__init__()
        self.objectives = list(objectives)
        self.time_attr, self.rf = time_attr, reduction_factor
        self.rungs: dict[int, list[np.ndarray]] = {}
        m = min_epochs
        while m < max_epochs:
            self.rungs[int(m)] = []
            m *= reduction_factor
        self.stopped = 0

    def vector(self, result: dict) -> np.ndarray:
        out = []
        for o in self.objectives:
            v = result.get(o.name)
            ok = is_finite_number(v)
            out.append(o.sign * float(v) if ok else np.nan)
        return np.array(out)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        epoch = result.get(self.time_attr)
        if result.get("final") or epoch not in self.rungs:
            return TrialScheduler.CONTINUE
        v = self.vector(result)
        seen = self.rungs[epoch]
        keep = rung_keeps(v, np.array(seen), self.rf)
        seen.append(v)
        if keep:
            return TrialScheduler.CONTINUE
        self.stopped += 1
        return TrialScheduler.STOP

    def debug_string(self) -> str:
        return f"MO-ASHA: rungs {sorted(self.rungs)}, {self.stopped} stopped"
