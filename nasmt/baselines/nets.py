"""The reference networks: the standard multi-task architectures a searched network is
compared with. Each maps a batch to `{task ident: output}` like
`nasmt.model.ops.MultiTaskNet` (the hard-shared ones *are* MultiTaskNets), so
`nasmt.train.train` and `nasmt.train.evaluate` treat them exactly like a trial's net.

Vector inputs (tabular suites):

* hard-shared bottom (Caruana 1997): a shared MLP of `BOTTOM_LAYERS` x `HIDDEN` units,
  then one tower per task (`TOWER_HIDDEN` units, then the task's output layer).
* single-task: the same bottom and one tower, one network per task.
* MMoE (Ma et al. 2018, "Modeling Task Relationships in Multi-task Learning with
  Multi-gate Mixture-of-Experts"): `MMOE_EXPERTS` experts, each an MLP as deep and wide
  as the hard-shared bottom; per task a softmax gate (one linear layer on the input)
  mixes the experts' outputs for that task's tower.
* PLE (Tang et al. 2020, "Progressive Layered Extraction: A Novel Multi-Task Learning
  Model for Personalized Recommendations"): `PLE_LEVELS` levels of customized gate
  control (CGC); each level has `PLE_SHARED_EXPERTS` shared experts and
  `PLE_TASK_EXPERTS` experts per task (one `HIDDEN`-unit layer each, so the levels are as
  deep as the hard-shared bottom). A task's gate mixes its own and the shared experts;
  below the last level a shared gate mixes all experts into the next level's shared input.

Image inputs (MultiMNIST-like suites):

* LeNet shared trunk (Sener & Koltun 2018, "Multi-Task Learning as Multi-Objective
  Optimization", their MultiMNIST network): conv 5x5 (10) - maxpool - ReLU - conv 5x5
  (20) - dropout2d - maxpool - ReLU - linear 50 - ReLU shared; per task linear 50 - ReLU
  - dropout - linear (classes).
* single-task: the same LeNet with one head, one network per task.
"""

from __future__ import annotations

import torch
from torch import nn

from nasmt.model.ops import FC, MultiTaskNet

HIDDEN = 64  # units of each hard-shared bottom layer and of each expert layer (mid-range of search_spaces/mlp.grammar)
BOTTOM_LAYERS = 2  # depth of the hard-shared bottom and of an MMoE expert
TOWER_HIDDEN = 32  # units of a task tower's hidden layer
MMOE_EXPERTS = 4  # experts of MMoE
PLE_LEVELS = 2  # CGC levels of PLE (one level = CGC); two one-layer levels match the bottom's depth
PLE_SHARED_EXPERTS = 2  # shared experts per PLE level
PLE_TASK_EXPERTS = 1  # task-specific experts per task per PLE level
# LeNet of Sener & Koltun's MultiMNIST code: conv widths, kernel, shared and head widths, dropout
LENET_CONV = (10, 20)
LENET_KERNEL = 5
LENET_HIDDEN = 50
LENET_DROPOUT = 0.5


def mlp(din: int, layers: int, width: int = HIDDEN) -> nn.Sequential:
    """`layers` ReLU layers of `width` units (nasmt's own FC op)."""
    return nn.Sequential(*(FC(din if i == 0 else width, width) for i in range(layers)))


def tower(din: int, out: int) -> nn.Sequential:
    """A task's tower: one hidden layer, then its output layer (classes, or 1 unit)."""
    return nn.Sequential(FC(din, TOWER_HIDDEN), nn.Linear(TOWER_HIDDEN, out))


def hard_shared(input_dim: int, n_outputs: dict[str, int]) -> MultiTaskNet:
    """Hard parameter sharing: a shared MLP bottom and one tower per task (with one task:
    the single-task network)."""
    return MultiTaskNet([mlp(input_dim, BOTTOM_LAYERS)], {t: tower(HIDDEN, n) for t, n in n_outputs.items()},
                        {t: 1 for t in n_outputs})


