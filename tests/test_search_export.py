"""End to end: a real Ray Tune + Optuna search (the session's `tiny_run`), its records,
and the export that must reproduce the trained model outside nasmt."""

import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from safetensors.torch import load_file

from conftest import nasmt
from nasmt.model.build import build
from nasmt.run import Objective, load_run, read_trials, pareto_trials
from nasmt.space.spec import ArchSpec


def test_search_records_every_trial(tiny_run):
    run = load_run(tiny_run)
    trials = read_trials(tiny_run)
    assert [t["number"] for t in trials] == [0, 1, 2, 3]
    assert all(t["status"] == "complete" for t in trials)
    for t in trials:
        m = t["metrics"]
        assert 0.0 <= m["mean_error"] <= 1.0 and m["params"] > 0 and m["flops"] > 0
        assert {"left.accuracy", "right.accuracy"} <= set(m)
        spec = ArchSpec.from_json(t["spec"])
        assert spec.hash == t["spec"]["hash"]
        assert (tiny_run / "trials" / f"{t['number']:05d}" / "weights.safetensors").exists()
        assert t["timings"]["train_s"] > 0
    # the Optuna journal holds the same trials, all complete, with the same objective values
    study = optuna.load_study(
        study_name="nasmt",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tiny_run / "study.journal"))),
    )
    done = {ft.number: ft for ft in study.trials if ft.state == optuna.trial.TrialState.COMPLETE}
    assert sorted(done) == [0, 1, 2, 3]
    for t in trials:
        assert done[t["number"]].values == pytest.approx([t["metrics"]["mean_error"], t["metrics"]["params"]])
        # genome in the record == parameters Optuna sampled for that trial
        assert done[t["number"]].params == t["spec"]["genome"]
    objs = [Objective(**o) for o in run["objectives"]]
    front = pareto_trials(trials, objs)
    assert front
    for f in front:  # nobody dominates a front point
        for t in trials:
            a, b = t["metrics"], f["metrics"]
            assert not (a["mean_error"] <= b["mean_error"] and a["params"] <= b["params"]
                        and (a["mean_error"] < b["mean_error"] or a["params"] < b["params"]))


def _venv_without_nasmt(path: Path) -> Path:
    """A venv that sees torch + safetensors (via a .pth to our site-packages) but not nasmt."""
    venv.EnvBuilder(with_pip=False).create(path)
    site = next(path.glob("lib/python*/site-packages"))
    ours = sysconfig.get_paths()["purelib"]
    (site / "deps.pth").write_text(ours + "\n")  # a plain path: nested .pth (nasmt's editable hook) are not run
    return path / "bin" / "python"


