"""The training recipe of a grammar's train rule (issue 17): early stopping keeps the
best epoch's weights, the cosine schedule with linear warm-up, and the rule's decisions
reaching the one loop's TrainConfig."""

from __future__ import annotations

import math

import numpy as np
import optuna
import torch

from conftest import ROOT
from nasmt.data import load_data_cached
from nasmt.data.suite import load_suite
from nasmt.model.build import build
from nasmt.space.derive import derive
from nasmt.space.grammar import load_grammar
from nasmt.space.spec import ArchSpec, BranchSpec, OpSpec, StageSpec
from nasmt.train import TrainConfig, TrainHook, evaluate, train
from nasmt.train.loop import _scheduler, plan_steps

torch.set_num_threads(1)
FAIR = ROOT / "tasks" / "fair.toml"


def _net(data, seed=0):
    torch.manual_seed(seed)
    ops = (OpSpec.from_json({"op": "fc", "h": 32, "act": "relu"}),)
    return build(ArchSpec("t", tuple(data.input_shape), (StageSpec(ops),),
                          tuple(BranchSpec(t, 1, out=o) for t, o in data.n_outputs.items())))


class _Snap(TrainHook):
    def __init__(self, model):
        self.model, self.states, self.lrs, self.opt = model, {}, [], None

    def on_start(self, model, optimizer):
        self.opt = optimizer

    def on_step(self, step, total, loss):
        self.lrs.append(self.opt.param_groups[0]["lr"])

    def on_epoch(self, epoch, loss):
        self.states[epoch] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}


def test_early_stopping_restores_the_best_epochs_weights():
    suite = load_suite(FAIR)
    data = load_data_cached(suite)
    net = _net(data)
    snap = _Snap(net)
    cfg = TrainConfig(epochs=8, batch_size=512, lr=0.1, schedule="constant", patience=2)  # a rate that overshoots
    r = train(net, suite, data, cfg, hooks=[snap])
    hist, best = r["val_history"], r["best_epoch"]
    assert best == int(np.argmin(hist)) + 1 and len(hist) == len(snap.states)
    spe = plan_steps(data.n("train"), cfg)[1]
    assert r["steps"] == spe * min(8, best + 2)  # stopped `patience` epochs after the best (or at the budget)
    for k, v in net.state_dict().items():  # the best epoch's weights, not the last's
        assert torch.equal(v, snap.states[best][k]), k
    assert evaluate(net, suite, data, "val")["mean_error"] == hist[best - 1]
    if best < len(hist):
        assert any(not torch.equal(net.state_dict()[k], snap.states[len(hist)][k]) for k in snap.states[best])


def test_cosine_schedule_warms_up_linearly_then_decays():
    suite = load_suite(FAIR)
    data = load_data_cached(suite)
    snap = _Snap(None)
    cfg = TrainConfig(steps=40, batch_size=64, lr=0.01, schedule="cosine", warmup=0.1)
    train(_net(data), suite, data, cfg, hooks=[snap])
    w = 4  # round(0.1 * 40)
    want = [0.01 * ((s + 1) / w if s < w else 0.5 * (1 + math.cos(math.pi * (s - w) / (40 - w)))) for s in range(1, 41)]
    assert np.allclose(snap.lrs, want) and snap.lrs[w - 1] == max(snap.lrs) and snap.lrs[-1] == 0.0


def test_train_rule_decisions_reach_the_train_config():
    """tabular.grammar's train rule: every decision lands in TrainConfig (as the trial,
    finalize and export --retrain-epochs build it: run settings, then the rule's)."""
    g = load_grammar(ROOT / "search_spaces" / "tabular.grammar")
    suite = load_suite(FAIR)
    data = load_data_cached(suite)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=5))
    seen = set()
    for _ in range(20):
        spec = derive(g, study.ask(), suite.tasks, data.input_shape, data.n_outputs, data.columns)
        genome = spec.genome_dict
        tc = TrainConfig(epochs=1, **{"lr": 1.0, "batch_size": 7, **spec.train_overrides()})
        assert (tc.schedule, tc.warmup) == (genome["train.schedule.kind"], genome["train.schedule.warmup"])
        assert tc.patience == genome["train.early.patience"] and tc.batch_size == genome["train.batch.size"]
        assert tc.reg_loss == genome.get("train.regloss.fn", "match") and tc.lr == genome["train.optim.lr"]  # one value: fixed
        assert ArchSpec.loads(spec.dumps()) == spec
        seen.add((tc.reg_loss, tc.patience))
    assert seen == {("match", p) for p in (4, 8, 16)}  # the grammar's domains (pruned: docs/tabular.md)


def test_every_schedule_runs_any_step_count():
    """OneCycleLR divides by zero when its warm-up ends on step 0 (warm-up share x steps
    == 1, e.g. 0.1 x 10: a loans trial with --steps 10 crashed so): every schedule and
    warm-up runs every budget from 1 to 80 steps with finite rates."""
    for schedule in ("onecycle", "cosine", "constant"):
        for warmup in (None, 0.01, 0.05, 0.1, 0.25, 0.5, 0.99):
            for total in range(1, 81):
                opt = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1)
                sched = _scheduler(opt, TrainConfig(lr=0.1, schedule=schedule, warmup=warmup), total)
                for _ in range(total):
                    opt.step()
                    if sched is not None:
                        sched.step()
                assert math.isfinite(opt.param_groups[0]["lr"]), (schedule, warmup, total)
