"""Loss balancing methods (nasmt.train.balance): each one's defining property on a toy
model, and their integration into the training loop on a tiny real model."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import small_conv_net
from nasmt.train import TrainConfig, TrainHook, train
from nasmt.train.balance import (
    METHODS,
    make_balancer,
    min_norm_weights,
    pcgrad_project,
    shared_parameters,
)

torch.set_num_threads(1)


class Toy(nn.Module):
    """A MultiTaskNet-shaped toy: a shared trunk and one linear head per task under `branches`."""

    def __init__(self, k: int = 2, d: int = 6, h: int = 16):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(d, h), nn.Tanh(), nn.Linear(h, h), nn.Tanh())
        self.branches = nn.ModuleDict({f"t{i}": nn.Linear(h, 1) for i in range(k)})

    def forward(self, x):
        f = self.trunk(x)
        return {t: b(f) for t, b in self.branches.items()}


def _toy(k=2, seed=0):
    torch.manual_seed(seed)
    m = Toy(k)
    x = torch.randn(64, 6)
    return m, x


def _losses(model, x, targets: dict, scale: dict | None = None) -> dict:
    out = model(x)
    return {t: (scale or {}).get(t, 1.0) * F.mse_loss(out[t][:, 0], y) for t, y in targets.items()}


def _start(method, model, lr=1e-3, steps_per_epoch=10, seed=0):
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    b = make_balancer(method)
    b.on_start(model, opt, list(model.branches), steps_per_epoch, seed)
    return b, opt


def _grads(model):
    return {n: (None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()}


def _flat_shared_grads(model, loss):
    ps = [p for _, p in shared_parameters(model)]
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, ps, retain_graph=True)])


def test_shared_parameters_are_everything_outside_branches():
    m, _ = _toy()
    m.trunk[0].bias.requires_grad_(False)
    names = [n for n, _ in shared_parameters(m)]
    assert names == ["trunk.0.weight", "trunk.2.weight", "trunk.2.bias"]


def test_make_balancer_rejects_unknown_methods():
    assert [make_balancer(m).name for m in METHODS] == list(METHODS)
    with pytest.raises(ValueError, match="bogus.*equal, uncertainty, dwa, gradnorm, pcgrad, mgda"):
        make_balancer("bogus")


def test_equal_gives_the_gradients_of_the_sum():
    m, x = _toy(3)
    ys = {"t0": x[:, 0], "t1": x[:, 1] * 2, "t2": -x[:, 2]}
    ref = copy.deepcopy(m)
    sum(_losses(ref, x, ys, {"t1": 0.5}).values()).backward()
    b, _ = _start("equal", m)
    losses = _losses(m, x, ys, {"t1": 0.5})
    total = b.backward(losses, 1, None)
    assert float(total) == pytest.approx(float(sum(losses.values()).detach()))
    got, want = _grads(m), _grads(ref)
    assert got.keys() == want.keys() and all(torch.equal(got[n], want[n]) for n in got)


def test_pcgrad_projection_removes_only_conflicting_components():
    gen = torch.Generator().manual_seed(0)
    g1 = torch.randn(10, generator=gen, dtype=torch.float64)
    g2 = -g1 + 0.5 * torch.randn(10, generator=gen, dtype=torch.float64)  # conflicts with g1
    g3 = g1 + 0.1 * torch.randn(10, generator=gen, dtype=torch.float64)  # agrees with g1
    assert g1 @ g2 < 0 and g1 @ g3 > 0 and g2 @ g3 < 0
    before = [g1.clone(), g2.clone(), g3.clone()]
    p1, p2 = pcgrad_project([g1, g2])
    assert float(p1 @ g2) == pytest.approx(0, abs=1e-12) and float(p2 @ g1) == pytest.approx(0, abs=1e-12)
    assert torch.allclose(p1, g1 - (g1 @ g2) / (g2 @ g2) * g2)
    q1, q3 = pcgrad_project([g1, g3])
    assert torch.equal(q1, g1) and torch.equal(q3, g3)  # no conflict: untouched
    # three tasks: g1 only conflicts with g2, so it loses that component alone
    r1 = pcgrad_project([g1, g2, g3], order=[[2, 1], [0, 2], [0, 1]])[0]
    assert torch.allclose(r1, g1 - (g1 @ g2) / (g2 @ g2) * g2)
    assert all(torch.equal(a, b) for a, b in zip([g1, g2, g3], before))  # inputs are left as they were


def test_pcgrad_backward_sets_the_projected_sum_on_shared_params():
    m, x = _toy(2)
    ys = {"t0": x[:, 0] + x[:, 1], "t1": -(x[:, 0] + x[:, 1])}  # opposite targets: conflicting gradients
    ref = copy.deepcopy(m)
    lr = _losses(ref, x, ys)
    g = [_flat_shared_grads(ref, lr["t0"]), _flat_shared_grads(ref, lr["t1"])]
    assert g[0] @ g[1] < 0
    want = sum(pcgrad_project(g))
    sum(lr.values()).backward()
    plain = _grads(ref)
    b, _ = _start("pcgrad", m)
    b.backward(_losses(m, x, ys), 1, None)
    got = _grads(m)
    shared = [n for n, _ in shared_parameters(m)]
    flat = torch.cat([got[n].reshape(-1) for n in shared])
    assert torch.allclose(flat, want, atol=1e-6)
    assert not torch.allclose(flat, torch.cat([plain[n].reshape(-1) for n in shared]), atol=1e-4)
    for n in got:  # task-specific: the plain gradient of the sum
        if n.startswith("branches."):
            assert torch.allclose(got[n], plain[n], atol=1e-6)


def _two_task_closed_form(g1, g2):
    return min(1.0, max(0.0, float((g2 - g1) @ g2 / ((g1 - g2) @ (g1 - g2)))))


@pytest.mark.parametrize("case", ["random", "clip_to_1", "clip_to_0"])
def test_mgda_two_tasks_is_the_closed_form(case):
    for seed in range(5):
        gen = torch.Generator().manual_seed(seed)
        g1, g2 = torch.randn(2, 12, generator=gen, dtype=torch.float64)
        if case == "clip_to_1":  # g1 is the shorter one and lies along g2: the min-norm point is g1
            g2 = 3 * g1 + 0.1 * g2
        elif case == "clip_to_0":
            g1 = 3 * g2 + 0.1 * g1
        want = _two_task_closed_form(g1, g2)
        if case != "random":
            assert want == (1.0 if case == "clip_to_1" else 0.0)
        a = min_norm_weights([g1, g2])
        assert float(a[0]) == pytest.approx(want, abs=1e-12) and float(a.sum()) == pytest.approx(1.0)


def test_mgda_three_tasks_reaches_the_min_norm_point():
    for seed in range(20):
        gen = torch.Generator().manual_seed(seed)
        G = torch.randn(3, 15, generator=gen, dtype=torch.float64)
        if seed % 2:  # optimum on an edge of the hull: two near-parallel gradients
            G[2] = 2 * G[0] + 0.1 * torch.randn(15, generator=gen, dtype=torch.float64)
        a = min_norm_weights(list(G))
        assert (a >= 0).all() and float(a.sum()) == pytest.approx(1.0)
        d = a @ G
        norm = float(d.norm())
        vertices = [float(G[i].norm()) for i in range(3)]
        pairs = []
        for i, j in itertools.combinations(range(3), 2):
            w = _two_task_closed_form(G[i], G[j])
            pairs.append(float((w * G[i] + (1 - w) * G[j]).norm()))
        assert norm <= min(vertices + pairs) + 1e-12
        # optimality over the simplex: no vertex direction lowers the norm further
        assert float((G @ d).min()) >= float(d @ d) * (1 - 1e-4)


def test_mgda_backward_steps_along_k_times_the_min_norm_direction():
    m, x = _toy(2)
    ys = {"t0": x[:, 0], "t1": -x[:, 0] + x[:, 1]}
    ref = copy.deepcopy(m)
    lr = _losses(ref, x, ys)
    g = torch.stack([_flat_shared_grads(ref, lr["t0"]), _flat_shared_grads(ref, lr["t1"])])
    a = min_norm_weights(g).float()
    b, _ = _start("mgda", m)
    b.backward(_losses(m, x, ys), 1, None)
    got = _grads(m)
    flat = torch.cat([got[n].reshape(-1) for n, _ in shared_parameters(m)])
    assert torch.allclose(flat, 2 * (a[:, None] * g).sum(0), atol=1e-6)
    w = b.weights()
    assert sum(w.values()) == pytest.approx(2.0) and w["t0"] == pytest.approx(2 * float(a[0]))


def test_uncertainty_learns_log_variances_and_downweights_the_large_loss():
    m, x = _toy(2)
    ys = {"t0": 5 * x[:, 0], "t1": torch.tanh(x[:, 1])}
    b, opt = _start("uncertainty", m, lr=0.05)
    assert any(b.log_vars is p for grp in opt.param_groups for p in grp["params"])
    assert opt.param_groups[-1]["weight_decay"] == 0.0
    for step in range(1, 31):
        opt.zero_grad(set_to_none=True)
        b.backward(_losses(m, x, ys, {"t0": 100.0}), step, None)
        opt.step()
    s = b.log_vars.detach()
    assert (s != 0).all()  # learned: the optimizer moved them
    w = b.weights()
    assert w["t0"] < w["t1"]
    assert w["t0"] == pytest.approx(float(1 / (2 * s[0].exp())))


def test_dwa_upweights_the_task_whose_loss_falls_slower():
    m, _ = _toy(2)
    p = next(m.parameters())
    spe = 3
    b, opt = _start("dwa", m, steps_per_epoch=spe)
    used = {}  # epoch -> the weights the steps of that epoch used
    for step in range(1, 4 * spe + 1):
        epoch = (step - 1) // spe + 1
        base = (p**2).sum()
        c1 = 0.5**epoch  # task 0's loss stays at `base`, task 1's halves every epoch
        opt.zero_grad(set_to_none=True)
        b.backward({"t0": base, "t1": c1 * base}, step, None)
        w = b.w.tolist()
        assert used.setdefault(epoch, w) == w  # constant within an epoch
        # the step's gradient is that of sum_t w_t L_t
        assert torch.allclose(p.grad, (w[0] + w[1] * c1) * 2 * p.detach(), rtol=1e-5)
    assert used[1] == used[2] == [1.0, 1.0]
    want = (2 * torch.softmax(torch.tensor([1.0, 0.5]) / 2, 0)).tolist()  # r = (1, 1/2), T = 2
    for epoch in (3, 4):
        assert used[epoch] == pytest.approx(want, rel=1e-5)
        assert used[epoch][0] > 1 > used[epoch][1] and sum(used[epoch]) == pytest.approx(2.0)
    assert b.weights() == pytest.approx(dict(zip(["t0", "t1"], want)), rel=1e-5)


def test_gradnorm_balances_gradient_norms():
    m, x = _toy(2)
    ys = {"t0": 3 * x[:, 0], "t1": torch.sin(x[:, 1])}
    b, opt = _start("gradnorm", m, lr=1e-3)
    spreads, weights = [], []
    for step in range(1, 61):
        w_before = b.w.detach().clone()
        opt.zero_grad(set_to_none=True)
        b.backward(_losses(m, x, ys, {"t0": 10.0}), step, None)  # task 0's gradient is far larger
        opt.step()
        G, target = b.last["G"], b.last["target"]
        # w's gradient is that of sum_t |G_t - target_t| with the targets held constant
        assert torch.allclose(b.w.grad, torch.sign(G - target) * G / w_before, rtol=1e-5)
        q = G / target
        spreads.append(float(q.max() / q.min()))
        weights.append(b.weights())
        assert sum(weights[-1].values()) == pytest.approx(2.0, rel=1e-5)
    assert b.W is m.trunk[2].weight  # the last shared tensor with dim >= 2
    assert weights[-1]["t0"] < 0.5 and weights[-1]["t1"] > 1.5
    assert spreads[-1] < spreads[0] / 5


# -- the loop ---------------------------------------------------------------------------

def test_config_rejects_unknown_balance():
    with pytest.raises(ValueError, match="balance.*'bogus'"):
        TrainConfig(balance="bogus")


@pytest.mark.parametrize("method", METHODS)
def test_loop_trains_with_each_method(mm, method):
    suite, data = mm
    groups = []

    class Groups(TrainHook):
        def on_start(self, model, optimizer):
            groups.extend(optimizer.param_groups)

    model = small_conv_net(data)
    w0 = model.trunk[0][0].conv.weight.detach().clone()
    r = train(model, suite, data, TrainConfig(steps=3, batch_size=64, balance=method), hooks=[Groups()])
    assert math.isfinite(r["loss"]) and r["balance"] == method and r["backward_s"] > 0
    assert set(r["task_weights"]) == {"left", "right"} and all(math.isfinite(v) for v in r["task_weights"].values())
    assert not torch.equal(model.trunk[0][0].conv.weight, w0)
    if method == "uncertainty":  # the log-variances' group exists before OneCycle and gets its settings
        assert len(groups) == 2 and "max_lr" in groups[1] and groups[1]["weight_decay"] == 0.0
        assert r["task_weights"] != {"left": 0.5, "right": 0.5}
    else:
        assert len(groups) == 1
