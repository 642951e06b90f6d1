"""Choosing a candidate of a controllable front (nasmt/run/controllable.py): the quality
scale, budgets, preferences, task subsets and the one-line errors, on hand-made fronts."""

from __future__ import annotations

import pytest

from nasmt.run.controllable import SelectionError, select_candidate, task_quality


def _cand(i, left, right, params, latency):
    return {"id": i, "trial": 10 + i, "val_error": {"left": left, "right": right},
            "costs": {"params": params, "latency_ms": latency, "flops": params * 2, "bytes": params * 4,
                      "size_bytes": params}}


FRONT = [
    _cand(0, 0.10, 0.40, 90_000, 0.9),  # best on left, big
    _cand(1, 0.40, 0.10, 80_000, 0.8),  # best on right, big
    _cand(2, 0.25, 0.25, 40_000, 0.4),  # balanced, middle
    _cand(3, 0.50, 0.50, 5_000, 0.1),  # small and worst
]
NAMES = {"left": "Left digit", "right": "Right digit"}


def test_quality_is_the_error_placed_on_the_fronts_range():
    q = task_quality(FRONT, ["left", "right"])
    assert [round(x["left"], 6) for x in q] == [1.0, 0.25, 0.625, 0.0]
    assert [round(x["right"], 6) for x in q] == [0.25, 1.0, 0.625, 0.0]
    same = [_cand(0, 0.3, 0.3, 1, 1), _cand(1, 0.3, 0.2, 2, 2)]
    assert [x["left"] for x in task_quality(same, ["left"])] == [1.0, 1.0]  # no spread: all best


def test_preference_moves_the_choice_along_the_task_trade_off():
    picks = [select_candidate(FRONT, preference={"left": w, "right": 1 - w})[0] for w in (1.0, 0.8, 0.5, 0.2, 0.0)]
    assert picks == [0, 0, 2, 1, 1]
    i, info = select_candidate(FRONT)  # equal weights over every task
    assert i == 2 and info["tasks"] == ["left", "right"] and info["preference"] == {"left": 1.0, "right": 1.0}
    assert select_candidate(FRONT, preference={"Left digit": 1}, names=NAMES)[0] == 0  # original task names work too


def test_budget_keeps_only_candidates_within_every_limit():
    assert select_candidate(FRONT, budget={"params": 85_000}, preference={"left": 1})[0] == 2
    assert select_candidate(FRONT, budget={"latency_ms": 0.45, "params": 50_000}, preference={"right": 1})[0] == 2
    assert select_candidate(FRONT, budget={"latency_ms": 0.1})[0] == 3  # the limit is inclusive
    i, info = select_candidate(FRONT, budget={"params": 100_000}, preference={"left": 1})
    assert i == 0 and info["budget"] == {"params": 100_000.0}


def test_ties_go_to_the_cheaper_candidate():
    twins = [_cand(0, 0.2, 0.2, 9_000, 0.5), _cand(1, 0.2, 0.2, 8_000, 0.3), _cand(2, 0.3, 0.3, 1_000, 0.1)]
    assert select_candidate(twins)[0] == 1


def test_tasks_run_restrict_the_preference():
    i, info = select_candidate(FRONT, tasks=["right"])
    assert (i, info["tasks"], info["preference"]) == (1, ["right"], {"right": 1.0})
    with pytest.raises(SelectionError, match=r"^preference: task 'left' is weighted but not run \(tasks run: right\)$"):
        select_candidate(FRONT, tasks=["right"], preference={"left": 1.0})


@pytest.mark.parametrize("kw, field, text", [
    ({"preference": {"middle": 1}}, "preference", "unknown task 'middle' (tasks: left, right)"),
    ({"preference": {"left": -0.5}}, "preference", "weight of 'left' is negative (-0.5)"),
    ({"preference": {"left": 0, "right": 0}}, "preference", "every weight is 0"),
    ({"preference": {"left": float("nan")}}, "preference", "weight of 'left' must be a number"),
    ({"budget": {"watts": 3}}, "budget", "unknown cost 'watts' (costs: latency_ms, params, flops, bytes, size_bytes)"),
    ({"budget": {"params": -1}}, "budget", "limit of 'params' must be a number >= 0"),
    ({"tasks": ["middle"]}, "tasks", "unknown task 'middle'"),
    ({"budget": {"params": 1_000, "latency_ms": 0.05}}, "budget",
     "no candidate of the front meets params <= 1,000, latency_ms <= 0.05; the cheapest is candidate 3 (trial 13: "
     "params 5,000, latency_ms 0.1)"),
])
def test_bad_selections_are_one_line_naming_the_argument(kw, field, text):
    with pytest.raises(SelectionError) as e:
        select_candidate(FRONT, names=NAMES, **kw)
    assert e.value.field == field and str(e.value).startswith(f"{field}: ") and text in str(e.value)
    assert "\n" not in str(e.value)


def test_the_cheapest_is_judged_by_the_largest_cost_over_budget_ratio():
    # candidate 2 is 8x over on params; candidate 3 is 2x over on latency only: 3 is the cheapest
    with pytest.raises(SelectionError, match="the cheapest is candidate 3"):
        select_candidate(FRONT, budget={"params": 5_000, "latency_ms": 0.05})


def test_thinning_keeps_the_cheapest_each_tasks_best_then_spread():
    from types import SimpleNamespace

    from nasmt.run import Objective
    from nasmt.run.controllable_front import thin_front

    objs = [Objective("left.error", "min"), Objective("right.error", "min"), Objective("params", "min")]
    pts = [(0.10, 0.90, 900), (0.90, 0.10, 800), (0.50, 0.50, 100), (0.45, 0.55, 120), (0.30, 0.70, 500),
           (0.70, 0.30, 480), (0.52, 0.49, 110)]
    front = [SimpleNamespace(number=i, metrics={"left.error": a, "right.error": b, "params": p})
             for i, (a, b, p) in enumerate(pts)]
    assert [r.number for r in thin_front(front, objs, 3)] == [0, 1, 2]  # left's best, right's best, the cheapest
    four = [r.number for r in thin_front(front, objs, 4)]
    assert four[:3] == [0, 1, 2] and four[3] in (4, 5)  # then the point farthest from those three
    assert thin_front(front, objs, 7) == front and thin_front(front, objs, 1)[0].number == 2


def test_the_reports_map_answers_as_select_candidate_does():
    """nasmt/report/controllable.py ranks the candidates once per preference and answers a
    row of budgets at once: on seeded random fronts (ties included), every answer is
    select_candidate's (or -1 where it raises: nothing fits)."""
    import random

    from nasmt.report.controllable import _choices

    rng = random.Random(5)
    for _ in range(30):
        n = rng.randint(1, 12)
        cands = [{"id": i, "trial": i, "val_error": {"a": rng.choice([0.1, 0.2, 0.3, rng.random()]),
                                                      "b": rng.choice([0.4, 0.6, rng.random()]),
                                                      "c": rng.choice([0.5, 0.5, rng.random()])},
                  "costs": {"params": rng.choice([100, 200, 300, rng.randint(50, 1000)])}} for i in range(n)]
        pref = {"a": rng.choice([0.0, 0.3, 1.0]), "b": rng.random(), "c": rng.choice([0.0, 0.5])}
        budgets = [rng.uniform(0, 1100) for _ in range(15)] + [100.0, 200.0]
        want = []
        for b in budgets:
            try:
                want.append(select_candidate(cands, {"params": b * (1 + 1e-12)}, pref)[0])
            except SelectionError:
                want.append(-1)
        assert _choices(cands, pref, budgets) == want
