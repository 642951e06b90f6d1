"""Derivation (define-by-run naming, replay, JSON round trip) and the builder."""

from pathlib import Path

import optuna
import pytest
import torch

from nasmt.model.build import build
from nasmt.model.cost import cost
from nasmt.space.derive import derive, replay
from nasmt.space.grammar import load_grammar, parse_grammar
from nasmt.space.spec import ArchSpec

ROOT = Path(__file__).resolve().parents[2]
optuna.logging.set_verbosity(optuna.logging.WARNING)
SHAPES = {"conv": (1, 28, 28), "tiny": (1, 28, 28), "mlp": (23,)}


def _derive_many(gname, n, seed=0):
    g = load_grammar(ROOT / "search_spaces" / f"{gname}.grammar")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    outs = {"a": 10, "b": 1}
    specs = []
    for _ in range(n):
        t = study.ask()
        specs.append((g, derive(g, t, ["a", "b"], SHAPES[gname], outs)))
        study.tell(t, 0.0)
    return specs


@pytest.mark.parametrize("gname", sorted(SHAPES))
def test_every_derivation_builds_and_replays(gname):
    for g, spec in _derive_many(gname, 25):
        assert replay(g, spec.genome_dict, ["a", "b"], SHAPES[gname], {"a": 10, "b": 1}) == spec
        assert ArchSpec.loads(spec.dumps()) == spec
        assert ArchSpec.loads(spec.dumps()).hash == spec.hash
        m = build(spec)
        out = m(torch.randn(3, *SHAPES[gname]))
        assert out["a"].shape == (3, 10) and out["b"].shape == (3, 1)
        assert all("/" not in k for k in spec.genome_dict)
        # each branch taps a stage that exists
        assert all(1 <= b.tap <= len(spec.stages) for b in spec.branches)


def test_decision_names_are_derivation_paths():
    _, spec = _derive_many("conv", 1, seed=3)[0]
    names = set(spec.genome_dict)
    assert "branch.a.tap" in names and "branch.b.tap" in names
    assert "trunk.stage.n" in names and "trunk.stem.conv.c" in names
    assert any(n.startswith("quant.stage1.") for n in names)


def test_domains_fixed_across_trials():
    """Optuna refuses a name whose domain changes; 60 trials in one study must be fine."""
    _derive_many("conv", 60, seed=5)


def test_weights_bias_sampling():
    g = parse_grammar(
        "trunk = s\ns = conv(k=3, c=4) [9] | dwsep(k=3, c=4) [1]\nbranch = tap(at=1)\n", "w.grammar"
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    ops = []
    for _ in range(400):
        t = study.ask()
        ops.append(derive(g, t, ["a"], (1, 8, 8), {"a": 2}).stages[0].ops[0].op)
        study.tell(t, 0.0)
    share = ops.count("conv") / len(ops)
    assert 0.83 < share < 0.97, share


def test_cost_per_task_path():
    _, spec = _derive_many("conv", 1, seed=2)[0]
    m = build(spec)
    c = cost(m, spec.input_shape)
    assert c["params"] == sum(p.numel() for p in m.parameters())
    for b in spec.branches:
        t = c["tasks"][b.task]
        stage_params = sum(sum(p.numel() for p in m.trunk[i].parameters()) for i in range(b.tap))
        assert t["path_params"] == stage_params + t["branch_params"]
        assert 0 < t["path_flops"] <= c["flops"]


def test_tap_clamped_and_unused_stages_dropped():
    g = parse_grammar("trunk = conv(k=3, c=4) conv(k=3, c=4) conv(k=3, c=4)\nbranch = tap(at=2|9) head\nhead = gap()\n", "t.grammar")
    s = derive(g, optuna.trial.FixedTrial({"branch.a.tap": 9}), ["a"], (1, 8, 8), {"a": 3})
    assert s.branches[0].tap == 3 and len(s.stages) == 3
    s = derive(g, optuna.trial.FixedTrial({"branch.a.tap": 2}), ["a"], (1, 8, 8), {"a": 3})
    assert s.branches[0].tap == 2 and len(s.stages) == 2
