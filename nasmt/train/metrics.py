"""Prediction and per-task metrics (accuracy, AUC, MAE / RMSE) with comparable errors."""

from __future__ import annotations

import numpy as np
import torch

from nasmt.data.suite import TaskSuite, task_error

EVAL_BATCH_SIZE = 256  # inference batch: bounds memory, results do not depend on it


def tensors(data, split: str, device) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A split of prepared data as tensors on `device`: (x, {task ident: targets})."""
    x = torch.from_numpy(np.ascontiguousarray(data.x[split])).to(device)
    ys = {t: torch.from_numpy(np.ascontiguousarray(v)).to(device) for t, v in data.y[split].items()}
    return x, ys


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = EVAL_BATCH_SIZE) -> dict[str, torch.Tensor]:
    """Outputs of `model` in eval mode (bf16 autocast on CUDA), as float32, per task."""
    model.eval()
    outs: dict[str, list] = {}
    for i in range(0, x.shape[0], batch_size):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=x.device.type == "cuda"):
            o = model(x[i : i + batch_size])
        for k, v in o.items():
            outs.setdefault(k, []).append(v.float())
    return {k: torch.cat(v) for k, v in outs.items()}


def auc(scores: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tie-averaged ranks)."""
    y = y.astype(bool)
    npos, nneg = int(y.sum()), int((~y).sum())
    if npos == 0 or nneg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s), dtype=np.float64)
    _, first, counts = np.unique(s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0  # 1-based average rank of each tie group
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def metrics_from_outputs(suite: TaskSuite, data, out: dict, ys: dict, prefix: str = "") -> dict:
    """Per-task metric and error, plus mean_error. Regression error is the metric divided
    by the train-split target std, so errors of different tasks are comparable."""
    res = {}
    errs = []
    for t in suite.tasks:
        o = out[t.ident].float().cpu()
        y = ys[t.ident].cpu()
        if t.kind == "multiclass":
            v = float((o.argmax(1) == y).float().mean())
        elif t.kind == "binary":
            if t.metric == "auc":
                v = auc(o[:, 0].numpy(), y.numpy())
            else:
                v = float(((o[:, 0] > 0).float() == y.float()).float().mean())
        else:
            mean, std = data.target_stats[t.ident]
            pred = o[:, 0] * std + mean
            d = pred - y.float()
            v = float(d.abs().mean()) if t.metric == "mae" else float(d.pow(2).mean().sqrt())
        e = task_error(t.metric, v)
        if t.kind == "regression":
            e = e / data.target_stats[t.ident][1]
        res[f"{prefix}{t.ident}.{t.metric}"] = v
        res[f"{prefix}{t.ident}.error"] = e
        errs.append(e)
    res[f"{prefix}mean_error"] = float(np.mean(errs))
    return res


def evaluate(model, suite: TaskSuite, data, split: str, device="cpu", prefix: str = "",
             batch_size: int = EVAL_BATCH_SIZE) -> dict:
    """Metrics of `model` on a split (leaves the model in eval mode)."""
    x, ys = tensors(data, split, torch.device(device))
    return metrics_from_outputs(suite, data, predict(model, x, batch_size), ys, prefix)
