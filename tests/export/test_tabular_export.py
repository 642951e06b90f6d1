"""A tabular.grammar network (piecewise-linear encoding with fitted bins, categorical
embeddings, a TabM-style ensemble, a quantization policy) through the real CLI: search
(the architecture enqueued), export --retrain-epochs (the train rule's recipe applied),
`nasmt predict` and the generated model.py in a Python that cannot import nasmt, on the
raw CSV rows of fair's test split; both equal nasmt's own evaluation path, and the
quantized artifact is within 1.5 points of the simulation in ONNX Runtime."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, nasmt
from nasmt_free_venv import run_without_nasmt, venv_without_nasmt
from nasmt.cli import main
from nasmt.data import load_data_cached
from nasmt.data.suite import load_suite
from nasmt.model.build import build
from nasmt.model.cost import cost
from nasmt.quant import is_fp32
from nasmt.run import WEIGHTS_FILE, TrialStatus, read_trials
from nasmt.space.derive import derive
from nasmt.space.grammar import load_grammar
from nasmt.space.spec import ArchSpec
from nasmt.train.metrics import predict, tensors

torch.set_num_threads(1)
FAIR = ROOT / "tasks" / "fair.toml"
FAIR_CSV = ROOT / "tasks" / "fair.csv"
SPACE = ROOT / "search_spaces" / "tabular.grammar"
PROB_ATOL = 1e-6
MAX_FLOPS = 600_000  # per example: a small network, quick to retrain one epoch


def _spec(data) -> ArchSpec:
    """The first seeded random tabular.grammar architecture with plenc, catembed and an
    ensemble in its stem, a quantized (non-fp32) policy, early stopping, a large batch
    and few FLOPs (quick to train)."""
    g = load_grammar(SPACE)
    suite = load_suite(FAIR)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(2000):
        spec = derive(g, study.ask(), suite.tasks, data.input_shape, data.n_outputs, data.columns)
        stem = {o.op for o in spec.stages[0].ops}
        if {"plenc", "catembed", "ensemble"} <= stem and not is_fp32(spec) and any(
                b.precision.a == "int8" for b in spec.branches) and spec.train.batch_size >= 256 and spec.train.patience:
            if cost(build(spec), spec.input_shape)["flops"] <= MAX_FLOPS:
                return spec
    raise AssertionError("no such architecture in 2000 samples")


@pytest.fixture(scope="module")
def data():
    return load_data_cached(load_suite(FAIR))


@pytest.fixture(scope="module")
def exported(tmp_path_factory, shared_ray, data) -> tuple[Path, Path, ArchSpec]:
    tmp = tmp_path_factory.mktemp("tabular")
    spec = _spec(data)
    (tmp / "spec.json").write_text(json.dumps(spec.to_json()))
    run = tmp / "run"
    nasmt("search", "--space", SPACE, "--tasks", FAIR, "--objectives", "mean_error,params", "--trials", 1,
          "--steps", 5, "--out", run, "--enqueue", tmp / "spec.json", "--quiet", *shared_ray)
    nasmt("export", run, "--trial", 0, "--out", tmp / "exp", "--retrain-epochs", 1)
    return run, tmp / "exp", spec


def _raw_test_csv(data, path: Path) -> Path:
    lines = FAIR_CSV.read_text().splitlines()
    assert data.meta["n_rows"] == len(lines) - 1
    path.write_text("\n".join([lines[0]] + [lines[1 + r] for r in data.meta["rows"]["test"]]) + "\n")
    return path


def _read_preds(path: Path) -> dict[str, list[str]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return {h: [r[j] for r in rows[1:]] for j, h in enumerate(rows[0])}


def test_recipe_applied_in_search_and_retrain(exported, data):
    """The train rule's batch size (and early stopping, when its patience is set) in the
    search's trial and in export --retrain-epochs."""
    run, exp, spec = exported
    rec = read_trials(run)[0]
    assert rec.status == TrialStatus.COMPLETE and rec.train["batch_size"] == spec.train.batch_size
    retrain = json.loads((exp / "arch.json").read_text())["retrain"]
    assert retrain["batch_size"] == spec.train.batch_size
    assert retrain["steps"] == data.n("train") // spec.train.batch_size  # one epoch at the rule's batch size
    assert ("best_epoch" in retrain) == (spec.train.patience > 0)


def test_export_carries_the_architecture_and_quantized_artifact(exported):
    run, exp, spec = exported
    arch = json.loads((exp / "arch.json").read_text())
    assert arch["spec"]["hash"] == spec.hash and arch["spec"]["columns"] == [0, 0, 6, 6]
    model = build(ArchSpec.from_json(arch["spec"]))
    model.load_state_dict(load_file(str(exp / WEIGHTS_FILE)))
    plenc = model.trunk[0][0]
    assert int(plenc.fitted) == 1 and float(plenc.lo.abs().sum()) > 0  # the fitted bins travelled in the weights
    assert arch["cost"]["params"] == cost(model, spec.input_shape)["params"]
    q = arch["quantized"]
    assert q["artifact_weight_bytes"] == q["size_bytes"]
    assert q["max_abs_diff"] <= q["tolerance"] == 0.015, (q["accuracy"], q["simulated"])


def test_predict_and_model_py_without_nasmt_equal_the_evaluation_path(exported, data, tmp_path):
    run, exp, spec = exported
    raw = _raw_test_csv(data, tmp_path / "raw.csv")
    assert main(["predict", str(exp), "--input", str(raw), "--out", str(tmp_path / "preds.csv")]) == 0
    got = _read_preds(tmp_path / "preds.csv")
    model = build(spec)
    model.load_state_dict(load_file(str(exp / WEIGHTS_FILE)))  # the retrained weights
    out = predict(model, tensors(data, "test", "cpu")[0])  # the evaluation path (eval mode: members averaged)
    labels = data.class_labels
    arch = json.loads((exp / "arch.json").read_text())
    acc = np.mean(np.asarray(got["marriage"]) == np.asarray(labels["marriage"])[data.y["test"]["marriage"]])
    assert arch["test_metrics"]["marriage.accuracy"] == pytest.approx(acc, abs=1e-6)  # arch.json's test metrics
    for t in ("marriage", "religious"):
        assert got[t] == [labels[t][i] for i in out[t].argmax(1).tolist()]
    assert got["affair"] == [labels["affair"][int(v > 0)] for v in out["affair"][:, 0].tolist()]
    np.testing.assert_allclose(np.asarray(got["affair.p[yes]"], dtype=float), torch.sigmoid(out["affair"][:, 0]).numpy(),
                               rtol=0, atol=PROB_ATOL)
    for t in ("years_married", "n_children"):
        mean, std = data.target_stats[t]
        np.testing.assert_array_equal(np.asarray(got[t], dtype=np.float64).astype(np.float32),
                                      (out[t][:, 0] * std + mean).numpy())
    py = venv_without_nasmt(tmp_path / "venv")
    script = (f"import json, model\np = model.predict({str(raw)!r})\n"
              "print(json.dumps({t: (v['label'] if 'label' in v else [float(x) for x in v['value']]) for t, v in p.items()}))")
    r = run_without_nasmt(py, script, exp)
    assert r.returncode == 0, r.stderr
    alone = json.loads(r.stdout.strip().splitlines()[-1])
    for t in ("affair", "marriage", "religious"):
        assert alone[t] == got[t]
    for t in ("years_married", "n_children"):
        assert [float(v) for v in alone[t]] == [float(v) for v in got[t]]
