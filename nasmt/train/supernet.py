"""One-shot supernet training: the one training loop (`nasmt.train.train`) on a weight bank
(`nasmt.model.supernet.SuperNet`), with a hook and a balancer; no second loop.

The sandwich rule (Yu et al. 2020, BigNAS; Cai et al. 2020, OFA): every step trains the
largest candidate, the smallest and `n_random` random ones on the same batch, and the bank
takes the sum of their gradients. How it fits the loop without changing it:

- `SandwichHook.forward` (the loop's forward hook) draws the step's candidates and returns
  the largest one's outputs, which the loop turns into the step's per-task losses;
- `SandwichBalancer` (the loop's `balancer` argument) adds, per task, the losses of the
  other candidates on the same batch, obtained through the loop's `relosses` (the batch's
  weighted per-task losses of `model(x)`; the bank's one-argument forward runs its
  `active` candidate), and hands the sums to the configured balancing method.

So the logged loss is the sum over the step's candidates. BatchNorm statistics updated
during training are per candidate structure (not shared) and are meant to be recalibrated
(`SuperNet.recalibrate`) before a candidate is judged.

In-place distillation (`distill` = a in [0, 1]; Yu et al. 2020, BigNAS; Cai et al. 2020,
OFA): the largest candidate learns from the labels, every other candidate of the step from
(1 - a) x the labels + a x the largest one's predictions on the same batch, detached
(`soft_targets`): softmax probabilities for a multiclass task (cross-entropy with soft
targets), the sigmoid for a binary one (BCE), the output itself for a regression task (in
the target's units; MSE / L1 / Huber on it). a = 0 is plain sandwich training; a = 1
BigNAS's pure in-place distillation; in between each other candidate runs twice on the
batch (once per target). Per-step quantization policies (SimQ-NAS) are not here:
`nasmt.train` may not import `nasmt.quant`, so that forward lives in `nasmt.quant.supernet`.
"""

from __future__ import annotations

import random

import torch

from nasmt.model.supernet import RandomTrial, SuperNet
from nasmt.train.balance import Balancer, make_balancer
from nasmt.train.loop import TrainConfig, TrainHook, train

MAX_DRAWS = 50  # random derivations tried per candidate before giving up on one that fits the bank


