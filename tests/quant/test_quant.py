"""nasmt.quant: fake quantization, exact size, budgets, the ONNX artifact, the latency table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from torch import nn

from nasmt import quant as Q
from nasmt.model.build import build
from nasmt.space.spec import ArchSpec, BranchSpec, OpSpec, Precision, StageSpec

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]


def tiny_spec(stage=Precision("int8", "int8"), branch=Precision("int4", "fp32")) -> ArchSpec:
    return ArchSpec(
        space="t",
        input_shape=(1, 8, 8),
        stages=(StageSpec((OpSpec.from_json({"op": "conv", "k": 3, "c": 4, "s": 1}),), stage),),
        branches=(BranchSpec("a", 1, (), (OpSpec("gap"),), 3, branch),),
    )


def _randomize_bn(model):
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model


# ----------------------------------------------------------------------------- fake quant


def test_int8_per_channel_error_bound():
    torch.manual_seed(0)
    w = torch.randn(16, 8, 3, 3) * torch.logspace(-3, 1, 16).view(-1, 1, 1, 1)  # very different channel ranges
    q, s = Q.quant_weight(w, 8)
    assert q.abs().max() <= 127 and torch.equal(q, q.round())
    wq = Q.fake_weight(w, "int8")
    err = (wq - w).abs().flatten(1).amax(1)
    assert torch.all(err <= s / 2 * (1 + 1e-5))  # half a step of ITS channel's scale
    assert torch.allclose(s, w.abs().flatten(1).amax(1) / 127)
    # per channel: the largest weight of each channel is represented exactly
    assert torch.allclose(wq.abs().flatten(1).amax(1), w.abs().flatten(1).amax(1), rtol=1e-6)


def test_int4_levels():
    torch.manual_seed(0)
    w = torch.randn(6, 40)
    q, s = Q.quant_weight(w, 4)
    assert q.min() >= -7 and q.max() <= 7
    wq = Q.fake_weight(w, "int4")
    for c in range(6):
        levels = torch.unique(wq[c] / s[c]).round()
        assert len(levels) <= 15
        assert set(levels.tolist()) <= set(range(-7, 8))


def test_float16_round_trip():
    w = torch.randn(4, 5)
    assert torch.equal(Q.fake_weight(w, "bf16"), w.to(torch.bfloat16).float())
    assert torch.equal(Q.fake_weight(w, "fp16"), w.half().float())
    assert Q.fake_weight(w, "fp32") is w


def test_ste_gradients_pass():
    w = torch.randn(8, 4, requires_grad=True)
    (Q.fake_weight(w, "int4") * 3.0).sum().backward()
    assert torch.allclose(w.grad, torch.full_like(w, 3.0))  # straight through
    x = torch.linspace(0, 1, 50, requires_grad=True)
    Q.fake_act(x, "int8", Q.act_qparams(0.0, 1.0)).sum().backward()
    assert torch.allclose(x.grad, torch.ones_like(x))


def test_act_qparams_cover_range_and_zero():
    s, zp = Q.act_qparams(-1.0, 3.0)
    assert zp == round(1.0 / s) and abs(s - 4.0 / 255) < 1e-7
    s, zp = Q.act_qparams(0.5, 2.0)  # widened to include 0
    assert zp == 0 and abs(s - 2.0 / 255) < 1e-7


def test_simulate_restores_weights_and_changes_outputs():
    torch.manual_seed(0)
    spec = tiny_spec(Precision("int4", "int8"), Precision("int8", "int8"))
    model = _randomize_bn(build(spec)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(32, 1, 8, 8)
    with torch.no_grad():
        ref = model(x)["a"]
        with Q.simulate(model, spec, x) as act:
            assert set(act) == {"trunk.0.0.conv:in", "trunk.0.0.conv:out", "branches.a.1:in", "branches.a.1:out"}
            sim = model(x)["a"]
            w = model.trunk[0][0].conv.weight
            assert len(torch.unique(w[0])) <= 15  # int4 inside
        assert not torch.equal(sim, ref)
        with pytest.raises(RuntimeError):
            with Q.simulate(model, spec, x):
                raise RuntimeError("boom")
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    with torch.no_grad():
        assert torch.equal(model(x)["a"], ref)


# ----------------------------------------------------------------------------- size


def test_size_bytes_exact_hand_count(tmp_path):
    spec = tiny_spec(Precision("int8", "int8"), Precision("int4", "fp32"))
    model = _randomize_bn(build(spec)).eval()
    # stage: conv 4x1x3x3 int8 = 36, per-channel fp32 scales 16, uint8 zero points 4,
    #        folded BN bias int32 16 + its fp32 scales 16                       -> 88
    # branch: Linear(4 -> 3) int4 = 12 weights / 2 = 6, scales 3 x 4 = 12, bias fp32 12 -> 30
    assert Q.size_bytes(model, spec) == 88 + 30
    # all fp32: conv 36 x 4 + folded bias 16, linear (12 + 3) x 4
    assert Q.size_bytes(model, Q.with_policy(spec, "fp32", "fp32")) == 36 * 4 + 16 + 15 * 4
    # bf16 weights: 2 bytes each, biases stay fp32
    assert Q.size_bytes(model, Q.with_policy(spec, "bf16", "fp32")) == 36 * 2 + 16 + 12 * 2 + 12
    # the artifact holds exactly that payload
    for sp in (spec, Q.with_policy(spec, "bf16", "fp32"), Q.with_policy(spec, "int4", "int8")):
        p = tmp_path / "m.onnx"
        Q.export_onnx(model, Q.group_paths(sp), torch.rand(8, 1, 8, 8), p)
        assert Q.artifact_weight_bytes(p) == Q.size_bytes(model, sp)


def test_effective_precision_int8_activations_need_int8_weights():
    assert Q.effective(Precision("fp32", "int8")) == Precision("int8", "int8")
    assert Q.effective(Precision("int4", "int8")) == Precision("int4", "int8")
    assert Q.effective(Precision("bf16", "fp32")) == Precision("bf16", "fp32")


# ----------------------------------------------------------------------------- budgets


def test_constraints_func_values_and_optuna():
    ft = optuna.trial.create_trial(values=[0.1], user_attrs={Q.COSTS_ATTR: {"size_bytes": 900, "predicted_latency_ms": 2.0}})
    assert Q.constraints_func(ft, max_bytes=1000) == [-100.0]
    assert Q.constraints_func(ft, max_bytes=800, max_latency_ms=1.5) == [100.0, 0.5]
    ft2 = optuna.trial.create_trial(values=[0.1], user_attrs={Q.COSTS_ATTR: {"latency_ms": 1.0, "predicted_latency_ms": 9.0}})
    assert Q.constraints_func(ft2, max_latency_ms=1.5) == [-0.5]  # measured wins over predicted
    assert Q.constraints_func(optuna.trial.create_trial(values=[0.1]), max_bytes=10) == [1.0]  # missing: violated
    assert Q.feasible({"size_bytes": 10}, 10, None) and not Q.feasible({"size_bytes": 11}, 10, None)

    # the sampler records them (the searcher sets the user attr before tell)
    from nasmt.search.samplers import make_sampler

    sampler = make_sampler("tpe", 0, 8, max_bytes=1000)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=sampler)
    for size in (500, 2000):
        t = study.ask()
        t.suggest_float("x", 0, 1)
        t.set_user_attr(Q.COSTS_ATTR, {"size_bytes": size})
        study.tell(t, 0.5)
    cons = [list(t.system_attrs.get("constraints")) for t in study.trials]
    assert cons == [[-500.0], [1000.0]]


# ----------------------------------------------------------------------------- artifact


def test_artifact_runs_without_nasmt_and_matches_simulation(tmp_path):
    torch.manual_seed(0)
    spec = ArchSpec(
        space="t", input_shape=(1, 12, 12),
        stages=(
            StageSpec((OpSpec.from_json({"op": "conv", "k": 3, "c": 8, "s": 2}),), Precision("int8", "int8")),
            StageSpec((OpSpec.from_json({"op": "dwsep", "k": 3, "c": 16, "s": 1}),
                       OpSpec.from_json({"op": "residual", "k": 3})), Precision("int4", "fp32")),
        ),
        branches=(
            BranchSpec("a", 2, (), (OpSpec("gap"), OpSpec.from_json({"op": "fc", "h": 16, "act": "relu"})), 4,
                       Precision("int8", "int8")),
            BranchSpec("b", 1, (), (OpSpec("gap"),), 3, Precision("bf16", "fp32")),
        ),
    )
    model = _randomize_bn(build(spec)).eval()
    calib = torch.rand(64, 1, 12, 12)
    x = torch.rand(128, 1, 12, 12)
    with torch.no_grad(), Q.simulate(model, spec, calib) as act:
        act = dict(act)
        sim = model(x)
    Q.export_onnx(model, Q.group_paths(spec), calib, tmp_path / Q.ARTIFACT, act=act)
    np.save(tmp_path / "x.npy", x.numpy())
    for k, v in sim.items():
        np.save(tmp_path / f"sim_{k}.npy", v.numpy())
    # branch a is gap, fc(h=16) (branches.a.1.linear), then its output Linear (branches.a.2)
    assert "branches.a.2:out" in act
    step_a = act["branches.a.2:out"][0]  # one uint8 step of branch a's output
    code = f"""
