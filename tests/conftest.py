"""Shared fixtures. `tiny_run` is one real Ray Tune + Optuna search on real MultiMNIST
(tiny grammar, few steps), run once per test session and shared read-only by the
report / export / dashboard tests. Tests that change a run copy it first."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

ROOT = Path(__file__).resolve().parent.parent
SMALL_SUITE = ROOT / "tests" / "data" / "mm_small.toml"
TINY_SPACE = ROOT / "search_spaces" / "tiny.grammar"
CONV_SPACE = ROOT / "search_spaces" / "conv.grammar"


def nasmt(*args, check=True, timeout=600, env=None) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess."""
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run(
        [sys.executable, "-m", "nasmt.cli", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=e,
    )
    if check and p.returncode != 0:
        raise AssertionError(f"nasmt {' '.join(map(str, args))} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture(scope="session")
def mm():
    """(suite, data) of tests/data/mm_small.toml: real MultiMNIST composites, few examples."""
    from nasmt.data import load_data_cached
    from nasmt.data.suite import load_suite

    suite = load_suite(SMALL_SUITE)
    return suite, load_data_cached(suite)


def small_conv_spec(data):
    """The spec of `small_conv_net`: conv 3x3, 4 channels, stride 2; every task: global
    pool -> its output layer; fp32 throughout."""
    from nasmt.space.spec import ArchSpec, BranchSpec, OpSpec, StageSpec

    return ArchSpec(
        space="t", input_shape=tuple(data.input_shape),
        stages=(StageSpec((OpSpec.from_json({"op": "conv", "k": 3, "c": 4, "s": 2}),)),),
        branches=tuple(BranchSpec(t, 1, (), (OpSpec("gap"),), n) for t, n in data.n_outputs.items()),
    )


def small_conv_net(data, seed: int = 0):
    """A one-stage network for `data` (`small_conv_spec`), seeded: the small real model
    of the training-loop tests."""
    from nasmt.model.build import build

    torch.manual_seed(seed)
    return build(small_conv_spec(data))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    nasmt(
        "search", "--space", CONV_SPACE, "--tasks", SMALL_SUITE, "--objectives", "mean_error,params",
        "--trials", 4, "--steps", 30, "--out", out, "--seed", 1, "--sampler", "random",
    )
    return out


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(tiny_run, dst, ignore=shutil.ignore_patterns("ray"))
    return dst
