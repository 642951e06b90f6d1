"""Quantization-aware fine-tuning: the one training loop (`nasmt.train.train`) with a
hook that runs the forward through the simulated policy.

Weights: each quantized layer's fp32 master weight is replaced in the forward by its
fake-quantized copy (`torch.func.functional_call`), so gradients reach the master
weights straight through (STE). Activations: the calibrated fake-quant hooks of
`nasmt.quant.simulation`, with scales fixed before the fine-tune. BatchNorm statistics are
frozen and dropout is off (the model trains in eval mode): the fine-tune sees the
deployed network. AdamW without weight decay at a constant rate, i.i.d. batches.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from nasmt.quant.policy import QLayer, group_paths, is_fp32, plan
from nasmt.quant.simulation import calib_batch, fake_act_hooks, fake_weight, simulate
from nasmt.space.spec import ArchSpec
from nasmt.train import TrainConfig, TrainHook, train


class QATHook(TrainHook):
    """The forward of a QAT step: fake-quantized weights through functional_call, in
    float32 (bf16 autocast would blur the integer grid). Activation fake quantization
    comes from hooks the caller registers (`fake_act_hooks`)."""

    def __init__(self, model: nn.Module, layers: list[QLayer]):
        params = dict(model.named_parameters())
        self.quantized = [(f"{ql.name}.weight", ql.prec.w) for ql in layers if ql.prec.w != "fp32"]
        self.params = {k: params[k] for k, _ in self.quantized}

    def forward(self, model: nn.Module, x: torch.Tensor) -> dict:
        over = {k: fake_weight(self.params[k], w) for k, w in self.quantized}
        with torch.autocast(x.device.type, enabled=False):
            return functional_call(model, over, (x,), strict=False)


def qat(model: nn.Module, spec: ArchSpec, suite, data, steps: int, lr: float = 3e-4, batch_size: int = 128,
        seed: int = 0, device="cpu") -> dict:
    """Quantization-aware fine-tune in place: `steps` AdamW steps (lr constant, no weight
    decay) through the simulated policy, BatchNorm statistics frozen.
    Returns {"qat_steps", "qat_loss"} ({"qat_steps": 0} when there is nothing to do)."""
    if steps <= 0 or is_fp32(spec):
        return {"qat_steps": 0}
    dev = torch.device(device)
    model.to(dev)
    layers = plan(model, group_paths(spec))
    with simulate(model, spec, calib_batch(data, dev)) as act:
        act = dict(act)
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, weight_decay=0.0, seed=seed, device=device,
                      schedule="constant", sampling="random", freeze_bn=True,
                      reg_loss=(spec.train.reg_loss if spec.train is not None else None) or "mse")  # the rule's loss
    with fake_act_hooks(layers, act):
        r = train(model, suite, data, cfg, hooks=[QATHook(model, layers)])
    return {"qat_steps": r["steps"], "qat_loss": r["loss"]}
