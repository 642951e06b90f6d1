"""README promises about a grammar's `train` rule and an export's `predict`, through the
real CLI: the rule's balancing method, lr and wd replace the run's --lr for the trial
and for its `finalize` (`--final-epochs`) and `export --retrain-epochs`; the exported
model.py's `predict` returns binary `label` / `probability` / `positive`, multiclass
`label` / `probabilities` / `classes` and regression `value`.

One search of mlp.grammar plus a fixed train rule on tasks/people.toml (a binary, a
multiclass and a regression task), then one export retrained under the rule."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, nasmt
from nasmt.data.suite import load_suite
from nasmt.run import TrialStatus, load_run, read_trials

PEOPLE = ROOT / "tasks" / "people.toml"
PEOPLE_CSV = ROOT / "tasks" / "people.csv"
MLP = ROOT / "search_spaces" / "mlp.grammar"
RULE = {"balance": "dwa", "lr": 0.0234, "weight_decay": 0.0005}  # none of them the run's own settings
RUN_LR = 0.002
TRAIN_RULE = f"train   = balance(method={RULE['balance']}) optim(lr={RULE['lr']}, wd={RULE['weight_decay']})\n"
FINAL_EPOCHS = RETRAIN_EPOCHS = 0.2
N_ROWS = 25


def _settings(d: dict) -> dict:
    return {k: d[k] for k in RULE}


@pytest.fixture(scope="module")
def rule_run(tmp_path_factory, shared_ray) -> Path:
    d = tmp_path_factory.mktemp("rule")
    grammar = d / "mlp_train.grammar"
    grammar.write_text(MLP.read_text() + TRAIN_RULE)
    out = d / "run"
    nasmt("search", "--space", grammar, "--tasks", PEOPLE, "--trials", 2, "--steps", 10, "--lr", RUN_LR,
          "--final-epochs", FINAL_EPOCHS, "--sampler", "random", "--seed", 1, "--out", out, "--quiet", *shared_ray)
    return out


@pytest.fixture(scope="module")
def rule_export(rule_run) -> Path:
    out = rule_run.parent / "export"
    number = next(t for t in read_trials(rule_run) if t.is_finalized).number
    nasmt("export", rule_run, "--trial", number, "--retrain-epochs", RETRAIN_EPOCHS, "--out", out, "--no-quantized")
    return out


def test_train_rule_replaces_the_run_settings_in_trials_and_finalize(rule_run):
    assert load_run(rule_run)["config"]["lr"] == RUN_LR
    recs = [t for t in read_trials(rule_run) if t.status == TrialStatus.COMPLETE]
    assert len(recs) == 2
    for t in recs:
        assert _settings(t.train) == RULE
        assert t.metrics["balance"] == RULE["balance"]
    final = [t for t in recs if t.is_finalized]
    assert final
    for t in final:  # the full-budget finish trained under the rule too, not under --lr
        assert t.final["epochs"] == FINAL_EPOCHS and _settings(t.final["train"]) == RULE


def test_train_rule_carries_into_export_retrain(rule_export):
    arch = json.loads((rule_export / "arch.json").read_text())
    assert arch["retrained_epochs"] == RETRAIN_EPOCHS and arch["retrain"]["steps"] > 0
    assert _settings(arch["retrain"]) == RULE


def _model_py(export: Path):
    spec = importlib.util.spec_from_file_location("rule_export_model", export / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_exported_predict_keys_per_task_kind(rule_export, tmp_path):
    suite = {t.ident: t for t in load_suite(PEOPLE).tasks}
    arch = json.loads((rule_export / "arch.json").read_text())
    classes = {t["name"]: t["classes"] for t in arch["tasks"]}
    rows = tmp_path / "rows.csv"
    rows.write_text("\n".join(PEOPLE_CSV.read_text().splitlines()[: N_ROWS + 1]) + "\n")
    preds = _model_py(rule_export).predict(str(rows))
    assert set(preds) == {"income", "marital", "tenure"}
    assert [suite[k].kind for k in ("income", "marital", "tenure")] == ["binary", "multiclass", "regression"]

    inc = preds["income"]  # binary: label and the probability of the positive class
    assert set(inc) == {"label", "probability", "positive"}
    assert inc["positive"] == suite["income"].positive == ">50K" and inc["positive"] in classes["income"]
    p = np.asarray(inc["probability"], dtype=float)
    assert p.shape == (N_ROWS,) and ((p > 0) & (p < 1)).all()
    negative = next(c for c in classes["income"] if c != inc["positive"])
    assert list(inc["label"]) == [inc["positive"] if v > 0.5 else negative for v in p]

    mar = preds["marital"]  # multiclass: label, one probability per class, the classes in that order
    assert set(mar) == {"label", "probabilities", "classes"}
    assert list(mar["classes"]) == classes["marital"] and len(mar["classes"]) == 4
    probs = np.asarray(mar["probabilities"], dtype=float)
    assert probs.shape == (N_ROWS, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-5)
    assert list(mar["label"]) == [mar["classes"][i] for i in probs.argmax(axis=1)]

    ten = preds["tenure"]  # regression: the value in the target's units
    assert set(ten) == {"value"} and np.asarray(ten["value"]).shape == (N_ROWS,)
