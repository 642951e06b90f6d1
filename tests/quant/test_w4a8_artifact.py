"""The w4a8 artifact (int4 weights, int8 activations) run by ONNX Runtime: a small
trained model with that policy everywhere, its `model_quant.onnx` evaluated by ORT on
the validation split, against the simulated metric of the search (Q.simulate)."""

from __future__ import annotations

import onnx
import torch
from onnx import TensorProto

from nasmt import quant as Q
from nasmt.model.build import build
from nasmt.space.spec import ArchSpec, BranchSpec, OpSpec, Precision, StageSpec
from nasmt.train import TrainConfig, train

torch.set_num_threads(1)
W4A8 = Precision("int4", "int8")


def test_w4a8_artifact_runs_in_ort_and_matches_simulation(mm, tmp_path):
    suite, data = mm
    spec = ArchSpec(
        space="t", input_shape=tuple(data.input_shape),
        stages=(StageSpec((OpSpec.from_json({"op": "conv", "k": 3, "c": 16, "s": 2}),
                           OpSpec.from_json({"op": "maxpool", "k": 2})), W4A8),
                StageSpec((OpSpec.from_json({"op": "conv", "k": 3, "c": 24, "s": 1}),), W4A8)),
        branches=tuple(BranchSpec(t, 2, (), (OpSpec("gap"), OpSpec.from_json({"op": "fc", "h": 32, "act": "relu"})),
                                  n, W4A8) for t, n in data.n_outputs.items()),
    )
    torch.manual_seed(0)
    model = build(spec)
    train(model, suite, data, TrainConfig(steps=80, batch_size=64, lr=1e-2))
    model.eval()
    r = Q.export_quantized(model, spec, suite, data, tmp_path)
    path = tmp_path / r["file"]

    # the file really is w4a8: every Conv / Gemm reads its weight from an INT4
    # DequantizeLinear and its input from a uint8 QuantizeLinear -> DequantizeLinear pair
    # (the exporter shares one pair between the two branches' identical inputs)
    g = onnx.load(str(path)).graph
    int4 = {t.name for t in g.initializer if t.data_type == TensorProto.INT4}
    layers = Q.plan(model, Q.group_paths(spec))
    assert int4 == {f"{ql.name}.weight_q" for ql in layers} and len(int4) == 2 + 2 * len(data.n_outputs)
    assert not any(t.data_type == TensorProto.FLOAT and t.name.endswith(".weight") for t in g.initializer)
    made_by = {o: n for n in g.node for o in n.output}
    compute = [n for n in g.node if n.op_type in ("Conv", "Gemm")]
    assert len(compute) == len(layers)
    for n in compute:
        x_dq, w_dq = made_by[n.input[0]], made_by[n.input[1]]
        assert w_dq.op_type == "DequantizeLinear" and w_dq.input[0] in int4, n.name
        assert x_dq.op_type == "DequantizeLinear" and made_by[x_dq.input[0]].op_type == "QuantizeLinear", n.name

    # ORT runs it on the validation split ...
    art = Q.evaluate_artifact(path, suite, data, "val")
    sim = Q.evaluate_simulated(model, spec, suite, data, "val")
    for t in suite.tasks:
        key = f"{t.ident}.{t.metric}"
        assert art[key] > 0.15, f"{key}: {art[key]} (trained: above chance, 0.1, so the comparison means something)"
        # ... within the project's tolerance of the simulation
        assert abs(art[key] - sim[key]) <= Q.ACC_TOLERANCE, (key, art[key], sim[key])
        assert r["accuracy"][t.ident] == art[key]
