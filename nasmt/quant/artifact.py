"""The deployable artifact: `model_quant.onnx`, a QDQ ONNX model for ONNX Runtime (CPU),
written next to the fp32 export by `export_quantized()`. `torch_to_onnx()` is the one
torch -> ONNX export of nasmt (the fp32 `model.onnx` goes through it too).

Backend choice, by measurement: `benchmarks/bench_quant.py` writes the figures to
reports/bench_quant.json "backend" (1 thread, batch 1, conv3x3(16,s2) conv3x3(32)
dwsep3x3(48) maxpool gap fc(64) linear(10); read them there rather than here). In that
run ORT fp32 was the fastest, ORT w8a8 about 1.9x and w4a8 about 3.4x its time; torch eager
fp32 about 10x; torchao PT2E (X86InductorQuantizer) int8 slower still in eager mode and,
compiled with inductor freezing (seconds of compilation first), still slower than ORT.
So ONNX Runtime QDQ: (a) the artifact loads with `onnxruntime` alone (a PT2E .pt2
needs torch + torchao and a compile step); (b) mixed per-stage / per-branch precision
is one Q/DQ choice per tensor, and PT2E's quantizer rejects our Residual block (a ReLU
module called twice); (c) the artifact's numbers equal the simulation's: we write the
QDQ graph ourselves from the simulation's integers and calibrated scales (no second
calibration by `quantize_static`), so artifact accuracy matches the trial record
(reports/bench_quant.json rows, agreement: <= 0.25 accuracy points;
tolerance ACC_TOLERANCE = 1.5 points).

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
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nasmt.quant.policy import FLOAT16, INT_BITS, QLayer, group_paths, plan, policy_summary
from nasmt.quant.runtime import measure_latency, ort_predict, ort_session
from nasmt.quant.simulation import calib_batch, calibrate, fake_act_hooks, quant_weight, quantized_weights, simulate
from nasmt.quant.size import size_bytes
from nasmt.space.spec import ArchSpec, Precision
from nasmt.train import evaluate, metrics_from_outputs

ACC_TOLERANCE = 0.015  # |artifact - simulation| accuracy per task, as a fraction (1.5 points)
TORCH_OPSET = 20  # what torch's TorchScript exporter writes; the QDQ graph is then raised to OPSET
OPSET = 21  # INT4 DequantizeLinear needs 21
ARTIFACT = "model_quant.onnx"
BF16_FILE = "weights_bf16.safetensors"
U8_ZERO_POINT = 128  # int8 weights are stored as uint8 q + 128: ORT's exact u8u8 kernel


def torch_to_onnx(module: nn.Module, example_x: torch.Tensor, path: Path, output_names: list[str],
                  dynamic_batch: bool = True) -> None:
    """Export `module` (called on `example_x`, input named "x") to ONNX at `path`: the
    TorchScript exporter, opset TORCH_OPSET, constants folded; with `dynamic_batch` the
    first axis of the input and every output is the symbolic "batch".

    Every parameter keeps its own initializer: by default the exporter merges initializers
    with equal values (`_jit_pass_onnx_deduplicate_initializers`; e.g. the zero biases of
    freshly initialised BatchNorms of one width), so the file would store less than
    `size_bytes` counts and a merged int8 layer's bias would escape quantization. The one
    switch that skips that pass, keep_initializers_as_inputs=True, also lists every
    initializer as a graph input (overridable, so ORT would not constant-fold or fuse
    them); those inputs are removed again here, leaving only "x"."""
    import onnx

    axes = {k: {0: "batch"} for k in ("x", *output_names)} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
        torch.onnx.export(module, (example_x,), str(path), dynamo=False, opset_version=TORCH_OPSET,
                          input_names=["x"], output_names=list(output_names), dynamic_axes=axes,
                          do_constant_folding=True, keep_initializers_as_inputs=True)
    model = onnx.load(str(path))
    inits = {t.name for t in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    onnx.save(model, str(path))


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


def _int4_tensor(name: str, qn: np.ndarray):
    from onnx import TensorProto, helper

    return helper.make_tensor(name, TensorProto.INT4, list(qn.shape), _pack_int4(qn), raw=True)


def _int_weight(g, inits: dict, ql: QLayer, q: torch.Tensor, s: torch.Tensor, act: dict) -> list:
    """Replace an int8 / int4 layer's weight (and an int8 kernel's bias) by integers +
    scales; returns the nodes that rebuild the float names from them."""
    from onnx import TensorProto, helper, numpy_helper

    wname, bname = f"{ql.name}.weight", f"{ql.name}.bias"
    pw, int8_act = ql.prec.w, ql.prec.a == "int8"
    g.initializer.remove(inits[wname])
    qn = q.numpy().astype(np.int8)
    scale = s.numpy().astype(np.float32)
    nodes = []
    if pw == "int8" and int8_act:
        # int8 kernel (QLinearConv / QGemm): uint8 = q + 128 with zero point 128 per
        # channel, so ORT picks its u8u8 kernel (u8s8 saturates on non-VNNI x86)
        qt = numpy_helper.from_array((qn.astype(np.int16) + U8_ZERO_POINT).astype(np.uint8), f"{wname}_q")
        zp = numpy_helper.from_array(np.full(qn.shape[0], U8_ZERO_POINT, np.uint8), f"{wname}_zp")
        g.initializer.extend([qt, zp, numpy_helper.from_array(scale, f"{wname}_scale")])
        nodes.append(helper.make_node("DequantizeLinear", [f"{wname}_q", f"{wname}_scale", f"{wname}_zp"], [wname],
                                      axis=0, name=f"{wname}_DQ"))
    elif pw == "int4" and int8_act:
        # int4 next to int8 activations: an INT4 DequantizeLinear (a float weight here
        # would be re-quantized per tensor by ORT's WeightBiasQuantization)
        g.initializer.extend([_int4_tensor(f"{wname}_q", qn), numpy_helper.from_array(scale, f"{wname}_scale")])
        nodes.append(helper.make_node("DequantizeLinear", [f"{wname}_q", f"{wname}_scale"], [wname], axis=0,
                                      name=f"{wname}_DQ"))
    else:
        # weight-only: Cast + Mul, which ORT constant-folds at load into an fp32 weight
        # (a DequantizeLinear would be kept and re-run on every call)
        qt = numpy_helper.from_array(qn, f"{wname}_q") if pw == "int8" else _int4_tensor(f"{wname}_q", qn)
        bshape = [-1] + [1] * (qn.ndim - 1)
        g.initializer.extend([qt, numpy_helper.from_array(scale.reshape(bshape), f"{wname}_scale")])
        nodes.append(helper.make_node("Cast", [f"{wname}_q"], [f"{wname}_f"], to=TensorProto.FLOAT, name=f"{wname}_Cast"))
        nodes.append(helper.make_node("Mul", [f"{wname}_f", f"{wname}_scale"], [wname], name=f"{wname}_Mul"))
    in_key = f"{ql.name}:in"
    if pw == "int8" and int8_act and bname in inits and in_key in act:
        bias = numpy_helper.to_array(inits[bname]).astype(np.float64)
        bs = (np.float32(act[in_key][0]) * scale).astype(np.float32)
        bs = np.where(bs > 0, bs, np.float32(1.0)).astype(np.float32)
        bq = np.clip(np.round(bias / bs), -(2**31), 2**31 - 1).astype(np.int32)
        g.initializer.remove(inits[bname])
        g.initializer.extend([numpy_helper.from_array(bq, f"{bname}_q"), numpy_helper.from_array(bs, f"{bname}_scale")])
        nodes.append(helper.make_node("DequantizeLinear", [f"{bname}_q", f"{bname}_scale"], [bname], axis=0,
                                      name=f"{bname}_DQ"))
    return nodes


def _float16_weight(g, inits: dict, ql: QLayer) -> list:
    """Store a bf16 / fp16 layer's weight 16-bit; returns the Cast back to fp32."""
    from onnx import TensorProto, helper, numpy_helper

    wname = f"{ql.name}.weight"
    arr = numpy_helper.to_array(inits[wname])
    g.initializer.remove(inits[wname])
    if ql.prec.w == "fp16":
        t16 = numpy_helper.from_array(arr.astype(np.float16), f"{wname}_16")
    else:
        import ml_dtypes

        raw = arr.astype(ml_dtypes.bfloat16).tobytes()
        t16 = helper.make_tensor(f"{wname}_16", TensorProto.BFLOAT16, list(arr.shape), raw, raw=True)
    g.initializer.append(t16)
    return [helper.make_node("Cast", [f"{wname}_16"], [wname], to=TensorProto.FLOAT, name=f"{wname}_Cast")]


