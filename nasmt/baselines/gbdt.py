"""Gradient-boosted trees, one LightGBM model per task: what most tabular users would
pick instead of a network, trained on the same encoded features and split, and tuned
the way a practitioner tunes it, so the comparison is against a tuned GBDT.

Each task's model uses the task's own loss (binary log-loss, multiclass log-loss, L1 for
an MAE task, L2 for an RMSE task) and is early-stopped on the validation split on the
task's own metric (AUC, error rate, MAE, RMSE). A small grid (num_leaves x learning
rate, `GRID`; `nasmt baselines --gbdt-leaves/--gbdt-lr`) is searched per task: every
point is trained with early stopping, the point with the lowest validation error wins
(ties: the earlier point, i.e. fewer leaves), and only its model is scored on test. Each
task's record detail lists every point (leaves, rate, best iteration, validation error)
and the chosen one, and the chosen model's prediction time (the test split at once, and one
row at a time: informational, one thread). Its raw scores are turned into the outputs a network gives (logits;
standardized regression values), so its metrics come from the same code as every
trial's (`nasmt.train.metrics_from_outputs`).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from nasmt.data.suite import TaskDef, TaskSuite
from nasmt.errors import UserError

MAX_ROUNDS = 2000  # boosting rounds at most: early stopping ends well before on these data sizes
EARLY_STOPPING_ROUNDS = 50  # stop after this many rounds without a better validation metric
LEARNING_RATE = 0.05  # one model's rate when no grid is searched (`fit_task`'s default)
LEAVES = 31  # LightGBM's default num_leaves
# the grid searched per task: small, medium and large trees, a slow and a fast rate
GRID = ((15, 63, 255), (0.03, 0.1))  # (num_leaves values, learning-rate values)
# (kind, metric) -> (the LightGBM loss, the LightGBM metric early-stopped on): every
# pair `nasmt.data.suite.METRICS` allows; accuracy tasks stop on the error rate
SETUP = {
    ("binary", "auc"): ("binary", "auc"),
    ("binary", "accuracy"): ("binary", "binary_error"),
    ("multiclass", "accuracy"): ("multiclass", "multi_error"),
    ("regression", "mae"): ("regression_l1", "l1"),
    ("regression", "rmse"): ("regression", "rmse"),
}
HIGHER_IS_BETTER = {"auc"}  # LightGBM metrics above whose error is 1 - value
ONE_ROW_SAMPLES = 32  # test rows predicted one at a time for the record's one-row latency


def check_grid(leaves, rates) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """The grid as (leaves, rates) tuples, or a one-line UserError naming the flag."""
    leaves, rates = tuple(leaves), tuple(rates)
    if not leaves or any(isinstance(v, bool) or not isinstance(v, int) or v < 2 for v in leaves):
        raise UserError(f"--gbdt-leaves: every num_leaves must be an integer of at least 2 (got {list(leaves)})")
    if not rates or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1 for v in rates):
        raise UserError(f"--gbdt-lr: every learning rate must be in (0, 1] (got {list(rates)})")
    return tuple(dict.fromkeys(leaves)), tuple(dict.fromkeys(float(r) for r in rates))


def _params(t: TaskDef, n_out: int, seed: int, num_leaves: int, learning_rate: float) -> dict:
    loss, metric = SETUP[(t.kind, t.metric)]
    p = {
        "objective": loss, "metric": metric, "learning_rate": learning_rate, "num_leaves": num_leaves, "seed": seed,
        "deterministic": True, "force_row_wise": True, "num_threads": 1, "verbose": -1,
    }
    if t.kind == "multiclass":
        p["num_class"] = n_out
    return p


def fit_task(t: TaskDef, data, seed: int, num_leaves: int = LEAVES, learning_rate: float = LEARNING_RATE):
    """One task's booster, early-stopped on the validation split (`best_iteration` set)."""
    import lightgbm as lgb

    train = lgb.Dataset(data.x["train"], label=data.y["train"][t.ident], free_raw_data=False)
    val = lgb.Dataset(data.x["val"], label=data.y["val"][t.ident], reference=train)
    return lgb.train(
        _params(t, data.n_outputs[t.ident], seed, num_leaves, learning_rate), train, num_boost_round=MAX_ROUNDS, valid_sets=[val],
        valid_names=["val"], callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, first_metric_only=True, verbose=False)],
    )


def outputs(booster, t: TaskDef, data, split: str) -> torch.Tensor:
    """The booster's predictions as a network's outputs for `t`: class scores (N, K),
    a logit (N, 1), or the standardized regression value (N, 1)."""
    raw = np.asarray(booster.predict(data.x[split], num_iteration=booster.best_iteration, raw_score=True,
                                     num_threads=1), dtype=np.float64)  # one thread, as trained (OpenMP waits cost ms)
    if t.kind == "regression":
        mean, std = data.target_stats[t.ident]
        raw = (raw - mean) / std
    return torch.from_numpy(raw.reshape(len(raw), -1).astype(np.float32))


def val_error(booster, t: TaskDef) -> float:
    """The booster's validation error at its best iteration on the metric it was
    early-stopped on (1 - AUC, the error rate, MAE or RMSE)."""
    metric = SETUP[(t.kind, t.metric)][1]
    v = float(booster.best_score["val"][metric])
    return 1.0 - v if metric in HIGHER_IS_BETTER else v


def tune_task(t: TaskDef, data, seed: int, grid=GRID):
    """(the chosen booster, detail): every grid point early-stopped on validation, the
    lowest validation error chosen (first point on a tie)."""
    best, points = None, []
    for leaves in grid[0]:
        for rate in grid[1]:
            b = fit_task(t, data, seed, leaves, rate)
            it = b.best_iteration or b.current_iteration()
            points.append({"num_leaves": leaves, "learning_rate": rate, "best_iteration": int(it),
                           "val_error": val_error(b, t)})
            if best is None or points[-1]["val_error"] < points[best[0]]["val_error"]:
                best = (len(points) - 1, b)
    chosen = dict(points[best[0]])
    return best[1], {"num_leaves": chosen["num_leaves"], "learning_rate": chosen["learning_rate"],
                     "val_error": chosen["val_error"], "chosen": best[0], "grid": points}


def fit_gbdt(suite: TaskSuite, data, seed: int, splits: tuple[str, ...], grid=GRID) -> tuple[dict, dict]:
    """({split: {task: outputs}}, {task: {best_iteration, leaves, the chosen grid point,
    every point}}) of one tuned booster per task."""
    outs: dict = {s: {} for s in splits}
    detail = {}
    for t in suite.tasks:
        b, tuned = tune_task(t, data, seed, grid)
        for s in splits:
            t0 = time.perf_counter()
            outs[s][t.ident] = outputs(b, t, data, s)
            tuned[f"predict_s_{s}"] = time.perf_counter() - t0  # the whole split, one thread (informational)
        best = b.best_iteration or b.current_iteration()
        leaves = sum(tree["num_leaves"] for tree in b.dump_model(num_iteration=best)["tree_info"])
        detail[t.ident] = {"best_iteration": int(best), "leaves": int(leaves), **tuned, "one_row_s": _one_row_s(b, data)}
    return outs, detail


def _one_row_s(booster, data, rows: int = ONE_ROW_SAMPLES) -> float:
    """Median seconds of predicting one row at a time (first `rows` test rows, one thread)."""
    x = data.x["test"]
    times = []
    for i in range(min(rows, len(x))):
        t0 = time.perf_counter()
        booster.predict(x[i : i + 1], num_iteration=booster.best_iteration, raw_score=True, num_threads=1)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))