import sys, numpy as np, onnxruntime as ort
s = ort.InferenceSession("{Q.ARTIFACT}", providers=["CPUExecutionProvider"])
outs = dict(zip([o.name for o in s.get_outputs()], s.run(None, {{"x": np.load("x.npy")}})))
assert "nasmt" not in sys.modules and "torch" not in sys.modules
for k, v in outs.items():
    ref = np.load(f"sim_{{k}}.npy")
    print(k, float(np.abs(v - ref).max()), float((v.argmax(1) == ref.argmax(1)).mean()))
"""
    p = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    res = {l.split()[0]: (float(l.split()[1]), float(l.split()[2])) for l in p.stdout.strip().splitlines()}
    assert set(res) == {"a", "b"}
    # the same integers and scales: differences are rounding at quantization boundaries
    # (int32 bias, requantization), a few output steps at most
    assert res["a"][0] <= 4 * step_a and res["a"][1] >= 0.97
    assert res["b"][0] < 0.02 and res["b"][1] >= 0.97  # bf16 fold order only
    assert Q.artifact_weight_bytes(tmp_path / Q.ARTIFACT) == Q.size_bytes(model, spec)


def test_export_quantized_on_real_data(tmp_path):
    from nasmt.data import load_data_cached
    from nasmt.data.suite import load_suite
    from nasmt.train import TrainConfig, train

    suite = load_suite(ROOT / "tests" / "data" / "mm_small.toml")
    data = load_data_cached(suite)
    spec = ArchSpec(
        space="t", input_shape=tuple(data.input_shape),
        stages=(StageSpec((OpSpec.from_json({"op": "conv", "k": 3, "c": 16, "s": 2}),
                           OpSpec.from_json({"op": "maxpool", "k": 2})), Precision("int8", "int8")),),
        branches=(
            BranchSpec("left", 1, (), (OpSpec("gap"),), data.n_outputs["left"], Precision("int4", "fp32")),
            BranchSpec("right", 1, (), (OpSpec("gap"),), data.n_outputs["right"], Precision("int8", "int8")),
        ),
    )
    torch.manual_seed(0)
    model = build(spec)
    train(model, suite, data, TrainConfig(steps=40, batch_size=64))
    r = Q.export_quantized(model, spec, suite, data, tmp_path)
    assert (tmp_path / r["file"]).exists() and (tmp_path / "quantized.md").exists()
    assert r["artifact_weight_bytes"] == r["size_bytes"]
    assert r["size_bytes"] < r["bytes"] < r["size_bytes"] + 16_000  # graph overhead
    for t in ("left", "right"):
        assert abs(r["accuracy"][t] - r["simulated"][t]) <= Q.ACC_TOLERANCE
    assert r["latency_ms"] > 0


# ----------------------------------------------------------------------------- latency table


def test_predictor_positive_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("NASMT_CACHE", str(tmp_path))
    spec = tiny_spec()
    table = Q.LatencyTable()
    assert table.path.parent == tmp_path and table.path.name.startswith("latency-cpu-")
    p1 = Q.predicted_latency_ms(spec, 1, table)
    assert p1 > 0 and table.measured >= 3  # overhead + conv + gap + linear
    assert all(v >= 0 for v in table.entries.values())
    disk = json.loads(table.path.read_text())["entries"]
    assert set(disk) == set(table.entries)
    again = Q.LatencyTable()  # a fresh worker: everything comes from disk
    assert Q.predicted_latency_ms(spec, 1, again) == p1 and again.measured == 0
    # an int8 unit and an fp32 unit of the same op are different entries
    Q.predicted_latency_ms(Q.with_policy(spec, "fp32", "fp32"), 1, again)
    assert again.measured > 0