def _quantize_graph(model, layers: list[QLayer], info: dict, act: dict) -> None:
    """Rewrite the fp32 graph's weights per layer precision; raise the opset to OPSET."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    new_nodes = []
    for ql in layers:
        if f"{ql.name}.weight" not in inits:
            raise RuntimeError(f"export: initializer {ql.name}.weight not found in the ONNX graph")
        if ql.prec.w in INT_BITS:
            new_nodes += _int_weight(g, inits, ql, *info[ql.name], act)
        elif ql.prec.w in FLOAT16:
            new_nodes += _float16_weight(g, inits, ql)
    nodes = new_nodes + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            op.version = OPSET
    model.ir_version = max(model.ir_version, 10)  # IR 10 carries INT4


def export_onnx(root: nn.Module, paths: list[tuple[str, Precision]], calib_x: torch.Tensor, path: Path,
                act: dict | None = None, output_names: list[str] | None = None) -> dict:
    """Write the QDQ ONNX artifact of `root` (fp32 weights, policy by group paths).

    Activation qparams come from `act` (keys as in `simulate`) or a calibration pass
    with the simulated weights. Returns {"act": qparams, "weight_bytes": payload}.
    """
    import onnx

    if act is None:
        src_layers = plan(root, paths)
        with quantized_weights(src_layers):
            act = calibrate(root, src_layers, calib_x)
    m = copy.deepcopy(root).cpu().float().eval()
    layers = plan(m, paths)
    info = _fold(m, layers)
    x0 = calib_x[:1].cpu().float()
    # after folding, a conv's "out" point is the conv itself (its BatchNorm is gone)
    with fake_act_hooks(layers, act):
        if output_names is None:
            with torch.no_grad():
                out = m(x0)
            output_names = list(out.keys()) if isinstance(out, dict) else ["y"]
        torch_to_onnx(m, x0, path, output_names)
    model = onnx.load(str(path))
    _quantize_graph(model, layers, info, act)
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


# ----------------------------------------------------------------------------- deployment


LOADER = '''import numpy as np, onnxruntime as ort
sess = ort.InferenceSession("{file}", providers=["CPUExecutionProvider"])
x = np.zeros((1, {shape}), dtype=np.float32)  # your batch, same layout as training
outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {{"x": x}})))  # task -> logits
'''


def evaluate_artifact(path: Path, suite, data, split: str = "val") -> dict:
    """Metrics of an ONNX artifact on a split, run by ONNX Runtime."""
    out = ort_predict(ort_session(path), data.x[split])
    ys = {t: torch.from_numpy(np.ascontiguousarray(v)) for t, v in data.y[split].items()}
    return metrics_from_outputs(suite, data, out, ys)


def evaluate_simulated(model: nn.Module, spec: ArchSpec, suite, data, split: str = "val", act: dict | None = None,
                       device="cpu") -> dict:
    """Metrics of `model` on a split, simulating the policy of `spec`."""
    with simulate(model, spec, calib_batch(data, device), act=act):
        return evaluate(model, suite, data, split, device)


def _task_metrics(suite, m: dict) -> dict:
    return {t.ident: m[f"{t.ident}.{t.metric}"] for t in suite.tasks}


def export_bf16(model: nn.Module, out_dir: Path) -> str:
    """bf16 weights for GPU inference: load into the exported model, then
    `model.to("cuda", torch.bfloat16)`. (Tested on CPU only.)"""
    from safetensors.torch import save_file

    save_file({k: v.detach().to(torch.bfloat16).contiguous().cpu() for k, v in model.state_dict().items()
               if v.is_floating_point()}, str(Path(out_dir) / BF16_FILE))
    return BF16_FILE


def _readme(r: dict, split: str) -> str:
    return (
        f"# Quantized artifact\n\n`{ARTIFACT}`: ONNX (opset {OPSET}) QDQ model for ONNX Runtime, CPU.\n"
        f"Policy: {r['policy']}\n\n"
        f"* weight payload {r['size_bytes']:,} bytes (size_bytes), file {r['bytes']:,} bytes\n"
        f"* {split} metrics: artifact {r['accuracy']}, simulated in the search {r['simulated']} "
        f"(max diff {r['max_abs_diff']:.4f})\n"
        f"* latency {r['latency_ms']:.3f} ms (batch {r['latency_batch']}, 1 thread, median)\n\n"
        "int8 stages/branches run ORT's int8 kernels (QLinearConv / QGemm); int4 weights are stored\n"
        "packed and run dequantized (fp32); bf16/fp16 weights are stored 16-bit and cast to fp32.\n\n"
        f"```python\n{r['loader']}```\n\nbf16 on GPU: `{r['bf16_file']}` holds bf16 weights; load them into the exported\n"
        "fp32 model and call `model.to(\"cuda\", torch.bfloat16)`.\n"
    )


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
    sim = _task_metrics(suite, evaluate_simulated(model, spec, suite, data, split, act=act))
    exp = export_onnx(model, group_paths(spec), calib, path, act=act)
    art = _task_metrics(suite, evaluate_artifact(path, suite, data, split))
    r = {
        "file": ARTIFACT,
        "bytes": path.stat().st_size,
        "size_bytes": size_bytes(model, spec),
        "artifact_weight_bytes": exp["weight_bytes"],
        "accuracy": art,
        "simulated": sim,
        "max_abs_diff": max(abs(art[k] - sim[k]) for k in art),
        "tolerance": ACC_TOLERANCE,
        "latency_ms": measure_latency(path, spec.input_shape, latency_batch),
        "latency_batch": latency_batch,
        "policy": policy_summary(spec),
        "bf16_file": export_bf16(model, out_dir),
        "loader": LOADER.format(file=ARTIFACT, shape=", ".join(map(str, spec.input_shape))),
    }
    (out_dir / "quantized.md").write_text(_readme(r, split))
    return r
