"""A real search over search_spaces/mtl.grammar on a CSV suite (people.toml): every trial's
record names its sharing family and loss balancing method, the report colours by them,
and exported MMoE / PLE / tree architectures run without nasmt, match the trained model
and run as ONNX in onnxruntime."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import optuna
import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, nasmt
from nasmt_free_venv import run_without_nasmt, venv_without_nasmt
from nasmt.data import load_data
from nasmt.data.suite import load_suite
from nasmt.model.build import build
from nasmt.run import WEIGHTS_FILE, TrialStatus, read_trials, trial_dir
from nasmt.space.derive import derive
from nasmt.space.grammar import load_grammar
from nasmt.space.spec import SHARING_FAMILIES, ArchSpec
from nasmt.space.vocab import BALANCE_METHODS

sys.path.append(str(ROOT / "tests" / "report"))  # the report tests' helpers (tests/ has no packages)
from dashboard_helpers import figure_points, page_payload, table_rows

MTL = ROOT / "search_spaces" / "mtl.grammar"
PEOPLE = ROOT / "tasks" / "people.toml"
ONNX_ATOL = 1e-4  # float32 kernels of ORT and torch differ in summation order only


def genome_where(want, seed: int = 0) -> dict:
    """A genome of mtl.grammar for people.toml whose ArchSpec satisfies `want`."""
    suite = load_suite(PEOPLE)
    data = load_data(suite)
    g = load_grammar(MTL)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(2000):
        t = study.ask()
        spec = derive(g, t, suite.tasks, data.input_shape, data.n_outputs)
        study.tell(t, 0.0)
        if want(spec):
            return spec.genome_dict
    raise AssertionError("no derivation satisfies the predicate")


@pytest.fixture(scope="module")
def mtl_run(tmp_path_factory, shared_ray) -> Path:
    d = tmp_path_factory.mktemp("mtl")
    wanted = {
        "mmoe": lambda s: s.sharing == "mmoe" and s.balance == "pcgrad",
        "ple": lambda s: s.sharing == "ple" and s.balance == "uncertainty",
        "tree": lambda s: s.sharing == "tree" and s.balance == "mgda" and len(s.groups) == 2,
    }
    files = []
    for name, want in wanted.items():
        f = d / f"{name}.json"
        f.write_text(json.dumps(genome_where(want)))
        files.append(f)
    out = d / "run"
    nasmt("search", "--space", MTL, "--tasks", PEOPLE, "--objectives", "mean_error,params", "--trials", 5,
          "--steps", 30, "--out", out, "--seed", 3, "--sampler", "random", *shared_ray, "--enqueue", *files)
    return out


def _complete(run: Path):
    return [r for r in read_trials(run) if r.status == TrialStatus.COMPLETE]


def test_every_record_names_its_sharing_family_and_balancing(mtl_run):
    recs = _complete(mtl_run)
    assert len(recs) == 5
    for r in recs:
        spec = ArchSpec.from_json(r.spec)
        assert r.metrics["sharing"] == spec.sharing
        assert r.metrics["balance"] == spec.balance
        assert set(r.metrics["sharing"].split("+")) <= set(SHARING_FAMILIES)
        assert r.metrics["balance"] in BALANCE_METHODS
        assert r.train["balance"] == spec.balance  # the trial really trained with it
        assert r.timings["backward_s"] > 0
    first = {r.number: r for r in recs}
    assert (first[0].metrics["sharing"], first[0].metrics["balance"]) == ("mmoe", "pcgrad")
    assert (first[1].metrics["sharing"], first[1].metrics["balance"]) == ("ple", "uncertainty")
    assert (first[2].metrics["sharing"], first[2].metrics["balance"]) == ("tree", "mgda")
    # uncertainty weighting learned its weights: they moved away from 1/2 (log variance 0)
    assert any(abs(w - 0.5) > 1e-4 for w in first[1].train["task_weights"].values())


def test_report_colours_by_family_and_balancing(mtl_run, tmp_path):
    """The report's embedded data (not its text: every page inlines dashboard.js and the
    grammar, which name every family and method) holds the sharing / balancing view, one
    trace per category per colouring, each point a trial whose record has that category."""
    out = tmp_path / "report.html"
    nasmt("report", mtl_run, "--out", out)
    p = page_payload(out.read_text(encoding="utf-8"))
    recs = {r.number: r for r in _complete(mtl_run)}
    want = {key: {n: r.metrics[key] for n, r in recs.items()} for key in ("sharing", "balance")}
    assert {want["sharing"][n] for n in (0, 1, 2)} == {"mmoe", "ple", "tree"}
    assert {want["balance"][n] for n in (0, 1, 2)} == {"pcgrad", "uncertainty", "mgda"}
    fig = p["figures"]["sharing"]
    buttons = fig["layout"]["updatemenus"][0]["buttons"]
    assert [b["label"] for b in buttons] == ["colour by sharing family", "colour by balancing method"]
    traces = fig["data"]
    for b, (key, other) in zip(buttons, [("sharing", "balance"), ("balance", "sharing")]):
        shown = [t for t, v in zip(traces, b["args"][0]["visible"]) if v]
        got: dict[int, str] = {}
        for t in shown:
            for _g, number, name, other_value, _run in t["customdata"]:
                assert number not in got, f"trial {number} drawn twice when colouring by {key}"
                got[number] = t["name"]
                assert name == t["name"]
                assert other_value == want[other][number], (key, number)
        assert got == want[key], key  # every complete trial once, in its record's category
        # at the Pareto view's place: x = mean error, y = parameters (the run's objectives)
        pts = figure_points({"data": shown})
        for n, r in recs.items():
            ((x, y),) = pts[n]
            assert x == pytest.approx(r.metrics["mean_error"], rel=1e-5) and y == r.metrics["params"], n
        assert len({t["marker"]["color"] for t in shown}) == len(shown), "one colour per category"
    # the default view (first button) is the sharing family
    assert [t["visible"] for t in traces] == buttons[0]["args"][0]["visible"]
    # the table carries the same two columns
    rows = {r["number"]: r for r in table_rows(p)}
    for n, r in recs.items():
        assert (rows[n]["sharing"], rows[n]["balance"]) == (r.metrics["sharing"], r.metrics["balance"]), n


def _trained(run: Path, number: int) -> tuple[ArchSpec, torch.nn.Module]:
    rec = next(r for r in read_trials(run) if r.number == number)
    spec = ArchSpec.from_json(rec.spec)
    m = build(spec)
    m.load_state_dict(load_file(str(trial_dir(run, number) / WEIGHTS_FILE)))
    return spec, m.eval()


@pytest.mark.parametrize("number,family", [(0, "mmoe"), (1, "ple"), (2, "tree")])
def test_export_runs_without_nasmt_matches_and_onnx(mtl_run, tmp_path, number, family):
    out = tmp_path / "export"
    nasmt("export", mtl_run, "--trial", number, "--out", out)
    spec, model = _trained(mtl_run, number)
    assert spec.sharing == family
    x = np.ascontiguousarray(load_data(load_suite(PEOPLE)).x["test"][:64])
    with torch.no_grad():
        want = {k: v.numpy() for k, v in model(torch.from_numpy(x)).items()}
    np.save(tmp_path / "x.npy", x)
    py = venv_without_nasmt(tmp_path / "venv")
    tasks = sorted(d.name for d in (out / "tasks").iterdir())
    assert tasks == sorted(want)
    # the full model.py, then every tasks/<task>/model.py (each loaded from its own folder,
    # with the weights beside it), all in one process that cannot import nasmt
    script = (
        "import importlib.util, sys\nimport numpy as np, torch\ntorch.set_num_threads(1)\n"
        f"x = torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r}))\n"
        "def run(path, mod_name, dest):\n"
        "    spec = importlib.util.spec_from_file_location(mod_name, path)\n"
        "    mod = importlib.util.module_from_spec(spec)\n"
        "    spec.loader.exec_module(mod)\n"
        "    net = mod.load()\n"
        "    with torch.no_grad():\n        res = net(x)\n"
        "    np.savez(dest, **{k: v.numpy() for k, v in res.items()})\n"
        f"run('model.py', 'model', {str(tmp_path / 'got.npz')!r})\n"
        f"for t in {tasks!r}:\n"
        f"    run(f'tasks/{{t}}/model.py', f'model_{{t}}', {str(tmp_path)!r} + f'/got_{{t}}.npz')\n"
    )
    p = run_without_nasmt(py, script, out)
    assert p.returncode == 0, p.stdout + p.stderr
    got = np.load(tmp_path / "got.npz")
    assert set(got.files) == set(want)
    for k in want:
        assert float(np.abs(got[k] - want[k]).max()) == 0.0, k  # same ops, same weights
    for t in tasks:  # a task's own model: only that task's output, the full model's for it
        sub = np.load(tmp_path / f"got_{t}.npz")
        assert sub.files == [t], t
        assert sub[t].shape == want[t].shape, t
        assert float(np.abs(sub[t] - want[t]).max()) == 0.0, t  # the same modules and weights
    src = (out / "model.py").read_text()
    assert ("class MMoE" in src) and ("class PLE" in src)
    if family == "tree":
        assert "joins={" in src and "groups={" in src
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    res = dict(zip(names, sess.run(names, {sess.get_inputs()[0].name: x})))
    for k in want:
        np.testing.assert_allclose(res[k], want[k], rtol=0, atol=ONNX_ATOL)
    card = (out / "MODEL_CARD.md").read_text()
    assert f"Sharing: **{family}**" in card and f"loss balancing: **{spec.balance}**" in card
    arch = json.loads((out / "arch.json").read_text())
    for t, info in arch["per_task"].items():
        assert info["max_abs_diff_vs_full"] == 0.0, t


def test_re_export_into_an_earlier_export_leaves_no_stale_file(mtl_run, tmp_path):
    """A second export into the same folder replaces the first whole: the quantized
    artifact of the first is gone when the second has none; the folder keeps its mode."""
    from nasmt.quant import is_fp32

    rec = next((r for r in _complete(mtl_run) if not is_fp32(ArchSpec.from_json(r.spec))), None)
    assert rec is not None, "every trial sampled an all-fp32 policy"
    out = tmp_path / "exp"
    nasmt("export", mtl_run, "--trial", rec.number, "--out", out)
    assert (out / "model_quant.onnx").exists()
    mode = out.stat().st_mode
    nasmt("export", mtl_run, "--trial", rec.number, "--out", out, "--no-quantized")
    assert not (out / "model_quant.onnx").exists()
    assert json.loads((out / "arch.json").read_text())["quantized"] is None
    assert (out / "model.py").exists() and (out / "tasks").is_dir()
    assert out.stat().st_mode == mode
    assert [p.name for p in tmp_path.iterdir()] == ["exp"]  # no temporary folder left beside it
