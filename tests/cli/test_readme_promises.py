"""README promises that need no search, through the real CLI: `nasmt sample` prints N
derivations (with --json, each one replays exactly), `nasmt baselines` writes the
references with the settings given, and the module-size figure the README states is
the limit tests/test_imports.py enforces."""

from __future__ import annotations

import json
import re

import optuna
import pytest

from conftest import ROOT, nasmt
from nasmt.baselines import read_baselines
from nasmt.data import load_data
from nasmt.data.suite import load_suite
from nasmt.space.derive import derive
from nasmt.space.grammar import load_grammar

PEOPLE = ROOT / "tasks" / "people.toml"
MTL = ROOT / "search_spaces" / "mtl.grammar"  # weighted alternatives, mixtures, groups, a train rule
N = 4  # not the default 3


@pytest.fixture(scope="module")
def samples():
    """(text output, JSON lines) of the same N derivations."""
    text = nasmt("sample", MTL, "--tasks", PEOPLE, "-n", N, "--seed", 7).stdout
    lines = nasmt("sample", MTL, "--tasks", PEOPLE, "-n", N, "--seed", 7, "--json").stdout.splitlines()
    return text, [json.loads(line) for line in lines]


def test_sample_json_prints_n_derivations_that_replay(samples):
    _, specs = samples
    assert len(specs) == N
    assert len({s["hash"] for s in specs}) > 1  # random derivations, not one repeated
    suite = load_suite(PEOPLE)
    data = load_data(suite)
    g = load_grammar(MTL)
    for s in specs:
        again = derive(g, optuna.trial.FixedTrial(s["genome"]), suite.tasks, data.input_shape, data.n_outputs)
        assert again.hash == s["hash"]
        assert again.to_json() == {k: v for k, v in s.items() if k not in ("params", "flops")}
        assert s["params"] > 0 and s["flops"] > 0


def test_sample_text_prints_the_same_n_derivations(samples):
    text, specs = samples
    headers = re.findall(r"^# sample (\d+): ([\d,]+) params", text, flags=re.M)
    assert [int(i) for i, _ in headers] == list(range(N))
    assert [int(p.replace(",", "")) for _, p in headers] == [s["params"] for s in specs]
    assert re.findall(r"\[([0-9a-f]{16})\]", text) == [s["hash"] for s in specs]  # describe(): "<space> [<hash>] ..."


def test_baselines_command_writes_the_references(tmp_path):
    out = tmp_path / "refs"
    r = nasmt("baselines", "--tasks", PEOPLE, "--out", out, "--steps", 3, "--lr", 0.02, "--seed", 7,
              "--batch-size", 64, "--gbdt-leaves", 15, "--gbdt-lr", 0.1, "--quiet")
    assert r.stdout.strip() == str(out / "baselines.jsonl")
    recs = read_baselines(out)
    assert [x.name for x in recs] == ["single-task", "hard-shared", "mmoe", "ple", "lightgbm"]
    for x in recs:
        assert {k: x.settings[k] for k in ("suite", "steps", "lr", "seed", "batch_size")} == {
            "suite": "people", "steps": 3, "lr": 0.02, "seed": 7, "batch_size": 64}
        assert {"income.auc", "marital.accuracy", "tenure.mae", "mean_error"} <= set(x.metrics) & set(x.test_metrics)


def test_readme_module_size_figure_is_the_enforced_limit():
    from test_imports import MAX_MODULE_LINES

    m = re.search(r"No Python module is over (\d+) lines", (ROOT / "README.md").read_text())
    assert m, "the README's module-size statement is gone"
    assert int(m.group(1)) == MAX_MODULE_LINES
