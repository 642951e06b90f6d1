"""Torch modules for the op vocabulary, and the multi-task network.

Everything in this file depends on torch alone: `nasmt.export` copies the source of
these classes into the generated `model.py`, so an exported model never imports nasmt.
"""

import torch
from torch import nn


class ConvBNAct(nn.Module):
    """conv(k, c, s): k x k convolution (same padding), BatchNorm, ReLU."""

    def __init__(self, cin: int, cout: int, k: int, s: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=s, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class DWSep(nn.Module):
    """dwsep(k, c, s): depthwise k x k + pointwise 1x1 convolution, BatchNorm, ReLU."""

    def __init__(self, cin: int, cout: int, k: int, s: int = 1):
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, k, stride=s, padding=k // 2, groups=cin, bias=False)
        self.pw = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.bn(self.pw(self.dw(x))))


class Residual(nn.Module):
    """residual(k): two k x k convolutions with a skip connection; keeps channels."""

    def __init__(self, c: int, k: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, k, padding=k // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, k, padding=k // 2, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.act = nn.ReLU()

    def forward(self, x):
        y = self.act(self.bn1(self.conv1(x)))
        return self.act(x + self.bn2(self.conv2(y)))


class GlobalPool(nn.Module):
    """gap(): global average pool, (N, C, H, W) -> (N, C)."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


class FC(nn.Module):
    """fc(h, act): linear layer with h units and an activation."""

    def __init__(self, din: int, h: int, act: str = "relu"):
        super().__init__()
        self.linear = nn.Linear(din, h)
        self.act_name = act
        self.act = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}[act]()

    def forward(self, x):
        return self.act(self.linear(x))


def expert(cin: int, h: int, image: bool, k: int = 3, depth: int = 1) -> nn.Module:
    """One expert of a mixture: conv(k, c=h) on images, fc(h) on vectors; with depth > 1,
    `depth` such layers in sequence (the grammar's experts have depth 1)."""
    if depth > 1:
        return nn.Sequential(*(expert(cin if i == 0 else h, h, image, k) for i in range(depth)))
    return ConvBNAct(cin, h, k, 1) if image else FC(cin, h, "relu")


def mix(gate: nn.Module, x, outs: list):
    """The softmax-gated sum of expert outputs `outs`, the gate reading `x` (images
    are averaged over space first)."""
    w = torch.softmax(gate(x.mean(dim=(2, 3)) if x.dim() == 4 else x), dim=-1)
    e = torch.stack(outs, dim=1)  # (N, experts, ...)
    return (w.reshape(w.shape + (1,) * (e.dim() - 2)) * e).sum(dim=1)


class MMoE(nn.Module):
    """mmoe(n, h): n shared experts mixed for each of `readers` readers (tasks or task
    groups) by its own softmax gate on the layer's input (Ma et al. 2018, "Modeling Task
    Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts").
    forward -> a tuple: one (N, h[, H, W]) mixture per reader. `depth`: layers per expert
    (the grammar's mmoe op: 1)."""

    def __init__(self, cin: int, n: int, h: int, readers: int, image: bool, k: int = 3, depth: int = 1):
        super().__init__()
        self.cin, self.n, self.h, self.readers, self.image, self.k = cin, n, h, readers, image, k
        self.depth = depth
        self.experts = nn.ModuleList(expert(cin, h, image, k, depth) for _ in range(n))
        self.gates = nn.ModuleList(nn.Linear(cin, n) for _ in range(readers))

    def forward(self, x):
        outs = [e(x) for e in self.experts]
        return tuple(mix(g, x, outs) for g in self.gates)


class CGC(nn.Module):
    """One level of PLE (a Customized Gate Control block): `shared` shared experts and
    `own` experts per reader; each reader's gate mixes the shared experts and its own;
    unless this is the last level, a shared gate mixes all experts into the next
    level's shared input."""

    def __init__(self, cin: int, shared: int, own: int, h: int, readers: int, image: bool, k: int, last: bool):
        super().__init__()
        self.shared = nn.ModuleList(expert(cin, h, image, k) for _ in range(shared))
        self.own = nn.ModuleList(nn.ModuleList(expert(cin, h, image, k) for _ in range(own)) for _ in range(readers))
        self.gates = nn.ModuleList(nn.Linear(cin, shared + own) for _ in range(readers))
        self.shared_gate = nn.Linear(cin, shared + readers * own) if not last and shared > 0 else None

    def forward(self, xs: list, s):
        shared = [e(s) for e in self.shared]
        own = [[e(x) for e in es] for x, es in zip(xs, self.own)]
        outs = [mix(g, x, shared + o) for g, x, o in zip(self.gates, xs, own)]
        if self.shared_gate is not None:
            s = mix(self.shared_gate, s, shared + [e for o in own for e in o])
        return outs, s


class PLE(nn.Module):
    """ple(shared, own, levels, h): `levels` stacked CGC levels (Tang et al. 2020,
    "Progressive Layered Extraction"); reader r's stream goes through its own experts and
    gate at every level. forward -> a tuple: one output per reader."""

    def __init__(self, cin: int, shared: int, own: int, levels: int, h: int, readers: int, image: bool, k: int = 3):
        super().__init__()
        self.cin, self.n_shared, self.n_own, self.n_levels = cin, shared, own, levels
        self.h, self.readers, self.image, self.k = h, readers, image, k
        self.levels = nn.ModuleList(
            CGC(cin if i == 0 else h, shared, own, h, readers, image, k, i == levels - 1) for i in range(levels)
        )

    def forward(self, x):
        xs, s = [x] * self.readers, x
        for level in self.levels:
            xs, s = level(xs, s)
        return tuple(xs)


class MultiTaskNet(nn.Module):
    """Shared trunk of stages; each task's branch reads the output of one stage, or of a
    task group (a partial branch shared by the tasks that join it).

    `taps[task]`: the 1-based stage a task reads; `groups[g]` a group's modules,
    `group_taps[g]` the stage it reads, `joins[task]` the group a task reads instead.
    A stage ending in an expert mixture outputs one tensor per reader: `slots[reader]`
    (reader: a task ident, or "group.<g>") picks its own. forward -> {task: output}.
    """

    def __init__(self, trunk: list, branches: dict, taps: dict, groups: dict | None = None,
                 group_taps: dict | None = None, joins: dict | None = None, slots: dict | None = None):
        super().__init__()
        self.trunk = nn.ModuleList(trunk)
        self.branches = nn.ModuleDict(branches)
        self.groups = nn.ModuleDict(groups or {})
        self.taps = dict(taps)
        self.group_taps = dict(group_taps or {})
        self.joins = dict(joins or {})
        self.slots = dict(slots or {})

    def read(self, feats: list, stage: int, reader: str):
        f = feats[stage - 1]
        return f[self.slots[reader]] if reader in self.slots else f

    def forward(self, x):
        feats = []
        for stage in self.trunk:
            x = stage(x)
            feats.append(x)
        g = {k: m(self.read(feats, self.group_taps[k], "group." + k)) for k, m in self.groups.items()}
        return {
            task: branch(g[self.joins[task]] if task in self.joins else self.read(feats, self.taps[task], task))
            for task, branch in self.branches.items()
        }


# The classes and functions model.py needs, in definition order.
EXPORTED_CLASSES = (ConvBNAct, DWSep, Residual, GlobalPool, FC, expert, mix, MMoE, CGC, PLE, MultiTaskNet)
