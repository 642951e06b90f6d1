"""Simulation of a quantization policy in plain torch, used inside a trial.

* weights: per-output-channel symmetric fake quantization (int8: integers in
  [-127, 127]; int4: [-7, 7]; scale = max|w| / qmax per output channel), bf16/fp16 a
  cast round trip. `simulate()` swaps the quantized copies in ONCE and restores the
  fp32 weights on exit (no per-forward cost).
* activations (a=int8): per-tensor asymmetric uint8, static scale / zero point from a
  calibration pass over a fixed slice of the training split (min/max, range widened
  to include 0), applied exactly where the int8 kernel quantizes: at the input and at
  the (BatchNorm-folded) output of every Conv2d / Linear of a stage or branch whose
  `a` is int8. bf16 / fp16 activations: cast round trip at the same points.
* gradients pass straight through both (STE), which `nasmt.quant.finetune` trains with.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from nasmt.quant.policy import FLOAT16, INT_BITS, QLayer, group_paths, plan
from nasmt.space.spec import ArchSpec

CALIB_N = 256  # calibration examples: the first CALIB_N of the train split (deterministic)
CALIB_BATCH = 128  # calibration forward batch (min/max do not depend on it)
UINT8_LEVELS = 255  # uint8 activation steps between the range's ends


def quant_weight(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel symmetric quantization: (integers as float, scale per channel)."""
    qmax = 2 ** (bits - 1) - 1
    w = w.detach().float()
    amax = w.abs().flatten(1).amax(1)
    scale = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
    q = torch.clamp(torch.round(w / scale.view(-1, *[1] * (w.dim() - 1))), -qmax, qmax)
    return q, scale


def fake_weight(w: torch.Tensor, prec_w: str) -> torch.Tensor:
    """The weight as the artifact will hold it; gradient passes straight through (STE)."""
    if prec_w in INT_BITS:
        q, s = quant_weight(w, INT_BITS[prec_w])
        wq = q * s.view(-1, *[1] * (w.dim() - 1))
    elif prec_w in FLOAT16:
        wq = w.detach().to(FLOAT16[prec_w]).float()
    else:
        return w
    return w + (wq - w).detach()


def act_qparams(lo: float, hi: float) -> tuple[float, int]:
    """uint8 asymmetric (scale, zero point) for the range [lo, hi] widened to include 0."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = (hi - lo) / UINT8_LEVELS
    if not scale > 0:
        scale = 1.0
    scale = float(np.float32(scale))  # exactly what the ONNX file stores
    zp = int(min(UINT8_LEVELS, max(0, round(-lo / scale))))
    return scale, zp


def fake_act(x: torch.Tensor, prec_a: str, qp: tuple[float, int] | None) -> torch.Tensor:
    if prec_a == "int8":
        s, zp = qp
        return torch.fake_quantize_per_tensor_affine(x, s, zp, 0, UINT8_LEVELS)  # STE inside the range
    if prec_a in FLOAT16:
        return x + (x.detach().to(FLOAT16[prec_a]).float() - x.detach())
    return x


def act_points(layers: list[QLayer]) -> list[tuple[str, nn.Module, str, str]]:
    """(key, module to hook, 'pre'|'post', precision) for every activation quant point:
    `<layer>:in` before each quantized layer, `<layer>:out` after it or its BatchNorm."""
    pts = []
    for ql in layers:
        if ql.prec.a == "fp32":
            continue
        pts.append((f"{ql.name}:in", ql.mod, "pre", ql.prec.a))
        pts.append((f"{ql.name}:out", ql.bn if ql.bn is not None else ql.mod, "post", ql.prec.a))
    return pts


@contextmanager
def _hooked(points, fn):
    """Inside: fn(key, precision, tensor) -> tensor replaces every point's activation."""
    hs = []
    try:
        for key, m, kind, prec in points:
            if kind == "pre":
                hs.append(m.register_forward_pre_hook(lambda mod, args, key=key, prec=prec: (fn(key, prec, args[0]),)))
            else:
                hs.append(m.register_forward_hook(lambda mod, args, out, key=key, prec=prec: fn(key, prec, out)))
        yield
    finally:
        for h in hs:
            h.remove()


def fake_act_hooks(layers: list[QLayer], act: dict):
    """Context manager: activations fake-quantized at every point of `layers` with the
    qparams `act` ({point: (scale, zero point)}; needed for int8 points)."""
    return _hooked(act_points(layers), lambda key, prec, x: fake_act(x, prec, act.get(key)))


@contextmanager
def quantized_weights(layers: list[QLayer]):
    """Inside: each layer's weight replaced by its fake-quantized copy (computed once);
    the fp32 weights are restored on exit."""
    saved = {}
    try:
        with torch.no_grad():
            for ql in layers:
                if ql.prec.w != "fp32":
                    saved[ql.name] = ql.mod.weight.data
                    ql.mod.weight.data = fake_weight(ql.mod.weight.data, ql.prec.w)
        yield
    finally:
        for ql in layers:
            if ql.name in saved:
                ql.mod.weight.data = saved[ql.name]


def calib_batch(data, device="cpu", n: int = CALIB_N) -> torch.Tensor:
    """The calibration inputs: the first n examples of the train split (deterministic)."""
    return torch.from_numpy(np.ascontiguousarray(data.x["train"][:n])).to(device)


@torch.no_grad()
def calibrate(model: nn.Module, layers: list[QLayer], calib_x: torch.Tensor, batch_size: int = CALIB_BATCH) -> dict:
    """Static activation (scale, zero point) per int8 point, from min/max over calib_x
    (weights as currently loaded, activations unquantized)."""
    pts = [p for p in act_points(layers) if p[3] == "int8"]
    if not pts:
        return {}
    rng: dict[str, list[float]] = {}

    def obs(key, prec, x):
        lo, hi = float(x.min()), float(x.max())
        r = rng.setdefault(key, [lo, hi])
        r[0], r[1] = min(r[0], lo), max(r[1], hi)
        return x

    was = model.training
    model.eval()
    try:
        with _hooked(pts, obs):
            for i in range(0, calib_x.shape[0], batch_size):
                model(calib_x[i : i + batch_size])
    finally:
        model.train(was)
    return {k: act_qparams(*v) for k, v in rng.items()}


@contextmanager
def simulate(model: nn.Module, spec: ArchSpec, calib_x: torch.Tensor | None = None, act: dict | None = None):
    """Run `model` as the policy of `spec` will deploy it, inside the with block.

    Quantized weight copies are computed once on entry and the fp32 weights restored
    on exit; activation scales come from `act` or a calibration pass over `calib_x`.
    The model is in eval mode inside. Yields the activation qparams {point: (scale, zp)}.
    """
    layers = plan(model, group_paths(spec))
    was = model.training
    try:
        with quantized_weights(layers):
            if act is None:
                act = calibrate(model, layers, calib_x) if calib_x is not None else {}
            missing = [k for k, _, _, p in act_points(layers) if p == "int8" and k not in act]
            if missing:
                raise ValueError(f"simulate: no calibration for {missing[0]} (pass calib_x)")
            with fake_act_hooks(layers, act):
                model.eval()
                yield act
    finally:
        model.train(was)
