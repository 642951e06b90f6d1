"""Pareto maths on plain numpy matrices (minimization; max objectives negated first by
`objective_matrix`): non-dominated masks, exact hypervolume and its history, the knee
point, and the run-level front (complete, within-budget trials only). No Ray, no torch.
"""

from __future__ import annotations

import math

import numpy as np

from nasmt.run.objectives import Objective, objective_matrix
from nasmt.run.record import TrialRecord, front_candidates

# Hypervolume reference point after min-max normalization of each objective over the
# trials shown: 10% past the worst value seen, so the worst point still adds volume.
HV_REFERENCE = 1.1
HV_BLOCK = 512  # rows screened against the front at once (`pareto_mask`, `hypervolume_history`)


def _finite_rows(P: np.ndarray) -> np.ndarray:
    """Rows with every value finite (NaN or +-inf anywhere: not comparable)."""
    return np.isfinite(P).all(axis=1) if len(P) else np.zeros(0, bool)


def pareto_mask(points: np.ndarray) -> np.ndarray:
    """Non-dominated rows of a (n, k) minimization matrix; a row with a non-finite value
    (NaN, +-inf) never is. Duplicate points are all kept.

    Two objectives: sort + sweep, O(n log n). More: rows in lexicographic order, each
    compared with the front found so far only (a row can only be dominated by a row
    that sorts before it), O(n * front size) instead of all pairs.
    """
    pts = np.asarray(points, dtype=float)
    n = len(pts)
    mask = np.zeros(n, dtype=bool)
    idx = np.flatnonzero(_finite_rows(pts))
    if len(idx) == 0:
        return mask
    P = pts[idx]
    if P.shape[1] == 1:
        mask[idx[P[:, 0] == P[:, 0].min()]] = True
        return mask
    order = np.lexsort(P.T[::-1])  # by the first objective, then the second, ...
    if P.shape[1] == 2:
        best_y = math.inf
        prev = None
        for o in order:
            x, y = P[o]
            if y < best_y:
                mask[idx[o]] = True
                best_y = y
                prev = (x, y)
            elif prev is not None and x == prev[0] and y == prev[1]:
                mask[idx[o]] = True  # exact duplicate of a front point
        return mask
    front = np.empty((0, P.shape[1]))
    # in blocks of rows: those the front found so far dominates are dropped at once (the
    # front only grows: a later row never dominates an earlier one), the rest one by one
    for s in range(0, len(order), HV_BLOCK):
        block = order[s:s + HV_BLOCK]
        if len(front):
            B = P[block][:, None, :]
            dominated = np.any(np.all(front[None] <= B, axis=2) & np.any(front[None] < B, axis=2), axis=1)
            block = block[~dominated]
        for o in block:
            p = P[o]
            if len(front) and np.any(np.all(front <= p, axis=1) & np.any(front < p, axis=1)):
                continue
            front = np.vstack([front, p[None, :]])
            mask[idx[o]] = True
    return mask


def nondominated_ranks(P: np.ndarray) -> np.ndarray:
    """Front index (0 = non-dominated) of each row of a minimization matrix (NSGA-II's
    non-dominated sort, by peeling fronts). Rows with a non-finite value rank last, all
    in the one rank after the finite rows' last front."""
    P = np.asarray(P, dtype=float)
    rank = np.full(len(P), -1)
    left = np.flatnonzero(_finite_rows(P))
    r = 0
    while len(left):
        m = pareto_mask(P[left])
        rank[left[m]] = r
        left = left[~m]
        r += 1
    rank[rank < 0] = r
    return rank


