"""The multi-task loss: sum over tasks of weight_t * loss_t.

Cross-entropy for multiclass tasks, BCE-with-logits for binary ones, MSE on standardized
targets (train-split mean / std, `data.target_stats`) for regression.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nasmt.data.suite import TaskSuite


def task_losses(suite: TaskSuite, data, out: dict, ys: dict) -> tuple[torch.Tensor, dict]:
    """(weighted total, {task ident: its loss}) of one batch: `out` the model's outputs,
    `ys` the batch's targets, both keyed by task ident."""
    total = 0.0
    parts = {}
    for t in suite.tasks:
        logits = out[t.ident].float()
        y = ys[t.ident]
        if t.kind == "multiclass":
            l = F.cross_entropy(logits, y)
        elif t.kind == "binary":
            l = F.binary_cross_entropy_with_logits(logits[:, 0], y.float())
        else:
            mean, std = data.target_stats[t.ident]
            l = F.mse_loss(logits[:, 0], (y.float() - mean) / std)
        parts[t.ident] = l
        total = total + t.weight * l
    return total, parts
