"""MO-ASHA's rung decision on synthetic results (pure), and the scheduler's rungs."""

from __future__ import annotations

import numpy as np

from nasmt.run import Objective
from nasmt.run import crowding, nondominated_ranks
from nasmt.search.schedulers.mo_asha import MOASHAScheduler, rung_keeps, worst_where_non_finite

SEEN = np.array([[0.30, 100_000.0], [0.35, 90_000.0], [0.32, 120_000.0]])


def test_worse_error_but_far_cheaper_survives():
    assert rung_keeps(np.array([0.60, 1_000.0]), SEEN, 2)


def test_dominated_trial_stops():
    assert not rung_keeps(np.array([0.50, 200_000.0]), SEEN, 2)


def test_first_trial_at_a_rung_always_goes_on():
    assert rung_keeps(np.array([0.9, 1e9]), np.zeros((0, 2)), 3)


def test_a_tie_goes_against_the_newcomer():
    # two non-dominated points, both boundary points: with rf 4 only one of 2 goes on
    assert not rung_keeps(np.array([0.2, 200.0]), np.array([[0.3, 100.0]]), 4)
    assert rung_keeps(np.array([0.2, 50.0]), np.array([[0.3, 100.0]]), 4)  # it dominates: it goes on


def test_single_objective_is_plain_asha():
    seen = np.array([[0.1], [0.2], [0.3]])
    assert rung_keeps(np.array([0.15]), seen, 2)  # 2nd of 4: within the top ceil(4/2)
    assert not rung_keeps(np.array([0.25]), seen, 2)  # 3rd of 4


def test_objectives_unknown_at_the_rung_are_left_out():
    # measured latency: known to no trial before the end, so only the error decides
    seen = np.array([[0.30, np.nan], [0.35, np.nan]])
    assert rung_keeps(np.array([0.20, np.nan]), seen, 2)
    assert not rung_keeps(np.array([0.40, np.nan]), seen, 2)


def test_a_non_finite_value_ranks_worst_on_its_objective_and_does_not_erase_it():
    clean = np.array([[0.10, 1000.0], [0.20, 2000.0], [0.30, 3000.0]])
    assert not rung_keeps(np.array([0.90, 1500.0]), clean, 2)
    for bad in (np.nan, np.inf):  # a diverged trial's metric at the rung
        seen = np.array([[0.10, 1000.0], [0.20, 2000.0], [bad, 3000.0]])
        assert not rung_keeps(np.array([0.90, 1500.0]), seen, 2)  # still dominated by (0.10, 1000)
        # the newcomer itself diverged: it ranks worst on the error, and params still count
        assert not rung_keeps(np.array([bad, 1500.0]), clean, 2)
        assert rung_keeps(np.array([bad, 10.0]), clean[:2], 2)  # far cheaper: non-dominated, 2nd of 3


def test_worst_where_non_finite_replaces_only_the_bad_cells():
    P = worst_where_non_finite(np.array([[0.1, 5.0], [np.nan, 3.0], [0.3, np.inf]]))
    assert np.allclose(P, [[0.1, 5.0], [0.5, 3.0], [0.3, 7.0]])


def test_scheduler_turns_non_finite_reports_into_worst_values():
    s = MOASHAScheduler([Objective("mean_error", "min"), Objective("params", "min")], max_epochs=4,
                        min_epochs=1, reduction_factor=2)
    res = [{"epoch": 1, "mean_error": e, "params": p} for e, p in [(0.20, 2000), (0.10, 1000), (float("nan"), 3000)]]
    assert [s.on_trial_result(None, None, r) for r in res] == ["CONTINUE", "CONTINUE", "STOP"]
    assert s.on_trial_result(None, None, {"epoch": 1, "mean_error": 0.90, "params": 1500}) == "STOP"


def test_crowding_breaks_ties_inside_a_front():
    front = np.array([[0.0, 1.0], [0.5, 0.5], [0.52, 0.48], [1.0, 0.0]])
    assert (nondominated_ranks(front) == 0).all()
    d = crowding(front)
    assert np.isinf(d[[0, 3]]).all() and d[1] > 0 and d[2] > 0
    # a crowded newcomer in the middle of an existing front is cut first
    assert not rung_keeps(np.array([0.51, 0.49]), front, 2)


def test_scheduler_rungs_and_decisions():
    s = MOASHAScheduler([Objective("mean_error", "min"), Objective("params", "min")], max_epochs=8,
                        min_epochs=1, reduction_factor=2)
    assert sorted(s.rungs) == [1, 2, 4]
    res = [{"epoch": 1, "mean_error": e, "params": p} for e, p in [(0.3, 100), (0.2, 50), (0.9, 500)]]
    assert [s.on_trial_result(None, None, r) for r in res] == ["CONTINUE", "CONTINUE", "STOP"]
    assert s.on_trial_result(None, None, {"epoch": 3, "mean_error": 1.0, "params": 1e9}) == "CONTINUE"  # no rung
    assert s.on_trial_result(None, None, {"epoch": 8, "final": True}) == "CONTINUE"
