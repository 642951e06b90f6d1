"""The multi-task loss: sum over tasks of weight_t * loss_t.

Cross-entropy for multiclass tasks, BCE-with-logits for binary ones; for regression, on
standardized targets (train-split mean / std, `data.target_stats`), MSE (the default), L1
(what an MAE metric rewards: the median) or Huber (delta 1, i.e. one target std).

An ensemble network (nasmt.model.ops.Ensemble) outputs k rows per example in training:
each member is scored on its example's target (the loss is the mean over members, TabM).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nasmt.data.suite import TaskSuite


REG_LOSSES = {"mse": F.mse_loss, "l1": F.l1_loss, "huber": F.huber_loss}
MATCH = "match"  # per task: l1 where the metric is MAE, else mse


def task_losses(suite: TaskSuite, data, out: dict, ys: dict, reg_loss: str = "mse") -> tuple[torch.Tensor, dict]:
    """(weighted total, {task ident: its loss}) of one batch: `out` the model's outputs,
    `ys` the batch's targets, both keyed by task ident; `reg_loss` one of REG_LOSSES or
    "match" (l1 for a task scored by MAE, mse otherwise)."""
    total = 0.0
    parts = {}
    for t in suite.tasks:
        logits = out[t.ident].float()
        y = ys[t.ident]
        if logits.shape[0] != y.shape[0]:  # an ensemble's members: k consecutive rows per example
            y = y.repeat_interleave(logits.shape[0] // y.shape[0], dim=0)
        if t.kind == "multiclass":
            l = F.cross_entropy(logits, y)
        elif t.kind == "binary":
            l = F.binary_cross_entropy_with_logits(logits[:, 0], y.float())
        else:
            mean, std = data.target_stats[t.ident]
            fn = ("l1" if t.metric == "mae" else "mse") if reg_loss == MATCH else reg_loss
            l = REG_LOSSES[fn](logits[:, 0], (y.float() - mean) / std)
        parts[t.ident] = l
        total = total + t.weight * l
    return total, parts
