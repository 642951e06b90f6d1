"""The reference networks: output shapes, gates that are softmaxes over the experts (one
gate per task), the task-specific experts of PLE, and Sener & Koltun's LeNet sizes."""

from __future__ import annotations

import pytest
import torch

from nasmt.baselines.nets import MMOE_EXPERTS, PLE_SHARED_EXPERTS, PLE_TASK_EXPERTS, MMoE, PLE, hard_shared, lenet
from nasmt.model.ops import MultiTaskNet

OUTS = {"a": 3, "b": 1, "c": 4}
DIN = 7


def _x(n=5, shape=(DIN,)):
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(0))


def _check_gate(w: torch.Tensor, n: int, k: int):
    assert w.shape == (n, k)
    assert (w >= 0).all()
    assert torch.allclose(w.sum(dim=-1), torch.ones(n), atol=1e-6)


@pytest.mark.parametrize("make", [MMoE, PLE, hard_shared])
def test_outputs_per_task(make):
    torch.manual_seed(0)
    out = make(DIN, OUTS)(_x())
    assert {k: tuple(v.shape) for k, v in out.items()} == {t: (5, n) for t, n in OUTS.items()}


def test_hard_shared_is_a_multitask_net():
    net = hard_shared(DIN, OUTS)
    assert isinstance(net, MultiTaskNet) and net.taps == {t: 1 for t in OUTS}


def test_mmoe_one_softmax_gate_per_task_over_the_experts():
    torch.manual_seed(0)
    net = MMoE(DIN, OUTS)
    x = _x()
    w = net.gate_weights(x)
    assert set(w) == set(OUTS)
    for t in OUTS:
        _check_gate(w[t], 5, MMOE_EXPERTS)
    assert not torch.allclose(w["a"], w["b"])  # each task has its own gate
    # a task's output reads only its own gate
    before = net(x)["a"].detach().clone()
    with torch.no_grad():
        net.gates["b"].weight[0].add_(1.0)  # one expert's logit: softmax ignores a shift of all
    assert torch.equal(net(x)["a"], before)
    with torch.no_grad():
        net.gates["a"].weight[0].add_(1.0)
    assert not torch.allclose(net(x)["a"], before)


def test_ple_gates_per_level():
    torch.manual_seed(0)
    net = PLE(DIN, OUTS, levels=2)
    levels = net.gate_weights(_x())
    assert len(levels) == 2
    for t in OUTS:  # a task gate mixes its own and the shared experts
        _check_gate(levels[0][t], 5, PLE_TASK_EXPERTS + PLE_SHARED_EXPERTS)
        _check_gate(levels[1][t], 5, PLE_TASK_EXPERTS + PLE_SHARED_EXPERTS)
    # below the last level the shared gate mixes every expert; the last level has none
    _check_gate(levels[0]["shared"], 5, PLE_SHARED_EXPERTS + PLE_TASK_EXPERTS * len(OUTS))
    assert "shared" not in levels[1]


def test_cgc_task_reads_only_its_own_and_the_shared_experts():
    """One level (CGC): another task's experts never reach a task's output."""
    torch.manual_seed(0)
    net = PLE(DIN, OUTS, levels=1)
    x = _x()
    before = net(x)["a"].detach().clone()
    with torch.no_grad():
        for e in net.levels[0].own["b"]:
            e.linear.weight.add_(1.0)
    assert torch.equal(net(x)["a"], before)
    with torch.no_grad():
        net.levels[0].shared[0].linear.weight.add_(1.0)
    assert not torch.allclose(net(x)["a"], before)


def test_ple_lower_level_shares_task_experts_through_the_shared_gate():
    torch.manual_seed(0)
    net = PLE(DIN, OUTS, levels=2)
    x = _x()
    before = net(x)["a"].detach().clone()
    with torch.no_grad():
        for e in net.levels[0].own["b"]:
            e.linear.weight.add_(1.0)
    assert not torch.allclose(net(x)["a"], before)


def test_lenet_is_sener_koltuns():
    torch.manual_seed(0)
    net = lenet((1, 28, 28), {"left": 10, "right": 10})
    linears = [m for m in net.trunk.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(320, 50)]  # 20 x 4 x 4 -> 50, as in their code
    out = net.eval()(_x(3, (1, 28, 28)))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"left": (3, 10), "right": (3, 10)}
