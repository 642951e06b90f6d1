"""Multi-task training and evaluation: a loop you can read top to bottom.

Loss = sum over tasks of weight_t * loss_t (cross-entropy, BCE-with-logits, or MSE on
standardized targets). Data lives on the trial's device as tensors; minibatches are
index slices. Seeds and devices are arguments. On CUDA the forward runs under bf16
autocast. A non-finite loss or a run past its time limit raises TrialError.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from nasmt.errors import TrialError
from nasmt.data.suite import TaskSuite, task_error


@dataclass
class TrainConfig:
    epochs: float = 1.0  # budget in epochs over the train split ...
    steps: int | None = None  # ... or in optimizer steps (wins when set)
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "cpu"
    time_limit_s: float | None = None  # TrialError past this many seconds
    eval_batch_size: int = 256


def tensors(data, split: str, device) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    x = torch.from_numpy(np.ascontiguousarray(data.x[split])).to(device)
    ys = {t: torch.from_numpy(np.ascontiguousarray(v)).to(device) for t, v in data.y[split].items()}
    return x, ys


def _loss(suite: TaskSuite, data, out: dict, ys: dict, idx) -> tuple[torch.Tensor, dict]:
    total = 0.0
    parts = {}
    for t in suite.tasks:
        logits = out[t.ident].float()
        y = ys[t.ident][idx]
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


def train(model: torch.nn.Module, suite: TaskSuite, data, cfg: TrainConfig, on_epoch=None) -> dict:
    """Train in place. Returns {'steps', 'epochs', 'train_time_s', 'loss'}."""
    dev = torch.device(cfg.device)
    model.to(dev).train()
    x, ys = tensors(data, "train", dev)
    n = x.shape[0]
    bs = min(cfg.batch_size, n)
    steps_per_epoch = max(1, n // bs)
    total = cfg.steps if cfg.steps is not None else max(1, round(cfg.epochs * steps_per_epoch))
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.15)
    amp = dev.type == "cuda"
    t0 = time.perf_counter()
    step, loss_val, perm, pos = 0, float("nan"), None, n
    while step < total:
        if pos + bs > n:
            perm = torch.randperm(n, generator=gen).to(dev)
            pos = 0
        idx = perm[pos : pos + bs]
        pos += bs
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            out = model(x[idx])
        loss, _ = _loss(suite, data, out, ys, idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        if step % 25 == 0 or step == total:
            loss_val = float(loss.detach())
            if not math.isfinite(loss_val):
                raise TrialError(f"non-finite loss ({loss_val}) at step {step}")
        if cfg.time_limit_s is not None and time.perf_counter() - t0 > cfg.time_limit_s:
            raise TrialError(f"trial exceeded its time limit of {cfg.time_limit_s:g} s at step {step}/{total}")
        if on_epoch is not None and step % steps_per_epoch == 0:
            on_epoch(step // steps_per_epoch, loss_val)
    return {"steps": step, "epochs": step / steps_per_epoch, "train_time_s": time.perf_counter() - t0, "loss": loss_val}


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
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


def evaluate(model, suite: TaskSuite, data, split: str, device="cpu", prefix: str = "", batch_size: int = 256) -> dict:
    x, ys = tensors(data, split, torch.device(device))
    return metrics_from_outputs(suite, data, predict(model, x, batch_size), ys, prefix)