def crowding(P: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each row of one front (boundary points: infinite).
    Refuses a non-finite value (rank such rows apart first: `nondominated_ranks`)."""
    P = np.asarray(P, dtype=float)
    if not np.isfinite(P).all():
        raise ValueError("crowding: the front holds a non-finite value (NaN or inf); such rows have no distance")
    n, k = P.shape
    d = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(k):
        order = np.argsort(P[:, j], kind="stable")
        span = P[order[-1], j] - P[order[0], j]
        d[order[0]] = d[order[-1]] = np.inf
        if span > 0:
            d[order[1:-1]] += (P[order[2:], j] - P[order[:-2], j]) / span
    return d


def pareto_trials(trials: list[TrialRecord], objectives: list[Objective]) -> list[TrialRecord]:
    """The Pareto front: complete trials within budget only (failed, stopped and
    over-budget trials never are), sorted by the objectives."""
    comp = front_candidates(trials)
    mask = pareto_mask(objective_matrix(comp, objectives))
    front = [t for t, m in zip(comp, mask) if m]
    return sorted(front, key=lambda t: [o.sign * t.metrics[o.name] for o in objectives])


def front_numbers(trials: list[TrialRecord], objectives: list[Objective]) -> set[int]:
    """Trial numbers on the Pareto front."""
    return {t.number for t in pareto_trials(trials, objectives)}


def hypervolume_2d(points: np.ndarray, ref: np.ndarray) -> float:
    """Dominated area of minimization points (n, 2) w.r.t. reference point `ref` (rows
    with a non-finite value are ignored)."""
    P = np.asarray(points, float)
    P = P[_finite_rows(P) & np.all(P < ref, axis=1)] if len(P) else P
    if len(P) == 0:
        return 0.0
    P = P[pareto_mask(P)]
    P = P[np.argsort(P[:, 0])]
    hv, prev_y = 0.0, ref[1]
    for x, y in P:
        hv += (ref[0] - x) * (prev_y - y)
        prev_y = y
    return float(hv)


def knee_point(front: list[TrialRecord], objectives: list[Objective]) -> TrialRecord:
    """The front point closest to the ideal point after min-max normalization (refuses
    a point without a finite value for every objective)."""
    M = objective_matrix(front, objectives)
    if not len(M) or not np.isfinite(M).all():
        raise ValueError("knee_point: needs a non-empty front with a finite value for every objective")
    lo, hi = M.min(axis=0), M.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    d = np.linalg.norm((M - lo) / span, axis=1)
    return front[int(np.argmin(d))]


def normalize(M: np.ndarray, lo: np.ndarray | None = None, hi: np.ndarray | None = None):
    """Min-max normalize the columns of M (over its finite rows unless lo/hi are given);
    returns (normalized, lo, hi)."""
    ok = M[_finite_rows(M)] if len(M) else M
    k = M.shape[1]
    if lo is None or hi is None:
        lo, hi = (ok.min(axis=0), ok.max(axis=0)) if len(ok) else (np.zeros(k), np.ones(k))
    span = np.where(hi > lo, hi - lo, 1.0)
    return (M - lo) / span, lo, hi


def hypervolume(points: np.ndarray, ref: np.ndarray) -> float:
    """Exact dominated hypervolume of minimization points (n, k) w.r.t. `ref`.

    k = 1: a length; k = 2: `hypervolume_2d`; k >= 3: slicing along the last objective
    (exact, meant for fronts of up to a few hundred points). Rows with NaN are ignored.
    """
    P = np.asarray(points, float)
    ref = np.asarray(ref, float)
    if P.ndim != 2 or P.shape[1] != len(ref):
        raise ValueError(f"points must be (n, {len(ref)}), got {P.shape}")
    P = P[_finite_rows(P)]
    P = P[np.all(P < ref, axis=1)]
    if len(P) == 0:
        return 0.0
    k = P.shape[1]
    if k == 1:
        return float(ref[0] - P[:, 0].min())
    P = P[pareto_mask(P)]
    if k == 2:
        return hypervolume_2d(P, ref)
    # slices between consecutive distinct values of the last objective
    zs = np.unique(P[:, -1])
    hv = 0.0
    for i, z in enumerate(zs):
        top = zs[i + 1] if i + 1 < len(zs) else ref[-1]
        below = P[P[:, -1] <= z][:, :-1]
        hv += (top - z) * hypervolume(below, ref[:-1])
    return float(hv)


def hypervolume_history(points: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Hypervolume of the first i+1 rows for every i (rows in the order the caller gives:
    the report passes trial-number order, i.e. the order trials started).

    Incremental: only a point that no front point weakly dominates changes the front,
    and only then is the (small) front's hypervolume recomputed. NaN rows and rows not
    strictly better than `ref` in every objective leave the value unchanged, and so do
    rows with a non-finite value.
    """
    P = np.asarray(points, float)
    ref = np.asarray(ref, float)
    out = np.zeros(len(P))
    front = np.zeros((0, len(ref)))
    hv = 0.0
    usable = (np.isfinite(P).all(axis=1) & np.all(P < ref, axis=1)) if len(P) else np.zeros(0, bool)
    # in blocks: rows the front at the block's start already weakly dominates change
    # nothing (the front only improves), so only the others are walked one by one
    for s in range(0, len(P), HV_BLOCK):
        block = np.arange(s, min(s + HV_BLOCK, len(P)))
        cand = block[usable[block]]
        if len(front) and len(cand):
            cand = cand[~np.any(np.all(front[None, :, :] <= P[cand][:, None, :], axis=2), axis=1)]
        last = s
        for i in cand.tolist():
            out[last:i] = hv
            p = P[i]
            if not (len(front) and np.any(np.all(front <= p, axis=1))):
                keep = ~np.all(p <= front, axis=1) if len(front) else np.zeros(0, bool)
                front = np.vstack([front[keep], p[None, :]])
                hv = hypervolume(front, ref)
            last = i
        out[last:block[-1] + 1] = hv
    return out


def pareto_mask_naive(points: np.ndarray) -> np.ndarray:
    """O(n^2) reference for `pareto_mask`: every row against every row (numpy per row).

    For tests and benchmarks only."""
    P = np.asarray(points, float)
    n = len(P)
    mask = np.zeros(n, dtype=bool)
    ok = _finite_rows(P)
    Q = P[ok]
    for i in np.flatnonzero(ok):
        dom = np.all(Q <= P[i], axis=1) & np.any(Q < P[i], axis=1)
        mask[i] = not dom.any()
    return mask
