"""In-place distillation in sandwich training (nasmt.train.supernet, `distill` = a): the
largest candidate learns from the labels, every other candidate of the step from
(1 - a) x labels + a x the largest one's detached predictions.

On tasks/people.toml (binary, multiclass and regression tasks: every kind of soft target)
with a small dropout-free grammar, so every forward is deterministic and the losses the
real training loop hands its balancer can be recomputed independently here."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nasmt.model.supernet import SuperNet
from nasmt.space.grammar import parse_grammar
from nasmt.train.balance import Balancer
from nasmt.train.loop import TrainConfig, train
from nasmt.train.supernet import SandwichBalancer, SandwichHook
from conftest import ROOT

torch.set_num_threads(1)

GRAMMAR = """
trunk   = layer{1,2}
layer   = fc(h=16|32, act=relu)
branch  = tap(at=1|last) own{0,1} head
own     = fc(h=8|16)
head    = dropout(p=0.0)
"""


@pytest.fixture(scope="module")
def people():
    from nasmt.data import load_data_cached
    from nasmt.data.suite import load_suite

    suite = load_suite(ROOT / "tasks" / "people.toml")
    return suite, load_data_cached(suite)


class _Record(Balancer):
    """Equal balancing that keeps the per-task loss sums it is handed, per step."""

    name = "equal"

    def __init__(self):
        self.seen: list[dict] = []

    def backward(self, losses, step, relosses):
        self.seen.append({t: float(v.detach()) for t, v in losses.items()})
        loss = sum(losses.values())
        loss.backward()
        return loss


class _KeepBatch(SandwichHook):
    """The sandwich hook, keeping the step's batch (to recompute its losses here)."""

    def forward(self, model, x):
        self.x = x.clone()
        return super().forward(model, x)


def _step(suite, data, distill: float):
    """One real training step (lr 0: the bank stays as built) of the largest and the
    smallest candidate; (per-task loss sums the balancer got, the batch, the bank)."""
    g = parse_grammar(GRAMMAR, "distill.grammar")
    torch.manual_seed(0)
    bank = SuperNet.for_suite(g, suite, data, n_samples=20, seed=0)
    hook = _KeepBatch(bank, n_random=0, seed=0, distill=distill, suite=suite, data=data)
    rec = _Record()
    train(bank, suite, data, TrainConfig(steps=1, batch_size=64, lr=0.0, seed=0, schedule="constant"), hooks=[hook],
          balancer=SandwichBalancer(hook, rec))
    return rec.seen[0], hook.x, bank


def _label_losses(suite, data, out, idx_y):
    from nasmt.train.losses import task_losses

    return {t: float(v) for t, v in task_losses(suite, data, out, idx_y)[1].items()}


def _kd_losses(suite, data, student, teacher):
    """Independent soft-target losses: CE against softmax, BCE against sigmoid, MSE against
    the teacher's standardized prediction."""
    out = {}
    for t in suite.tasks:
        s, z = student[t.ident].float(), teacher[t.ident].float().detach()
        if t.kind == "multiclass":
            out[t.ident] = float(-(torch.softmax(z, 1) * torch.log_softmax(s, 1)).sum(1).mean())
        elif t.kind == "binary":
            out[t.ident] = float(F.binary_cross_entropy_with_logits(s[:, 0], torch.sigmoid(z[:, 0])))
        else:
            out[t.ident] = float(F.mse_loss(s[:, 0], z[:, 0]))
    return out


def _batch_targets(data, x):
    """The labels of the step's batch: the loop's first batch is the first 64 of a
    permutation seeded with the TrainConfig's seed (checked against the batch's rows)."""
    xt = torch.from_numpy(data.x["train"])
    idx = torch.randperm(xt.shape[0], generator=torch.Generator().manual_seed(0))[:64]
    assert torch.equal(xt[idx], x)
    return {k: torch.from_numpy(v)[idx] for k, v in data.y["train"].items()}


def test_children_learn_from_the_largest_ones_predictions(people):
    """a = 1: the smallest candidate's loss is its soft-target loss against the largest
    one's outputs (the largest keeps its label loss); a = 0: both label losses (sandwich
    training as before); a = 0.25: 0.75 x its label loss + 0.25 x its soft one. The tasks' weights are 1."""
    suite, data = people
    assert {t.kind for t in suite.tasks} == {"binary", "multiclass", "regression"}
    assert all(t.weight == 1.0 for t in suite.tasks)
    got = {a: _step(suite, data, a) for a in (0.0, 0.25, 1.0)}
    x, bank = got[0.0][1], got[0.0][2]
    assert all(torch.equal(x, got[a][1]) for a in got)  # same batch whatever a
    ys = _batch_targets(data, x)
    with torch.no_grad():
        big, small = bank(bank.largest, x), bank(bank.smallest, x)
    lb, ls = _label_losses(suite, data, big, ys), _label_losses(suite, data, small, ys)
    kd = _kd_losses(suite, data, small, big)
    for t in lb:
        assert got[0.0][0][t] == pytest.approx(lb[t] + ls[t], rel=1e-5, abs=1e-6), t
        assert got[1.0][0][t] == pytest.approx(lb[t] + kd[t], rel=1e-5, abs=1e-6), t
        assert got[0.25][0][t] == pytest.approx(lb[t] + 0.75 * ls[t] + 0.25 * kd[t], rel=1e-5, abs=1e-6), t
        assert abs(kd[t] - ls[t]) > 1e-3, t  # the soft targets are not the labels


def test_distill_values_are_checked(people):
    suite, data = people
    g = parse_grammar(GRAMMAR, "distill.grammar")
    bank = SuperNet.for_suite(g, suite, data, n_samples=5, seed=0)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="distill must be in"):
            SandwichHook(bank, distill=bad, suite=suite, data=data)
    with pytest.raises(ValueError, match="needs the suite and the data"):
        SandwichHook(bank, distill=0.5)