class MMoE(nn.Module):
    """Multi-gate Mixture-of-Experts (Ma et al. 2018): shared experts, one softmax gate on
    the input per task, one tower per task."""

    def __init__(self, input_dim: int, n_outputs: dict[str, int], n_experts: int = MMOE_EXPERTS):
        super().__init__()
        self.experts = nn.ModuleList(mlp(input_dim, BOTTOM_LAYERS) for _ in range(n_experts))
        self.gates = nn.ModuleDict({t: nn.Linear(input_dim, n_experts) for t in n_outputs})
        self.towers = nn.ModuleDict({t: tower(HIDDEN, n) for t, n in n_outputs.items()})

    def gate_weights(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per task, the (N, experts) mixture weights: a softmax over the experts."""
        return {t: torch.softmax(g(x), dim=-1) for t, g in self.gates.items()}

    def forward(self, x):
        experts = torch.stack([e(x) for e in self.experts], dim=1)  # (N, experts, HIDDEN)
        w = self.gate_weights(x)
        return {t: tw(torch.einsum("ne,neh->nh", w[t], experts)) for t, tw in self.towers.items()}


def _mix(weights: torch.Tensor, outs: list[torch.Tensor]) -> torch.Tensor:
    return torch.einsum("ne,neh->nh", weights, torch.stack(outs, dim=1))


class CGCLevel(nn.Module):
    """One customized gate control level of PLE: shared and task-specific experts; a task
    gate per task over its own and the shared experts, and (below the last level) a
    shared gate over every expert."""

    def __init__(self, din: int, tasks: list[str], n_shared: int, n_task: int, shared_gate: bool):
        super().__init__()
        self.shared = nn.ModuleList(FC(din, HIDDEN) for _ in range(n_shared))
        self.own = nn.ModuleDict({t: nn.ModuleList(FC(din, HIDDEN) for _ in range(n_task)) for t in tasks})
        self.gates = nn.ModuleDict({t: nn.Linear(din, n_task + n_shared) for t in tasks})
        self.shared_gate = nn.Linear(din, n_shared + n_task * len(tasks)) if shared_gate else None

    def gate_weights(self, h: dict[str, torch.Tensor], hs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per task (and "shared" below the last level), the softmax mixture weights; a
        task's gate reads that task's input to this level, the shared gate the shared input."""
        w = {t: torch.softmax(g(h[t]), dim=-1) for t, g in self.gates.items()}
        if self.shared_gate is not None:
            w["shared"] = torch.softmax(self.shared_gate(hs), dim=-1)
        return w

    def forward(self, h: dict[str, torch.Tensor], hs: torch.Tensor):
        shared = [e(hs) for e in self.shared]
        own = {t: [e(h[t]) for e in es] for t, es in self.own.items()}
        w = self.gate_weights(h, hs)
        out = {t: _mix(w[t], own[t] + shared) for t in self.own}
        if self.shared_gate is None:
            return out, None
        return out, _mix(w["shared"], [o for t in self.own for o in own[t]] + shared)


class PLE(nn.Module):
    """Progressive Layered Extraction (Tang et al. 2020): stacked CGC levels, then one
    tower per task."""

    def __init__(self, input_dim: int, n_outputs: dict[str, int], levels: int = PLE_LEVELS,
                 n_shared: int = PLE_SHARED_EXPERTS, n_task: int = PLE_TASK_EXPERTS):
        super().__init__()
        tasks = list(n_outputs)
        self.levels = nn.ModuleList(
            CGCLevel(input_dim if i == 0 else HIDDEN, tasks, n_shared, n_task, shared_gate=i < levels - 1)
            for i in range(levels)
        )
        self.towers = nn.ModuleDict({t: tower(HIDDEN, n) for t, n in n_outputs.items()})

    def gate_weights(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Every level's gate weights (see `CGCLevel.gate_weights`), bottom level first."""
        h, hs, out = {t: x for t in self.towers}, x, []
        for lv in self.levels:
            out.append(lv.gate_weights(h, hs))
            h, hs = lv(h, hs)
        return out

    def forward(self, x):
        h, hs = {t: x for t in self.towers}, x
        for lv in self.levels:
            h, hs = lv(h, hs)
        return {t: tw(h[t]) for t, tw in self.towers.items()}


def _lenet_flat(input_shape: tuple[int, int, int]) -> int:
    """Features after LeNet's convolutions and pools (320 for 28 x 28 inputs)."""
    _, h, w = input_shape
    for _ in LENET_CONV:
        h, w = (h - LENET_KERNEL + 1) // 2, (w - LENET_KERNEL + 1) // 2
    return LENET_CONV[-1] * h * w


def lenet(input_shape: tuple[int, int, int], n_outputs: dict[str, int]) -> MultiTaskNet:
    """Sener & Koltun's MultiMNIST LeNet: shared trunk, one head per task (with one task:
    the single-task network)."""
    c1, c2 = LENET_CONV
    trunk = nn.Sequential(
        nn.Conv2d(input_shape[0], c1, LENET_KERNEL), nn.MaxPool2d(2), nn.ReLU(),
        nn.Conv2d(c1, c2, LENET_KERNEL), nn.Dropout2d(LENET_DROPOUT), nn.MaxPool2d(2), nn.ReLU(),
        nn.Flatten(), nn.Linear(_lenet_flat(input_shape), LENET_HIDDEN), nn.ReLU(),
    )
    heads = {
        t: nn.Sequential(nn.Linear(LENET_HIDDEN, LENET_HIDDEN), nn.ReLU(), nn.Dropout(LENET_DROPOUT),
                         nn.Linear(LENET_HIDDEN, n))
        for t, n in n_outputs.items()
    }
    return MultiTaskNet([trunk], heads, {t: 1 for t in n_outputs})
