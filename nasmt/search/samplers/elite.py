"""The best complete trials of a study, kept up to date one trial at a time.

`ranked` (evolution.py) orders complete trials best first: feasible before infeasible
(infeasible by total constraint violation), then by non-dominated rank, then widest
crowding distance, then trial number. Re-ranking the whole history at every ask costs
O(n * front) per ask (49.9 s at 10^4 trials in issue 19). `EliteArchive` gives the same
first `size` trials of that order while looking at each complete trial once:

* a feasible trial dominated by at least `size` other feasible trials never enters the
  first `size`: each of its dominators has a strictly lower rank, so `size` trials sort
  before it now and after any later addition (ranks never decrease when trials are
  added). It is dropped for good, and the points it dominates have as many dominators
  plus itself, so they are dropped too. Among the trials kept (the candidates), ranks are
  the same as in the whole history: a dominance chain to a kept trial passes through kept
  trials only; and the front the elite stops in holds no dropped trial, so its crowding
  distances are the same too;
* ranks are peeled again only when a new candidate can reach the elite's fronts: a new
  trial dominated by a candidate of the last front the elite reaches (or of a later one)
  ranks after that front, and so does everything it dominates, so the elite is unchanged;
* infeasible trials are ordered by (violation, number) only: the best `size` are kept.

`candidates` is what is still held: tests check it against the full re-rank."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence

import numpy as np
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from nasmt.run import crowding

ConstraintsFunc = Callable[[FrozenTrial], Sequence[float]]


def violation(trial: FrozenTrial, constraints_func: ConstraintsFunc | None) -> float:
    """Total constraint violation of a trial (0: feasible), recomputed with
    `constraints_func` (Optuna's convention: a value <= 0 is satisfied); no budgets: 0.
    A NaN value (a cost that could not be compared) counts as infinitely violated."""
    if constraints_func is None:
        return 0.0
    cons = [float(c) for c in constraints_func(trial)]
    return math.inf if any(math.isnan(c) for c in cons) else sum(max(0.0, c) for c in cons)


class EliteArchive:
    """`elite(trials)`: the first `size` trials of `ranked(complete trials)`, updated from
    the trials that finished since the last call (`trials`: the study's trials in number
    order, as `Study.get_trials` gives them)."""

    def __init__(self, size: int, directions: Sequence[StudyDirection],
                 constraints_func: ConstraintsFunc | None = None):
        if size < 1:
            raise ValueError(f"size must be at least 1 (got {size})")
        self.size = size
        self.constraints_func = constraints_func
        self._signs = np.array([1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in directions])
        k = len(self._signs)
        self._next = 0  # every trial before this index is finished and was looked at
        self._seen: set[int] = set()  # finished trials at or after _next already looked at
        self.candidates: list[FrozenTrial] = []  # feasible trials with fewer than `size` dominators
        self._values = np.zeros((0, k))  # their signed values (minimization)
        self._count = np.zeros(0, dtype=int)  # how many feasible trials dominate each
        self._rank = np.zeros(0, dtype=int)  # exact up to the elite's last front, a lower bound after
        self._last_front = -1  # rank of the elite's last front (-1: the candidates do not fill the elite)
        self._infeasible: list[tuple[float, int, FrozenTrial]] = []  # best `size` by (violation, number)
        self._unranked: list[FrozenTrial] = []  # feasible, a non-finite value: after every finite one
        self._elite: list[FrozenTrial] | None = None  # None: to be recomputed
        self.n_complete = 0  # complete trials looked at

    def elite(self, trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
        self.update(trials)
        if self._elite is None:
            self._elite = self._compute()
        return self._elite

    def update(self, trials: Sequence[FrozenTrial]) -> None:
        new = []
        for t in trials[self._next:]:
            if t.state.is_finished() and t.number not in self._seen:
                self._seen.add(t.number)
                if t.state == TrialState.COMPLETE:
                    new.append(t)
        while self._next < len(trials) and trials[self._next].state.is_finished():
            self._seen.discard(trials[self._next].number)
            self._next += 1
        self.n_complete += len(new)
        feasible = []
        for t in new:
            v = violation(t, self.constraints_func)
            x = np.asarray(t.values, dtype=float) * self._signs
            if v > 0:
                bisect.insort(self._infeasible, (v, t.number, t), key=lambda e: e[:2])
                del self._infeasible[self.size:]
                if len(self.candidates) + len(self._unranked) < self.size:
                    self._elite = None
            elif not np.isfinite(x).all():
                self._unranked.append(t)
                if self._last_front < 0:
                    self._elite = None
            else:
                feasible.append((t, x))
        if len(feasible) > 1:  # the best first: then the guard screens most of a long catch-up out
            feasible.sort(key=lambda e: float(e[1].sum()))
        for i in range(0, len(feasible), self.BATCH):
            self._add(feasible[i:i + self.BATCH])

    BATCH = 256  # trials compared at once (a resumed study's whole history arrives in one update)
    GUARD = 256  # candidates (fewest dominators first) a batch is screened against first

    def _add(self, batch: list[tuple[FrozenTrial, np.ndarray]]) -> None:
        """Add feasible trials with finite values: count their dominators among the
        candidates and the batch, count them among the candidates' dominators, drop
        whoever reaches `size`. A new trial that `size` of the guard (a few candidates, the
        least dominated) dominate is dropped at once: whatever it dominates has those
        dominators too, so it dominates no candidate and no trial kept from the batch."""
        V, X = self._values, np.array([x for _, x in batch])
        m = max(self.GUARD, self.size)
        if len(V) > m:
            G = V[np.argpartition(self._count, m)[:m]][:, None, :]
            ok = (np.all(G <= X[None], axis=2) & np.any(G < X[None], axis=2)).sum(axis=0) < self.size
            batch, X = [b for b, k in zip(batch, ok) if k], X[ok]
            if not batch:
                return
        C, B = V[:, None, :], X[None, :, :]
        above = np.all(C <= B, axis=2) & np.any(C < B, axis=2)  # [i, j]: candidate i dominates new j
        below = np.all(B <= C, axis=2) & np.any(B < C, axis=2)  # [i, j]: new j dominates candidate i
        within = np.all(X[:, None, :] <= X[None], axis=2) & np.any(X[:, None, :] < X[None], axis=2)
        n_above = above.sum(axis=0) + within.sum(axis=0)
        self._count = self._count + below.sum(axis=1)
        low = np.zeros(len(batch), dtype=int)  # a lower bound of each new trial's rank
        if len(batch) == 1 and n_above[0]:
            low[0] = int(self._rank[above[:, 0]].max()) + 1
        if ((n_above < self.size) & ((self._last_front < 0) | (len(batch) > 1) | (low <= self._last_front))).any():
            self._elite = None  # a new trial may rank in the elite's fronts: peel again
        self.candidates = self.candidates + [t for t, _ in batch]
        self._values = np.vstack([V, X])
        self._count = np.concatenate([self._count, n_above])
        self._rank = np.concatenate([self._rank, low])
        keep = self._count < self.size
        if not keep.all():
            self.candidates = [c for c, k in zip(self.candidates, keep) if k]
            self._values, self._count, self._rank = self._values[keep], self._count[keep], self._rank[keep]

    def _compute(self) -> list[FrozenTrial]:
        """Peel fronts off the candidates until they hold `size` trials; order them as
        `ranked` does; fill up with non-finite, then infeasible trials. A candidate's
        dominators are all candidates, so front 0 is the candidates nobody dominates, and
        each peeled front takes its dominance off the counts of the rest."""
        V, count = self._values, self._count.copy()
        rank = np.full(len(V), -1)
        alive = np.ones(len(V), dtype=bool)
        r, covered = 0, 0
        while covered < self.size and alive.any():
            front = np.flatnonzero(alive & (count == 0))
            rank[front] = r
            alive[front] = False
            covered += len(front)
            r += 1
            rest = np.flatnonzero(alive)
            if covered < self.size and len(rest):
                F, R = V[front][:, None, :], V[rest][None, :, :]
                count[rest] -= (np.all(F <= R, axis=2) & np.any(F < R, axis=2)).sum(axis=0)
        self._last_front = r - 1 if covered >= self.size else -1
        rank[alive] = r  # not peeled: a lower bound, after the elite's last front
        self._rank = rank
        crowd = np.zeros(len(V))
        numbers = np.array([t.number for t in self.candidates])
        for f in range(r):
            front = np.flatnonzero(rank == f)
            front = front[np.argsort(numbers[front], kind="stable")]  # `ranked`'s row order: ties in crowding follow it
            crowd[front] = crowding(V[front])
        order = sorted(np.flatnonzero(rank < r), key=lambda i: (rank[i], -crowd[i], numbers[i]))
        out = [self.candidates[i] for i in order[: self.size]]
        out += sorted(self._unranked, key=lambda t: t.number)[: self.size - len(out)]
        out += [e[2] for e in self._infeasible[: self.size - len(out)]]
        return out
