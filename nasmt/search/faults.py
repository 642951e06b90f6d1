"""Deliberate faults for tests (`--inject-fault KIND@TRIAL[,KIND@TRIAL...]`, a hidden
flag). Each mimics a real failure and enters the trial only through the public seams
of the training loop (`nasmt.train.TrainHook`) or the model, never through a branch in
the production trainable:

* `exception`: the trainable raises;
* `oom`: torch raises `OutOfMemoryError`;
* `nan`: every parameter becomes NaN (the loop's non-finite-loss check fails it);
* `slow`: every optimizer step sleeps `SLOW_STEP_S`, so a `--trial-timeout` given on the
  command line fails the trial through the real time-limit path;
* `blind`: the network sees all-zero inputs, so it cannot learn (its error stays at
  chance): a trial an early-stopping scheduler must stop.
"""

from __future__ import annotations

import time

from nasmt.errors import UserError
from nasmt.train import TrainHook

FAULT_KINDS = ("exception", "nan", "oom", "slow", "blind")
SLOW_STEP_S = 0.5  # 100 steps take >= 50 s: far past any --trial-timeout a test gives


def parse_faults(spec: str | None) -> dict[int, str]:
    """`KIND@TRIAL,...` -> {trial number: kind} (UserError naming the flag when malformed)."""
    out: dict[int, str] = {}
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        kind, _, num = part.partition("@")
        try:
            n = int(num)
        except ValueError:
            raise UserError(f"--inject-fault: expected KIND@TRIAL[,KIND@TRIAL] (got {spec!r})") from None
        if kind.strip() not in FAULT_KINDS:
            raise UserError(f"--inject-fault: unknown fault {kind.strip()!r} (choose {', '.join(FAULT_KINDS)})")
        out[n] = kind.strip()
    return out


class _Slow(TrainHook):
    def on_step(self, step, total, loss):
        time.sleep(SLOW_STEP_S)


class _Blind(TrainHook):
    def forward(self, model, x):
        return model(x * 0)


def inject(spec: str | None, number: int, model) -> list[TrainHook]:
    """Apply the fault planned for trial `number` (if any); returns training hooks."""
    kind = parse_faults(spec).get(number)
    if kind is None:
        return []
    import torch

    if kind == "exception":
        raise RuntimeError("injected fault: exception in the trainable")
    if kind == "oom":
        raise torch.OutOfMemoryError("injected fault: CUDA out of memory. Tried to allocate 64.00 GiB")
    if kind == "nan":
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float("nan"))
        return []
    return [_Slow()] if kind == "slow" else [_Blind()]
