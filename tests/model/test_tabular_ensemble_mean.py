"""The TabM ensemble's evaluation output averages its members' predictions as TabM does:
probabilities for classification tasks, values for regression (issue 17's defect: it used
to average logits). The task kinds reach the network through derive (the spec records a
branch's kind only where an ensemble ends at it, so other specs keep their hashes)."""

from __future__ import annotations

import random

import torch

from nasmt.data import load_data_cached
from nasmt.data.suite import load_suite
from nasmt.model import ops as O
from nasmt.model.build import build, members
from nasmt.model.supernet_specs import RandomTrial
from nasmt.space.derive import derive
from nasmt.space.grammar import load_grammar
from nasmt.space.spec import ArchSpec
from conftest import ROOT

torch.set_num_threads(1)


def _draw(grammar, suite, data, want_ensemble: bool) -> ArchSpec:
    rng = random.Random(0)
    for _ in range(200):
        s = derive(grammar, RandomTrial(rng), suite.tasks, data.input_shape, data.n_outputs, data.columns)
        if (members(s) > 1) == want_ensemble:
            return s
    raise AssertionError("no such draw")


def test_ensemble_averages_member_probabilities():
    suite = load_suite(ROOT / "tasks" / "fair.toml")  # binary, multiclass and regression tasks
    data = load_data_cached(suite)
    grammar = load_grammar(ROOT / "search_spaces" / "tabular.grammar")
    spec = _draw(grammar, suite, data, True)
    assert {b.task: b.kind for b in spec.branches} == {t.ident: t.kind for t in suite.tasks}
    assert ArchSpec.from_json(spec.to_json()) == spec  # the kinds survive the JSON round trip
    plain = _draw(grammar, suite, data, False)
    assert all(b.kind is None and "kind" not in b.to_json() for b in plain.branches)

    torch.manual_seed(0)
    net = build(spec)
    x = torch.from_numpy(data.x["val"][:64])
    with torch.no_grad():  # members that differ, and logits far from 0 (where the two means part)
        torch.nn.init.normal_(next(m for m in net.modules() if isinstance(m, O.Ensemble)).r, 0.0, 2.0)
        for br in net.branches.values():
            next(m for m in reversed(br) if isinstance(m, torch.nn.Linear)).weight.mul_(30.0)
    net.eval()
    out = net(x)
    for m in net.modules():  # members kept, everything else (dropout) as in evaluation
        if isinstance(m, O.MemberMean):
            m.train()
    per = net(x)
    k = members(spec)
    for t in suite.tasks:
        mem = per[t.ident].reshape(64, k, -1)
        if t.kind == "multiclass":
            got, want = torch.softmax(out[t.ident], -1), torch.softmax(mem, -1).mean(1)
        elif t.kind == "binary":
            got, want = torch.sigmoid(out[t.ident]), torch.sigmoid(mem).mean(1)
        else:
            got, want = out[t.ident], mem.mean(1)
        assert got.shape == want.shape == (64, data.n_outputs[t.ident])
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        if t.kind != "regression":  # averaging logits instead gives other predictions here
            assert not torch.allclose(out[t.ident], mem.mean(1), atol=1e-3), t.ident
