"""Quantization policies: simulate, measure, materialize.

Every trunk stage and every task branch of an ArchSpec carries `Precision(w, a)`.
This module turns such a policy into three things:

1. **Simulation** (plain torch, straight-through gradients), used inside a trial:
   * weights: per-output-channel symmetric fake quantization (int8: integers in
     [-127, 127]; int4: [-7, 7]; scale = max|w| / qmax per output channel), bf16/fp16 a
     cast round trip. `simulate()` swaps the quantized copies in ONCE and restores the
     fp32 weights on exit (no per-forward cost).
   * activations (a=int8): per-tensor asymmetric uint8, static scale / zero point from a
     calibration pass over a fixed slice of the training split (min/max, range widened
     to include 0), applied exactly where the int8 kernel quantizes: at the input and at
     the (BatchNorm-folded) output of every Conv2d / Linear of a stage or branch whose
     `a` is int8. bf16 / fp16 activations: cast round trip at the same points.
   * `qat()`: a short quantization-aware fine-tune (STE) with frozen BatchNorm stats.
2. **Cost**: `size_bytes()` counts exactly the weight payload of the artifact below
   (BatchNorm folded into the conv): weight numel x bits / 8 (int4 packed two per byte,
   rounded up per tensor), an fp32 scale per output channel for int8/int4 weights, a
   uint8 zero point (128) per output channel for int8 weights next to int8 activations
   (the u8u8 kernel, below), the folded bias (fp32, or int32 + an fp32 per-channel scale
   where weights and activations are both int8). `artifact_weight_bytes(file) ==
   size_bytes(model, spec)` exactly; the file adds the graph (node protos, scalar
   activation qparams): +6.5 to +16 KB for the conv space (reports/bench_quant.json).
   Latency: `measure_latency()` of the real artifact (median of repeated runs after a
   warm-up, 1 intra-op thread), and `predicted_latency_ms()`, an FBNet-style per-op
   lookup table built lazily once per device and cached in
   `$NASMT_CACHE/latency-<device>.json` (default ~/.cache/nasmt): each distinct (op,
   params, input shape, precision, batch) is exported alone and measured once;
   predicted = per-run overhead + sum of entries. `measure_front()` measures the Pareto
   set after a search and `predictor_error()` reports median / worst relative error.
3. **Artifact**: `export_quantized()` writes `model_quant.onnx`, a QDQ ONNX model for
   ONNX Runtime (CPU), next to the fp32 export.

Effective precision: int8 activations need int8 weights (ORT has no float-weight x
int8-activation kernel; left alone it re-quantizes such weights per tensor at load), so
a=int8 with fp32/bf16/fp16 weights deploys, simulates and is counted as w8a8.

Backend choice, by measurement (reports/bench_quant.json "backend"; 1 thread, batch 1,
a 5-layer conv net): ORT fp32 0.086 ms, ORT w8a8 0.130 ms, ORT w4a8 0.298 ms; torch
eager fp32 0.78 ms; torchao PT2E (X86InductorQuantizer) eager int8 2.72 ms, compiled
with inductor freezing 0.67 ms (6-90 s of compilation first), inductor fp32 0.47 ms.
So ONNX Runtime QDQ: (a) the artifact loads with `onnxruntime` alone (a PT2E .pt2
needs torch + torchao and a compile step); (b) mixed per-stage / per-branch precision
is one Q/DQ choice per tensor, and PT2E's quantizer rejects our Residual block (a ReLU
module called twice); (c) the artifact's numbers equal the simulation's: we write the
QDQ graph ourselves from the simulation's integers and calibrated scales (no second
calibration by `quantize_static`), so artifact accuracy matches the trial record
(measured: <= 0.3 accuracy points; tolerance ACC_TOLERANCE = 1.5 points).

How each precision runs in the artifact (and honest limits):
* int8 weights + int8 activations: QLinearConv / QGemm. Weights are stored as uint8 =
  q + 128 with zero point 128, which selects ORT's u8u8 kernel: on x86 without VNNI
  (this machine: AVX2 only) the faster u8s8 kernel saturates 16-bit intermediates and
  disagrees with the simulation by tens of output steps. u8u8 is exact but on this CPU
  not faster than fp32 for these small nets -- the latency objective sees that.
* weight-only int8 / int4 (a=fp32): stored as int8 / packed INT4 (opset 21) + scales,
  dequantized by a Cast + Mul that ORT constant-folds at load: fp32 speed, smaller file.
* int4 weights + int8 activations: INT4 DequantizeLinear; ORT has no int4 conv kernel,
  so the conv runs in fp32 on dequantized weights (size benefit only).
* bf16 / fp16 weights: stored 16-bit, cast to fp32 at load (CPU). The BN fold happens
  before that cast in the artifact and after it in the simulation (<= one bf16 ulp per
  weight). bf16 on GPU: `export_bf16()` writes bf16 weights for
  `model.to("cuda", torch.bfloat16)` (untested here: no GPU).
* the int32 bias of int8 convs is quantized in the artifact, not in the simulation
  (error <= half of input_scale x weight_scale per output: far below one output step).
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import re
import statistics
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nasmt.cache import cache_dir
from nasmt.space.spec import ArchSpec, Precision
from nasmt.space.vocab import BITS

INT_BITS = {"int8": 8, "int4": 4}
FLOAT16 = {"bf16": torch.bfloat16, "fp16": torch.float16}
CALIB_N = 256  # calibration examples: the first CALIB_N of the train split (deterministic)
ACC_TOLERANCE = 0.015  # |artifact - simulation| accuracy per task, as a fraction (1.5 points)
OPSET = 21  # INT4 DequantizeLinear needs 21
ARTIFACT = "model_quant.onnx"


# ----------------------------------------------------------------------------- policy


def group_paths(spec: ArchSpec) -> list[tuple[str, Precision]]:
    """(module path in MultiTaskNet, precision) for every stage and branch."""
    out = [(f"trunk.{i}", st.precision) for i, st in enumerate(spec.stages)]
    out += [(f"branches.{b.task}", b.precision) for b in spec.branches]
    return out


def is_fp32(spec: ArchSpec) -> bool:
    return all(p.w == "fp32" and p.a == "fp32" for _, p in group_paths(spec))


def policy_summary(spec: ArchSpec) -> str:
    """e.g. 'S1 w8a8 | S2 w4a32 | left w32a32 | right w8a8'."""

    def short(p: Precision) -> str:
        f = lambda s: s.replace("int", "").replace("fp", "").replace("bf16", "b16")
        return f"w{f(p.w)}a{f(p.a)}"

    parts = [f"S{i + 1} {short(st.precision)}" for i, st in enumerate(spec.stages)]
    parts += [f"{b.task} {short(b.precision)}" for b in spec.branches]
    return " | ".join(parts)


def with_policy(spec: ArchSpec, w: str, a: str) -> ArchSpec:
    """The same architecture with one precision everywhere (e.g. the all-int8 baseline)."""
    from dataclasses import replace

    p = Precision(w, a)
    return replace(
        spec,
        stages=tuple(replace(s, precision=p) for s in spec.stages),
        branches=tuple(replace(b, precision=p) for b in spec.branches),
    )


@dataclass
class QLayer:
    name: str  # full module name of the Conv2d / Linear in the root module
    mod: nn.Module
    bn: nn.Module | None  # the BatchNorm2d folded into it (registered right after it)
    bn_name: str | None
    prec: Precision


def plan(root: nn.Module, paths: list[tuple[str, Precision]]) -> list[QLayer]:
    """Every Conv2d / Linear under each group path, with the BatchNorm that follows it.

    The op modules register a conv's BatchNorm right after it (ConvBNAct: conv, bn;
    DWSep: dw, pw, bn; Residual: conv1, bn1, conv2, bn2), so registration order pairs them.
    """
    out = []
    for path, prec in paths:
        g = root.get_submodule(path) if path else root
        prefix = f"{path}." if path else ""
        if isinstance(g, (nn.Conv2d, nn.Linear)):
            raise ValueError(f"plan: group {path or '<root>'} must be a container, not a bare {type(g).__name__}")
        for pname, parent in g.named_modules():
            kids = list(parent.named_children())
            for i, (cname, m) in enumerate(kids):
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    bn, bn_name = None, None
                    if isinstance(m, nn.Conv2d) and i + 1 < len(kids) and isinstance(kids[i + 1][1], nn.BatchNorm2d):
                        bn_name, bn = kids[i + 1]
                        bn_name = prefix + (f"{pname}." if pname else "") + bn_name
                    full = prefix + (f"{pname}." if pname else "") + cname
                    out.append(QLayer(full, m, bn, bn_name, effective(prec)))
    return out


def effective(p: Precision) -> Precision:
    """The precision the artifact really runs: int8 activations need int8 weights (ORT
    has no float-weight x int8-activation kernel; left to itself it would quantize such
    weights per tensor at load), so a=int8 with float weights means per-channel int8."""
    if p.a == "int8" and p.w in ("fp32", "bf16", "fp16"):
        return Precision("int8", "int8")
    return p


# ----------------------------------------------------------------------------- fake quant


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
    scale = (hi - lo) / 255.0
    if not scale > 0:
        scale = 1.0
    scale = float(np.float32(scale))  # exactly what the ONNX file stores
    zp = int(min(255, max(0, round(-lo / scale))))
    return scale, zp


def fake_act(x: torch.Tensor, prec_a: str, qp: tuple[float, int] | None) -> torch.Tensor:
    if prec_a == "int8":
        s, zp = qp
        return torch.fake_quantize_per_tensor_affine(x, s, zp, 0, 255)  # STE inside the range
    if prec_a in FLOAT16:
        return x + (x.detach().to(FLOAT16[prec_a]).float() - x.detach())
    return x


def _act_points(layers: list[QLayer]) -> list[tuple[str, nn.Module, str, str]]:
    """(key, module to hook, 'pre'|'post', precision) for every activation quant point."""
    pts = []
    for ql in layers:
        if ql.prec.a == "fp32":
            continue
        pts.append((f"{ql.name}:in", ql.mod, "pre", ql.prec.a))
        pts.append((f"{ql.name}:out", ql.bn if ql.bn is not None else ql.mod, "post", ql.prec.a))
    return pts


def _hooks(points, fn_pre, fn_post) -> list:
    hs = []
    for key, m, kind, prec in points:
        if kind == "pre":
            hs.append(m.register_forward_pre_hook(lambda mod, args, key=key, prec=prec: (fn_pre(key, prec, args[0]),)))
        else:
            hs.append(m.register_forward_hook(lambda mod, args, out, key=key, prec=prec: fn_post(key, prec, out)))
    return hs


def calib_batch(data, device="cpu", n: int = CALIB_N) -> torch.Tensor:
    """The calibration inputs: the first n examples of the train split (deterministic)."""
    return torch.from_numpy(np.ascontiguousarray(data.x["train"][:n])).to(device)


@torch.no_grad()
def calibrate(model: nn.Module, layers: list[QLayer], calib_x: torch.Tensor, batch_size: int = 128) -> dict:
    """Static activation (scale, zero point) per int8 point, from min/max over calib_x
    (weights as currently loaded, activations unquantized)."""
    pts = [p for p in _act_points(layers) if p[3] == "int8"]
    if not pts:
        return {}
    rng: dict[str, list[float]] = {}

    def obs(key, prec, x):
        lo, hi = float(x.min()), float(x.max())
        r = rng.setdefault(key, [lo, hi])
        r[0], r[1] = min(r[0], lo), max(r[1], hi)
        return x

    hs = _hooks(pts, obs, obs)
    was = model.training
    model.eval()
    try:
        for i in range(0, calib_x.shape[0], batch_size):
            model(calib_x[i : i + batch_size])
    finally:
        for h in hs:
            h.remove()
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
    saved = {}
    was = model.training
    hs = []
    try:
        with torch.no_grad():
            for ql in layers:
                if ql.prec.w != "fp32":
                    saved[ql.name] = ql.mod.weight.data
                    ql.mod.weight.data = fake_weight(ql.mod.weight.data, ql.prec.w)
        if act is None:
            act = calibrate(model, layers, calib_x) if calib_x is not None else {}
        missing = [k for k, _, _, p in _act_points(layers) if p == "int8" and k not in act]
        if missing:
            raise ValueError(f"simulate: no calibration for {missing[0]} (pass calib_x)")
        fn = lambda key, prec, x: fake_act(x, prec, act.get(key))
        hs = _hooks(_act_points(layers), fn, fn)
        model.eval()
        yield act
    finally:
        for h in hs:
            h.remove()
        for ql in layers:
            if ql.name in saved:
                ql.mod.weight.data = saved[ql.name]
        model.train(was)


def qat(model: nn.Module, spec: ArchSpec, suite, data, steps: int, lr: float = 3e-4, batch_size: int = 128,
        seed: int = 0, device="cpu") -> dict:
    """Quantization-aware fine-tune in place: `steps` AdamW steps through the simulated
    policy (STE for weights and activations), BatchNorm statistics frozen."""
    from torch.func import functional_call

    from nasmt.train import _loss, tensors

    if steps <= 0 or is_fp32(spec):
        return {"qat_steps": 0}
    dev = torch.device(device)
    model.to(dev)
    layers = plan(model, group_paths(spec))
    x, ys = tensors(data, "train", dev)
    with simulate(model, spec, calib_batch(data, dev)) as act:
        act = dict(act)
    fn = lambda key, prec, t: fake_act(t, prec, act.get(key))
    hs = _hooks(_act_points(layers), fn, fn)
    qnames = {f"{ql.name}.weight": ql for ql in layers if ql.prec.w != "fp32"}
    params = dict(model.named_parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    bs = min(batch_size, n)
    model.eval()  # frozen BN stats, no dropout: the fine-tune sees the deployed network
    loss_v = float("nan")
    try:
        for _ in range(steps):
            idx = torch.randint(0, n, (bs,), generator=gen).to(dev)
            over = {k: fake_weight(params[k], ql.prec.w) for k, ql in qnames.items()}
            out = functional_call(model, over, (x[idx],), strict=False)
            loss, _ = _loss(suite, data, out, ys, idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_v = float(loss.detach())
    finally:
        for h in hs:
            h.remove()
    return {"qat_steps": steps, "qat_loss": loss_v}


# ----------------------------------------------------------------------------- size


def _weight_bytes(numel: int, prec_w: str) -> int:
    if prec_w == "int4":
        return (numel + 1) // 2
    return numel * BITS[prec_w] // 8


def _layer_bytes(ql: QLayer, has_bias: bool) -> int:
    w = ql.mod.weight
    cout = w.shape[0]
    n = _weight_bytes(w.numel(), ql.prec.w)
    if ql.prec.w in INT_BITS:
        n += 4 * cout  # fp32 scale per output channel
        if ql.prec.w == "int8" and ql.prec.a == "int8":
            n += cout  # uint8 zero point (128) per output channel: the u8u8 kernel
    if has_bias:
        n += 4 * cout  # fp32 or int32
        if ql.prec.w == "int8" and ql.prec.a == "int8":
            n += 4 * cout  # the int32 bias's fp32 scale per channel
    return n


def size_bytes(model: nn.Module, spec: ArchSpec) -> int:
    """Exact weight payload of the deployable artifact (BatchNorm folded; see module doc)."""
    layers = plan(model, group_paths(spec))
    n = 0
    covered = set()
    for ql in layers:
        has_bias = ql.mod.bias is not None or ql.bn is not None
        n += _layer_bytes(ql, has_bias)
        covered.update(id(p) for p in ql.mod.parameters())
        if ql.bn is not None:
            covered.update(id(p) for p in ql.bn.parameters())
    n += sum(p.numel() * 4 for p in model.parameters() if id(p) not in covered)  # stays fp32
    return int(n)


# ----------------------------------------------------------------------------- ONNX artifact


def _fold(root: nn.Module, layers: list[QLayer]) -> dict:
    """Fold BatchNorm into each conv of a (copied) root module and put the deployed
    weights in place. Returns {layer name: (int weights or None, folded scale or None)}."""
    info = {}
    with torch.no_grad():
        for ql in layers:
            w = ql.mod.weight.detach().float()
            shape = [-1] + [1] * (w.dim() - 1)
            if ql.bn is not None:
                bn = ql.bn
                g = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                b = bn.bias - bn.running_mean * g
                if ql.mod.bias is not None:
                    b = b + ql.mod.bias * g
            else:
                g = torch.ones(w.shape[0])
                b = ql.mod.bias.detach() if ql.mod.bias is not None else None
            q = s = None
            if ql.prec.w in INT_BITS:
                q, s0 = quant_weight(w, INT_BITS[ql.prec.w])
                sign = torch.where(g < 0, -1.0, 1.0)
                q = q * sign.view(shape)
                s = (s0 * g.abs()).float()
                wf = q * s.view(shape)
            else:
                wf = w * g.view(shape)
            ql.mod.weight.data = wf.contiguous()
            if b is not None:
                if ql.mod.bias is None:
                    ql.mod.bias = nn.Parameter(b.detach().clone())
                else:
                    ql.mod.bias.data = b.detach().clone()
            if ql.bn is not None:
                parent_name, _, child = ql.bn_name.rpartition(".")
                parent = root.get_submodule(parent_name) if parent_name else root
                setattr(parent, child, nn.Identity())
                ql.bn = None
            info[ql.name] = (q, s)
    return info


def _pack_int4(q: np.ndarray) -> bytes:
    v = (q.astype(np.int8).reshape(-1) & 0x0F).astype(np.uint8)
    if v.size % 2:
        v = np.concatenate([v, np.zeros(1, np.uint8)])
    return (v[0::2] | (v[1::2] << 4)).astype(np.uint8).tobytes()


def export_onnx(root: nn.Module, paths: list[tuple[str, Precision]], calib_x: torch.Tensor, path: Path,
                act: dict | None = None, output_names: list[str] | None = None) -> dict:
    """Write the QDQ ONNX artifact of `root` (fp32 weights, policy by group paths).

    Activation qparams come from `act` (keys as in `simulate`) or a calibration pass
    with the simulated weights. Returns {"act": qparams, "weight_bytes": payload}.
    """
    import warnings

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    src_layers = plan(root, paths)
    if act is None:
        saved = {}
        with torch.no_grad():
            for ql in src_layers:
                if ql.prec.w != "fp32":
                    saved[ql.name] = ql.mod.weight.data
                    ql.mod.weight.data = fake_weight(ql.mod.weight.data, ql.prec.w)
        try:
            act = calibrate(root, src_layers, calib_x)
        finally:
            for ql in src_layers:
                if ql.name in saved:
                    ql.mod.weight.data = saved[ql.name]
    m = copy.deepcopy(root).cpu().float().eval()
    layers = plan(m, paths)
    info = _fold(m, layers)
    fn = lambda key, prec, x: fake_act(x, prec, act.get(key))
    # after folding, a conv's "out" point is the conv itself (its BatchNorm is gone)
    hs = _hooks(_act_points(layers), fn, fn)
    x0 = calib_x[:1].cpu().float()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = m(x0)
            names = output_names or (list(out.keys()) if isinstance(out, dict) else ["y"])
            torch.onnx.export(
                m, (x0,), str(path), dynamo=False, opset_version=20, input_names=["x"], output_names=names,
                dynamic_axes={"x": {0: "n"}, **{k: {0: "n"} for k in names}}, do_constant_folding=True,
            )
    finally:
        for h in hs:
            h.remove()

    model = onnx.load(str(path))
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    new_nodes = []
    for ql in layers:
        wname, bname = f"{ql.name}.weight", f"{ql.name}.bias"
        if wname not in inits:
            raise RuntimeError(f"export: initializer {wname} not found in the ONNX graph")
        q, s = info[ql.name]
        pw = ql.prec.w
        if pw in INT_BITS:
            g.initializer.remove(inits[wname])
            qn = q.numpy().astype(np.int8)
            scale = s.numpy().astype(np.float32)
            if pw == "int8" and ql.prec.a == "int8":
                # int8 kernel (QLinearConv / QGemm): stored uint8 = q + 128 with zero point
                # 128 per channel, so ORT picks its u8u8 kernel (u8s8 saturates on non-VNNI x86)
                qt = numpy_helper.from_array((qn.astype(np.int16) + 128).astype(np.uint8), f"{wname}_q")
                zp = numpy_helper.from_array(np.full(qn.shape[0], 128, np.uint8), f"{wname}_zp")
                g.initializer.extend([qt, zp, numpy_helper.from_array(scale, f"{wname}_scale")])
                new_nodes.append(helper.make_node("DequantizeLinear", [f"{wname}_q", f"{wname}_scale", f"{wname}_zp"],
                                                  [wname], axis=0, name=f"{wname}_DQ"))
            elif pw == "int4" and ql.prec.a == "int8":
                # int4 next to int8 activations: an INT4 DequantizeLinear (a float weight here
                # would be re-quantized per tensor by ORT's WeightBiasQuantization)
                qt = helper.make_tensor(f"{wname}_q", TensorProto.INT4, list(qn.shape), _pack_int4(qn), raw=True)
                g.initializer.extend([qt, numpy_helper.from_array(scale, f"{wname}_scale")])
                new_nodes.append(helper.make_node("DequantizeLinear", [f"{wname}_q", f"{wname}_scale"], [wname], axis=0,
                                                  name=f"{wname}_DQ"))
            else:
                # weight-only: Cast + Mul, which ORT constant-folds at load into an fp32 weight
                # (a DequantizeLinear would be kept and re-run on every call)
                if pw == "int8":
                    qt = numpy_helper.from_array(qn, f"{wname}_q")
                else:
                    qt = helper.make_tensor(f"{wname}_q", TensorProto.INT4, list(qn.shape), _pack_int4(qn), raw=True)
                bshape = [-1] + [1] * (qn.ndim - 1)
                g.initializer.extend([qt, numpy_helper.from_array(scale.reshape(bshape), f"{wname}_scale")])
                new_nodes.append(helper.make_node("Cast", [f"{wname}_q"], [f"{wname}_f"], to=TensorProto.FLOAT,
                                                  name=f"{wname}_Cast"))
                new_nodes.append(helper.make_node("Mul", [f"{wname}_f", f"{wname}_scale"], [wname], name=f"{wname}_Mul"))
            in_key = f"{ql.name}:in"
            if pw == "int8" and ql.prec.a == "int8" and bname in inits and in_key in act:
                bias = numpy_helper.to_array(inits[bname]).astype(np.float64)
                bs = (np.float32(act[in_key][0]) * s.numpy().astype(np.float32)).astype(np.float32)
                bs = np.where(bs > 0, bs, np.float32(1.0)).astype(np.float32)
                bq = np.clip(np.round(bias / bs), -(2**31), 2**31 - 1).astype(np.int32)
                g.initializer.remove(inits[bname])
                g.initializer.extend([numpy_helper.from_array(bq, f"{bname}_q"), numpy_helper.from_array(bs, f"{bname}_scale")])
                new_nodes.append(helper.make_node("DequantizeLinear", [f"{bname}_q", f"{bname}_scale"], [bname], axis=0,
                                                  name=f"{bname}_DQ"))
        elif pw in FLOAT16:
            arr = numpy_helper.to_array(inits[wname])
            g.initializer.remove(inits[wname])
            if pw == "fp16":
                t16 = numpy_helper.from_array(arr.astype(np.float16), f"{wname}_16")
            else:
                import ml_dtypes

                raw = arr.astype(ml_dtypes.bfloat16).tobytes()
                t16 = helper.make_tensor(f"{wname}_16", TensorProto.BFLOAT16, list(arr.shape), raw, raw=True)
            g.initializer.append(t16)
            new_nodes.append(helper.make_node("Cast", [f"{wname}_16"], [wname], to=TensorProto.FLOAT, name=f"{wname}_Cast"))
    nodes = new_nodes + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            op.version = OPSET
    model.ir_version = max(model.ir_version, 10)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return {"act": act, "weight_bytes": artifact_weight_bytes(path)}


def artifact_weight_bytes(path: Path) -> int:
    """Payload bytes of an ONNX file's weight tensors: every initializer with at least
    one dimension, except int64 shape constants (scalar activation qparams excluded)."""
    import onnx
    from onnx import TensorProto, numpy_helper

    model = onnx.load(str(path))
    n = 0
    for t in model.graph.initializer:
        if len(t.dims) == 0 or t.data_type == TensorProto.INT64:
            continue
        numel = int(np.prod(t.dims))
        if t.data_type == TensorProto.INT4:
            n += (numel + 1) // 2
        elif t.data_type in (TensorProto.BFLOAT16, TensorProto.FLOAT16):
            n += 2 * numel
        else:
            n += numpy_helper.to_array(t).nbytes
    return n


def ort_session(path: Path, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_predict(sess, x: np.ndarray, batch_size: int = 256) -> dict[str, torch.Tensor]:
    names = [o.name for o in sess.get_outputs()]
    outs: dict[str, list] = {k: [] for k in names}
    for i in range(0, x.shape[0], batch_size):
        for k, v in zip(names, sess.run(None, {"x": np.ascontiguousarray(x[i : i + batch_size], dtype=np.float32)})):
            outs[k].append(torch.from_numpy(v))
    return {k: torch.cat(v) for k, v in outs.items()}


def measure_latency(path: Path, input_shape, batch: int = 1, warmup: int = 10, reps: int = 50,
                    threads: int = 1, min_time_s: float = 0.0) -> float:
    """Median wall time (ms) of one ORT run of the artifact at `batch`, after warm-up."""
    sess = path if not isinstance(path, (str, Path)) else ort_session(Path(path), threads)
    x = np.random.default_rng(0).random((batch, *input_shape), dtype=np.float32)
    feed = {"x": x}
    for _ in range(warmup):
        sess.run(None, feed)
    ts = []
    t_end = time.perf_counter() + min_time_s
    while len(ts) < reps or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        sess.run(None, feed)
        ts.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(ts)


def model_latency(model: nn.Module, spec: ArchSpec, calib_x: torch.Tensor, batch: int = 1, act: dict | None = None,
                  reps: int = 50) -> float:
    """Measured latency (ms) of the deployable artifact of (model, spec)."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / ARTIFACT
        export_onnx(model, group_paths(spec), calib_x, p, act=act)
        return measure_latency(p, spec.input_shape, batch, reps=reps)


