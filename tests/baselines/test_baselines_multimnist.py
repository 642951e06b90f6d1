"""`nasmt baselines --out RUN` on the MultiMNIST run of the shared `tiny_run` search: the
run's own suite and settings (flags override them), single-task LeNets and the LeNet
shared trunk recorded, drawn by the run's report as labelled reference points."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from nasmt.baselines import read_baselines
from nasmt.baselines.cli import add_parser
from nasmt.errors import UserError
from nasmt.report import build_payload, load_runs, resolve_objectives
from nasmt.run import load_run

ROOT = Path(__file__).resolve().parents[2]
STEPS = 5


def _cli(*args: str) -> None:
    p = argparse.ArgumentParser()
    add_parser(p.add_subparsers(dest="cmd", required=True))
    a = p.parse_args(["baselines", *args])
    a.fn(a)


def test_baselines_of_a_run_in_its_report(run_copy):
    cfg = load_run(run_copy)["config"]
    _cli("--out", str(run_copy), "--steps", str(STEPS), "--quiet")
    recs = read_baselines(run_copy)
    assert [r.name for r in recs] == ["single-task", "lenet"]
    for r in recs:  # the run's suite and seed; --steps overrides its budget
        assert r.settings["suite"] == "mm-small" and r.settings["seed"] == cfg["seed"] == 1
        assert r.settings["steps"] == STEPS != cfg["steps"] and r.settings["batch_size"] == cfg["batch_size"]
        assert {"left.accuracy", "right.accuracy", "mean_error", "params", "flops"} <= set(r.metrics)
        assert set(r.test_metrics) == set(r.metrics)
    assert recs[1].metrics["params"] < recs[0].metrics["params"]  # one shared trunk instead of two
    rd = load_runs([run_copy])
    p = build_payload(rd, resolve_objectives(rd))
    (stars,) = [tr for tr in p["figures"]["pareto"]["data"] if tr.get("name") == "references"]
    assert list(stars["text"]) == ["single-task", "lenet"]
    assert [list(xy) for xy in zip(stars["x"], stars["y"])] == [
        [pytest.approx(r.metrics["mean_error"], rel=1e-5), r.metrics["params"]] for r in recs]
    g0 = sum(r["n_trials"] for r in p["runs"])
    assert [cd[0] for cd in stars["customdata"]] == [g0, g0 + 1]  # clicking a star selects its table row
    assert p["notes"]["references"] == []  # no LightGBM for an image suite


def test_baselines_refuse_another_suite(run_copy, tmp_path):
    with pytest.raises(UserError, match="another task suite"):
        _cli("--tasks", str(ROOT / "tasks" / "people.toml"), "--out", str(run_copy))
    with pytest.raises(UserError, match="--tasks: required"):
        _cli("--out", str(tmp_path / "new"))
    with pytest.raises(UserError, match="--steps"):
        _cli("--tasks", str(ROOT / "tasks" / "people.toml"), "--out", str(tmp_path / "new"), "--steps", "0")
    with pytest.raises(UserError, match="--device"):
        _cli("--tasks", str(ROOT / "tasks" / "people.toml"), "--out", str(tmp_path / "new"), "--device", "tpu")
    assert not (tmp_path / "new").exists()  # nothing written before the settings are checked
