"""ArchSpec -> nn.Module, tracking channels and spatial size so every spec builds.

Rules that make every derivation build (no retries): a vector op on an image flattens
it first; a branch still holding an image at its end gets a global average pool before
its output layer; a pool or stride-2 op on a map already 1x1 is the identity.
Also: parameter counts and FLOPs (torch.utils.flop_counter) per stage, per branch and
per task path (the trunk prefix a task reads plus its branch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nasmt.model import ops as O
from nasmt.space.spec import ArchSpec, OpSpec


@dataclass
class _Shape:
    c: int  # channels (image) or features (vector)
    h: int = 0
    w: int = 0

    @property
    def image(self) -> bool:
        return self.h > 0


def _op(spec: OpSpec, s: _Shape) -> tuple[list[nn.Module], _Shape]:
    """Modules for one op and the shape after it."""
    name = spec.op
    g = spec.get
    if name in ("conv", "dwsep"):
        st = g("s", 1) if min(s.h, s.w) > 1 else 1
        cls = O.ConvBNAct if name == "conv" else O.DWSep
        m = cls(s.c, g("c"), g("k"), st)
        return [m], _Shape(g("c"), -(-s.h // st), -(-s.w // st))
    if name == "residual":
        return [O.Residual(s.c, g("k"))], s
    if name in ("maxpool", "avgpool"):
        k = g("k", 2)
        if min(s.h, s.w) < k:
            return [], s
        cls = nn.MaxPool2d if name == "maxpool" else nn.AvgPool2d
        return [cls(k, k)], _Shape(s.c, s.h // k, s.w // k)
    if name == "gap":
        return ([O.GlobalPool()], _Shape(s.c)) if s.image else ([], s)
    if name == "flatten":
        return ([nn.Flatten()], _Shape(s.c * s.h * s.w)) if s.image else ([], s)
    if name == "fc":
        mods: list[nn.Module] = []
        if s.image:
            mods.append(nn.Flatten())
            s = _Shape(s.c * s.h * s.w)
        mods.append(O.FC(s.c, g("h"), g("act", "relu")))
        return mods, _Shape(g("h"))
    if name == "dropout":
        p = float(g("p", 0.0))
        return ([nn.Dropout(p)] if p > 0 else []), s
    if name == "identity":
        return [], s
    raise ValueError(f"op {name!r} cannot be built")  # grammar validation prevents this


def _seq(specs, s: _Shape) -> tuple[nn.Sequential, _Shape]:
    mods: list[nn.Module] = []
    for o in specs:
        m, s = _op(o, s)
        mods.extend(m)
    return nn.Sequential(*mods), s


def _input_shape(shape) -> _Shape:
    shape = tuple(shape)
    if len(shape) == 3:
        return _Shape(shape[0], shape[1], shape[2])
    if len(shape) == 1:
        return _Shape(shape[0])
    raise ValueError(f"unsupported input shape {shape}")


def build(spec: ArchSpec) -> O.MultiTaskNet:
    """The multi-task network for `spec` (fp32; quantization is applied by nasmt.quant)."""
    s = _input_shape(spec.input_shape)
    trunk, shapes = [], []
    for st in spec.stages:
        m, s = _seq(st.ops, s)
        trunk.append(m)
        shapes.append(s)
    branches, taps = {}, {}
    for b in spec.branches:
        m, bs = _seq((*b.layers, *b.head), shapes[b.tap - 1])
        if bs.image:
            m.append(O.GlobalPool())
            bs = _Shape(bs.c)
        m.append(nn.Linear(bs.c, b.out))
        branches[b.task] = m
        taps[b.task] = b.tap
    return O.MultiTaskNet(trunk, branches, taps)


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _flops(m: nn.Module, x: torch.Tensor) -> tuple[int, torch.Tensor]:
    with FlopCounterMode(display=False) as fc:
        y = m(x)
    return int(fc.get_total_flops()), y


@torch.no_grad()
def cost(model: O.MultiTaskNet, input_shape) -> dict:
    """Params and FLOPs (per example) for the model, each stage, each branch, each task path."""
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
    for t, br in model.branches.items():
        f, _ = _flops(br, feats[model.taps[t] - 1])
        total_flops += f
        k = model.taps[t]
        out["tasks"][t] = {
            "branch_params": _params(br),
            "branch_flops": f,
            "path_params": sum(stage_params[:k]) + _params(br),
            "path_flops": sum(stage_flops[:k]) + f,
        }
    out["stages"] = [{"params": p, "flops": f} for p, f in zip(stage_params, stage_flops)]
    out["flops"] = total_flops
    model.train(was)
    return out
