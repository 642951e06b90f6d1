"""A user's own CSV (tasks/people.toml: a binary, a multiclass and a regression task),
described only by a suite file, through search, export and `nasmt predict` on raw rows:
the raw CSV rows of the test split get exactly the evaluation path's predictions."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, nasmt
from nasmt_free_venv import run_without_nasmt, venv_without_nasmt
from nasmt.cli import main
from nasmt.data import load_data
from nasmt.data.suite import load_suite
from nasmt.errors import UserError
from nasmt.export.codegen import generate_source
from nasmt.export.write import _check_out
from nasmt.model.build import build
from nasmt.run import WEIGHTS_FILE, TrialStatus, read_trials, trial_dir
from nasmt.space.derive import derive
from nasmt.space.grammar import load_grammar
from nasmt.space.spec import ArchSpec
from nasmt.train.metrics import predict, tensors

PEOPLE = ROOT / "tasks" / "people.toml"
PEOPLE_CSV = ROOT / "tasks" / "people.csv"
PROB_ATOL = 1e-6  # probabilities: numpy's softmax / sigmoid vs torch's, both float32
METRIC_ATOL = 1e-6  # arch.json's accuracy is a float32 mean in torch


@pytest.fixture(scope="module")
def people_run(tmp_path_factory, shared_ray) -> Path:
    out = tmp_path_factory.mktemp("people") / "run"
    nasmt("search", "--space", ROOT / "search_spaces" / "mlp.grammar", "--tasks", PEOPLE,
          "--objectives", "mean_error,params", "--trials", 2, "--epochs", 2, "--out", out, "--sampler", "random", *shared_ray)
    return out


@pytest.fixture(scope="module")
def people_export(people_run) -> Path:
    """The export, written with --force into a folder that already holds a foreign file
    (refused without --force, and nothing written then)."""
    out = people_run.parent / "exp"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    assert main(["export", str(people_run), "--pick", "best:mean_error", "--out", str(out), "--no-quantized"]) == 2
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    nasmt("export", people_run, "--pick", "best:mean_error", "--out", out, "--no-quantized", "--force")
    assert (out / "notes.txt").read_text() == "mine\n"
    return out


@pytest.fixture(scope="module")
def people_data():
    return load_data(load_suite(PEOPLE))


def _arch(out: Path) -> dict:
    return json.loads((out / "arch.json").read_text())


def _raw_test_csv(data, path: Path) -> Path:
    """The test split's rows, as the very text lines of people.csv."""
    lines = PEOPLE_CSV.read_text().splitlines()
    assert data.meta["n_rows"] == len(lines) - 1  # no row was dropped: row i is line i + 1
    path.write_text("\n".join([lines[0]] + [lines[1 + r] for r in data.meta["rows"]["test"]]) + "\n")
    return path


def _evaluation(run_dir: Path, arch: dict, data) -> dict[str, torch.Tensor]:
    """The trial's outputs on data.x["test"] as the evaluation path computes them."""
    model = build(ArchSpec.from_json(arch["spec"]))
    model.load_state_dict(load_file(str(trial_dir(run_dir, arch["trial"]) / WEIGHTS_FILE)))
    return predict(model, tensors(data, "test", "cpu")[0])


