"""SimQ-NAS on the one-shot bank: every candidate of a training step runs with its own
quantization policy simulated on the shared weights.

`QuantSuperNet` is `nasmt.model.supernet.SuperNet` (same constructor, same tensors, same
keys: its safetensors load into a plain `SuperNet` and back) whose forward, with
`quantize` on, runs the candidate as `nasmt.quant.simulation` simulates a deployed policy:

* weights: each Conv2d / Linear of a stage, task group or branch whose `w` is not fp32
  takes `fake_weight` of its bank slice (per-output-channel symmetric int8 / int4, or a
  bf16 / fp16 round trip), with the straight-through estimator, so the bank gets the
  gradient of the quantized candidate (Wang et al. 2023, SimQ-NAS);
* activations: at the same points `simulate` quantizes (input and BatchNorm-folded output
  of each such layer whose `a` is not fp32). int8 scale / zero point are the batch's own
  min / max (training has no calibration pass; `simulate` uses a static calibration at
  evaluation time), bf16 / fp16 a cast round trip; gradients pass straight through.

Both the sandwich hook's forward and the balancer's re-forward of the other candidates go
through `forward`, so every candidate of a step is trained under its own policy.
"""

from __future__ import annotations

import torch
from torch.func import functional_call

from nasmt.model.supernet import SuperNet
from nasmt.quant.policy import group_paths, plan
from nasmt.quant.simulation import _hooked, act_points, act_qparams, fake_act, fake_weight


def _dynamic_act(key: str, prec: str, x: torch.Tensor) -> torch.Tensor:
    """Fake-quantized activation: int8 with the tensor's own (detached) range."""
    if prec == "int8":
        d = x.detach()
        return fake_act(x, "int8", act_qparams(float(d.min()), float(d.max())))
    return fake_act(x, prec, None)


def _layers(cand, spec):
    """The candidate structure's quantized layers (cached on the structure: it is built
    once per spec and kept in the bank's cache)."""
    got = getattr(cand, "_simq_layers", None)
    if got is None or got[0] != spec.hash:
        layers = [ql for ql in plan(cand, group_paths(spec)) if ql.prec.w != "fp32" or ql.prec.a != "fp32"]
        got = (spec.hash, layers)
        cand._simq_layers = got
    return got[1]


def quantized_tensors(bank: SuperNet, spec, layers) -> dict:
    """The candidate's bank slices with each quantized layer's weight fake-quantized (STE)."""
    ts = bank.tensors(spec)
    for ql in layers:
        if ql.prec.w != "fp32":
            k = f"{ql.name}.weight"
            ts[k] = fake_weight(ts[k], ql.prec.w)
    return ts


class QuantSuperNet(SuperNet):
    """The weight bank with per-candidate simulated quantization in its forward (see the
    module docstring); `quantize = False` makes it a plain `SuperNet`."""

    quantize: bool = True

    def forward(self, spec_or_x, x: torch.Tensor | None = None) -> dict:
        if not self.quantize:
            return super().forward(spec_or_x, x)
        spec, x = self.resolve(spec_or_x, x)
        cand, _ = self.candidate(spec)
        cand.train(self.training)
        layers = _layers(cand, spec)
        ts = quantized_tensors(self, spec, layers)
        with _hooked(act_points(layers), _dynamic_act):
            return functional_call(cand, ts, (x,), strict=False)