def test_export_runs_without_nasmt_and_matches(tiny_run, tmp_path):
    out = tmp_path / "exp"
    nasmt("export", tiny_run, "--pick", "knee", "--out", out)
    arch = json.loads((out / "arch.json").read_text())
    n = arch["trial"]
    for f in ("model.py", "weights.safetensors", "arch.json", "model.onnx", "model.pt2", "MODEL_CARD.md"):
        assert (out / f).exists(), f
    assert "nasmt" not in (out / "model.py").read_text().split('"""', 2)[2].replace("nasmt export", "")
    assert arch["onnx"]["max_abs_diff_vs_torch"] < 1e-4
    # the trained model, rebuilt by nasmt from the run directory
    spec = ArchSpec.from_json(arch["spec"])
    ref = build(spec)
    ref.load_state_dict(load_file(str(tiny_run / "trials" / f"{n:05d}" / "weights.safetensors")))
    ref.eval()
    x = torch.rand(5, *spec.input_shape, generator=torch.Generator().manual_seed(0))
    np.save(tmp_path / "x.npy", x.numpy())
    with torch.no_grad():
        want = {k: v.numpy() for k, v in ref(x).items()}
    py = _venv_without_nasmt(tmp_path / "venv")
    script = (
        "import sys, json, numpy as np, torch\n"
        "try:\n    import nasmt\n    print('NASMT_IMPORTABLE'); sys.exit(3)\nexcept ImportError:\n    pass\n"
        "torch.set_num_threads(1)\nimport model\n"
        "net = model.load()\n"
        f"x = torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r}))\n"
        "with torch.no_grad():\n    out = net(x)\n"
        f"np.savez({str(tmp_path / 'got.npz')!r}, **{{k: v.numpy() for k, v in out.items()}})\n"
        "print('nasmt' in sys.modules)\n"
    )
    p = subprocess.run([str(py), "-c", script], cwd=out, capture_output=True, text=True, timeout=300,
                       env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")})
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip().endswith("False")
    got = np.load(tmp_path / "got.npz")
    assert set(got.files) == set(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_per_task_export_is_smaller_and_matches(tiny_run, tmp_path):
    out = tmp_path / "exp"
    nasmt("export", tiny_run, "--trial", "1", "--out", out, "--no-quantized")
    arch = json.loads((out / "arch.json").read_text())
    full = (out / "weights.safetensors").stat().st_size
    for task, info in arch["per_task"].items():
        assert info["max_abs_diff_vs_full"] == 0.0
        assert info["bytes"] < full
        assert (out / "tasks" / task / "model.py").exists()


def test_export_pick_best_and_bad_trial(tiny_run, tmp_path):
    out = tmp_path / "best"
    p = nasmt("export", tiny_run, "--pick", "best:params", "--out", out, "--no-quantized")
    arch = json.loads((out / "arch.json").read_text())
    trials = read_trials(tiny_run)
    assert arch["trial"] == min(trials, key=lambda t: t["metrics"]["params"])["number"]
    p = nasmt("export", tiny_run, "--trial", "99", "--out", tmp_path / "x", check=False)
    assert p.returncode == 2 and "--trial 99" in p.stderr and "Traceback" not in p.stderr


def test_csv_suite_searches_end_to_end(tmp_path):
    """A user's own CSV, described only by a suite file, through search and export."""
    csv = tmp_path / "shop.csv"
    rng = np.random.default_rng(0)
    n = 600
    age = rng.integers(18, 70, n)
    plan = rng.choice(["basic", "plus", "pro"], n)
    visits = rng.poisson(5, n)
    churn = np.where((visits < 4) & (plan == "basic"), "yes", "no")
    spend = 10 + 3 * visits + (plan == "pro") * 20 + rng.normal(0, 2, n)
    lines = ["age,plan,visits,churned,spend,segment"]
    for i in range(n):
        lines.append(f"{age[i]},{plan[i]},{visits[i]},{churn[i]},{spend[i]:.2f},{'ABC'[age[i] % 3]}")
    csv.write_text("\n".join(lines) + "\n")
    suite = tmp_path / "shop.toml"
    suite.write_text(
        'name = "shop"\n[data]\nsource = "csv"\npath = "shop.csv"\nfeatures = ["age", "plan", "visits"]\n'
        '[[tasks]]\nname = "churn risk"\nkind = "binary"\ntarget = "churned"\npositive = "yes"\nmetric = "auc"\n'
        '[[tasks]]\nname = "spend"\nkind = "regression"\ntarget = "spend"\nmetric = "mae"\n'
        '[[tasks]]\nname = "segment"\nkind = "multiclass"\ntarget = "segment"\n'
    )
    out = tmp_path / "run"
    nasmt("search", "--space", Path(__file__).parent.parent / "search_spaces" / "mlp.grammar", "--tasks", suite,
          "--objectives", "mean_error,params", "--trials", 2, "--epochs", 2, "--out", out, "--sampler", "random")
    trials = read_trials(out)
    assert len(trials) == 2 and all(t["status"] == "complete" for t in trials)
    m = trials[0]["metrics"]
    assert {"churn_risk.auc", "spend.mae", "segment.accuracy", "mean_error"} <= set(m)
    exp = tmp_path / "exp"
    nasmt("export", out, "--pick", "best:mean_error", "--out", exp, "--no-quantized")
    arch = json.loads((exp / "arch.json").read_text())
    assert [t["name"] for t in arch["tasks"]] == ["churn risk", "spend", "segment"]
    assert "churn risk" not in (exp / "model.py").read_text()  # user text never becomes code
    assert any(f.startswith("plan=") for f in arch["feature_names"])
