"""Parameter counts and FLOPs per stage, per branch and per task path (the trunk prefix
a task reads plus its branch).

FLOPs are `torch.utils.flop_counter.FlopCounterMode`'s count for one example: 2 FLOPs
per multiply-accumulate of every convolution and matrix product (bias adds, BatchNorm,
activations and pools are not counted).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nasmt.model.ops import MultiTaskNet


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _flops(m: nn.Module, x: torch.Tensor) -> tuple[int, torch.Tensor]:
    with FlopCounterMode(display=False) as fc:
        y = m(x)
    return int(fc.get_total_flops()), y


@torch.no_grad()
def cost(model: MultiTaskNet, input_shape) -> dict:
    """Params and FLOPs (per example) for the model, each stage, each branch, each task
    path (the trunk prefix it reads, the task group it joins, its branch). A stage ending
    in an expert mixture counts whole on every path through it (all its experts run)."""
    was = model.training
    model.eval()
    x = torch.zeros(1, *input_shape)
    stage_flops, stage_params, feats = [], [], []
    for st in model.trunk:
        f, x = _flops(st, x)
        stage_flops.append(f)
        stage_params.append(_params(st))
        feats.append(x)
    out: dict = {"params": _params(model), "stages": [], "tasks": {}}
    total_flops = sum(stage_flops)
    group = {}
    for g, m in model.groups.items():
        f, y = _flops(m, model.read(feats, model.group_taps[g], "group." + g))
        group[g] = (f, _params(m), y)
        total_flops += f
    for t, br in model.branches.items():
        j = model.joins.get(t)
        f, _ = _flops(br, group[j][2] if j is not None else model.read(feats, model.taps[t], t))
        total_flops += f
        k = model.taps[t]
        gf, gp = group[j][:2] if j is not None else (0, 0)
        out["tasks"][t] = {
            "branch_params": _params(br),
            "branch_flops": f,
            "path_params": sum(stage_params[:k]) + gp + _params(br),
            "path_flops": sum(stage_flops[:k]) + gf + f,
        }
    out["stages"] = [{"params": p, "flops": f} for p, f in zip(stage_params, stage_flops)]
    out["groups"] = {g: {"params": p, "flops": f} for g, (f, p, _) in group.items()}
    out["flops"] = total_flops
    model.train(was)
    return out
