"""`nasmt export RUN --controllable` (issue 18) on small real one-shot runs: people-free
tabular data (tasks/fair.toml, mtl.grammar: MMoE / PLE / task groups, quantized policies)
and MultiMNIST (tests/data/mm_small.toml, conv_mtl.grammar: BatchNorm statistics of each
candidate's own). Acceptance: under each candidate's selection the controllable model.py,
run by a Python that cannot import nasmt, computes what that candidate's standalone
export computes, and its ONNX file matches within 1e-4; switching copies no weight."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, SMALL_SUITE
from controllable_helpers import RECAL, oneshot_run
from nasmt.cli import main
from nasmt.data import load_data_cached
from nasmt.data.encoding import predict_rows
from nasmt.data.suite import load_suite
from nasmt.export.write import _write_model
from nasmt.run import load_run, read_trials
from nasmt.search.oneshot import bank as B
from nasmt.run.controllable_front import controllable_front, front_objectives
from nasmt.quant import is_fp32
from nasmt.space.spec import ArchSpec
from nasmt_free_venv import run_without_nasmt, venv_without_nasmt

torch.set_num_threads(1)
FAIR, MM = ROOT / "tasks" / "fair.toml", SMALL_SUITE
CASES = {"fair": (FAIR, ROOT / "search_spaces" / "mtl.grammar", 12, 4, ()),
         "mm": (MM, ROOT / "search_spaces" / "conv_mtl.grammar", 6, 2, ("--no-quantized",))}
_BUILT: dict = {}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (run dir, controllable export dir, front.json, suite, data)."""
    root = tmp_path_factory.mktemp("controllable")

    def get(name):
        if name not in _BUILT:
            suite_file, grammar, n, steps, flags = CASES[name]
            run = oneshot_run(root / name, suite_file, grammar, n, steps)
            out = root / f"{name}_export"
            assert main(["export", str(run), "--controllable", "--out", str(out), *flags]) == 0  # the CLI, in-process
            suite = load_suite(suite_file)
            _BUILT[name] = (run, out, json.loads((out / "front.json").read_text()), suite, load_data_cached(suite))
        return _BUILT[name]

    yield get
    _BUILT.clear()


@pytest.fixture(scope="module")
def python_without_nasmt(tmp_path_factory):
    return venv_without_nasmt(tmp_path_factory.mktemp("venv") / "v")


def test_the_folder_holds_the_fronts_weights_once(exported):
    run, out, front, suite, data = exported("fair")
    want = controllable_front(read_trials(run), front_objectives(load_run(run), suite), 1)
    assert [c["trial"] for c in front["candidates"]] == [r.number for r in want] and len(want) >= 3
    shared = load_file(str(out / "shared.safetensors"))
    used: dict = {}
    for c in front["candidates"]:
        for pieces in c["sources"].values():
            for k, shape in pieces:
                used[k] = [max(a, b) for a, b in zip(used.get(k, shape), shape)]
    assert set(shared) == set(used)  # every tensor some candidate uses, no other
    assert {k: list(t.shape) for k, t in shared.items()} == used  # each cut to the box of its slices
    w = front["weights"]
    assert w["stored_elements"] == sum(t.numel() for t in shared.values()) >= w["union_elements"]
    assert w["shared_bytes"] < w["separate_sum_bytes"]
    assert not (out / "own.safetensors").exists()  # mtl.grammar has no BatchNorm: nothing per candidate
    for c in front["candidates"]:
        assert set(c["val_error"]) == {t.ident for t in suite.tasks} and c["costs"]["latency_ms"] > 0
        assert c["check"]["max_abs_diff_vs_extracted"] <= 1e-6
        assert (c["quantized"] is not None) == (not is_fp32(ArchSpec.from_json(c["spec"])))  # quantized policies
        if c["quantized"]:
            assert (out / c["quantized"]["file"]).exists()
    card = (out / "MODEL_CARD.md").read_text()
    assert f"nasmt export {run} --controllable --out {out}" in card