# ----------------------------------------------------------------------------- latency table


def device_name(threads: int = 1) -> str:
    import onnxruntime as ort

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    slug = re.sub(r"[^a-z0-9]+", "-", cpu.lower()).strip("-")[:40]
    return f"cpu-{slug}-ort{ort.__version__}-t{threads}"


class LatencyTable:
    """Per-op latency lookup table (ms) for one device, persisted as JSON."""

    def __init__(self, path: Path | None = None, threads: int = 1):
        self.threads = threads
        self.path = Path(path) if path else cache_dir() / f"latency-{device_name(threads)}.json"
        self.entries: dict[str, float] = {}
        self.measured = 0  # entries measured by this object (the rest came from disk)
        self._load()

    def _load(self):
        if self.path.exists():
            try:
                self.entries.update(json.loads(self.path.read_text()).get("entries", {}))
            except (json.JSONDecodeError, OSError):
                pass

    def _save(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        disk = {}
        if self.path.exists():
            try:
                disk = json.loads(self.path.read_text()).get("entries", {})
            except (json.JSONDecodeError, OSError):
                disk = {}
        disk.update(self.entries)
        self.entries = disk
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps({"device": device_name(self.threads), "entries": disk}, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def overhead(self, input_shape, batch: int) -> float:
        key = f"__overhead__|{'x'.join(map(str, input_shape))}|b{batch}"
        if key not in self.entries:
            import onnx
            from onnx import TensorProto, helper

            x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", *input_shape])
            y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", *input_shape])
            m = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "id", [x], [y]),
                                  opset_imports=[helper.make_opsetid("", OPSET)])
            m.ir_version = 10
            with tempfile.TemporaryDirectory() as d:
                p = Path(d) / "id.onnx"
                onnx.save(m, str(p))
                self.entries[key] = measure_latency(p, input_shape, batch, reps=100, threads=self.threads)
            self.measured += 1
            self._save()
        return self.entries[key]

    def op(self, key: str, module: nn.Module, prec: Precision, in_shape: tuple, batch: int) -> float:
        if key not in self.entries:
            torch.manual_seed(0)
            module = module.eval()
            calib = torch.rand(16, *in_shape)
            with tempfile.TemporaryDirectory() as d:
                p = Path(d) / "op.onnx"
                export_onnx(module, [("", prec)], calib, p, output_names=["y"])
                t = measure_latency(p, in_shape, batch, reps=30, threads=self.threads)
            self.entries[key] = max(t - self.overhead(in_shape, batch), 0.0)
            self.measured += 1
            self._save()
        return self.entries[key]


