"""The reference networks: the standard multi-task architectures a searched network is
compared with. Every one is a `nasmt.model.ops.MultiTaskNet` mapping a batch to
`{task ident: output}`, so `nasmt.train.train`, `nasmt.train.evaluate` and
`nasmt.model.cost.cost` treat them exactly like a trial's net.

Vector inputs (tabular suites), all made of the grammar's own ops (`nasmt.model.ops`):

* hard-shared bottom (Caruana 1997): a shared MLP of `BOTTOM_LAYERS` x `HIDDEN` units,
  then one tower per task (`TOWER_HIDDEN` units, then the task's output layer). An
  ordinary grammar network: `hard_shared_spec` -> `nasmt.model.build.build`.
* single-task: the same bottom and one tower, one network per task.
* MMoE (Ma et al. 2018, "Modeling Task Relationships in Multi-task Learning with
  Multi-gate Mixture-of-Experts"): `MMOE_EXPERTS` experts, each an MLP as deep and wide
  as the hard-shared bottom; per task a softmax gate (one linear layer on the input)
  mixes the experts' outputs for that task's tower. The grammar's `ops.MMoE` with
  `depth=BOTTOM_LAYERS`, wired into a MultiTaskNet directly: the grammar's `mmoe` op
  (and so an ArchSpec) has one-layer experts only, and the mixture must end the trunk,
  so deeper experts cannot be written as a spec.
* PLE (Tang et al. 2020, "Progressive Layered Extraction: A Novel Multi-Task Learning
  Model for Personalized Recommendations"): `PLE_LEVELS` levels of customized gate
  control (CGC); each level has `PLE_SHARED_EXPERTS` shared experts and
  `PLE_TASK_EXPERTS` experts per task (one `HIDDEN`-unit layer each, so the levels are as
  deep as the hard-shared bottom). A task's gate mixes the shared experts and its own;
  below the last level a shared gate mixes all experts into the next level's shared
  input. An ordinary grammar network: `ple_spec` (the `ple` op, then the towers) ->
  `nasmt.model.build.build`.

`mixture(net)` is the expert mixture of an MMoE / PLE reference and `gate_weights(net, x)`
its softmax mixture weights per level and task, read from the gates as the net runs.

Image inputs (MultiMNIST-like suites):

* LeNet shared trunk (Sener & Koltun 2018, "Multi-Task Learning as Multi-Objective
  Optimization", their MultiMNIST network): conv 5x5 (10) - maxpool - ReLU - conv 5x5
  (20) - dropout2d - maxpool - ReLU - linear 50 - ReLU shared; per task linear 50 - ReLU
  - dropout - linear (classes). Plain torch layers in a MultiTaskNet: the grammar's conv
  op has BatchNorm and applies ReLU before pooling, and it has no dropout2d.
* single-task: the same LeNet with one head, one network per task.
"""

from __future__ import annotations

import torch
from torch import nn

from nasmt.model import ops as O
from nasmt.model.build import build
from nasmt.model.ops import MultiTaskNet
from nasmt.space.spec import ArchSpec, BranchSpec, OpSpec, StageSpec

SPACE = "baselines"  # the space name of the references' specs

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


def _fc(h: int) -> OpSpec:
    return OpSpec("fc", (("h", h),))


def _towers(n_outputs: dict[str, int]) -> tuple[BranchSpec, ...]:
    """A tower per task on stage 1: one `TOWER_HIDDEN`-unit fc layer, then (implicit in
    every branch) the task's output layer (classes, or 1 unit)."""
    return tuple(BranchSpec(task=t, tap=1, head=(_fc(TOWER_HIDDEN),), out=n) for t, n in n_outputs.items())


def _spec(input_dim: int, ops: tuple[OpSpec, ...], n_outputs: dict[str, int]) -> ArchSpec:
    return ArchSpec(space=SPACE, input_shape=(input_dim,), stages=(StageSpec(ops),), branches=_towers(n_outputs))


