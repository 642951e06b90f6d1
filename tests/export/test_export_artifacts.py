"""The artifacts of `nasmt export` reproduce the trained model: model.py (in a Python
that cannot import nasmt), model.onnx and model.pt2 on real inputs, each per-task
folder on its own, the quantized artifact, and arch.json's test metrics."""

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load_file

from conftest import nasmt
from nasmt_free_venv import run_without_nasmt, venv_without_nasmt
from nasmt.cli import main
from nasmt.data import load_data
from nasmt.data.images import load_composites
from nasmt.data.suite import suite_from_json
from nasmt.model.build import build
from nasmt.quant import ACC_TOLERANCE, calib_batch, is_fp32, simulate
from nasmt.run import WEIGHTS_FILE, load_run, read_trials, trial_dir
from nasmt.space.spec import ArchSpec
from nasmt.train.metrics import predict

# float32 kernels of ONNX Runtime and torch differ in summation order only
ONNX_ATOL = 1e-4
# the per-task model runs the very same ops on the very same weights as the full model
PER_TASK_ATOL = 1e-6
EXAMPLES = 64  # test-split examples each check runs (not the export's own check batch)
# predictions the quantized artifact shares with the simulated policy: they differ only by
# the int32 bias and one-step activation rounding, which flips near-ties (measured: >= 99.6%;
# a wrong policy in the artifact: <= 95%)
ARGMAX_AGREEMENT = 0.98


@pytest.fixture(scope="module")
def knee(tiny_run, tmp_path_factory) -> Path:
    """The default export (knee of the run's front, quantized artifact included)."""
    out = tmp_path_factory.mktemp("export") / "knee"
    nasmt("export", tiny_run, "--pick", "knee", "--out", out)
    return out


@pytest.fixture(scope="module")
def data(tiny_run):
    return load_data(suite_from_json(load_run(tiny_run)["suite"]))


def _arch(out: Path) -> dict:
    return json.loads((out / "arch.json").read_text())


def _trained(run_dir: Path, arch: dict) -> torch.nn.Module:
    """The trial's model rebuilt by nasmt from the run directory (not from the export)."""
    model = build(ArchSpec.from_json(arch["spec"]))
    model.load_state_dict(load_file(str(trial_dir(run_dir, arch["trial"]) / WEIGHTS_FILE)))
    return model.eval()


