"""`nasmt export --retrain-epochs N` retrains the architecture from scratch; `--no-quantized`
skips the quantized artifact; a quantized policy never silently loses it."""

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import nasmt
from nasmt.errors import UserError
from nasmt.export import write
from nasmt.model.build import build
from nasmt.quant import with_policy
from nasmt.run import WEIGHTS_FILE, read_trials, trial_dir
from nasmt.space.spec import ArchSpec

RETRAIN_EPOCHS = 1


def test_retrain_epochs_retrains(tiny_run, tmp_path):
    rec = read_trials(tiny_run)[1]
    out = tmp_path / "exp"
    nasmt("export", tiny_run, "--trial", rec.number, "--retrain-epochs", RETRAIN_EPOCHS, "--out", out, "--no-quantized")
    arch = json.loads((out / "arch.json").read_text())
    assert arch["trial"] == rec.number and arch["retrained_epochs"] == RETRAIN_EPOCHS
    assert arch["retrain"]["epochs"] == pytest.approx(RETRAIN_EPOCHS) and arch["retrain"]["steps"] > 0
    assert f"--retrain-epochs {RETRAIN_EPOCHS}" in (out / "MODEL_CARD.md").read_text()
    mine, theirs = load_file(str(out / WEIGHTS_FILE)), load_file(str(trial_dir(tiny_run, rec.number) / WEIGHTS_FILE))
    assert mine.keys() == theirs.keys()
    conv = [k for k, v in theirs.items() if k.endswith(".weight") and v.dim() == 4]
    assert conv and all(not torch.equal(mine[k], theirs[k]) for k in conv)
    # --no-quantized: no quantized artifact, although the policy is quantized
    assert arch["quantized"] is None and not (out / "model_quant.onnx").exists()


def test_quantized_policy_never_skips_its_artifact(tiny_run, tmp_path, monkeypatch):
    spec = with_policy(ArchSpec.from_json(read_trials(tiny_run)[0].spec), "fp32", "fp32")
    model = build(spec).eval()
    assert write.quantized_artifact(model, spec, None, None, tmp_path) is None  # fp32: nothing to quantize

    def missing(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'onnx'", name="onnx")

    monkeypatch.setattr(write, "export_quantized", missing)
    with pytest.raises(UserError, match="needs the Python module onnx") as e:
        write.quantized_artifact(model, with_policy(spec, "int8", "int8"), None, None, tmp_path)
    assert "\n" not in str(e.value) and "--no-quantized" in str(e.value)