def hard_shared_spec(input_dim: int, n_outputs: dict[str, int]) -> ArchSpec:
    """The hard-shared bottom as a grammar architecture: one stage of `BOTTOM_LAYERS`
    fc(`HIDDEN`) layers, a tower per task."""
    return _spec(input_dim, tuple(_fc(HIDDEN) for _ in range(BOTTOM_LAYERS)), n_outputs)


def ple_spec(input_dim: int, n_outputs: dict[str, int], levels: int = PLE_LEVELS,
             n_shared: int = PLE_SHARED_EXPERTS, n_task: int = PLE_TASK_EXPERTS) -> ArchSpec:
    """PLE as a grammar architecture: one stage holding ple(shared, own, levels, h=HIDDEN),
    every task reading it, a tower per task."""
    op = OpSpec("ple", (("h", HIDDEN), ("levels", levels), ("own", n_task), ("shared", n_shared)))
    return _spec(input_dim, (op,), n_outputs)


def hard_shared(input_dim: int, n_outputs: dict[str, int]) -> MultiTaskNet:
    """Hard parameter sharing: a shared MLP bottom and one tower per task (with one task:
    the single-task network)."""
    return build(hard_shared_spec(input_dim, n_outputs))


def ple(input_dim: int, n_outputs: dict[str, int], levels: int = PLE_LEVELS,
        n_shared: int = PLE_SHARED_EXPERTS, n_task: int = PLE_TASK_EXPERTS) -> MultiTaskNet:
    """Progressive Layered Extraction (Tang et al. 2020): stacked CGC levels, then one
    tower per task."""
    return build(ple_spec(input_dim, n_outputs, levels, n_shared, n_task))


def mmoe(input_dim: int, n_outputs: dict[str, int], n_experts: int = MMOE_EXPERTS) -> MultiTaskNet:
    """Multi-gate Mixture-of-Experts (Ma et al. 2018): shared `BOTTOM_LAYERS`-layer
    experts, one softmax gate on the input per task, one tower per task. Built like
    `build` builds an mmoe stage and its branches, with deeper experts (see the module
    docstring for why not from a spec)."""
    tasks = list(n_outputs)
    mix = O.MMoE(input_dim, n_experts, HIDDEN, len(tasks), image=False, depth=BOTTOM_LAYERS)
    towers = {t: nn.Sequential(O.FC(HIDDEN, TOWER_HIDDEN), nn.Linear(TOWER_HIDDEN, n))  # = build's fc(32) head
              for t, n in n_outputs.items()}
    return MultiTaskNet([nn.Sequential(mix)], towers, {t: 1 for t in tasks}, slots={t: i for i, t in enumerate(tasks)})


def mixture(net: MultiTaskNet) -> O.MMoE | O.PLE:
    """The expert mixture ending the trunk of an MMoE / PLE reference."""
    m = net.trunk[-1][-1]
    if not isinstance(m, (O.MMoE, O.PLE)):
        raise TypeError(f"the trunk ends in {type(m).__name__}, not an expert mixture")
    return m


def gate_weights(net: MultiTaskNet, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """The mixture weights of an MMoE / PLE reference on batch `x`, one dict per level
    (MMoE: one level), bottom first: per task its (N, experts) softmax weights and, below
    PLE's last level, "shared": the shared gate's. A task's row of weights follows the
    order the mixture stacks its experts in (MMoE: its experts; CGC: the shared experts,
    then the task's own; the shared gate: the shared experts, then every reader's own).
    Read from the gates' outputs while `net` runs on `x`, so they are the weights the
    forward pass mixed with."""
    m = mixture(net)
    reader = {i: t for t, i in net.slots.items()}
    found: list[dict[str, torch.Tensor]] = []
    hooks = []

    def keep(into: dict, name: str):
        return lambda _mod, _inp, out: into.__setitem__(name, torch.softmax(out, dim=-1))

    try:
        for level in (m.levels if isinstance(m, O.PLE) else [m]):
            found.append({})
            hooks += [g.register_forward_hook(keep(found[-1], reader[i])) for i, g in enumerate(level.gates)]
            if getattr(level, "shared_gate", None) is not None:
                hooks.append(level.shared_gate.register_forward_hook(keep(found[-1], "shared")))
        net(x)
    finally:
        for h in hooks:
            h.remove()
    return found


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