def _standalone(run: Path, front: dict, data, folder: Path, cli_first: bool = False) -> None:
    """Each candidate's own export (model.py + weights + preprocessing, written by the
    plain export's `_write_model` from the network it rebuilds for an inherited trial);
    with `cli_first`, the first candidate's is a whole `nasmt export RUN --trial N`."""
    bank, _, _ = B.load_bank(run, data)
    recs = {r.number: r for r in read_trials(run)}
    for k, c in enumerate(front["candidates"]):
        if cli_first and k == 0:
            assert main(["export", str(run), "--trial", str(c["trial"]), "--out", str(folder / f"c{c['id']}"),
                         "--no-quantized", "--no-onnx"]) == 0
            continue
        spec = ArchSpec.from_json(c["spec"])
        assert B.recalibration_of(recs[c["trial"]]) == RECAL
        model = B.inherited_model(bank, spec, data, B.recalibration_of(recs[c["trial"]]))
        _write_model(folder / f"c{c['id']}", model, spec, data.preprocessing, f"trial {c['trial']}")


ACCEPT = r"""
import importlib.util, json, sys, time
import numpy as np, onnxruntime as ort, torch
torch.set_num_threads(1)

def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

out = {}
for case in json.load(open(sys.argv[1])):
    ctl = load(case["export"] + "/model.py", "ctl_" + case["name"])
    net = ctl.load()
    x = torch.from_numpy(np.load(case["x"]))
    storages = {t.untyped_storage().data_ptr() for t in net.shared.values()}
    res = {"diff": {}, "onnx": {}, "subset": {}, "own_storage": {}}
    for c in net.candidates:
        net.select(candidate=c["id"])
        own = load(f"{case['standalone']}/c{c['id']}/model.py", f"{case['name']}_c{c['id']}").load()
        with torch.no_grad():
            got, want = net(x), own(x)
        res["diff"][c["id"]] = max(float((got[t] - want[t]).abs().max()) for t in want)
        res["own_storage"][c["id"]] = sum(p.untyped_storage().data_ptr() not in storages for p in net.parameters())
        sess = ort.InferenceSession(f"{case['export']}/{c['onnx']['file']}", providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        outs = sess.run(names, {"x": x.numpy()})
        res["onnx"][c["id"]] = max(float(np.abs(o - want[n].numpy()).max()) for o, n in zip(outs, names))
        task = ctl.TASKS[-1]
        net.select(candidate=c["id"], tasks=[task])
        with torch.no_grad():
            sub = net(x)
        res["subset"][c["id"]] = [sorted(sub), float((sub[task] - got[task]).abs().max())]
    t0 = time.perf_counter()
    for _ in range(50):
        net.select(candidate=0)
        net.select(candidate=net.candidates[-1]["id"])
    res["switch_ms"] = (time.perf_counter() - t0) / 100 * 1000
    res["chosen"] = net.select(budget=case["budget"], preference=case["pref"])
    errors = []
    for kw in case["errors"]:
        try:
            net.select(**kw)
            errors.append(None)
        except ctl.SelectionError as e:
            errors.append(str(e))
    res["errors"] = errors
    res["after_errors"] = net.chosen["id"]
    out[case["name"]] = res
print(json.dumps(out))
"""


