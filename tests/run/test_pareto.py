"""Pareto maths on synthetic points (pure numpy, no Ray)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nasmt.run import (
    Objective,
    TrialRecord,
    TrialStatus,
    crowding,
    hypervolume,
    hypervolume_2d,
    hypervolume_history,
    knee_point,
    nondominated_ranks,
    normalize,
    objective_matrix,
    pareto_mask,
    pareto_mask_naive,
    pareto_trials,
)


def test_pareto_mask_matches_the_naive_definition():
    rng = np.random.default_rng(0)
    for k in (1, 2, 3):
        P = rng.integers(0, 6, size=(80, k)).astype(float)
        P[3, 0] = np.nan
        assert (pareto_mask(P) == pareto_mask_naive(P)).all()


def test_hypervolume_of_a_staircase_and_its_history():
    P = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [0.9, 0.9]])
    ref = np.array([2.0, 2.0])
    # union of the three boxes: 2*1 + 1*2 - 1*1 + the extra corner 0.5*0.5
    assert np.isclose(hypervolume(P, ref), 3.25)
    hist = hypervolume_history(P, ref)
    assert np.allclose(hist, [2.0, 3.0, 3.25, 3.25])
    # 3-D by slicing equals inclusion-exclusion of two boxes
    Q = np.array([[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    assert np.isclose(hypervolume(Q, np.array([2.0, 2.0, 2.0])), 4 + 2 - 1)


def test_max_objectives_are_negated_and_fronts_skip_non_candidates():
    objs = [Objective("acc", "max"), Objective("params", "min")]

    def rec(n, acc, params, status=TrialStatus.COMPLETE, **m):
        return TrialRecord(number=n, status=status, metrics={"acc": acc, "params": params, **m})

    recs = [rec(0, 0.9, 100), rec(1, 0.8, 50), rec(2, 0.7, 200), rec(3, 0.99, 10, TrialStatus.STOPPED),
            rec(4, 0.95, 5, feasible=False)]
    assert np.allclose(objective_matrix(recs[:1], objs), [[-0.9, 100]])
    assert [t.number for t in pareto_trials(recs, objs)] == [0, 1]


def test_normalize_spans_zero_to_one():
    M = np.array([[1.0, 10.0], [3.0, 10.0], [np.nan, 0.0]])
    N, lo, hi = normalize(M)
    assert np.allclose(N[:2, 0], [0, 1]) and np.allclose(N[:2, 1], [0, 0])
    assert list(lo) == [1.0, 10.0] and list(hi) == [3.0, 10.0]


def test_pareto_mask_keeps_duplicates_of_front_points():
    P = np.array(list(itertools.product([0.0, 1.0], repeat=2)) + [[0.0, 0.0]])
    assert pareto_mask(P).tolist() == [True, False, False, False, True]


def test_hypervolume_any_dimension():
    ref = np.array([1.0, 1.0, 1.0])
    assert hypervolume(np.array([[0.0, 0.0, 0.0]]), ref) == pytest.approx(1.0)
    # two boxes overlapping in [0.5,1]^3 : 0.5 + 0.5 - 0.25
    pts = np.array([[0.5, 0.0, 0.0], [0.0, 0.5, 0.5]])
    assert hypervolume(pts, ref) == pytest.approx(0.5 + 0.25 - 0.125)
    assert hypervolume(np.array([[2.0, 0.0, 0.0], [np.nan, 0, 0]]), ref) == 0.0
    rng = np.random.default_rng(1)
    P = rng.random((30, 2))
    assert hypervolume(P, np.array([1.1, 1.1])) == pytest.approx(hypervolume_2d(P, np.array([1.1, 1.1])))
    P3 = rng.random((25, 3))  # against Monte Carlo
    X = rng.random((200_000, 3))
    dom = np.zeros(len(X), bool)
    for p in P3:
        dom |= np.all(X >= p, axis=1)
    assert hypervolume(P3, np.ones(3)) == pytest.approx(dom.mean(), abs=0.01)


def test_hypervolume_history_equals_prefix_recomputation():
    rng = np.random.default_rng(2)
    for k in (2, 3):
        P = rng.random((60, k))
        P[5] = np.nan
        P[7] = 2.0  # outside the reference box
        ref = np.full(k, 1.1)
        h = hypervolume_history(P, ref)
        expect = [hypervolume(P[: i + 1], ref) for i in range(len(P))]
        assert h == pytest.approx(expect)


def test_pareto_mask_matches_naive():
    rng = np.random.default_rng(3)
    for k in (2, 3):
        P = np.round(rng.random((300, k)) * 20)  # many ties and duplicates
        P[10] = np.nan
        assert pareto_mask(P).tolist() == pareto_mask_naive(P).tolist()


def test_nondominated_ranks_ranks_non_finite_rows_last():
    # this call never returned before: a NaN row is never on a front, so peeling never ended
    P = np.array([[1.0, 2.0], [np.nan, 1.0], [2.0, 1.0], [3.0, 3.0], [np.inf, 0.0], [0.5, -np.inf]])
    r = nondominated_ranks(P)
    assert r.tolist() == [0, 2, 0, 1, 2, 2]
    assert nondominated_ranks(np.array([[np.nan, 1.0]])).tolist() == [0]
    assert nondominated_ranks(np.zeros((0, 2))).tolist() == []


def test_every_public_pareto_function_handles_non_finite_rows():
    P = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [np.nan, 0.0, 0.0], [-np.inf, 5.0, 5.0], [0.5, 0.5, 0.5]])
    assert pareto_mask(P).tolist() == [True, True, False, False, True]
    assert (pareto_mask(P) == pareto_mask_naive(P)).all()
    ref = np.array([2.0, 2.0, 2.0])
    assert np.isclose(hypervolume(P, ref), hypervolume(P[[0, 1, 4]], ref))
    assert np.isfinite(hypervolume_history(P, ref)).all()
    assert np.isclose(hypervolume_2d(P[:, :2], ref[:2]), hypervolume_2d(P[[0, 1, 4], :2], ref[:2]))
    with pytest.raises(ValueError, match="non-finite"):
        crowding(P)
    Z, lo, hi = normalize(P)
    assert np.allclose(lo, [0.0, 0.0, 0.5]) and np.allclose(hi, [1.0, 1.0, 1.0])
    objs = [Objective("a", "min"), Objective("b", "min")]
    with pytest.raises(ValueError, match="finite"):
        knee_point([TrialRecord(number=0, status=TrialStatus.COMPLETE, metrics={"a": float("nan"), "b": 1.0})], objs)


def test_pareto_mask_beyond_two_objectives_matches_naive_on_many_points():
    rng = np.random.default_rng(3)
    for k in (3, 4):
        P = rng.random((600, k))
        P[::50, 1] = np.nan
        P[5] = P[7]  # a duplicate
        assert (pareto_mask(P) == pareto_mask_naive(P)).all()
        assert (pareto_mask(np.round(P * 4)) == pareto_mask_naive(np.round(P * 4))).all()  # many ties


def test_knee_point_is_the_point_nearest_the_ideal():
    objs = [Objective("err", "min"), Objective("params", "min")]
    pts = [(0.0, 100.0), (0.05, 30.0), (0.3, 20.0), (0.6, 10.0), (1.0, 0.0)]  # a bent front: knee at (0.05, 30)
    front = [TrialRecord(number=i, status=TrialStatus.COMPLETE, metrics={"err": e, "params": p})
             for i, (e, p) in enumerate(pts)]
    assert knee_point(front, objs).number == 1
    assert knee_point(front[::-1], objs).number == 1  # not a matter of order
    front[2] = TrialRecord(number=2, status=TrialStatus.COMPLETE, metrics={"err": 0.1, "params": 15.0})
    assert knee_point(front, objs).number == 2  # a point nearer the ideal takes over
