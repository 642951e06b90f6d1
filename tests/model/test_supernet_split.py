"""A split weight bank (`SuperNet(..., split=True)`, `BankSettings.split`): the ops of task
groups and branches are keyed by the features they read as well as by their position, so
a branch that taps stage 1 and the same branch tapping stage 2 do not share columns that
mean different things; trunk ops keep one set of weights per position. On
search_spaces/mlp.grammar with tasks/people.toml."""

from __future__ import annotations

import optuna
import pytest
import torch

from nasmt.model.supernet import SuperNet, _unsplit, plan_sources, random_specs
from nasmt.space.grammar import load_grammar
from conftest import ROOT

torch.set_num_threads(1)
MLP = ROOT / "search_spaces" / "mlp.grammar"
SIZING = 60


@pytest.fixture(scope="module")
def banks():
    from nasmt.data import load_data_cached
    from nasmt.data.suite import load_suite

    suite = load_suite(ROOT / "tasks" / "people.toml")
    data = load_data_cached(suite)
    g = load_grammar(MLP)
    specs = random_specs(g, suite.tasks, data.input_shape, data.n_outputs, 6, seed=4)
    torch.manual_seed(0)
    plain = SuperNet.for_suite(g, suite, data, n_samples=SIZING, seed=0, specs=specs)
    split = SuperNet.for_suite(g, suite, data, n_samples=SIZING, seed=0, specs=specs, split=True)
    return g, data, specs, plain, split


def _taps(bank, spec, task: str):
    """Two replays of `spec`: task `task` tapping stage 1, and tapping stage 2; both with
    one own layer of 32 units."""
    out = []
    for tap in ("1", "2"):
        genome = dict(spec.genome_dict)
        genome.update({f"branch.{task}.tap": tap, f"branch.{task}.own.n": 1, f"branch.{task}.own.0.fc.h": 32,
                       "trunk.layer.n": 2, "trunk.layer.0.fc.h": 64, "trunk.layer.1.fc.h": 64})
        out.append(bank.derive(optuna.trial.FixedTrial(genome)))
    return out


def test_branch_ops_are_keyed_by_what_they_read(banks):
    """The branch's first layer and its output layer: one bank tensor in the plain bank for
    both taps, two in the split bank (`@stage1` / `@stage2`; the output layer by the own
    layer it reads); trunk layers: the same key in both banks."""
    g, _, specs, _, _ = banks
    one, two = _taps(banks[3], specs[0], "income")
    assert one.branches[0].tap == 1 and two.branches[0].tap == 2
    for split in (False, True):
        p1, p2 = plan_sources(g, one, split).sources, plan_sources(g, two, split).sources
        first = "branches.income.0.linear.weight"
        same = p1[first][0][0] == p2[first][0][0]
        assert same is (not split), (split, p1[first], p2[first])
        assert p1["trunk.0.0.linear.weight"] == p2["trunk.0.0.linear.weight"]
        assert p1["trunk.0.0.linear.weight"][0][0] == "trunk.layer.0.fc.linear.weight"
    p1, p2 = plan_sources(g, one, True).sources, plan_sources(g, two, True).sources
    assert p1["branches.income.0.linear.weight"][0][0] == "branch.income.own.0.fc@stage1.linear.weight"
    assert p2["branches.income.0.linear.weight"][0][0] == "branch.income.own.0.fc@stage2.linear.weight"
    assert p1["branches.income.1.weight"][0][0] == "branch.income.out@branch:income:own:0:fc.weight"


def test_a_step_through_one_tap_leaves_the_other_taps_weights(banks):
    """Split bank: training the stage-1 candidate changes its branch's `@stage1` tensor and
    not the stage-2 candidate's branch layer (the plain bank's shared tensor moves for
    both); the extracted network still computes exactly what the bank computes."""
    _, data, specs, plain, split = banks
    x = torch.from_numpy(data.x["train"][:64])
    for bank, shared in ((plain, True), (split, False)):
        one, two = _taps(bank, specs[0], "income")

        def w(spec):
            return bank.extract(spec).branches["income"][0].linear.weight.detach().clone()

        before = w(two)
        opt = torch.optim.SGD(bank.parameters(), lr=0.5)
        opt.zero_grad()
        sum(o.square().mean() for o in bank(one, x).values()).backward()
        opt.step()
        moved = not torch.equal(w(two), before)
        assert moved is shared, (shared, moved)
        bank.eval()
        with torch.no_grad():
            got, want = bank(one, x), bank.extract(one).eval()(x)
        bank.train()
        assert all(torch.equal(got[t], want[t]) for t in got)


def test_split_bank_holds_every_sampled_candidate_and_more_tensors(banks):
    g, _, specs, plain, split = banks
    assert all(split.fits(s) for s in specs)
    assert {_unsplit(k) for k in split.keys} == set(plain.keys)  # the same positions, split by source
    assert len(split.keys) > len(plain.keys)
    assert [k for k in split.keys if k.startswith("trunk.")] == [k for k in plain.keys if k.startswith("trunk.")]