def soft_targets(suite, data, teacher: dict, n: int) -> dict:
    """The largest candidate's outputs `teacher` (detached) as targets `task_losses` takes
    for a batch of `n` examples: class probabilities (multiclass), the positive class's
    probability (binary), the prediction in the target's units (regression). An ensemble
    teacher's member rows are averaged per example."""
    out = {}
    for t in suite.tasks:
        z = teacher[t.ident].detach().float()
        if z.shape[0] != n:  # an ensemble's members: k consecutive rows per example
            z = z.reshape(n, z.shape[0] // n, *z.shape[1:]).mean(1)
        if t.kind == "multiclass":
            out[t.ident] = torch.softmax(z, dim=1)
        elif t.kind == "binary":
            out[t.ident] = torch.sigmoid(z[:, 0])
        else:
            mean, std = data.target_stats[t.ident]
            out[t.ident] = z[:, 0] * std + mean
    return out


class SandwichHook(TrainHook):
    """Draws each step's candidates (largest, smallest, `n_random` random derivations that
    fit the bank; seeded) and runs the largest as the step's forward. With `distill` > 0
    it keeps the largest one's detached predictions as the step's `soft` targets (`suite`
    and `data` needed: the tasks' kinds and target statistics)."""

    def __init__(self, bank: SuperNet, n_random: int = 2, seed: int = 0, distill: float = 0.0, suite=None,
                 data=None):
        if not 0.0 <= float(distill) <= 1.0:
            raise ValueError(f"SandwichHook: distill must be in [0, 1], got {distill}")
        if distill and (suite is None or data is None):
            raise ValueError("SandwichHook: distillation needs the suite and the data (tasks, target statistics)")
        self.bank, self.n_random = bank, int(n_random)
        self.distill, self.suite, self.data = float(distill), suite, data
        self.rng = random.Random(seed)
        self.step_specs: list = []
        self.soft: dict | None = None  # the step's distillation targets
        self.drawn = 0  # random candidates trained, all steps

    def draw(self):
        for _ in range(MAX_DRAWS):
            s = self.bank.derive(RandomTrial(self.rng))
            if self.bank.fits(s):
                return s
        raise RuntimeError(f"supernet: {MAX_DRAWS} random derivations in a row do not fit the bank")

    def on_start(self, model, optimizer):
        if model is not self.bank:
            raise ValueError("SandwichHook: train the bank itself (train(bank, ...))")

    def forward(self, model, x):
        self.step_specs = [self.bank.largest, self.bank.smallest, *(self.draw() for _ in range(self.n_random))]
        self.drawn += self.n_random
        self.bank.active = self.bank.largest
        out = self.bank(self.bank.largest, x)
        self.soft = soft_targets(self.suite, self.data, out, x.shape[0]) if self.distill else None
        return out


class SandwichBalancer(Balancer):
    """Adds the other candidates' per-task losses of the step to the largest one's, then
    lets `inner` (any balancing method; default equal) turn the sums into gradients."""

    def __init__(self, hook: SandwichHook, inner: Balancer | None = None):
        self.hook = hook
        self.inner = inner if inner is not None else make_balancer("equal")
        self.name = self.inner.name

    def on_start(self, model, optimizer, tasks, steps_per_epoch, seed):
        super().on_start(model, optimizer, tasks, steps_per_epoch, seed)
        self.inner.on_start(model, optimizer, tasks, steps_per_epoch, seed)

    def backward(self, losses, step, relosses):
        bank, a = self.hook.bank, self.hook.distill
        total = dict(losses)
        try:
            for spec in self.hook.step_specs[1:]:
                bank.active = spec
                if a == 0:
                    extra = relosses({})
                elif a == 1:
                    extra = relosses({}, yb=self.hook.soft)  # the batch's targets replaced by the teacher's
                else:
                    hard, soft = relosses({}), relosses({}, yb=self.hook.soft)
                    extra = {t: (1 - a) * hard[t] + a * soft[t] for t in hard}
                total = {t: total[t] + extra[t] for t in total}
        finally:
            bank.active = self.hook.step_specs[0]
        return self.inner.backward(total, step, relosses)

    def weights(self):
        return self.inner.weights()


def train_supernet(bank: SuperNet, suite, data, cfg: TrainConfig, n_random: int = 2, hooks=(),
                   distill: float = 0.0) -> dict:
    """Sandwich-rule training of `bank` in place with the one loop (`cfg.balance` balances
    the summed per-task losses; `distill`: in-place distillation weight, module docstring).
    Returns `train`'s result plus 'candidates_per_step'."""
    hook = SandwichHook(bank, n_random, cfg.seed, distill, suite, data)
    r = train(bank, suite, data, cfg, hooks=[hook, *hooks], balancer=SandwichBalancer(hook, make_balancer(cfg.balance)))
    return {**r, "candidates_per_step": 2 + n_random}


@torch.no_grad()
def candidate_loss(bank: SuperNet, spec, suite, data, split: str = "val", n: int = 512) -> float:
    """The suite loss of candidate `spec` on the first `n` examples of `split`, in eval mode
    with its structure's current BatchNorm statistics."""
    from nasmt.train.losses import task_losses
    from nasmt.train.metrics import tensors

    dev = next(bank.parameters()).device
    x, ys = tensors(data, split, dev)
    was = bank.training
    bank.eval()
    try:
        out = bank(spec, x[:n])
        total, _ = task_losses(suite, data, out, {k: v[:n] for k, v in ys.items()})
    finally:
        bank.train(was)
    return float(total)
