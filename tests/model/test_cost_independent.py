"""nasmt.model.cost on expert mixtures (MMoE, 2-level PLE) and task-group trees, on vector
and image inputs, against counts that do not use FlopCounterMode:

* params: a hand formula from the spec's numbers (conv / fc weights + biases, expert
  BatchNorms, gates), never `p.numel()` of the built modules;
* FLOPs: the same hand formula for multiply-accumulates (x 2, cost()'s convention), and
  forward hooks on every nn.Conv2d / nn.Linear counting the MACs of the shapes they see.

Each expert of a mixture runs once per forward and a mixture counts whole on every task
path through it; gates are Linear(cin, experts) on the (spatially averaged) input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from nasmt.model.build import build
from nasmt.model.cost import cost
from nasmt.space.spec import ArchSpec, BranchSpec, GroupSpec, OpSpec, StageSpec

torch.set_num_threads(1)
FLOPS_PER_MAC = 2


def op(name, **kw):
    return OpSpec.from_json({"op": name, **kw})


# ----------------------------------------------------------------------------- hand formulas


def linear(din, dout):
    """(params, MACs) of nn.Linear(din, dout) on one vector."""
    return din * dout + dout, din * dout


def conv_bn(cin, cout, k, hw_out):
    """(params, MACs) of ConvBNAct: bias-free k x k conv + BatchNorm affine (2 per channel)."""
    return cout * cin * k * k + 2 * cout, cout * cin * k * k * hw_out


def expert(cin, h, image, hw, k=3):
    """One mixture expert: conv(k, c=h, s=1) on an image of hw pixels, fc(h) on a vector."""
    return conv_bn(cin, h, k, hw) if image else linear(cin, h)


@dataclass
class Count:
    params: int = 0
    macs: int = 0

    def add(self, *pm):
        for p, m in pm:
            self.params += p
            self.macs += m
        return self


@dataclass
class Expected:
    stages: list = field(default_factory=list)  # Count per stage
    groups: dict = field(default_factory=dict)  # name -> Count
    branches: dict = field(default_factory=dict)  # task -> Count
    paths: dict = field(default_factory=dict)  # task -> (stages it reads, its group or None)


def mmoe_case(image: bool):
    """stem (conv 3x3 c=8 s=2 on 3x8x8 | fc(12 -> 32)) -> mmoe(n=3, h=16) read by tasks a, b;
    a: fc(8) + linear(3); b: linear(1)."""
    n, h = 3, 16
    if image:
        shape, cin, hw = (3, 8, 8), 8, 4 * 4
        stem = [op("conv", k=3, c=8, s=2)]
        stem_c = conv_bn(3, 8, 3, hw)
        a_in = (16 * hw, linear(16 * hw, 8))  # fc on an image flattens it: 16 x 4 x 4
    else:
        shape, cin, hw = (12,), 32, 1
        stem = [op("fc", h=32, act="relu")]
        stem_c = linear(12, 32)
        a_in = (16, linear(16, 8))
    spec = ArchSpec(
        space="t", input_shape=shape,
        stages=(StageSpec((*stem, op("mmoe", n=n, h=h))),),
        branches=(BranchSpec("a", 1, (op("fc", h=8, act="relu"),), (), 3), BranchSpec("b", 1, (), (), 1)),
    )
    e = expert(cin, h, image, hw)
    gate = linear(cin, n)  # one gate per reader (2)
    stage = Count().add(stem_c, *[e] * n, gate, gate)
    # b on an image: the implicit global pool, then linear(16 -> 1)
    return spec, Expected(
        stages=[stage],
        branches={"a": Count().add(a_in[1], linear(8, 3)), "b": Count().add(linear(h, 1))},
        paths={"a": (1, None), "b": (1, None)},
    )


def ple_case(image: bool):
    """stem -> ple(shared=2, own=1, levels=2, h=6) read by tasks a, b, c (three readers);
    a: linear(4); b: fc(5) + linear(2); c: linear(1)."""
    shared, own, h, readers = 2, 1, 6, 3
    if image:
        shape, cin, hw = (3, 8, 8), 8, 4 * 4
        stem = [op("conv", k=3, c=8, s=2)]
        stem_c = conv_bn(3, 8, 3, hw)
        b_fc = linear(h * hw, 5)
    else:
        shape, cin, hw = (10,), 24, 1
        stem = [op("fc", h=24, act="relu")]
        stem_c = linear(10, 24)
        b_fc = linear(h, 5)
    spec = ArchSpec(
        space="t", input_shape=shape,
        stages=(StageSpec((*stem, op("ple", shared=shared, own=own, levels=2, h=h))),),
        branches=(BranchSpec("a", 1, (), (), 4), BranchSpec("b", 1, (op("fc", h=5, act="relu"),), (), 2),
                  BranchSpec("c", 1, (), (), 1)),
    )
    experts = shared + readers * own  # per level: every expert runs once
    level1 = [expert(cin, h, image, hw)] * experts + [linear(cin, shared + own)] * readers  # reader gates
    level1.append(linear(cin, shared + readers * own))  # the shared gate feeding level 2
    level2 = [expert(h, h, image, hw)] * experts + [linear(h, shared + own)] * readers  # last: no shared gate
    stage = Count().add(stem_c, *level1, *level2)
    return spec, Expected(
        stages=[stage],
        branches={"a": Count().add(linear(h, 4)), "b": Count().add(b_fc, linear(5, 2)), "c": Count().add(linear(h, 1))},
        paths={t: (1, None) for t in "abc"},
    )


def tree_case(image: bool):
    """Two stages; group g taps stage 1 and adds its own layer; tasks x, y join g (x adds
    a layer of its own); task z taps stage 2 directly."""
    if image:
        shape = (3, 8, 8)
        s1 = [op("conv", k=3, c=8, s=2)]  # -> 8 x 4 x 4
        s1_c = conv_bn(3, 8, 3, 16)
        s2 = [op("conv", k=3, c=12, s=2)]  # -> 12 x 2 x 2
        s2_c = conv_bn(8, 12, 3, 4)
        g_layers = (op("conv", k=3, c=16),)  # -> 16 x 4 x 4
        g_c = conv_bn(8, 16, 3, 16)
        x_layers = (op("conv", k=3, c=4),)  # -> 4 x 4 x 4, then gap
        x_c = [conv_bn(16, 4, 3, 16), linear(4, 3)]
        y_c = [linear(16, 2)]  # gap -> linear
        z_c = [linear(12, 1)]
    else:
        shape = (9,)
        s1, s1_c = [op("fc", h=20, act="relu")], linear(9, 20)
        s2, s2_c = [op("fc", h=14, act="gelu")], linear(20, 14)
        g_layers, g_c = (op("fc", h=16, act="relu"),), linear(20, 16)
        x_layers = (op("fc", h=4, act="relu"),)
        x_c = [linear(16, 4), linear(4, 3)]
        y_c = [linear(16, 2)]
        z_c = [linear(14, 1)]
    spec = ArchSpec(
        space="t", input_shape=shape,
        stages=(StageSpec(tuple(s1)), StageSpec(tuple(s2))),
        branches=(BranchSpec("x", 1, x_layers, (), 3, group="g"), BranchSpec("y", 1, (), (), 2, group="g"),
                  BranchSpec("z", 2, (), (), 1)),
        groups=(GroupSpec("g", 1, g_layers),),
    )
    return spec, Expected(
        stages=[Count().add(s1_c), Count().add(s2_c)],
        groups={"g": Count().add(g_c)},
        branches={"x": Count().add(*x_c), "y": Count().add(*y_c), "z": Count().add(*z_c)},
        paths={"x": (1, "g"), "y": (1, "g"), "z": (2, None)},
    )


# ----------------------------------------------------------------------------- hooks


def macs_by_hooks(model: nn.Module, root: nn.Module, x) -> int:
    """MACs of every nn.Conv2d / nn.Linear under `root` in one forward of `model` on x,
    from the shapes each sees (a hook per call: a module run twice counts twice)."""
    total = 0

    def count(m, args, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            total += out.numel() * m.in_features

    hs = [m.register_forward_hook(count) for m in root.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in hs:
            h.remove()
    return total


CASES = {"mmoe": mmoe_case, "ple": ple_case, "tree": tree_case}


@pytest.mark.parametrize("image", [False, True], ids=["vector", "image"])
@pytest.mark.parametrize("family", list(CASES))
def test_cost_matches_hand_formula_and_hooks(family, image):
    spec, ex = CASES[family](image)
    assert spec.sharing == family
    torch.manual_seed(0)
    model = build(spec)
    c = cost(model, spec.input_shape)
    x = torch.zeros(1, *spec.input_shape)

    # per stage / group / branch: hand formula == cost(), and hooks == hand formula
    assert [s["params"] for s in c["stages"]] == [s.params for s in ex.stages]
    assert [s["flops"] for s in c["stages"]] == [FLOPS_PER_MAC * s.macs for s in ex.stages]
    assert [macs_by_hooks(model, st, x) for st in model.trunk] == [s.macs for s in ex.stages]
    assert {g: (v["params"], v["flops"]) for g, v in c["groups"].items()} == \
        {g: (v.params, FLOPS_PER_MAC * v.macs) for g, v in ex.groups.items()}
    assert {g: macs_by_hooks(model, m, x) for g, m in model.groups.items()} == {g: v.macs for g, v in ex.groups.items()}
    for t, b in ex.branches.items():
        ct = c["tasks"][t]
        assert (ct["branch_params"], ct["branch_flops"]) == (b.params, FLOPS_PER_MAC * b.macs), t
        assert macs_by_hooks(model, model.branches[t], x) == b.macs, t
        k, g = ex.paths[t]
        path = Count().add(*[(s.params, s.macs) for s in ex.stages[:k]], (b.params, b.macs))
        if g is not None:
            path.add((ex.groups[g].params, ex.groups[g].macs))
        assert (ct["path_params"], ct["path_flops"]) == (path.params, FLOPS_PER_MAC * path.macs), t

    # whole model: every module once (mixture experts run once however many read them)
    total = Count().add(*[(v.params, v.macs) for v in (*ex.stages, *ex.groups.values(), *ex.branches.values())])
    assert c["params"] == total.params
    assert c["flops"] == FLOPS_PER_MAC * total.macs == FLOPS_PER_MAC * macs_by_hooks(model, model, x)
