"""One rule for a finalized run's page: every view draws a trial at its full-budget
(`nasmt finalize`) metrics when it has them, else at its search metrics; the table lists
both budgets side by side. Checked on a real run: a copy of the session's `tiny_run`
finalized through the real CLI, its report written through the real CLI, and every
view's data read back from the page (and the selection ring and cards from a real
headless Chromium)."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest

from conftest import nasmt
from dashboard_helpers import chrome, figure_points, page_payload, table_rows, values, wait_js
from nasmt.run import (
    HV_REFERENCE,
    Objective,
    TrialStatus,
    hypervolume_2d,
    knee_point,
    normalize,
    objective_matrix,
    pareto_trials,
    read_trials,
    replace_records,
)

OBJS = [Objective("mean_error", "min"), Objective("params", "min")]
TASK_ERRORS = ["left.error", "right.error"]
SHARING = ["hard", "mmoe"]  # so that the sharing view is drawn (it needs two categories)


def _drawn(t, name: str):
    """What the page must show for trial `t` (written out here, not via nasmt's helper)."""
    return (t.final["metrics"] if t.final else t.metrics)[name]


def _as_expected(t):
    """The record with the metrics the page must draw it at (for nasmt.run's front helpers)."""
    return replace(t, metrics={**t.metrics, **(t.final or {}).get("metrics", {})})


@pytest.fixture(scope="module")
def finalized(tiny_finalized, tmp_path_factory):
    """(run dir, its records, the report page's payload, the page's path): a copy of the
    session's finalized tiny run (conftest.tiny_finalized)."""
    run = tmp_path_factory.mktemp("finalized-report") / "fin"
    shutil.copytree(tiny_finalized[0], run)
    trials = read_trials(run)
    replace_records(run, [t.with_metrics(sharing=SHARING[i % 2], balance="equal") for i, t in enumerate(trials)])
    page = run / "r.html"
    nasmt("report", run, "-o", page)
    return run, read_trials(run), page_payload(page.read_text(encoding="utf-8")), page


def _finalized_trials(trials):
    fin = [t for t in trials if t.is_finalized]
    assert fin, "finalize finalized nothing"
    # the check means something only if the budgets disagree
    assert any(t.final["metrics"]["mean_error"] != t.metrics["mean_error"] for t in fin)
    return fin


def test_every_view_draws_a_trial_at_the_same_numbers(finalized):
    run, trials, p, _ = finalized
    _finalized_trials(trials)
    comp = [t for t in trials if t.status == TrialStatus.COMPLETE]
    figs = p["figures"]
    assert {"pareto", "hypervolume", "tasks", "genome", "sharing"} <= set(figs)
    pareto, tasks, sharing = (figure_points(figs[k]) for k in ("pareto", "tasks", "sharing"))
    genome = {d["label"]: values(d["values"]) for d in figs["genome"]["data"][0]["dimensions"]}
    rows = {r["number"]: (g, r) for g, r in enumerate(table_rows(p))}
    for i, t in enumerate(comp):
        want = [_drawn(t, o.name) for o in OBJS]
        for view, pts in (("pareto", pareto), ("sharing", sharing)):
            assert pts[t.number], (view, t.number)
            for x, y in pts[t.number]:
                assert [x, y] == pytest.approx(want, rel=1e-5), (view, t.number, t.is_finalized)
        (tx, ty), = tasks[t.number]
        assert [tx, ty] == pytest.approx([_drawn(t, k) for k in TASK_ERRORS], rel=1e-5), ("tasks", t.number)
        # parallel coordinates: one line per complete trial, in row order
        assert [genome["mean error"][i], genome["parameters"][i]] == pytest.approx(want, rel=1e-5), ("genome", t.number)
        g, row = rows[t.number]
        assert p["table"]["drawn"][g] == pytest.approx(want, rel=1e-5), ("table drawn", t.number)
        # the table keeps both budgets side by side
        assert row["mean_error"] == pytest.approx(t.metrics["mean_error"], rel=1e-5)
        if t.is_finalized:
            assert row["final.mean_error"] == pytest.approx(t.final["metrics"]["mean_error"], rel=1e-5)
        else:
            assert row["final.mean_error"] is None


def test_fronts_knee_and_hypervolume_use_the_drawn_numbers(finalized):
    run, trials, p, _ = finalized
    _finalized_trials(trials)
    drawn = [_as_expected(t) for t in trials]
    front = pareto_trials(drawn, OBJS)
    assert p["runs"][0]["front"] == sorted(t.number for t in front)
    assert {r["number"] for r in table_rows(p) if r["front"]} == {t.number for t in front}
    knee = knee_point(front, OBJS)
    assert table_rows(p)[p["selected"]]["number"] == knee.number
    # hypervolume after the last trial: the normalized front of the drawn points
    cand = sorted((t for t in drawn if t.is_front_candidate), key=lambda t: t.number)
    norm = normalize(objective_matrix(cand, OBJS))[0]
    want = hypervolume_2d(norm, np.full(2, HV_REFERENCE))
    line = next(t for t in p["figures"]["hypervolume"]["data"] if t["mode"] == "lines")
    assert values(line["x"]) == [t.number for t in cand]
    assert values(line["y"])[-1] == pytest.approx(want, rel=1e-9)
    assert p["runs"][0]["hypervolume"] == pytest.approx(want, rel=1e-9)


def test_browser_ring_and_cards_use_the_drawn_numbers(finalized, tmp_path):
    """The page's own script: the selection ring sits on the drawn point of a finalized
    trial, and the "best" cards are the best drawn values."""
    run, trials, p, page = finalized
    fin = _finalized_trials(trials)
    t = next(t for t in fin if t.final["metrics"]["mean_error"] != t.metrics["mean_error"])
    g = next(g for g, r in enumerate(table_rows(p)) if r["number"] == t.number)
    driver = chrome(tmp_path)
    try:
        driver.get(page.as_uri())
        wait_js(driver, "return document.body.dataset.ready === '1'")
        driver.execute_script("window.nasmt.select(arguments[0], false)", g)
        wait_js(driver, f"return document.body.dataset.selectedTrial === '{t.number}'", timeout=10)
        ring = driver.execute_script("""
            const t = document.getElementById('plot-pareto').data.find(t => t.name === 'selected');
            return [t.x[0], t.y[0]];""")
        cards = driver.execute_script("return document.getElementById('cards').textContent")
    finally:
        driver.quit()
    assert ring == pytest.approx([_drawn(t, o.name) for o in OBJS], rel=1e-5)
    best = min(_drawn(x, "mean_error") for x in trials if x.status == TrialStatus.COMPLETE)
    assert f"{best:.4g}best mean error" in cards
