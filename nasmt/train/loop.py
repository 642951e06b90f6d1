"""The one training loop, readable top to bottom, with hooks.

AdamW on the multi-task loss (`nasmt.train.losses`); the train split lives on the
device as tensors and minibatches are index slices. Seeds and devices are arguments.
On CUDA the forward runs under bf16 autocast (unless `bf16=False`). A non-finite loss or
a run past its time limit raises TrialError. Searches train with the defaults (OneCycle
schedule, one permutation per epoch); quantization-aware fine-tuning
(`nasmt.quant.finetune`) runs the same loop with a constant rate, i.i.d. batches, frozen
BatchNorm and a forward hook. A grammar's train rule may set the recipe: schedule
("cosine": linear warm-up, then cosine decay), warm-up share, early-stopping `patience`
(validation mean_error per epoch, the best epoch's weights restored), batch size and the
regression loss. Input encodings that need fitting (piecewise-linear bins) are fitted on
the train split before the first step, unless the model carries fitted ones. The per-task losses become gradients through a loss
balancing method (`TrainConfig.balance`, `nasmt.train.balance`; default "equal", the plain
weighted sum).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.func import functional_call

from nasmt.errors import TrialError
from nasmt.data.suite import TaskSuite
from nasmt.train.balance import METHODS, Balancer, make_balancer
from nasmt.model.build import fit_inputs
from nasmt.train.losses import MATCH, REG_LOSSES, task_losses
from nasmt.train.metrics import tensors

SCHEDULES = ("onecycle", "cosine", "constant")
SAMPLINGS = ("epochs", "random")
ONECYCLE_WARMUP = 0.15  # share of the steps OneCycle spends raising the rate to `lr` (warmup None)
COSINE_WARMUP = 0.05  # share of the steps "cosine" raises the rate linearly to `lr` (warmup None)
LOSS_READ_EVERY = 25  # read the loss (a device sync) every this many steps and at the last one


@dataclass
class TrainConfig:
    epochs: float = 1.0  # budget in epochs over the train split ...
    steps: int | None = None  # ... or in optimizer steps (wins when set)
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4  # AdamW's decoupled weight decay
    seed: int = 0  # batch order
    device: str = "cpu"
    time_limit_s: float | None = None  # TrialError past this many seconds
    schedule: str = "onecycle"  # "onecycle": warm up to lr, then anneal; "constant": lr throughout
    sampling: str = "epochs"  # "epochs": a fresh permutation per epoch; "random": i.i.d. batches
    freeze_bn: bool = False  # train in eval mode: BatchNorm statistics frozen, dropout off
    bf16: bool = True  # on CUDA, run the forward under bf16 autocast (no effect on CPU: always fp32)
    balance: str = "equal"  # loss balancing method, one of nasmt.train.balance.METHODS
    warmup: float | None = None  # warm-up share of the steps ("onecycle", "cosine"); None: the schedule's default
    patience: int = 0  # > 0: after each epoch the validation mean_error is measured; training stops after this
    # many epochs without a better one and the best epoch's weights are restored. 0: the whole budget
    reg_loss: str = "mse"  # regression loss: mse, l1, huber or match (l1 for MAE-scored tasks; nasmt.train.losses)

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"TrainConfig.schedule: {self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"TrainConfig.sampling: {self.sampling!r} is not one of {', '.join(SAMPLINGS)}")
        if self.balance not in METHODS:
            raise ValueError(f"TrainConfig.balance: {self.balance!r} is not one of {', '.join(METHODS)}")
        if self.reg_loss not in (*REG_LOSSES, MATCH):
            raise ValueError(f"TrainConfig.reg_loss: {self.reg_loss!r} is not one of {', '.join(REG_LOSSES)}, {MATCH}")
        if self.patience < 0 or self.batch_size < 1:
            raise ValueError("TrainConfig: patience must be >= 0 and batch_size >= 1")


class TrainHook:
    """Extension points of `train`; every method here does nothing. In call order:

    1. `on_start(model, optimizer)`: once, after the model is on the device in its
       training mode and the optimizer exists, before the first step.
    2. Every step: `forward(model, x) -> {task: output}` computes the batch's outputs
       (default `model(x)`; at most one hook may override it), then the loop takes the
       loss, the backward pass and the optimizer (and scheduler) step, and calls
       `on_step(step, total_steps, loss)`: `step` counts from 1, `loss` is the float loss
       where the loop read it this step (every LOSS_READ_EVERY steps and the last), else
       None. The time limit is checked right after `on_step`.
    3. After the last step of each full epoch: `on_epoch(epoch, loss)`, epoch counting
       from 1, with the last loss read. The loop restores the model's training mode
       afterwards, so the hook may evaluate the model.
    An exception raised by a hook ends training and propagates.
    """

    def on_start(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        pass

    def forward(self, model: torch.nn.Module, x: torch.Tensor) -> dict:
        return model(x)

    def on_step(self, step: int, total_steps: int, loss: float | None) -> None:
        pass

    def on_epoch(self, epoch: int, loss: float) -> None:
        pass


def _forward(hooks: Sequence[TrainHook]):
    own = [h for h in hooks if type(h).forward is not TrainHook.forward]
    if len(own) > 1:
        raise ValueError(f"train: {len(own)} hooks override forward; at most one may")
    return own[0].forward if own else TrainHook().forward


def _batches(n: int, bs: int, cfg: TrainConfig, dev: torch.device) -> Iterator[torch.Tensor]:
    """Endless minibatch indices, from a CPU generator seeded with cfg.seed."""
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    while True:
        if cfg.sampling == "random":
            yield torch.randint(0, n, (bs,), generator=gen).to(dev)
            continue
        perm = torch.randperm(n, generator=gen).to(dev)
        for pos in range(0, n - bs + 1, bs):  # the last partial batch of an epoch is dropped
            yield perm[pos : pos + bs]


def _scheduler(opt, cfg: TrainConfig, total: int):
    if cfg.schedule == "constant":
        return None
    if cfg.schedule == "cosine":  # linear warm-up to lr, then cosine decay to 0 at the last step
        w = round((COSINE_WARMUP if cfg.warmup is None else cfg.warmup) * total)

        def factor(s: int) -> float:
            if s < w:
                return (s + 1) / w
            return 0.5 * (1.0 + math.cos(math.pi * (s - w) / max(1, total - w)))

        return torch.optim.lr_scheduler.LambdaLR(opt, factor)
    pct = ONECYCLE_WARMUP if cfg.warmup is None else min(max(cfg.warmup, 1e-6), 0.99)
    if total < 3:
        return None  # one or two steps: no schedule to speak of
    if abs(pct * total - 1) < 1e-9:  # torch's warm-up phase would end where it starts (0/0)
        pct = 1.5 / total
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=pct)


class _EarlyStop:
    """Validation mean_error after each epoch; the best epoch's weights kept (a copy) and
    restored at the end; `done` once `patience` epochs passed without improvement."""

    def __init__(self, model, suite, data, cfg: TrainConfig):
        self.model, self.suite, self.data, self.cfg = model, suite, data, cfg
        self.best, self.best_epoch, self.state, self.history = math.inf, 0, None, []

    def epoch_end(self, epoch: int) -> bool:
        from nasmt.train.metrics import evaluate

        err = evaluate(self.model, self.suite, self.data, "val", self.cfg.device)["mean_error"]
        self.history.append(err)
        if err < self.best:  # NaN never wins
            self.best, self.best_epoch = err, epoch
            self.state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return epoch - self.best_epoch >= self.cfg.patience

    def restore(self) -> dict:
        if self.state is not None:
            self.model.load_state_dict(self.state)
        return {"best_epoch": self.best_epoch, "val_history": self.history}


def _read_loss(loss: torch.Tensor, step: int) -> float:
    v = float(loss.detach())
    if not math.isfinite(v):
        raise TrialError(f"non-finite loss ({v}) at step {step}")
    return v


class _SpanTimer:
    """Seconds spent in one span of the step, summed: perf_counter on the host; on CUDA,
    timing events on the stream (the host only queues the work there), read where the
    loop reads the loss (a sync anyway) and at the end."""

    def __init__(self, dev: torch.device):
        self.cuda = dev.type == "cuda"
        self.total = 0.0
        self._pending: list = []

    def start(self) -> None:
        if self.cuda:
            self._begin = torch.cuda.Event(enable_timing=True)
            self._begin.record()
        else:
            self._t = time.perf_counter()

    def stop(self) -> None:
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self._pending.append((self._begin, end))
        else:
            self.total += time.perf_counter() - self._t

    def seconds(self) -> float:
        for a, b in self._pending:
            b.synchronize()
            self.total += a.elapsed_time(b) / 1000.0
        self._pending.clear()
        return self.total


def plan_steps(n: int, cfg: TrainConfig) -> tuple[int, int, int]:
    """(batch size, steps per epoch, total steps) of training on `n` examples."""
    bs = min(cfg.batch_size, n)
    steps_per_epoch = max(1, n // bs)
    total = cfg.steps if cfg.steps is not None else max(1, round(cfg.epochs * steps_per_epoch))
    return bs, steps_per_epoch, total


def train(model: torch.nn.Module, suite: TaskSuite, data, cfg: TrainConfig, hooks: Sequence[TrainHook] = (),
          balancer: Balancer | None = None) -> dict:
    """Train in place. Returns {'steps', 'epochs', 'train_time_s', 'loss'} (the last loss read),
    'backward_s' (seconds spent in the balancer's backward, all steps), 'balance' (its
    method's name) and 'task_weights' (its task weights at the end). `balancer`, when
    given, replaces the one `cfg.balance` names (e.g. `nasmt.train.affinity.AffinityProbe`)."""
    dev = torch.device(cfg.device)
    model.to(dev)
    x, ys = tensors(data, "train", dev)
    fit_inputs(model, x)  # input encodings fitted on the train split (once: a trained model keeps its own)
    model.train(not cfg.freeze_bn)
    n = x.shape[0]
    bs, steps_per_epoch, total = plan_steps(n, cfg)
    batches = _batches(n, bs, cfg, dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if balancer is None:
        balancer = make_balancer(cfg.balance)
    balancer.on_start(model, opt, [t.ident for t in suite.tasks], steps_per_epoch, cfg.seed)
    sched = _scheduler(opt, cfg, total)
    forward = _forward(hooks)
    for h in hooks:
        h.on_start(model, opt)
    autocast_on = cfg.bf16 and dev.type == "cuda"
    timer = _SpanTimer(dev)
    stopper = _EarlyStop(model, suite, data, cfg) if cfg.patience > 0 else None
    t0 = time.perf_counter()
    loss_val = float("nan")
    step = 0
    for step in range(1, total + 1):
        idx = next(batches)
        xb, yb = x[idx], {k: v[idx] for k, v in ys.items()}
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast_on):
            out = forward(model, xb)
        _, parts = task_losses(suite, data, out, yb, cfg.reg_loss)
        weighted = {t.ident: t.weight * parts[t.ident] for t in suite.tasks}

        def relosses(overrides: dict, xb=xb, yb=yb) -> dict:
            """The weighted per-task losses of this batch with `overrides` in place of the
            named parameters; BatchNorm statistics go to copies (the model's stay as they are)."""
            state = {k: b.clone() for k, b in model.named_buffers()}
            state.update(overrides)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast_on):
                o = functional_call(model, state, (xb,), strict=False)
            _, p = task_losses(suite, data, o, yb, cfg.reg_loss)
            return {t.ident: t.weight * p[t.ident] for t in suite.tasks}

        opt.zero_grad(set_to_none=True)
        timer.start()
        loss = balancer.backward(weighted, step, relosses)
        timer.stop()
        opt.step()
        if sched is not None:
            sched.step()
        read = step % LOSS_READ_EVERY == 0 or step == total
        if read:
            loss_val = _read_loss(loss, step)
            timer.seconds()  # the read synced: collect the finished CUDA timings
        for h in hooks:
            h.on_step(step, total, loss_val if read else None)
        if cfg.time_limit_s is not None and time.perf_counter() - t0 > cfg.time_limit_s:
            raise TrialError(f"trial exceeded its time limit of {cfg.time_limit_s:g} s at step {step}/{total}")
        if step % steps_per_epoch == 0:
            for h in hooks:
                h.on_epoch(step // steps_per_epoch, loss_val)
            stop = stopper is not None and stopper.epoch_end(step // steps_per_epoch)
            model.train(not cfg.freeze_bn)
            if stop:
                loss_val = _read_loss(loss, step)
                break
    early = stopper.restore() if stopper is not None else {}
    return {"steps": step, "epochs": step / steps_per_epoch, "train_time_s": time.perf_counter() - t0, "loss": loss_val,
            "backward_s": timer.seconds(), "balance": balancer.name, "task_weights": balancer.weights(), **early}
