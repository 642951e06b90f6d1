"""The reference networks: made of the grammar's ops (hard-shared and PLE are built from
ArchSpecs, MMoE from ops.MMoE with deeper experts), their sizes, outputs per task, gates
that are softmaxes over the experts (one gate per task) and the weights the forward pass
mixes with, shared experts, the task-specific experts of PLE, and Sener & Koltun's LeNet."""

from __future__ import annotations

import pytest
import torch

from nasmt.baselines.nets import (BOTTOM_LAYERS, HIDDEN, MMOE_EXPERTS, PLE_SHARED_EXPERTS, PLE_TASK_EXPERTS,
                                  TOWER_HIDDEN, gate_weights, hard_shared, hard_shared_spec, lenet, mixture, mmoe,
                                  ple, ple_spec)
from nasmt.model import ops as O
from nasmt.model.build import build
from nasmt.model.cost import cost
from nasmt.model.ops import MultiTaskNet

OUTS = {"a": 3, "b": 1, "c": 4}
DIN = 7


def _x(n=5, shape=(DIN,)):
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(0))


def _lin(i, o):
    return i * o + o


def _check_gate(w: torch.Tensor, n: int, k: int):
    assert w.shape == (n, k)
    assert (w >= 0).all()
    assert torch.allclose(w.sum(dim=-1), torch.ones(n), atol=1e-6)


@pytest.mark.parametrize("make", [mmoe, ple, hard_shared])
def test_outputs_per_task(make):
    torch.manual_seed(0)
    net = make(DIN, OUTS)
    assert isinstance(net, MultiTaskNet) and net.taps == {t: 1 for t in OUTS}
    out = net(_x())
    assert {k: tuple(v.shape) for k, v in out.items()} == {t: (5, n) for t, n in OUTS.items()}


def test_sizes():
    """The references' architecture: bottom / experts, gates and towers, counted by hand."""
    towers = sum(_lin(HIDDEN, TOWER_HIDDEN) + _lin(TOWER_HIDDEN, n) for n in OUTS.values())
    mlp = _lin(DIN, HIDDEN) + (BOTTOM_LAYERS - 1) * _lin(HIDDEN, HIDDEN)
    tasks, level = len(OUTS), PLE_SHARED_EXPERTS + PLE_TASK_EXPERTS
    sizes = {
        hard_shared: mlp + towers,
        mmoe: MMOE_EXPERTS * mlp + tasks * _lin(DIN, MMOE_EXPERTS) + towers,
        ple: ((PLE_SHARED_EXPERTS + tasks * PLE_TASK_EXPERTS) * (_lin(DIN, HIDDEN) + _lin(HIDDEN, HIDDEN))
              + tasks * (_lin(DIN, level) + _lin(HIDDEN, level))  # task gates, both levels
              + _lin(DIN, PLE_SHARED_EXPERTS + tasks * PLE_TASK_EXPERTS) + towers),  # shared gate below the last
    }
    for make, n in sizes.items():
        net = make(DIN, OUTS)
        assert sum(p.numel() for p in net.parameters()) == n == cost(net, (DIN,))["params"], make.__name__


@pytest.mark.parametrize("make, spec, sharing", [(hard_shared, hard_shared_spec, "hard"), (ple, ple_spec, "ple")])
def test_built_from_a_spec(make, spec, sharing):
    """hard-shared and PLE are ordinary grammar networks: `build` of their ArchSpec."""
    s = spec(DIN, OUTS)
    assert s.sharing == sharing and len(s.stages) == 1
    assert [(b.task, b.tap, [str(o) for o in b.head], b.out) for b in s.branches] == [
        (t, 1, [f"fc(h={TOWER_HIDDEN})"], n) for t, n in OUTS.items()]
    x = _x()
    torch.manual_seed(0)
    want = build(s)(x)
    torch.manual_seed(0)
    got = make(DIN, OUTS)(x)
    assert all(torch.equal(got[t], want[t]) for t in OUTS)


def test_ple_spec_is_the_ple_op():
    [op] = ple_spec(DIN, OUTS).stages[0].ops
    assert op.op == "ple" and dict(op.params) == {"h": HIDDEN, "levels": 2, "own": PLE_TASK_EXPERTS,
                                                   "shared": PLE_SHARED_EXPERTS}
    m = mixture(ple(DIN, OUTS))
    assert isinstance(m, O.PLE) and (m.n_shared, m.n_own, m.n_levels, m.readers) == (
        PLE_SHARED_EXPERTS, PLE_TASK_EXPERTS, 2, len(OUTS))


def test_mmoe_is_the_grammars_mixture_with_multi_layer_experts():
    net = mmoe(DIN, OUTS)
    m = mixture(net)
    assert isinstance(m, O.MMoE) and (m.n, m.h, m.readers, m.depth) == (MMOE_EXPERTS, HIDDEN, len(OUTS), BOTTOM_LAYERS)
    for e in m.experts:  # each expert: an MLP as deep and wide as the hard-shared bottom
        assert [(f.linear.in_features, f.linear.out_features) for f in e] == [(DIN, HIDDEN)] + [(HIDDEN, HIDDEN)] * (
            BOTTOM_LAYERS - 1)
    assert net.slots == {t: i for i, t in enumerate(OUTS)}