def test_every_selection_is_its_candidates_standalone_export_without_nasmt(exported, python_without_nasmt, tmp_path):
    cases = []
    for name in ("fair", "mm"):
        run, out, front, suite, data = exported(name)
        _standalone(run, front, data, tmp_path / name, cli_first=name == "fair")
        np.save(tmp_path / f"{name}.npy", np.ascontiguousarray(data.x["val"][:256]))
        tasks = [t.ident for t in suite.tasks]
        cases.append({
            "name": name, "export": str(out), "standalone": str(tmp_path / name), "x": str(tmp_path / f"{name}.npy"),
            "budget": {"params": sorted(c["costs"]["params"] for c in front["candidates"])[len(front["candidates"]) // 2]},
            "pref": {tasks[0]: 0.9, tasks[1]: 0.1},
            "errors": [{"preference": {"nope": 1}}, {"preference": {tasks[0]: -1}}, {"budget": {"watts": 1}},
                       {"budget": {"params": 1}}]})
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    p = run_without_nasmt(python_without_nasmt, ACCEPT.replace("sys.argv[1]", repr(str(tmp_path / "cases.json"))),
                          tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    results = json.loads(p.stdout.strip().splitlines()[-1])
    from nasmt.run.controllable import select_candidate

    for case in cases:
        name, res = case["name"], results[case["name"]]
        _, _, front, suite, _ = exported(name)
        tasks = [t.ident for t in suite.tasks]
        print(f"{name}: {len(front['candidates'])} candidates; max abs diff vs standalone {max(res['diff'].values()):.3g}, "
              f"ONNX {max(res['onnx'].values()):.3g}; switch {res['switch_ms']:.4f} ms")
        assert len(res["diff"]) == len(front["candidates"]) >= 2
        assert max(res["diff"].values()) <= 1e-6
        assert max(res["onnx"].values()) <= 1e-4
        gates = {c["id"]: sum(len(p) > 1 for p in c["sources"].values()) for c in front["candidates"]}
        assert res["own_storage"] == {str(k): v for k, v in gates.items()}  # views of the shared tensors but PLE gates
        assert all(s == [[tasks[-1]], 0.0] for s in res["subset"].values())  # one task alone: its outputs, unchanged
        i, _ = select_candidate(front["candidates"], case["budget"], case["pref"], idents=tasks)
        assert res["chosen"]["id"] == front["candidates"][i]["id"]
        assert res["chosen"]["costs"]["params"] <= case["budget"]["params"]
        cheapest = min(front["candidates"], key=lambda c: c["costs"]["params"])
        assert [e.split(":")[0] for e in res["errors"]] == ["preference", "preference", "budget", "budget"]
        assert f"the cheapest is candidate {cheapest['id']} (trial {cheapest['trial']}: params" in res["errors"][3]
        assert res["after_errors"] == res["chosen"]["id"]  # a refused selection leaves the selection as it was


def test_predict_cli_runs_the_candidate_select_chooses(exported, tmp_path):
    run, out, front, suite, data = exported("fair")
    lines = (ROOT / "tasks" / "fair.csv").read_text().splitlines()
    rows = tmp_path / "rows.csv"
    rows.write_text("\n".join([lines[0]] + [lines[1 + i] for i in data.meta["rows"]["test"][:50]]) + "\n")
    budget = sorted(c["costs"]["params"] for c in front["candidates"])[1]
    assert main(["predict", str(out), "--input", str(rows), "--out", str(tmp_path / "p.csv"),
                 "--budget", f"params={budget}", "--preference", "affair=0.8,marriage=0.2"]) == 0
    from nasmt.run.controllable import select_candidate

    i, _ = select_candidate(front["candidates"], {"params": budget}, {"affair": 0.8, "marriage": 0.2},
                            idents=[t.ident for t in suite.tasks])
    _standalone(run, {"candidates": [front["candidates"][i]]}, data, tmp_path / "own")
    import importlib.util

    spec = importlib.util.spec_from_file_location("own_model", tmp_path / "own" / f"c{i}" / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    want = predict_rows(mod.load(), json.loads((out / "preprocessing.json").read_text()), rows)
    with open(tmp_path / "p.csv", newline="") as f:
        got = list(csv.DictReader(f))
    assert [g["marriage"] for g in got] == want["marriage"]["label"]
    assert np.allclose([float(g["years_married"]) for g in got], want["years_married"]["value"], atol=1e-4)
    assert main(["predict", str(out), "--input", str(rows), "--out", str(tmp_path / "q.csv"), "--tasks", "affair"]) == 0
    assert (tmp_path / "q.csv").read_text().splitlines()[0] == "affair,affair.p[yes]"


@pytest.mark.parametrize("flag, value, expect", [
    ("--preference", "nope=1", "--preference: unknown task 'nope' (tasks: affair, marriage"),
    ("--preference", "affair=-0.5", "--preference: weight of 'affair' is negative (-0.5)"),
    ("--budget", "watts=1", "--budget: unknown cost 'watts' (costs: latency_ms, params"),
    ("--budget", "params=1", "--budget: no candidate of the front meets params <= 1; the cheapest is candidate"),
    ("--budget", "params=lots", "--budget: 'params' needs a number (got 'lots')"),
    ("--tasks", "nope", "--tasks: unknown task 'nope'"),
])
def test_bad_selections_through_the_cli_are_one_line(exported, tmp_path, capsys, flag, value, expect):
    _, out, front, _, _ = exported("fair")
    rows = tmp_path / "rows.csv"
    rows.write_text((ROOT / "tasks" / "fair.csv").read_text().splitlines()[0] + "\n")
    assert main(["predict", str(out), "--input", str(rows), "--out", str(tmp_path / "p.csv"), flag, value]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"nasmt: error: {expect}") and "\n" not in err and "Traceback" not in err
    if "cheapest" in expect:
        cheapest = min(front["candidates"], key=lambda c: c["costs"]["params"])
        assert f"candidate {cheapest['id']} (trial {cheapest['trial']}: params {cheapest['costs']['params']:,})" in err
    assert not (tmp_path / "p.csv").exists()


def test_report_maps_budget_and_preference_regions_to_candidates(exported, tmp_path):
    """The report's controllable view (nasmt/report/controllable.py) on the run: the same
    candidates as the export; at the largest budget, weight 1 on a task picks the front's
    best candidate on it; at the smallest, the cheapest; and for a fixed budget, raising a
    task's weight never picks a candidate worse on that task (records' validation errors)."""
    import sys

    from nasmt.report import write_report
    from nasmt.report import controllable as V
    from nasmt.run import controllable_front as F

    sys.path.append(str(ROOT / "tests" / "report"))
    from dashboard_helpers import page_payload

    assert (V.SUPERNET_DIR, V.STATE_FILE, F.INHERITED_KEY) == (B.SUPERNET_DIR, B.STATE_FILE, B.INHERITED)
    run, _, front, suite, _ = exported("fair")
    fig = page_payload(write_report([run], out=tmp_path / "r.html").read_text())["figures"]["controllable"]
    tasks = [t.ident for t in suite.tasks]
    recs = {r.number: r for r in read_trials(run)}
    trials = [c["trial"] for c in front["candidates"]]
    bar = fig["data"][0]["colorbar"]
    picked = {int(i) for d in fig["data"] for row in d["z"] for i in row}
    assert bar["tickvals"] == sorted(picked) and len(picked) >= 2
    assert bar["ticktext"] == [f"{i} (trial {trials[i]})" for i in bar["tickvals"]]
    assert [d["name"] for d in fig["data"]] == [t.name for t in suite.tasks]  # one map per task (dropdown)
    err = {i: {t: recs[n].metrics[f"{t}.error"] for t in tasks} for i, n in enumerate(trials)}
    params = {i: recs[n].metrics["params"] for i, n in enumerate(trials)}
    for t, d in zip(tasks, fig["data"]):
        z = np.array(d["z"])
        assert z.shape == (V.WEIGHT_STEPS, V.BUDGET_STEPS) and (z >= 0).all()
        assert err[z[-1, -1]][t] == min(e[t] for e in err.values())  # weight 1, no binding budget
        assert params[z[0, 0]] == min(params.values())  # the smallest budget: only the cheapest fits
        for col in z.T:
            chosen = [err[i][t] for i in col]
            assert all(b <= a + 1e-12 for a, b in zip(chosen, chosen[1:])), (t, chosen)
        assert all(params[i] <= b + 1 for row in z for i, b in zip(row, d["x"]))  # x: budgets rounded