def _read_preds(path: Path) -> dict[str, list[str]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return {h: [r[j] for r in rows[1:]] for j, h in enumerate(rows[0])}


def _import(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_csv_suite_searches_end_to_end(people_run, people_export):
    trials = read_trials(people_run)
    assert len(trials) == 2 and all(t.status == TrialStatus.COMPLETE for t in trials)
    assert {"income.auc", "tenure.mae", "marital.accuracy", "mean_error"} <= set(trials[0].metrics)
    arch = _arch(people_export)
    assert arch["trial"] == min(trials, key=lambda t: t.metrics["mean_error"]).number
    assert [t["name"] for t in arch["tasks"]] == ["income", "marital", "tenure"]
    assert sorted(arch["per_task"]) == ["income", "marital", "tenure"]
    assert any(f.startswith("education=") for f in arch["feature_names"])
    pre = json.loads((people_export / "preprocessing.json").read_text())
    assert [c["name"] for c in pre["input"]["columns"]] == ["age", "education", "hours_per_week", "occupation", "capital_gain"]
    for task in arch["per_task"]:
        sub = json.loads((people_export / "tasks" / task / "preprocessing.json").read_text())
        assert [t["ident"] for t in sub["tasks"]] == [task] and sub["input"] == pre["input"]


def test_predict_on_raw_test_rows_equals_the_evaluation_path(people_run, people_export, people_data, tmp_path):
    """Acceptance: `nasmt predict` on the raw CSV rows of the test split gives exactly
    the evaluation path's labels and values, its probabilities to float tolerance, and
    so arch.json's test metrics."""
    arch = _arch(people_export)
    raw = _raw_test_csv(people_data, tmp_path / "raw.csv")
    p = nasmt("predict", people_export, "--input", raw, "--out", tmp_path / "preds.csv")
    assert p.stderr.strip() == ""  # no unseen category, no warning
    got = _read_preds(tmp_path / "preds.csv")
    out = _evaluation(people_run, arch, people_data)
    labels, (mean, std) = people_data.class_labels, people_data.target_stats["tenure"]
    assert got["marital"] == [labels["marital"][i] for i in out["marital"].argmax(1).tolist()]
    assert got["income"] == [labels["income"][int(v > 0)] for v in out["income"][:, 0].tolist()]
    value = (out["tenure"][:, 0] * std + mean).numpy()
    np.testing.assert_array_equal(np.asarray(got["tenure"], dtype=np.float64).astype(np.float32), value)
    np.testing.assert_allclose(np.asarray(got["income.p[>50K]"], dtype=float), torch.sigmoid(out["income"][:, 0]).numpy(),
                               rtol=0, atol=PROB_ATOL)
    probs = torch.softmax(out["marital"], 1).numpy()
    for j, c in enumerate(labels["marital"]):
        np.testing.assert_allclose(np.asarray(got[f"marital.p[{c}]"], dtype=float), probs[:, j], rtol=0, atol=PROB_ATOL)
    assert list(got) == ["income", "income.p[>50K]", "marital"] + [f"marital.p[{c}]" for c in labels["marital"]] + ["tenure"]
    y = people_data.y["test"]
    acc = np.mean(np.asarray(got["marital"]) == np.asarray(labels["marital"])[y["marital"]])
    assert arch["test_metrics"]["marital.accuracy"] == pytest.approx(acc, abs=METRIC_ATOL)
    assert arch["test_metrics"]["tenure.mae"] == pytest.approx(np.abs(value - y["tenure"]).mean(), rel=1e-5)


def test_model_py_predict_takes_a_path_a_frame_and_records(people_export, people_data, tmp_path):
    """model.py's predict (full and per-task) agrees with `nasmt predict` on every input form."""
    import pandas as pd

    raw = _raw_test_csv(people_data, tmp_path / "raw.csv")
    assert main(["predict", str(people_export), "--input", str(raw), "--out", str(tmp_path / "preds.csv")]) == 0
    cli = _read_preds(tmp_path / "preds.csv")
    mod = _import(people_export / "model.py", "people_export_model")
    frame = pd.read_csv(raw)
    for rows in (raw, str(raw), frame, frame.to_dict("records")):
        preds = mod.predict(rows)
        assert preds["marital"]["label"] == cli["marital"] and preds["income"]["label"] == cli["income"]
        assert [float(v) for v in preds["tenure"]["value"]] == [float(v) for v in cli["tenure"]]
    one = _import(people_export / "tasks" / "marital" / "model.py", "people_marital_model").predict(frame)
    assert list(one) == ["marital"] and one["marital"]["label"] == cli["marital"]


def test_unseen_categories_are_zeros_and_a_warning_missing_column_an_error(people_export, people_data, tmp_path, capsys):
    pre = people_data.preprocessing
    header, *lines = PEOPLE_CSV.read_text().splitlines()[:4]
    cols = header.split(",")
    rows = [dict(zip(cols, line.split(","))) for line in lines]
    rows[0]["education"] = "Astronaut"
    rows[1]["occupation"], rows[2]["occupation"] = "Pilot", "Jester"
    (tmp_path / "new.csv").write_text("\n".join([header] + [",".join(r[c] for c in cols) for r in rows]) + "\n")
    out = tmp_path / "preds.csv"
    assert main(["predict", str(people_export), "--input", str(tmp_path / "new.csv"), "--out", str(out)]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [f"nasmt: warning: {tmp_path / 'new.csv'}: unseen categories encoded as all zeros "
                   "(education: 1, occupation: 2)"]
    # the unseen value is all zeros: the same prediction as the original row with its education block zeroed
    orig = dict(zip(cols, lines[0].split(",")))
    x, _ = pre.encode({c: [orig[c]] for c in cols})
    edu = [j for j, n in enumerate(pre.feature_names) if n.startswith("education=")]
    assert x[0, edu].sum() == 1
    x[0, edu] = 0.0
    net = _import(people_export / "model.py", "people_export_model_2").load()
    with torch.no_grad():
        o = net(torch.from_numpy(x))
    assert _read_preds(out)["marital"][0] == pre.class_labels["marital"][int(o["marital"].argmax(1))]
    # --out exists: refused without --force (and left alone), overwritten with it
    before = out.read_text()
    assert main(["predict", str(people_export), "--input", str(PEOPLE_CSV), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"nasmt: error: --out {out}: exists; pass --force to overwrite it" and out.read_text() == before
    assert main(["predict", str(people_export), "--input", str(PEOPLE_CSV), "--out", str(out), "--force"]) == 0
    assert len(_read_preds(out)["marital"]) == len(PEOPLE_CSV.read_text().splitlines()) - 1
    capsys.readouterr()
    # a missing column: one line naming the column and the file, exit 2, nothing written
    (tmp_path / "no_age.csv").write_text("\n".join(",".join(l.split(",")[1:]) for l in [header] + lines) + "\n")
    assert main(["predict", str(people_export), "--input", str(tmp_path / "no_age.csv"), "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"nasmt: error: {tmp_path / 'no_age.csv'}: missing column 'age'")
    assert not (tmp_path / "x.csv").exists()


def test_model_py_predicts_raw_csv_without_nasmt_or_pandas(people_export, people_data, tmp_path):
    """In a Python without nasmt, and with pandas blocked (the csv-module reader), model.py
    predicts the raw rows exactly as `nasmt predict` does."""
    raw = _raw_test_csv(people_data, tmp_path / "raw.csv")
    assert main(["predict", str(people_export), "--input", str(raw), "--out", str(tmp_path / "preds.csv")]) == 0
    cli = _read_preds(tmp_path / "preds.csv")
    script = (
        "sys.modules['pandas'] = None\n"
        "import json, torch\ntorch.set_num_threads(1)\nimport model\n"
        f"p = model.predict({str(raw)!r})\n"
        "print(json.dumps({'marital': p['marital']['label'], 'income': p['income']['label'], "
        "'tenure': [float(v) for v in p['tenure']['value']], 'pandas': 'pandas' in sys.modules and sys.modules['pandas'] is not None}))\n"
    )
    p = run_without_nasmt(venv_without_nasmt(tmp_path / "venv"), script, people_export)
    assert p.returncode == 0, p.stdout + p.stderr
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got["pandas"] is False
    assert got["marital"] == cli["marital"] and got["income"] == cli["income"]
    assert got["tenure"] == [float(v) for v in cli["tenure"]]


def test_export_out_must_be_new_empty_an_export_or_forced(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data.txt").write_text("x")
    with pytest.raises(UserError, match=r"--out .*foreign: folder is not empty and holds no earlier nasmt export; pass --force"):
        _check_out(foreign, force=False)
    _check_out(foreign, force=True)
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "arch.json").write_text(json.dumps({"nasmt_export": 1}))
    _check_out(earlier, force=False)  # an earlier export is rewritten in place
    (earlier / "arch.json").write_text(json.dumps({"trial": 1}))
    with pytest.raises(UserError):
        _check_out(earlier, force=False)
    (tmp_path / "empty").mkdir()
    _check_out(tmp_path / "empty", force=False)
    _check_out(tmp_path / "new", force=False)


def test_user_task_names_never_become_code(tmp_path):
    """A task named "churn risk" appears in model.py only as its identifier, a string literal."""
    import optuna

    (tmp_path / "s.toml").write_text(
        f'[data]\nsource = "csv"\npath = "{PEOPLE_CSV}"\nfeatures = ["age", "education"]\n'
        '[[tasks]]\nname = "churn risk"\nkind = "binary"\ntarget = "income_class"\npositive = ">50K"\n'
    )
    suite = load_suite(tmp_path / "s.toml")
    data = load_data(suite)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    spec = derive(load_grammar(ROOT / "search_spaces" / "mlp.grammar"), trial, suite.tasks, data.input_shape, data.n_outputs)
    src = generate_source(build(spec), spec, "title")
    assert "churn risk" not in src and "'churn_risk'" in src
    compile(src, "model.py", "exec")