def test_grammar_mmoe_keeps_one_layer_experts():
    """ops.MMoE's depth defaults to 1: the grammar's networks (their state dicts, hence
    exports and saved weights) are unchanged."""
    m = O.MMoE(DIN, 2, 8, 3, False)
    assert m.depth == 1 and all(isinstance(e, O.FC) for e in m.experts)
    assert "experts.0.linear.weight" in m.state_dict()


def test_mmoe_one_softmax_gate_per_task_over_shared_experts():
    torch.manual_seed(0)
    net = mmoe(DIN, OUTS)
    m, x = mixture(net), _x()
    [w] = gate_weights(net, x)
    assert set(w) == set(OUTS)
    for t in OUTS:
        _check_gate(w[t], 5, MMOE_EXPERTS)
    assert not torch.allclose(w["a"], w["b"])  # each task has its own gate
    with torch.no_grad():  # the weights gate_weights reports are the ones each task's output mixes with
        experts = torch.stack([e(x) for e in m.experts], dim=1)  # (N, experts, HIDDEN)
        out = net(x)
        for t in OUTS:
            assert torch.allclose(net.branches[t]((w[t].unsqueeze(-1) * experts).sum(dim=1)), out[t], atol=1e-5)
    # a task's output reads only its own gate
    before = net(x)["a"].detach().clone()
    with torch.no_grad():
        m.gates[net.slots["b"]].weight[0].add_(1.0)  # one expert's logit: softmax ignores a shift of all
    assert torch.equal(net(x)["a"], before)
    with torch.no_grad():
        m.gates[net.slots["a"]].weight[0].add_(1.0)
    assert not torch.allclose(net(x)["a"], before)
    # the experts are shared: one expert reaches every task
    before = {t: v.detach().clone() for t, v in net(x).items()}
    with torch.no_grad():
        m.experts[1][-1].linear.bias.add_(1.0)
    after = net(x)
    assert all(not torch.allclose(after[t], before[t]) for t in OUTS)


def test_ple_gates_per_level():
    torch.manual_seed(0)
    net = ple(DIN, OUTS, levels=2)
    levels = gate_weights(net, _x())
    assert len(levels) == 2
    for t in OUTS:  # a task gate mixes its own and the shared experts
        _check_gate(levels[0][t], 5, PLE_TASK_EXPERTS + PLE_SHARED_EXPERTS)
        _check_gate(levels[1][t], 5, PLE_TASK_EXPERTS + PLE_SHARED_EXPERTS)
    # below the last level the shared gate mixes every expert; the last level has none
    _check_gate(levels[0]["shared"], 5, PLE_SHARED_EXPERTS + PLE_TASK_EXPERTS * len(OUTS))
    assert "shared" not in levels[1]


def test_cgc_task_mixes_the_shared_experts_and_its_own():
    """One level (CGC): the gate weights are the ones the task's output mixes with, over
    the shared experts then the task's own; another task's experts never reach it."""
    torch.manual_seed(0)
    net = ple(DIN, OUTS, levels=1)
    lv, x = mixture(net).levels[0], _x()
    [w] = gate_weights(net, x)
    with torch.no_grad():
        out = net(x)
        for t in OUTS:
            experts = torch.stack([e(x) for e in [*lv.shared, *lv.own[net.slots[t]]]], dim=1)
            assert torch.allclose(net.branches[t]((w[t].unsqueeze(-1) * experts).sum(dim=1)), out[t], atol=1e-5)
    before = net(x)["a"].detach().clone()
    with torch.no_grad():
        for e in lv.own[net.slots["b"]]:
            e.linear.weight.add_(1.0)
    assert torch.equal(net(x)["a"], before)
    with torch.no_grad():
        lv.own[net.slots["a"]][0].linear.weight.add_(1.0)
    assert not torch.allclose(net(x)["a"], before)
    before = {t: v.detach().clone() for t, v in net(x).items()}
    with torch.no_grad():  # a shared expert reaches every task
        lv.shared[0].linear.weight.add_(1.0)
    after = net(x)
    assert all(not torch.allclose(after[t], before[t]) for t in OUTS)


def test_ple_lower_level_shares_task_experts_through_the_shared_gate():
    torch.manual_seed(0)
    net = ple(DIN, OUTS, levels=2)
    x = _x()
    before = net(x)["a"].detach().clone()
    with torch.no_grad():
        for e in mixture(net).levels[0].own[net.slots["b"]]:
            e.linear.weight.add_(1.0)
    assert not torch.allclose(net(x)["a"], before)


def test_mixture_of_a_net_without_one():
    with pytest.raises(TypeError, match="not an expert mixture"):
        mixture(hard_shared(DIN, OUTS))


def test_lenet_is_sener_koltuns():
    torch.manual_seed(0)
    net = lenet((1, 28, 28), {"left": 10, "right": 10})
    linears = [m for m in net.trunk.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(320, 50)]  # 20 x 4 x 4 -> 50, as in their code
    out = net.eval()(_x(3, (1, 28, 28)))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"left": (3, 10), "right": (3, 10)}
