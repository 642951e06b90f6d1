"""Training and metrics on real data (small)."""

from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from nasmt.model.build import build
from nasmt.data import load_data_cached
from nasmt.space.derive import derive
from nasmt.errors import TrialError
from nasmt.space.grammar import load_grammar, parse_grammar
from nasmt.data.suite import load_suite
from nasmt.train import TrainConfig, auc, evaluate, train

ROOT = Path(__file__).resolve().parents[2]


def test_auc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 200).astype(float)  # many ties
    y = rng.integers(0, 2, 200)
    pos, neg = s[y == 1], s[y == 0]
    ref = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))
    assert auc(s, y) == pytest.approx(ref)


def _spec(gname, suite, data, seed=0):
    g = load_grammar(ROOT / "search_spaces" / f"{gname}.grammar")
    t = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
    return derive(g, t, suite.tasks, data.input_shape, data.n_outputs)


def test_multitask_training_learns_multimnist():
    suite = load_suite(ROOT / "tests" / "data" / "mm_small.toml")
    data = load_data_cached(suite)
    g = parse_grammar(
        "trunk = conv(k=3, c=16, s=2) conv(k=3, c=32)\nbranch = tap(at=last) head\nhead = flatten() fc(h=64)\n",
        "fixed.grammar",
    )
    spec = derive(g, optuna.trial.FixedTrial({}), suite.tasks, data.input_shape, data.n_outputs)
    torch.manual_seed(0)
    m = build(spec)
    before = evaluate(m, suite, data, "val")
    info = train(m, suite, data, TrainConfig(epochs=6, seed=0))
    after = evaluate(m, suite, data, "val")
    assert info["steps"] == 6 * (1024 // 128)
    assert after["mean_error"] < before["mean_error"] - 0.1
    assert set(after) >= {"left.accuracy", "right.accuracy", "left.error", "mean_error"}


def test_tabular_suite_all_task_kinds():
    suite = load_suite(ROOT / "tasks" / "people.toml")
    data = load_data_cached(suite)
    spec = _spec("mlp", suite, data, seed=1)
    torch.manual_seed(0)
    m = build(spec)
    train(m, suite, data, TrainConfig(epochs=4, seed=0))
    res = evaluate(m, suite, data, "val")
    kinds = {t.kind for t in suite.tasks}
    assert kinds == {"binary", "multiclass", "regression"}
    inc = next(t for t in suite.tasks if t.kind == "binary")
    assert res[f"{inc.ident}.auc"] > 0.7  # real signal, far above chance (0.5)


def test_nan_loss_is_a_trial_error():
    suite = load_suite(ROOT / "tests" / "data" / "mm_small.toml")
    data = load_data_cached(suite)
    m = build(_spec("tiny", suite, data))
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(float("nan"))
    with pytest.raises(TrialError, match="non-finite loss"):
        train(m, suite, data, TrainConfig(steps=30))
