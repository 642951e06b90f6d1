"""The multi-task decisions of the grammar: expert mixtures (MMoE / PLE), task-group trees
and the train rule. Every derivation of the shipped multi-task spaces builds, replays,
and is costed exactly; decision names are stable; the modules do what their papers say."""

from __future__ import annotations

import collections

import optuna
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from conftest import ROOT
from nasmt.model import ops as O
from nasmt.model.build import build, mixture_slots
from nasmt.model.cost import cost
from nasmt.quant.policy import group_paths, plan
from nasmt.space.derive import check_genome, derive, replay
from nasmt.space.grammar import load_grammar, parse_grammar
from nasmt.space.spec import ArchSpec
from nasmt.space.vocab import BALANCE_METHODS

torch.set_num_threads(1)
optuna.logging.set_verbosity(optuna.logging.WARNING)

VECTOR = ("mtl.grammar", (11,), {"inc": 1, "mar": 4, "ten": 1, "x4": 3})
IMAGE = ("conv_mtl.grammar", (1, 28, 28), {"left": 10, "right": 10, "odd": 1})


def samples(case, n: int, seed: int = 0):
    name, shape, outs = case
    g = load_grammar(ROOT / "search_spaces" / name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(n):
        t = study.ask()
        yield g, derive(g, t, list(outs), shape, outs)
        study.tell(t, 0.0)


@pytest.mark.parametrize("case,n", [(VECTOR, 60), (IMAGE, 16)], ids=["mtl", "conv_mtl"])
def test_every_derivation_builds_replays_and_is_costed_exactly(case, n):
    _, shape, outs = case
    fams, methods = collections.Counter(), collections.Counter()
    for g, spec in samples(case, n):
        fams.update(spec.sharing.split("+"))
        methods[spec.balance] += 1
        assert not any("/" in k for k in spec.genome_dict)
        assert replay(g, spec.genome_dict, list(outs), shape, outs) == spec
        assert check_genome(g, spec.genome_dict, list(outs), shape, outs) == spec
        assert ArchSpec.loads(spec.dumps()) == spec
        m = build(spec).eval()
        with torch.no_grad():
            y = m(torch.rand(3, *shape))
        assert {k: tuple(v.shape) for k, v in y.items()} == {k: (3, o) for k, o in outs.items()}
        c = cost(m, shape)
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            m(torch.zeros(1, *shape))
        assert c["flops"] == fc.get_total_flops()
        assert c["params"] == sum(p.numel() for p in m.parameters())
    assert set(fams) == {"hard", "mmoe", "ple", "tree"}
    if n >= 60:
        assert set(methods) == set(BALANCE_METHODS)


def test_decision_names_of_groups_and_the_train_rule():
    seen_group = False
    for g, spec in samples(VECTOR, 40, seed=1):
        gen = spec.genome_dict
        assert {"train.balance.method", "train.optim.lr", "train.optim.wd"} <= set(gen)
        for b in spec.branches:
            if b.group is not None:
                seen_group = True
                assert gen[f"branch.{b.task}.group"] == b.group
                assert f"group.{b.group}.tap" in gen
                assert spec.group(b.group).tap == b.tap  # a joined task's path runs through its group's tap
        joined = {b.group for b in spec.branches} - {None}
        assert {g_.name for g_ in spec.groups} == joined  # a group nobody joins is not built
        assert not any(k.startswith("group.") and k.split(".")[1] not in joined for k in gen)
    assert seen_group


def test_old_specs_keep_their_json_and_hash():
    """A space without groups or a train rule writes the v0.1 ArchSpec JSON (same hash)."""
    g = load_grammar(ROOT / "search_spaces" / "mlp.grammar")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    spec = derive(g, study.ask(), ["a", "b"], (5,), {"a": 2, "b": 1})
    j = spec.arch_json()
    assert set(j) == {"space", "input_shape", "stages", "branches"}
    assert all("group" not in b for b in j["branches"])
    assert spec.train is None and spec.sharing == "hard" and spec.balance == "equal" and spec.train_overrides() == {}


def test_train_rule_sets_the_trial_settings():
    g = parse_grammar("trunk = fc(h=8)\nbranch = tap(at=last) head\nhead = dropout(p=0.0)\n"
                      "train = balance(method=pcgrad) optim(lr=0.02, wd=0.5)\n")
    spec = derive(g, optuna.trial.FixedTrial({}), ["a"], (3,), {"a": 1})
    assert spec.train_overrides() == {"balance": "pcgrad", "lr": 0.02, "weight_decay": 0.5}
    assert "train" in spec.arch_json()  # part of the hash: it changes the trained network


def test_mmoe_mixes_experts_with_one_softmax_gate_per_reader():
    torch.manual_seed(0)
    m = O.MMoE(6, n=3, h=4, readers=2, image=False)
    x = torch.randn(5, 6)
    experts = torch.stack([e(x) for e in m.experts], 1)
    for r, out in enumerate(m(x)):
        w = torch.softmax(m.gates[r](x), -1)
        torch.testing.assert_close(out, (w[:, :, None] * experts).sum(1))
    with torch.no_grad():  # a zero gate weighs the experts equally
        for gate in m.gates:
            gate.weight.zero_()
            gate.bias.zero_()
    torch.testing.assert_close(m(x)[0], experts.mean(1))
    img = O.MMoE(3, n=2, h=5, readers=3, image=True)
    assert [tuple(y.shape) for y in img(torch.randn(2, 3, 8, 8))] == [(2, 5, 8, 8)] * 3


def test_ple_levels_have_shared_own_experts_and_a_shared_gate_between_levels():
    m = O.PLE(6, shared=2, own=1, levels=2, h=4, readers=3, image=False)
    assert len(m.levels) == 2
    first, last = m.levels
    assert len(first.shared) == 2 and [len(o) for o in first.own] == [1, 1, 1]
    assert first.shared_gate is not None and first.shared_gate.out_features == 2 + 3 * 1
    assert last.shared_gate is None
    assert all(gate.out_features == 3 for gate in last.gates)  # shared + own experts per reader gate
    assert len(m(torch.randn(4, 6))) == 3
    # reader 0's output does not depend on reader 1's own experts at the last level
    x = torch.randn(4, 6)
    before = m(x)[0]
    with torch.no_grad():
        for p in last.own[1].parameters():
            p.add_(1.0)
    torch.testing.assert_close(m(x)[0], before)


def test_mixture_readers_get_their_own_slot_and_quantization_covers_experts_and_gates():
    for _, spec in samples(VECTOR, 80, seed=2):
        if "mmoe" in spec.sharing or "ple" in spec.sharing:
            break
    else:
        pytest.fail("no mixture sampled")
    m = build(spec)
    slots = mixture_slots(spec)
    mix_stage = len(spec.stages)
    readers = [f"group.{g.name}" for g in spec.groups if g.tap == mix_stage]
    readers += [b.task for b in spec.branches if b.group is None and b.tap == mix_stage]
    assert slots == {r: i for i, r in enumerate(readers)}
    names = {ql.name for ql in plan(m, group_paths(spec))}
    mixture = [n for n, mod in m.named_modules() if isinstance(mod, torch.nn.Linear) and n.startswith(f"trunk.{mix_stage - 1}.")]
    assert mixture and set(mixture) <= names  # every expert and gate layer is under the stage's precision


def test_latency_table_keys_a_mixture_by_its_reader_count():
    """The per-op latency table must not reuse a 2-reader MMoE's entry for a 3-reader one
    (one gate per reader)."""
    from nasmt.quant.latency import _units
    from nasmt.space.spec import BranchSpec, OpSpec, StageSpec

    def spec(tasks):
        stages = (StageSpec((OpSpec.from_json({"op": "fc", "h": 8, "act": "relu"}),)),
                  StageSpec((OpSpec.from_json({"op": "mmoe", "n": 2, "h": 4, "k": 3}),)))
        return ArchSpec("t", (5,), stages, tuple(BranchSpec(t, 2, (), (), 1) for t in tasks))

    def mixture_key(s):
        return next(k for k, *_ in _units(s) if k.startswith("mmoe"))

    assert mixture_key(spec("ab")) != mixture_key(spec("abc"))
    assert mixture_key(spec("ab")) == mixture_key(spec("xy"))


def test_rule_answer_inverts_pick():
    """The value `Rule.answer` gives for an alternative is one `Rule.pick` maps back to it."""
    g = load_grammar(ROOT / "search_spaces" / "mtl.grammar")
    for rule in g.rules.values():
        for alt in rule.alts:
            v = rule.answer(alt.label)
            assert (rule.pick(v) if rule.weighted else next(a for a in rule.alts if a.label == v)) is alt
