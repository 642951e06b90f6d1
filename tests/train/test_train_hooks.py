"""nasmt.train.train's hooks and options: call order, the one forward override, frozen
BatchNorm, the learning-rate schedules, the training mode restored after on_epoch."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from conftest import small_conv_net
from nasmt.train import TrainConfig, TrainHook, evaluate, train
from nasmt.train.loop import LOSS_READ_EVERY

torch.set_num_threads(1)


class Recorder(TrainHook):
    """Logs every call (hook name first) into a shared list."""

    def __init__(self, name: str, log: list):
        self.name, self.log = name, log

    def on_start(self, model, optimizer):
        self.log.append(("on_start", self.name, model.training, isinstance(optimizer, torch.optim.AdamW)))

    def on_step(self, step, total_steps, loss):
        self.log.append(("on_step", self.name, step, total_steps, loss is not None))

    def on_epoch(self, epoch, loss):
        self.log.append(("on_epoch", self.name, epoch))


class Forward(Recorder):
    def forward(self, model, x):
        self.log.append(("forward", self.name, model.training))
        return model(x)


def test_hooks_called_in_documented_order(mm):
    suite, data = mm
    n = data.n("train")
    bs = n // 2  # two steps per epoch
    total = LOSS_READ_EVERY + 1  # the loss is read at step LOSS_READ_EVERY and at the last step
    log: list = []
    r = train(small_conv_net(data), suite, data, TrainConfig(steps=total, batch_size=bs),
              hooks=[Recorder("a", log), Forward("f", log)])
    want = [("on_start", "a", True, True), ("on_start", "f", True, True)]
    for step in range(1, total + 1):
        read = step in (LOSS_READ_EVERY, total)
        want += [("forward", "f", True), ("on_step", "a", step, total, read), ("on_step", "f", step, total, read)]
        if step % 2 == 0:
            want += [("on_epoch", "a", step // 2), ("on_epoch", "f", step // 2)]
    assert log == want
    assert r["steps"] == total and r["epochs"] == total / 2 and math.isfinite(r["loss"])


def test_on_epoch_gets_the_last_loss_read(mm):
    suite, data = mm
    seen = {}

    class Epochs(TrainHook):
        def on_step(self, step, total_steps, loss):
            if loss is not None:
                seen["step_loss"] = loss

        def on_epoch(self, epoch, loss):
            seen[epoch] = loss

    steps_per_epoch = data.n("train") // 32
    assert steps_per_epoch > LOSS_READ_EVERY
    r = train(small_conv_net(data), suite, data, TrainConfig(epochs=1, batch_size=32), hooks=[Epochs()])
    assert seen[1] == seen["step_loss"] == r["loss"]


def test_at_most_one_hook_overrides_forward(mm):
    suite, data = mm
    with pytest.raises(ValueError, match="at most one"):
        train(small_conv_net(data), suite, data, TrainConfig(steps=1), hooks=[Forward("f", []), Forward("g", [])])


def test_training_mode_restored_after_on_epoch(mm):
    """A hook may evaluate the model at an epoch's end; the next steps train in train mode."""
    suite, data = mm
    modes = []

    class EvalEachEpoch(TrainHook):
        def forward(self, model, x):
            modes.append(model.training)
            return model(x)

        def on_epoch(self, epoch, loss):
            evaluate(self.model, suite, data, "val")  # leaves the model in eval mode

    h = EvalEachEpoch()
    h.model = small_conv_net(data)
    train(h.model, suite, data, TrainConfig(steps=4, batch_size=data.n("train") // 2), hooks=[h])
    assert modes == [True] * 4


def test_freeze_bn_keeps_batchnorm_statistics(mm):
    suite, data = mm
    model = small_conv_net(data)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    stats = [(m.running_mean.clone(), m.running_var.clone()) for m in bns]
    w0 = model.trunk[0][0].conv.weight.detach().clone()
    train(model, suite, data, TrainConfig(steps=5, batch_size=64, freeze_bn=True))
    assert bns and all(torch.equal(m.running_mean, a) and torch.equal(m.running_var, b) for m, (a, b) in zip(bns, stats))
    assert not torch.equal(model.trunk[0][0].conv.weight, w0)  # it did train
    assert not model.training
    train(model, suite, data, TrainConfig(steps=1, batch_size=64))  # default: BatchNorm statistics update
    assert not torch.equal(bns[0].running_mean, stats[0][0])


@pytest.mark.parametrize("schedule", ["constant", "onecycle"])
def test_schedule(mm, schedule):
    suite, data = mm
    lrs = []

    class Rates(TrainHook):
        def on_start(self, model, optimizer):
            self.opt = optimizer

        def on_step(self, step, total_steps, loss):
            lrs.append(self.opt.param_groups[0]["lr"])

    steps = 40
    train(small_conv_net(data), suite, data, TrainConfig(steps=steps, batch_size=64, lr=0.01, schedule=schedule), hooks=[Rates()])
    if schedule == "constant":
        assert lrs == [0.01] * steps
    else:  # warms up to lr, then anneals
        peak = lrs.index(max(lrs))
        assert 0 < peak < steps // 2 and max(lrs) == pytest.approx(0.01, rel=0.01)
        assert lrs[-1] < lrs[0] < max(lrs)


@pytest.mark.parametrize("sampling", ["epochs", "random"])
def test_sampling(mm, sampling):
    """'epochs' shows every example once per epoch; 'random' draws batches i.i.d."""
    suite, data = mm
    seen = []

    class Batches(TrainHook):
        def forward(self, model, x):
            seen.append(x.flatten(1))
            return model(x)

    n = data.n("train")
    bs = n // 4
    train(small_conv_net(data), suite, data, TrainConfig(steps=4, batch_size=bs, sampling=sampling), hooks=[Batches()])
    rows = torch.cat(seen)
    distinct = torch.unique(rows, dim=0).shape[0]
    all_distinct = torch.unique(torch.from_numpy(data.x["train"]).flatten(1), dim=0).shape[0]
    if sampling == "epochs":
        assert distinct == all_distinct  # one epoch: each example exactly once
    else:
        assert distinct < all_distinct  # with replacement: some repeat, some are missed


def test_config_rejects_unknown_options():
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear")
    with pytest.raises(ValueError, match="sampling"):
        TrainConfig(sampling="shuffle")
