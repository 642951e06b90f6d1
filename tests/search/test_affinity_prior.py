"""Task affinity: `nasmt affinity` measures it on a real suite, and `search --affinity`
makes the first trials follow the grouping it suggests (group and tap decisions)."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest

from conftest import ROOT, nasmt
from nasmt.data import load_data
from nasmt.data.suite import load_suite
from nasmt.errors import UserError
from nasmt.run import AFFINITY_FILE, read_trials
from nasmt.search.affinity import affinity_genomes, prior_trials
from nasmt.space.derive import replay
from nasmt.space.grammar import load_grammar
from nasmt.space.spec import ArchSpec

sys.path.append(str(ROOT / "tests" / "report"))  # the report tests' helpers (tests/ has no packages)
from dashboard_helpers import page_payload, values  # noqa: E402

PEOPLE = ROOT / "tasks" / "people.toml"
MTL = ROOT / "search_spaces" / "mtl.grammar"


def _affinity(folder, matrix, tasks=("income", "marital", "tenure")):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / AFFINITY_FILE).write_text(json.dumps({"suite": "people", "tasks": list(tasks), "matrix": matrix,
                                                    "measurements": 1, "every": 1, "steps": 1, "lr": 0.1,
                                                    "method": "test", "groups": [list(tasks)]}))
    return folder


def test_affinity_command_measures_a_real_suite(tmp_path):
    p = nasmt("affinity", "--tasks", PEOPLE, "--out", tmp_path / "aff", "--steps", 40, "--every", 4)
    aff = json.loads((tmp_path / "aff" / AFFINITY_FILE).read_text())
    assert aff["tasks"] == ["income", "marital", "tenure"]
    assert aff["measurements"] == 10
    assert len(aff["matrix"]) == 3 and all(len(r) == 3 for r in aff["matrix"])
    assert sorted(t for g in aff["groups"] for t in g) == sorted(aff["tasks"])
    # a task's own step helps itself more than it helps the others, on average (lookahead on its own loss)
    assert sum(aff["matrix"][i][i] for i in range(3)) > sum(aff["matrix"][i][j] for i in range(3) for j in range(3) if i != j) / 2
    html = (tmp_path / "aff" / "affinity.html").read_text()
    fig = json.loads(re.search(r'<script type="application/json" id="affinity-figure">(.*?)</script>', html, re.S)[1])
    assert fig["data"][0]["type"] == "heatmap"
    assert np.allclose(values(fig["data"][0]["z"]), aff["matrix"])
    assert "suggested groups" in p.stdout


def test_prior_genomes_follow_the_suggested_grouping(tmp_path):
    suite = load_suite(PEOPLE)
    data = load_data(suite)
    g = load_grammar(MTL)
    # income and tenure help each other a lot, marital helps nobody
    folder = _affinity(tmp_path / "a", [[0.0, -0.5, 0.9], [-0.5, 0.0, -0.5], [0.9, -0.5, 0.0]])
    genomes, parts = affinity_genomes(folder, g, suite, data, n_trials=12, seed=0)
    assert sorted(map(sorted, parts)) == [["income", "tenure"], ["marital"]]
    assert len(genomes) == prior_trials(12) == 3
    for gen in genomes:
        spec = replay(g, gen, suite.tasks, data.input_shape, data.n_outputs)
        assert spec.branch("income").group is not None
        assert spec.branch("income").group == spec.branch("tenure").group
        assert spec.branch("marital").group is None
        assert spec.branch("marital").tap == 1  # a task alone branches off first
    assert len({json.dumps(x, sort_keys=True) for x in genomes}) == 3  # the rest stays random


def test_prior_refuses_a_grammar_without_groups_and_a_foreign_suite(tmp_path):
    suite = load_suite(PEOPLE)
    data = load_data(suite)
    folder = _affinity(tmp_path / "a", [[0.0] * 3] * 3)
    with pytest.raises(UserError, match="no task groups"):
        affinity_genomes(folder, load_grammar(ROOT / "search_spaces" / "mlp.grammar"), suite, data, 4, 0)
    other = _affinity(tmp_path / "b", [[0.0] * 2] * 2, tasks=("left", "right"))
    with pytest.raises(UserError, match="tasks: measured for"):
        affinity_genomes(other, load_grammar(MTL), suite, data, 4, 0)


def test_search_with_affinity_enqueues_the_prior_and_reports_the_heatmap(tmp_path, shared_ray):
    folder = _affinity(tmp_path / "a", [[0.0, 0.8, -0.3], [0.8, 0.0, -0.3], [-0.3, -0.3, 0.0]])
    out = tmp_path / "run"
    nasmt("search", "--space", MTL, "--tasks", PEOPLE, "--trials", 2, "--steps", 10, "--out", out,
          "--affinity", folder, "--quiet", *shared_ray)
    assert json.loads((out / AFFINITY_FILE).read_text()) == json.loads((folder / AFFINITY_FILE).read_text())
    first = next(r for r in read_trials(out) if r.number == 0)
    spec = ArchSpec.from_json(first.spec)
    assert spec.branch("income").group is not None and spec.branch("income").group == spec.branch("marital").group
    assert spec.branch("tenure").group is None
    nasmt("report", out, "--out", tmp_path / "r.html")
    heat = page_payload((tmp_path / "r.html").read_text())["affinity"][0]["figure"]["data"][0]
    assert heat["type"] == "heatmap"
    assert np.allclose(values(heat["z"]), [[0.0, 0.8, -0.3], [0.8, 0.0, -0.3], [-0.3, -0.3, 0.0]])