def _want(run_dir: Path, arch: dict, x: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        return {k: v.numpy() for k, v in _trained(run_dir, arch)(torch.from_numpy(x)).items()}


def _test_x(data, n: int = EXAMPLES) -> np.ndarray:
    return np.ascontiguousarray(data.x["test"][:n])


def test_export_writes_every_artifact(knee):
    for f in ("model.py", "weights.safetensors", "arch.json", "model.onnx", "model.pt2", "MODEL_CARD.md"):
        assert (knee / f).exists(), f
    arch = _arch(knee)
    assert "nasmt" not in (knee / "model.py").read_text().split('"""', 2)[2].replace("nasmt export", "")
    assert arch["onnx"]["max_abs_diff_vs_torch"] < ONNX_ATOL
    assert f"trial {arch['trial']}" in (knee / "MODEL_CARD.md").read_text()


def test_onnx_matches_torch_on_real_inputs(tiny_run, knee, data):
    x = _test_x(data)
    want = _want(tiny_run, _arch(knee), x)
    sess = ort.InferenceSession(str(knee / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    assert sorted(names) == sorted(want)
    got = sess.run(names, {sess.get_inputs()[0].name: x})
    for name, g in zip(names, got):
        assert g.shape == want[name].shape
        assert np.abs(g - want[name]).max() < ONNX_ATOL, name


def test_pt2_program_matches_torch(tiny_run, knee, data):
    arch = _arch(knee)
    program = torch.export.load(str(knee / "model.pt2")).module()
    x = _test_x(data, n=8)  # the program was traced on a batch of 8
    with torch.no_grad():
        got = program(torch.from_numpy(x))
    want = _want(tiny_run, arch, x)
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(got[k].numpy(), want[k], rtol=0, atol=PER_TASK_ATOL)


def test_each_task_folder_runs_alone_and_matches(tiny_run, knee, data, tmp_path):
    arch = _arch(knee)
    x = _test_x(data)
    np.save(tmp_path / "x.npy", x)
    want = _want(tiny_run, arch, x)
    full_bytes = (knee / "weights.safetensors").stat().st_size
    assert sorted(arch["per_task"]) == sorted(want)
    for task, info in arch["per_task"].items():
        folder = knee / info["folder"]
        assert folder == knee / "tasks" / task and info["bytes"] < full_bytes
        script = (
            "import sys, numpy as np, torch\ntorch.set_num_threads(1)\nimport model\n"
            f"assert model.TASKS == ({task!r},), model.TASKS\n"
            "net = model.load()\n"
            f"x = torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r}))\n"
            "with torch.no_grad():\n    out = net(x)\n"
            f"np.save({str(tmp_path / 'got.npy')!r}, out[{task!r}].numpy())\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'nasmt'))\n"
        )
        p = subprocess.run([sys.executable, "-c", script], cwd=folder, capture_output=True, text=True, timeout=300,
                           env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
        assert p.returncode == 0, p.stdout + p.stderr
        assert p.stdout.strip() == "[]"  # the folder's model.py imported no nasmt module
        np.testing.assert_allclose(np.load(tmp_path / "got.npy"), want[task], rtol=0, atol=PER_TASK_ATOL)


def test_test_metrics_equal_independent_evaluation(knee, data):
    """arch.json's test metrics == accuracy of the exported model.py on the test split,
    computed here with numpy."""
    arch = _arch(knee)
    spec = importlib.util.spec_from_file_location("exported_knee_model", knee / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net = mod.load()
    with torch.no_grad():
        out = net(torch.from_numpy(np.ascontiguousarray(data.x["test"])))
    errors = []
    for t in arch["tasks"]:
        assert t["kind"] == "multiclass" and t["metric"] == "accuracy"  # the tiny run's suite
        acc = float((out[t["ident"]].argmax(1).numpy() == data.y["test"][t["ident"]]).mean())
        assert arch["test_metrics"][f"{t['ident']}.accuracy"] == pytest.approx(acc, abs=1e-9)
        errors.append(1.0 - acc)
    assert arch["test_metrics"]["mean_error"] == pytest.approx(np.mean(errors), abs=1e-9)


def test_quantized_artifact_written_and_runs(tiny_run, knee, data):
    """model_quant.onnx runs in onnxruntime and reproduces the quantized policy the
    search evaluated: the simulation's predictions and the trial's recorded accuracy."""
    arch = _arch(knee)
    spec = ArchSpec.from_json(arch["spec"])
    assert not is_fp32(spec)  # every policy of conv.grammar's tiny run is quantized
    q = arch["quantized"]
    assert q["file"] == "model_quant.onnx" and (knee / q["file"]).stat().st_size == q["bytes"]
    sess = ort.InferenceSession(str(knee / q["file"]), providers=["CPUExecutionProvider"])
    x = np.ascontiguousarray(data.x["val"])
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(names, {sess.get_inputs()[0].name: x})))
    model = _trained(tiny_run, arch)
    with simulate(model, spec, calib_batch(data)), torch.no_grad():
        sim = {k: v.numpy() for k, v in model(torch.from_numpy(x)).items()}
    rec = next(r for r in read_trials(tiny_run) if r.number == arch["trial"])
    for t in arch["tasks"]:
        k = t["ident"]
        assert got[k].shape == sim[k].shape
        assert (got[k].argmax(1) == sim[k].argmax(1)).mean() >= ARGMAX_AGREEMENT, k
        acc = float((got[k].argmax(1) == data.y["val"][k]).mean())
        assert abs(acc - rec.metrics[f"{k}.accuracy"]) <= ACC_TOLERANCE, k  # the search's own number


def test_export_runs_without_nasmt_and_matches(tiny_run, knee, data, tmp_path):
    """model.py in a Python without nasmt: the network reproduces the trained model bit for
    bit, and predict() on raw uint8 MultiMNIST composites (an array, and a .npy path)
    gives the evaluation path's labels (argmax of the model's outputs on data.x["test"])."""
    arch = _arch(knee)
    spec = ArchSpec.from_json(arch["spec"])
    x = torch.rand(5, *spec.input_shape, generator=torch.Generator().manual_seed(0))
    np.save(tmp_path / "x.npy", x.numpy())
    want = _want(tiny_run, arch, x.numpy())
    raw = load_composites("multimnist")["test_x"][:EXAMPLES]  # uint8 (N, 28, 28), as generated
    np.save(tmp_path / "raw.npy", raw)
    py = venv_without_nasmt(tmp_path / "venv")
    script = (
        "import json, numpy as np, torch\n"
        "torch.set_num_threads(1)\nimport model\n"
        "net = model.load()\n"
        f"x = torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r}))\n"
        "with torch.no_grad():\n    out = net(x)\n"
        f"np.savez({str(tmp_path / 'got.npz')!r}, **{{k: v.numpy() for k, v in out.items()}})\n"
        f"raw = {str(tmp_path / 'raw.npy')!r}\n"
        "a, b = model.predict(np.load(raw)), model.predict(raw)\n"
        "assert all(a[k]['label'] == b[k]['label'] for k in a)\n"
        f"json.dump({{k: {{'label': v['label'], 'p': v['probabilities'].tolist()}} for k, v in a.items()}}, "
        f"open({str(tmp_path / 'preds.json')!r}, 'w'))\n"
        "print('nasmt' in sys.modules)\n"
    )
    p = run_without_nasmt(py, script, knee)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip().endswith("False")
    got = np.load(tmp_path / "got.npz")
    assert set(got.files) == set(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    preds = json.loads((tmp_path / "preds.json").read_text())
    with torch.no_grad():
        evaluation = predict(_trained(tiny_run, arch), torch.from_numpy(_test_x(data)))
    assert sorted(preds) == sorted(evaluation)
    for k, out in evaluation.items():
        assert preds[k]["label"] == [data.class_labels[k][i] for i in out.argmax(1).tolist()]
        np.testing.assert_allclose(preds[k]["p"], torch.softmax(out, 1).numpy(), rtol=0, atol=1e-6)
    # `nasmt predict` on the .npy of raw images writes the same labels
    assert main(["predict", str(knee), "--input", str(tmp_path / "raw.npy"), "--out", str(tmp_path / "preds.csv")]) == 0
    with open(tmp_path / "preds.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert {k: [r[k] for r in table] for k in preds} == {k: v["label"] for k, v in preds.items()}