def _units(spec: ArchSpec):
    """(key, modules, precision, input shape) of every op the artifact runs, in order."""
    from nasmt.model.build import _input_shape, _op, _Shape
    from nasmt.model.ops import GlobalPool
    from nasmt.space.spec import OpSpec

    def shp(s) -> tuple:
        return (s.c, s.h, s.w) if s.image else (s.c,)

    out = []

    def add(opstr, mods, prec, s):
        if not mods:
            return
        seq = nn.Sequential(*mods)
        has_w = any(isinstance(m, (nn.Conv2d, nn.Linear)) for m in seq.modules())
        p = prec if has_w else Precision()
        out.append((f"{opstr}|{'x'.join(map(str, shp(s)))}|{p.w}/{p.a}", seq, p, shp(s)))

    s = _input_shape(spec.input_shape)
    shapes = []
    for st in spec.stages:
        for o in st.ops:
            mods, s2 = _op(o, s)
            add(str(o), mods, st.precision, s)
            s = s2
        shapes.append(s)
    for b in spec.branches:
        s = shapes[b.tap - 1]
        for o in (*b.layers, *b.head):
            if o.op == "dropout":
                continue  # identity at inference
            mods, s2 = _op(o, s)
            add(str(o), mods, b.precision, s)
            s = s2
        if s.image:
            add("gap()", [GlobalPool()], b.precision, s)
            s = _Shape(s.c)
        add(f"linear(out={b.out})", [nn.Linear(s.c, b.out)], b.precision, s)
    return out


