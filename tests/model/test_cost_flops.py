"""nasmt.model.cost: FLOPs and params against counts made without it.

Convention (torch.utils.flop_counter.FlopCounterMode, which cost() uses): 2 FLOPs per
multiply-accumulate of each convolution and matrix product; bias adds, BatchNorm,
activations and pools count 0.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
from torch import nn

from nasmt.model.build import build
from nasmt.model.cost import cost
from nasmt.space.derive import derive
from nasmt.space.grammar import load_grammar
from nasmt.space.spec import ArchSpec, BranchSpec, OpSpec, StageSpec

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
FLOPS_PER_MAC = 2


def op(name, **kw):
    return OpSpec.from_json({"op": name, **kw})


def _conv_macs(cin, cout, k, hout, wout, groups=1):
    return cout * (cin // groups) * k * k * hout * wout


def test_flops_of_a_fixed_spec_by_hand():
    # input 3 x 16 x 16
    spec = ArchSpec(
        space="t", input_shape=(3, 16, 16),
        stages=(
            StageSpec((op("conv", k=3, c=4, s=2), op("maxpool", k=2))),  # -> 4x8x8 -> 4x4x4
            StageSpec((op("dwsep", k=3, c=8, s=1), op("residual", k=3), op("avgpool", k=2))),  # -> 8x4x4 -> 8x2x2
        ),
        branches=(
            BranchSpec("a", 1, (), (op("gap"),), 3),  # 4 -> linear 3
            BranchSpec("b", 2, (op("fc", h=5, act="relu"),), (), 2),  # flatten 32 -> fc 5 -> linear 2
        ),
    )
    stage1 = _conv_macs(3, 4, 3, 8, 8)  # conv s=2: 16x16 -> 8x8
    stage2 = (
        _conv_macs(4, 4, 3, 4, 4, groups=4)  # depthwise 3x3
        + _conv_macs(4, 8, 1, 4, 4)  # pointwise 1x1
        + 2 * _conv_macs(8, 8, 3, 4, 4)  # residual: two 3x3 convs
    )
    branch_a = 4 * 3
    branch_b = 32 * 5 + 5 * 2
    assert (stage1, stage2, branch_a, branch_b) == (6912, 576 + 512 + 2 * 9216, 12, 170)  # the arithmetic, spelled out

    torch.manual_seed(0)
    c = cost(build(spec), spec.input_shape)
    assert [s["flops"] for s in c["stages"]] == [FLOPS_PER_MAC * stage1, FLOPS_PER_MAC * stage2]
    assert c["tasks"]["a"]["branch_flops"] == FLOPS_PER_MAC * branch_a
    assert c["tasks"]["b"]["branch_flops"] == FLOPS_PER_MAC * branch_b
    assert c["tasks"]["a"]["path_flops"] == FLOPS_PER_MAC * (stage1 + branch_a)  # a reads stage 1 only
    assert c["tasks"]["b"]["path_flops"] == FLOPS_PER_MAC * (stage1 + stage2 + branch_b)
    assert c["flops"] == FLOPS_PER_MAC * (stage1 + stage2 + branch_a + branch_b)  # the shared trunk once
    params = {
        "conv": 4 * 3 * 9 + 2 * 4,  # weights + BatchNorm affine
        "dwsep": 4 * 9 + 8 * 4 + 2 * 8,
        "residual": 2 * (8 * 8 * 9 + 2 * 8),
        "a": 4 * 3 + 3,
        "b": 32 * 5 + 5 + 5 * 2 + 2,
    }
    assert c["stages"][0]["params"] == params["conv"]
    assert c["stages"][1]["params"] == params["dwsep"] + params["residual"]
    assert c["params"] == sum(params.values())


def _macs_by_hooks(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of every Conv2d / Linear, from the shapes its forward sees."""
    total = 0

    def count(m, args, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            total += out[0].numel() * m.in_features

    hs = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(x)
    for h in hs:
        h.remove()
    return total


@pytest.mark.parametrize("gname,shape", [("conv", (1, 28, 28)), ("mlp", (23,))])
def test_flops_of_derived_architectures_match_a_shape_count(gname, shape):
    g = load_grammar(ROOT / "search_spaces" / f"{gname}.grammar")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=7))
    for _ in range(8):
        t = study.ask()
        spec = derive(g, t, ["a", "b"], shape, {"a": 10, "b": 1})
        study.tell(t, 0.0)
        model = build(spec)
        c = cost(model, spec.input_shape)
        assert c["flops"] == FLOPS_PER_MAC * _macs_by_hooks(model, torch.zeros(1, *shape)), spec
