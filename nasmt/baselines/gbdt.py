"""Gradient-boosted trees, one LightGBM model per task: what most tabular users would
pick instead of a network, trained on the same encoded features and split.

Each task's model uses the task's own loss (binary log-loss, multiclass log-loss, L1 for
an MAE task, L2 for an RMSE task) and is early-stopped on the validation split on the
task's own metric (AUC, error rate, MAE, RMSE). Its raw scores are turned into the
outputs a network gives (logits; standardized regression values), so its metrics come
from the same code as every trial's (`nasmt.train.metrics_from_outputs`).
"""

from __future__ import annotations

import numpy as np
import torch

from nasmt.data.suite import TaskDef, TaskSuite

MAX_ROUNDS = 2000  # boosting rounds at most: early stopping ends well before on these data sizes
EARLY_STOPPING_ROUNDS = 50  # stop after this many rounds without a better validation metric
LEARNING_RATE = 0.05  # LightGBM's default is 0.1; a smaller rate with early stopping is the usual tabular setup
LEAVES = 31  # LightGBM's default num_leaves
# (kind, metric) -> (the LightGBM loss, the LightGBM metric early-stopped on): every
# pair `nasmt.data.suite.METRICS` allows; accuracy tasks stop on the error rate
SETUP = {
    ("binary", "auc"): ("binary", "auc"),
    ("binary", "accuracy"): ("binary", "binary_error"),
    ("multiclass", "accuracy"): ("multiclass", "multi_error"),
    ("regression", "mae"): ("regression_l1", "l1"),
    ("regression", "rmse"): ("regression", "rmse"),
}


def _params(t: TaskDef, n_out: int, seed: int) -> dict:
    loss, metric = SETUP[(t.kind, t.metric)]
    p = {
        "objective": loss, "metric": metric, "learning_rate": LEARNING_RATE, "num_leaves": LEAVES, "seed": seed,
        "deterministic": True, "force_row_wise": True, "num_threads": 1, "verbose": -1,
    }
    if t.kind == "multiclass":
        p["num_class"] = n_out
    return p


def fit_task(t: TaskDef, data, seed: int):
    """One task's booster, early-stopped on the validation split (`best_iteration` set)."""
    import lightgbm as lgb

    train = lgb.Dataset(data.x["train"], label=data.y["train"][t.ident], free_raw_data=False)
    val = lgb.Dataset(data.x["val"], label=data.y["val"][t.ident], reference=train)
    return lgb.train(
        _params(t, data.n_outputs[t.ident], seed), train, num_boost_round=MAX_ROUNDS, valid_sets=[val],
        valid_names=["val"], callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, first_metric_only=True, verbose=False)],
    )


def outputs(booster, t: TaskDef, data, split: str) -> torch.Tensor:
    """The booster's predictions as a network's outputs for `t`: class scores (N, K),
    a logit (N, 1), or the standardized regression value (N, 1)."""
    raw = np.asarray(booster.predict(data.x[split], num_iteration=booster.best_iteration, raw_score=True), dtype=np.float64)
    if t.kind == "regression":
        mean, std = data.target_stats[t.ident]
        raw = (raw - mean) / std
    return torch.from_numpy(raw.reshape(len(raw), -1).astype(np.float32))


def fit_gbdt(suite: TaskSuite, data, seed: int, splits: tuple[str, ...]) -> tuple[dict, dict]:
    """({split: {task: outputs}}, {task: {best_iteration, leaves}}) of one booster per task."""
    outs: dict = {s: {} for s in splits}
    detail = {}
    for t in suite.tasks:
        b = fit_task(t, data, seed)
        for s in splits:
            outs[s][t.ident] = outputs(b, t, data, s)
        best = b.best_iteration or b.current_iteration()
        leaves = sum(tree["num_leaves"] for tree in b.dump_model(num_iteration=best)["tree_info"])
        detail[t.ident] = {"best_iteration": int(best), "leaves": int(leaves)}
    return outs, detail