_TABLES: dict = {}  # one table per (path, threads) per worker process


def latency_table(path: Path | None = None, threads: int = 1) -> LatencyTable:
    key = (str(path) if path else None, threads)
    if key not in _TABLES:
        _TABLES[key] = LatencyTable(path, threads)
    return _TABLES[key]


def predicted_latency_ms(spec: ArchSpec, batch: int = 1, table: LatencyTable | None = None) -> float:
    """Per-run overhead + sum of per-op table entries (measuring any missing entry once)."""
    table = table or latency_table()
    total = table.overhead(tuple(spec.input_shape), batch)
    for key, mods, prec, in_shape in _units(spec):
        total += table.op(f"{key}|b{batch}", mods, prec, in_shape, batch)
    return float(total)


# ----------------------------------------------------------------------------- budgets


def constraint_values(costs: dict, max_bytes: float | None, max_latency_ms: float | None) -> list[float]:
    """Optuna constraint values (<= 0 is feasible); a missing cost counts as violated."""
    out = []
    if max_bytes is not None:
        v = costs.get("size_bytes")
        out.append(float(v) - float(max_bytes) if v is not None else 1.0)
    if max_latency_ms is not None:
        v = costs.get("latency_ms", costs.get("predicted_latency_ms"))
        out.append(float(v) - float(max_latency_ms) if v is not None else 1.0)
    return out


