"""Quantization policies: simulate, measure, materialize.

Every trunk stage and every task branch of an ArchSpec carries `Precision(w, a)`
(`policy`). This package turns such a policy into three things:

1. **Simulation** (plain torch, straight-through gradients), used inside a trial:
   `simulation.simulate` (fake-quantized weights and calibrated activations) and
   `finetune.qat` (a short quantization-aware fine-tune through the one training loop,
   BatchNorm frozen).
2. **Cost**: the exact weight payload of the artifact (`size`), its latency measured
   (`runtime`, `latency.model_latency`) or predicted from a per-op table (`latency`),
   and budgets as Optuna constraints (`budget`).
3. **Artifact** (`artifact`): `export_quantized()` writes `model_quant.onnx`, a QDQ ONNX
   model for ONNX Runtime (CPU), next to the fp32 export; the module documents the
   measured backend choice and how each precision runs.
"""

from nasmt.quant.artifact import (
    ACC_TOLERANCE,
    ARTIFACT,
    OPSET,
    artifact_weight_bytes,
    evaluate_artifact,
    evaluate_simulated,
    export_bf16,
    export_onnx,
    export_quantized,
    torch_to_onnx,
)
from nasmt.quant.budget import COSTS_ATTR, constraint_values, constraints_func, feasible
from nasmt.quant.latency import LatencyTable, device_name, latency_table, model_latency, predicted_latency_ms
from nasmt.quant.policy import QLayer, effective, group_paths, is_fp32, plan, policy_summary, with_policy
from nasmt.quant.finetune import qat
from nasmt.quant.runtime import measure_latency, ort_predict, ort_session
from nasmt.quant.simulation import CALIB_N, act_qparams, calib_batch, calibrate, fake_act, fake_weight, quant_weight, simulate
from nasmt.quant.size import size_bytes

__all__ = [
    "ACC_TOLERANCE", "ARTIFACT", "OPSET", "artifact_weight_bytes", "evaluate_artifact", "evaluate_simulated",
    "export_bf16", "export_onnx", "export_quantized", "torch_to_onnx",
    "COSTS_ATTR", "constraint_values", "constraints_func", "feasible",
    "LatencyTable", "device_name", "latency_table", "model_latency", "predicted_latency_ms",
    "QLayer", "effective", "group_paths", "is_fp32", "plan", "policy_summary", "with_policy",
    "qat",
    "measure_latency", "ort_predict", "ort_session",
    "CALIB_N", "act_qparams", "calib_batch", "calibrate", "fake_act", "fake_weight", "quant_weight", "simulate",
    "size_bytes",
]
