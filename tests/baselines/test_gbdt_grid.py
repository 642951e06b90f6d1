"""The tuned LightGBM reference (issue 17): per task a num_leaves x learning-rate grid,
every point early-stopped on the validation split, the lowest validation error chosen,
only the chosen model scored on test; every point and the choice are in the record."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nasmt.baselines.gbdt import GRID, fit_gbdt, fit_task, outputs, val_error
from nasmt.baselines.runner import fit_reference
from nasmt.data import load_data_cached
from nasmt.data.suite import load_suite, task_error
from nasmt.train import TrainConfig, metrics_from_outputs, tensors

ROOT = Path(__file__).resolve().parents[2]
PEOPLE = ROOT / "tasks" / "people.toml"
TINY = ((4, 31), (0.05, 0.3))  # 4 points: small enough for a test, far enough apart to disagree


@pytest.fixture(scope="module")
def people():
    suite = load_suite(PEOPLE)
    return suite, load_data_cached(suite)


def _val_metrics(suite, data, task, booster) -> dict:
    outs = {t.ident: outputs(booster, task, data, "val") if t.ident == task.ident else None for t in suite.tasks}
    one = type(suite)(suite.name, suite.data, (task,), suite.file)
    return metrics_from_outputs(one, data, {task.ident: outs[task.ident]}, tensors(data, "val", torch.device("cpu"))[1])


def test_the_grid_chooses_the_lowest_validation_error(people):
    suite, data = people
    outs, detail = fit_gbdt(suite, data, seed=0, splits=("val", "test"), grid=TINY)
    chosen_points = set()
    for t in suite.tasks:
        d = detail[t.ident]
        grid = d["grid"]
        assert [(p["num_leaves"], p["learning_rate"]) for p in grid] == [(4, 0.05), (4, 0.3), (31, 0.05), (31, 0.3)]
        errors = [p["val_error"] for p in grid]
        assert d["chosen"] == errors.index(min(errors))  # the argmin (first on a tie)
        assert (d["num_leaves"], d["learning_rate"]) == (grid[d["chosen"]]["num_leaves"], grid[d["chosen"]]["learning_rate"])
        assert d["best_iteration"] == grid[d["chosen"]]["best_iteration"]
        chosen_points.add(d["chosen"])
        # each recorded validation error is the point's own, recomputed by nasmt's metric code
        for p in grid:
            b = fit_task(t, data, 0, p["num_leaves"], p["learning_rate"])
            assert b.best_iteration == p["best_iteration"]
            m = _val_metrics(suite, data, t, b)
            assert task_error(t.metric, m[f"{t.ident}.{t.metric}"]) == pytest.approx(p["val_error"], rel=1e-4, abs=1e-6)
            assert val_error(b, t) == p["val_error"]
        # the scored outputs are the chosen point's
        val = _val_metrics(suite, data, t, fit_task(t, data, 0, d["num_leaves"], d["learning_rate"]))
        got = metrics_from_outputs(suite, data, outs["val"], tensors(data, "val", torch.device("cpu"))[1])
        assert got[f"{t.ident}.{t.metric}"] == pytest.approx(val[f"{t.ident}.{t.metric}"])
    assert len({p["val_error"] for t in suite.tasks for p in detail[t.ident]["grid"]}) > len(suite.tasks)  # points differ


def test_the_record_carries_the_grid(people):
    suite, data = people
    cfg = TrainConfig(steps=1, seed=0)
    rec = fit_reference("lightgbm", suite, data, cfg, None, {"suite": "people"}, gbdt_grid=((4,), (0.05, 0.3)))
    for t in suite.tasks:
        d = rec.detail[t.ident]
        assert len(d["grid"]) == 2 and d["num_leaves"] == 4
        assert d["val_error"] == min(p["val_error"] for p in d["grid"])
        assert task_error(t.metric, rec.metrics[f"{t.ident}.{t.metric}"]) == pytest.approx(d["val_error"], rel=1e-4, abs=1e-6)
    assert GRID == ((15, 63, 255), (0.03, 0.1))  # the default a user gets: a practitioner's small grid


def test_cli_grid_flags():
    from nasmt.baselines.cli import gbdt_grid
    from nasmt.cli import build_parser

    def parse(*flags):
        return gbdt_grid(build_parser().parse_args(["baselines", "--tasks", str(PEOPLE), "--out", "x", *flags]))

    assert parse() == GRID
    assert parse("--gbdt-leaves", "4,8,4", "--gbdt-lr", "0.2") == ((4, 8), (0.2,))