COSTS_ATTR = "nasmt_costs"


def constraints_func(trial, max_bytes: float | None = None, max_latency_ms: float | None = None) -> list[float]:
    """For the Optuna sampler (bind budgets with functools.partial): reads the costs the
    searcher stored in the trial's user attr `nasmt_costs` before `tell`."""
    return constraint_values(trial.user_attrs.get(COSTS_ATTR) or {}, max_bytes, max_latency_ms)


def feasible(metrics: dict, max_bytes: float | None, max_latency_ms: float | None) -> bool:
    return all(v <= 0 for v in constraint_values(metrics, max_bytes, max_latency_ms))


# ----------------------------------------------------------------------------- export


LOADER = '''import numpy as np, onnxruntime as ort
sess = ort.InferenceSession("{file}", providers=["CPUExecutionProvider"])
x = np.zeros((1, {shape}), dtype=np.float32)  # your batch, same layout as training
outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {{"x": x}})))  # task -> logits
'''


def _metrics(suite, data, out: dict, split: str) -> dict:
    from nasmt.train import metrics_from_outputs

    ys = {t: torch.from_numpy(np.ascontiguousarray(v)) for t, v in data.y[split].items()}
    return metrics_from_outputs(suite, data, out, ys)


def evaluate_artifact(path: Path, suite, data, split: str = "val") -> dict:
    return _metrics(suite, data, ort_predict(ort_session(path), data.x[split]), split)


