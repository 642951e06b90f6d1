"""Exact size of a policy's deployable artifact.

`size_bytes()` counts exactly the weight payload of the artifact (`nasmt.quant.artifact`,
BatchNorm folded into the conv): weight numel x bits / 8 (int4 packed two per byte,
rounded up per tensor), an fp32 scale per output channel for int8/int4 weights, a uint8
zero point (128) per output channel for int8 weights next to int8 activations (the u8u8
kernel), the folded bias (fp32, or int32 + an fp32 per-channel scale where weights and
activations are both int8); parameters outside Conv2d / Linear layers and float buffers
that no fold absorbs (a piecewise-linear encoding's fitted bins) at fp32. `artifact_weight_bytes(file) == size_bytes(model, spec)`
exactly: `torch_to_onnx` keeps one initializer per parameter (the exporter would merge
equal ones, e.g. the zero biases of untrained BatchNorms). The file adds the graph (node
protos, scalar activation qparams): in reports/bench_quant.json (conv space, MultiMNIST)
file - size_bytes was 2.8-5.4 KB for all-fp32 artifacts, 6.8-18.3 KB for the mixed
policies and 12.3-23.4 KB for fully int8 ones (a Q/DQ pair per activation point).
"""

from __future__ import annotations

from torch import nn

from nasmt.quant.policy import INT_BITS, QLayer, group_paths, plan
from nasmt.space.spec import ArchSpec
from nasmt.space.vocab import BITS

FP32_BYTES = 4  # an fp32 scale, an fp32 bias or an int32 bias
ZERO_POINT_BYTES = 1  # a uint8 zero point


def _weight_bytes(numel: int, prec_w: str) -> int:
    if prec_w == "int4":
        return (numel + 1) // 2
    return numel * BITS[prec_w] // 8


def _layer_bytes(ql: QLayer, has_bias: bool) -> int:
    w = ql.mod.weight
    cout = w.shape[0]
    int8_kernel = ql.prec.w == "int8" and ql.prec.a == "int8"
    n = _weight_bytes(w.numel(), ql.prec.w)
    if ql.prec.w in INT_BITS:
        n += FP32_BYTES * cout  # scale per output channel
        if int8_kernel:
            n += ZERO_POINT_BYTES * cout  # zero point (128) per output channel: the u8u8 kernel
    if has_bias:
        n += FP32_BYTES * cout  # fp32 or int32
        if int8_kernel:
            n += FP32_BYTES * cout  # the int32 bias's fp32 scale per channel
    return n


def size_bytes(model: nn.Module, spec: ArchSpec) -> int:
    """Exact weight payload of the deployable artifact (BatchNorm folded; see module doc)."""
    n = 0
    covered = set()
    for ql in plan(model, group_paths(spec)):
        n += _layer_bytes(ql, ql.mod.bias is not None or ql.bn is not None)
        covered.update(id(p) for p in ql.mod.parameters())
        if ql.bn is not None:
            covered.update(id(p) for p in (*ql.bn.parameters(), *ql.bn.buffers()))
    n += sum(p.numel() * FP32_BYTES for p in model.parameters() if id(p) not in covered)  # stays fp32
    # fitted float state (piecewise-linear bins) ships as fp32 too; integer buffers (column indices) are graph constants
    n += sum(b.numel() * FP32_BYTES for b in model.buffers() if b.is_floating_point() and id(b) not in covered)
    return int(n)
