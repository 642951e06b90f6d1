"""Lookahead inter-task affinity (Fifty et al. 2021) and the task grouping it suggests."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from nasmt.data.suite import DataDef, TaskDef, TaskSuite
from nasmt.train import TrainConfig
from nasmt.train.affinity import AffinityProbe, measure_affinity, suggest_groups
from nasmt.train.loop import train

torch.set_num_threads(1)
TASKS = ["same_a", "same_b", "opposite"]


class Toy(nn.Module):
    """Shared trunk, one linear head per task under `branches`, heads starting equal."""

    def __init__(self, d: int = 5, h: int = 8):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(d, h), nn.Tanh())
        head = nn.Linear(h, 1)
        self.branches = nn.ModuleDict({t: nn.Linear(h, 1) for t in TASKS})
        for b in self.branches.values():
            b.load_state_dict(head.state_dict())

    def forward(self, x):
        f = self.trunk(x)
        return {t: b(f) for t, b in self.branches.items()}


def _problem():
    """Three regression tasks: two share one target, the third is its negation."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 5)).astype(np.float32)
    y = (x @ rng.normal(size=5)).astype(np.float32)
    ys = {"same_a": y, "same_b": y.copy(), "opposite": -y}
    suite = TaskSuite("toy", DataDef("csv"), tuple(TaskDef(t, t, "regression", t, "rmse") for t in TASKS))
    data = SimpleNamespace(x={"train": x}, y={"train": ys}, target_stats={t: (0.0, 1.0) for t in TASKS})
    torch.manual_seed(0)
    return Toy(), suite, data


def test_affinity_of_the_same_target_beats_the_opposite_one():
    model, suite, data = _problem()
    cfg = TrainConfig(steps=12, batch_size=64, lr=0.05, schedule="constant")
    a = measure_affinity(model, suite, data, cfg, every=3)
    Z = a["matrix"]
    assert a["tasks"] == TASKS and len(Z) == 3 and all(len(row) == 3 for row in Z)
    assert a["measurements"] == 4 and a["every"] == 3 and a["steps"] == 12 and a["lr"] == 0.05
    assert a["method"] == "lookahead (Fifty et al. 2021)"
    assert all(math.isfinite(v) for row in Z for v in row)
    assert Z[0][1] > 0 > Z[0][2] and Z[1][0] > Z[1][2] and Z[0][1] > Z[0][2]
    assert Z[0][1] == pytest.approx(Z[0][0], rel=1e-4)  # tasks 0 and 1 are the same loss
    assert suggest_groups(a["tasks"], Z, max_groups=2) == [["same_a", "same_b"], ["opposite"]]


def test_probe_weighs_equally_and_measures_every_few_steps():
    model, suite, data = _problem()
    probe = AffinityProbe(every=4)
    w0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    bn = nn.BatchNorm1d(8)  # a buffer the lookahead forwards must not update
    model.trunk.append(bn)
    r = train(model, suite, data, TrainConfig(steps=9, batch_size=64), balancer=probe)
    assert probe.measurements == 2 and r["balance"] == "affinity"
    assert r["task_weights"] == {t: 1.0 for t in TASKS}
    assert int(bn.num_batches_tracked) == 9  # one update per training forward, none from the lookaheads
    assert any(not torch.equal(p, w0[n]) for n, p in model.named_parameters() if n in w0)


def test_measure_affinity_needs_a_measurement():
    model, suite, data = _problem()
    with pytest.raises(ValueError, match="no measurement"):
        measure_affinity(model, suite, data, TrainConfig(steps=2, batch_size=64), every=5)


def test_suggest_groups_maximizes_the_tag_score():
    t = ["a", "b", "c", "d"]
    Z = [[1.0, 0.5, -0.2, 0.0],
         [0.4, 1.0, -0.1, 0.0],
         [-0.3, -0.3, 1.0, 0.3],
         [0.0, 0.0, 0.2, 1.0]]
    assert suggest_groups(t, Z, max_groups=4) == [["a", "b"], ["c", "d"]]
    assert suggest_groups(t, Z, max_groups=2) == [["a", "b"], ["c", "d"]]
    assert suggest_groups(t, Z, max_groups=1) == [t]
    # mutual harm: alone beats together when the budget allows; forced together otherwise
    bad = [[1.0, -0.5], [-0.5, 1.0]]
    assert suggest_groups(["x", "y"], bad, max_groups=2) == [["x"], ["y"]]
    assert suggest_groups(["x", "y"], bad, max_groups=1) == [["x", "y"]]
    # each task scores the MEAN affinity onto it from its group (a sum would put all three together:
    # 0.8 + 0.8 + 0.1 > 0.9 + 0.05); a and c tie with b and c, the first in label order wins
    Z3 = [[1.0, -0.1, 0.05], [-0.1, 1.0, 0.05], [0.9, 0.9, 1.0]]
    assert suggest_groups(["a", "b", "c"], Z3, max_groups=3) == [["a", "c"], ["b"]]
    with pytest.raises(ValueError):
        suggest_groups(t, Z[:3], max_groups=2)


def test_suggest_groups_beyond_exhaustive_is_greedy_and_deterministic():
    k = 10
    block = [i // 5 for i in range(k)]  # two blocks of five tasks that help each other
    Z = [[1.0 if i == j else (0.3 if block[i] == block[j] else -0.2) for j in range(k)] for i in range(k)]
    names = [f"t{i}" for i in range(k)]
    g = suggest_groups(names, Z, max_groups=3)
    assert g == [names[:5], names[5:]] and suggest_groups(names, Z, max_groups=3) == g
    assert len(suggest_groups(names, Z, max_groups=1)) == 1