def evaluate_simulated(model: nn.Module, spec: ArchSpec, suite, data, split: str = "val", act: dict | None = None,
                       device="cpu") -> dict:
    from nasmt.train import evaluate

    with simulate(model, spec, calib_batch(data, device), act=act):
        return evaluate(model, suite, data, split, device)


def _task_metrics(suite, m: dict) -> dict:
    return {t.ident: m[f"{t.ident}.{t.metric}"] for t in suite.tasks}


def export_bf16(model: nn.Module, out_dir: Path) -> str:
    """bf16 weights for GPU inference: load into the exported model, then
    `model.to("cuda", torch.bfloat16)`. (Tested on CPU only.)"""
    from safetensors.torch import save_file

    name = "weights_bf16.safetensors"
    save_file({k: v.detach().to(torch.bfloat16).contiguous().cpu() for k, v in model.state_dict().items()
               if v.is_floating_point()}, str(Path(out_dir) / name))
    return name


def export_quantized(model: nn.Module, spec: ArchSpec, suite, data, out_dir: Path, latency_batch: int = 1,
                     split: str = "val") -> dict:
    """Write `model_quant.onnx` (the policy of `spec`, real int8 kernels via ONNX Runtime
    QDQ), `weights_bf16.safetensors` and `quantized.md` into out_dir; returns sizes,
    artifact vs simulated metrics on `split`, and measured latency."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.cpu().float()
    calib = calib_batch(data)
    path = out_dir / ARTIFACT
    with simulate(model, spec, calib) as act:
        act = dict(act)
    sim = evaluate_simulated(model, spec, suite, data, split, act=act)
    exp = export_onnx(model, group_paths(spec), calib, path, act=act)
    art = evaluate_artifact(path, suite, data, split)
    lat = measure_latency(path, spec.input_shape, latency_batch)
    sb = size_bytes(model, spec)
    bf16 = export_bf16(model, out_dir)
    shape = ", ".join(map(str, spec.input_shape))
    loader = LOADER.format(file=ARTIFACT, shape=shape)
    file_bytes = path.stat().st_size
    acc_art, acc_sim = _task_metrics(suite, art), _task_metrics(suite, sim)
    diff = max(abs(acc_art[k] - acc_sim[k]) for k in acc_art)
    (out_dir / "quantized.md").write_text(
        f"# Quantized artifact\n\n`{ARTIFACT}`: ONNX (opset {OPSET}) QDQ model for ONNX Runtime, CPU.\n"
        f"Policy: {policy_summary(spec)}\n\n"
        f"* weight payload {sb:,} bytes (size_bytes), file {file_bytes:,} bytes\n"
        f"* {split} metrics: artifact {acc_art}, simulated in the search {acc_sim} (max diff {diff:.4f})\n"
        f"* latency {lat:.3f} ms (batch {latency_batch}, 1 thread, median)\n\n"
        "int8 stages/branches run ORT's int8 kernels (QLinearConv / QGemm); int4 weights are stored\n"
        "packed and run dequantized (fp32); bf16/fp16 weights are stored 16-bit and cast to fp32.\n\n"
        f"```python\n{loader}```\n\nbf16 on GPU: `{bf16}` holds bf16 weights; load them into the exported\n"
        "fp32 model and call `model.to(\"cuda\", torch.bfloat16)`.\n"
    )
    return {
        "file": ARTIFACT,
        "bytes": file_bytes,
        "size_bytes": sb,
        "artifact_weight_bytes": exp["weight_bytes"],
        "accuracy": acc_art,
        "simulated": acc_sim,
        "max_abs_diff": diff,
        "tolerance": ACC_TOLERANCE,
        "latency_ms": lat,
        "latency_batch": latency_batch,
        "policy": policy_summary(spec),
        "bf16_file": bf16,
        "loader": loader,
    }


# ----------------------------------------------------------------------------- Pareto latency


LATENCY_FILE = "latency.json"


def _load_trial_model(run_dir: Path, rec: dict):
    from safetensors.torch import load_file

    from nasmt.model.build import build

    spec = ArchSpec.from_json(rec["spec"])
    model = build(spec)
    model.load_state_dict(load_file(str(Path(run_dir) / "trials" / f"{int(rec['number']):05d}" / "weights.safetensors")))
    return spec, model.eval()


def measure_front(run_dir: Path, objectives=None, batch: int | None = None, max_bytes=None, max_latency_ms=None,
                  say=print) -> dict:
    """Measure the real artifact latency of the Pareto set; append an updated record per
    trial to trials.jsonl (metrics.latency_ms, latency_source=measured) and write
    latency.json with predicted vs measured and the predictor's error."""
    from nasmt.data import load_data_cached
    from nasmt.run import TRIALS_FILE, append_jsonl, atomic_write_json, load_run, read_trials, pareto_trials
    from nasmt.data.suite import suite_from_json

    run_dir = Path(run_dir)
    run = load_run(run_dir)
    cfg = run.get("config", {})
    batch = batch or int(cfg.get("latency_batch") or 1)
    max_bytes = max_bytes if max_bytes is not None else cfg.get("max_bytes")
    max_latency_ms = max_latency_ms if max_latency_ms is not None else cfg.get("max_latency_ms")
    if objectives is None:
        from nasmt.run import Objective

        objectives = [Objective(**o) for o in run["objectives"]]
    trials = [t for t in read_trials(run_dir) if t.get("status") == "complete"]
    ok = [t for t in trials if (t.get("metrics") or {}).get("feasible", True)]
    front = pareto_trials(ok, objectives)
    suite = suite_from_json(run["suite"], file=run.get("suite_file", "<run>"))
    data = load_data_cached(suite)
    calib = calib_batch(data)
    rows = []
    for rec in front:
        spec, model = _load_trial_model(run_dir, rec)
        lat = model_latency(model, spec, calib, batch)
        m = dict(rec["metrics"])
        pred = m.get("predicted_latency_ms")
        m["latency_ms"] = lat
        m["latency_source"] = "measured"
        m["feasible"] = feasible(m, max_bytes, max_latency_ms)
        append_jsonl(run_dir / TRIALS_FILE, {**rec, "metrics": m})
        rows.append({"number": rec["number"], "measured_ms": lat, "predicted_ms": pred,
                     "rel_error": (abs(pred - lat) / lat) if pred else None, "policy": policy_summary(spec)})
        say(f"trial {rec['number']}: measured {lat:.3f} ms" + (f", predicted {pred:.3f} ms" if pred else ""))
    res = {"batch": batch, "device": device_name(1), "trials": rows, "predictor_error": _err(rows)}
    atomic_write_json(run_dir / LATENCY_FILE, res)
    return res


def _err(rows) -> dict:
    e = [r["rel_error"] for r in rows if r.get("rel_error") is not None]
    if not e:
        return {"n": 0, "median_rel_error": None, "worst_rel_error": None}
    return {"n": len(e), "median_rel_error": float(np.median(e)), "worst_rel_error": float(max(e))}


def predictor_error(run_dir: Path) -> dict:
    """Median and worst relative error of predicted vs measured latency (latency.json)."""
    p = Path(run_dir) / LATENCY_FILE
    if not p.exists():
        return {"n": 0, "median_rel_error": None, "worst_rel_error": None}
    return json.loads(p.read_text())["predictor_error"]
