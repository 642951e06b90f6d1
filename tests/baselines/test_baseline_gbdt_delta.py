"""Δm on numbers with a closed form; the baseline record's JSON round trip; LightGBM set
up for every task kind and early-stopped on the validation split."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from nasmt.baselines import BaselineRecord, delta_m, read_baselines, write_baselines
from nasmt.baselines.gbdt import SETUP, fit_task
from nasmt.data.suite import METRICS, DataDef, TaskDef, TaskSuite, load_suite

ROOT = Path(__file__).resolve().parents[2]
TWO = TaskSuite("two", DataDef("csv"), (TaskDef("acc", "acc", "multiclass", "y1", "accuracy"),
                                         TaskDef("err", "err", "regression", "y2", "mae")))


def test_delta_m_closed_form():
    ref = {"acc.accuracy": 0.8, "err.mae": 2.5}
    # accuracy +0.1 on 0.8 (+12.5 %), MAE -0.5 on 2.5 (lower is better: +20 %) -> mean 16.25 %
    assert delta_m({"acc.accuracy": 0.9, "err.mae": 2.0}, ref, TWO) == pytest.approx(16.25)
    # worse on both: accuracy -25 %, MAE +40 % -> -32.5 %
    assert delta_m({"acc.accuracy": 0.6, "err.mae": 3.5}, ref, TWO) == pytest.approx(-32.5)
    assert delta_m(ref, ref, TWO) == 0.0


def test_delta_m_undefined():
    ref = {"acc.accuracy": 0.8, "err.mae": 2.5}
    assert delta_m({"acc.accuracy": 0.9}, ref, TWO) is None  # a task without a metric
    assert delta_m({"acc.accuracy": 0.9, "err.mae": float("nan")}, ref, TWO) is None
    assert delta_m({"acc.accuracy": 0.9, "err.mae": 1.0}, {**ref, "err.mae": 0.0}, TWO) is None  # reference 0


def test_record_round_trip(tmp_path):
    rec = BaselineRecord("mmoe", "network", "MMoE (Ma et al. 2018)", metrics={"mean_error": 0.25, "params": 10},
                         test_metrics={"mean_error": 0.3}, delta_m_val=1.5, delta_m_test=-2.0, settings={"suite": "s"})
    write_baselines(tmp_path, [rec])
    assert read_baselines(tmp_path) == [rec]
    assert read_baselines(tmp_path / "baselines.jsonl") == [rec]
    assert rec.value("mean_error") == 0.25 and rec.value("mean_error", "test") == 0.3 and rec.value("flops") is None
    assert read_baselines(tmp_path / "nothing") == []


def test_lightgbm_covers_every_task_kind_and_metric():
    assert set(SETUP) == {(kind, m) for m, kinds in METRICS.items() for kind in kinds}


def test_lightgbm_is_early_stopped_on_the_validation_split():
    """Validation targets turned against the training ones: the best round is at once,
    while on the true validation targets boosting goes on improving for a while."""
    from nasmt.data import load_data_cached

    suite = load_suite(ROOT / "tasks" / "people.toml")
    data = load_data_cached(suite)
    for ident, flip in (("income", lambda y: 1 - y), ("tenure", lambda y: -y)):
        t = suite.task(ident)
        honest = fit_task(t, data, seed=0).best_iteration
        y_val = {**data.y["val"], ident: np.ascontiguousarray(flip(data.y["val"][ident]))}
        fooled = fit_task(t, dataclasses.replace(data, y={**data.y, "val": y_val}), seed=0).best_iteration
        assert honest > 10 and fooled <= 2, (ident, honest, fooled)
