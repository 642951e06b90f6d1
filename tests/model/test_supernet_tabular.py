"""The one-shot bank over tabular.grammar's ops (nasmt.model.supernet_tabular) on
tasks/people.toml (numeric and categorical columns): which weights two candidates share,
the fitted piecewise-linear bins, and how the bank's tensors start."""

from __future__ import annotations

import random

import pytest
import torch

from conftest import ROOT
from nasmt.model import ops as O
from nasmt.model.build import build, fit_inputs
from nasmt.model.supernet import SuperNet, plan_sources
from nasmt.model.supernet_specs import RandomTrial
from nasmt.space.grammar import load_grammar
from nasmt.train.loop import TrainConfig
from nasmt.train.supernet import candidate_loss, train_supernet

torch.set_num_threads(1)
GRAMMAR = ROOT / "search_spaces" / "tabular.grammar"


@pytest.fixture(scope="module")
def bank():
    from nasmt.data import load_data_cached
    from nasmt.data.suite import load_suite

    suite = load_suite(ROOT / "tasks" / "people.toml")
    data = load_data_cached(suite)
    torch.manual_seed(0)
    return SuperNet.for_suite(load_grammar(GRAMMAR), suite, data, n_samples=60), data


def _specs_with(bank, op: str, n: int = 400):
    """Random derivations whose stem holds `op`, with that op's module."""
    rng = random.Random(5)
    out = []
    for _ in range(n):
        s = bank.derive(RandomTrial(rng))
        if any(o.op == op for o in s.stages[0].ops) and bank.fits(s):
            out.append(s)
    return out


def _module(net, cls):
    return next(m for m in net.modules() if isinstance(m, cls))


def test_periodic_columns_keep_their_units_and_frequencies_across_widths(bank):
    """Two candidates with periodic(n, d, sigma) of one sigma and different (n, d): column j's
    unit u reading frequency i's sine (cosine) has the same weight in both, and so has the
    frequency itself (a first-rows slice of the grouped weight would give column 0's units
    to column 1 and cosines to sines)."""
    b, _ = bank
    specs = _specs_with(b, "periodic")
    pairs = [(a, c) for a in specs for c in specs
             if (p := _op(a, "periodic")).get("sigma") == (q := _op(c, "periodic")).get("sigma")
             and p.get("d") < q.get("d") and p.get("n") < q.get("n")]
    assert pairs, "no two periodic candidates of one sigma with different widths in the sample"
    a, c = pairs[0]
    ma, mc = _module(b.extract(a), O.Periodic), _module(b.extract(c), O.Periodic)
    (_, num, na, da, _), (_, _, nc, dc, _) = ma.args, mc.args
    f = len(num)
    assert f > 1  # people has several numeric columns: the per-column layout matters
    wa = ma.linear.weight.detach().reshape(f, da, 2, na)
    wc = mc.linear.weight.detach().reshape(f, dc, 2, nc)
    assert torch.equal(wa, wc[:, :da, :, :na])
    assert torch.equal(ma.linear.bias.detach().reshape(f, da), mc.linear.bias.detach().reshape(f, dc)[:, :da])
    assert torch.equal(ma.freq.detach(), mc.freq.detach()[:, :na])


def _op(spec, name):
    return next(o for o in spec.stages[0].ops if o.op == name)


def test_plenc_weights_per_bin_count_and_bins_fitted_as_training_fits_them(bank):
    b, data = bank
    specs = _specs_with(b, "plenc")
    by_bins = {_op(s, "plenc").get("bins"): s for s in specs}
    assert len(by_bins) >= 2
    keys = {bins: {k for pieces in plan_sources(b.grammar, s).sources.values() for k, *_ in pieces if ".plenc." in k}
            for bins, s in by_bins.items()}
    (b1, k1), (b2, k2) = list(keys.items())[:2]
    assert k1 and k2 and not (k1 & k2), "two bin counts must not share the encoding's weights"
    for s in by_bins.values():
        got = _module(b.extract(s), O.PiecewiseLinear)
        ref = build(s)
        fit_inputs(ref, torch.from_numpy(data.x["train"]))  # what `train` does before a from-scratch network's first step
        want = _module(ref, O.PiecewiseLinear)
        assert int(got.fitted) == 1
        assert torch.equal(got.lo, want.lo) and torch.equal(got.inv_width, want.inv_width)


def test_bank_tensors_start_as_their_modules_do(bank):
    b, _ = bank
    named = dict(b.named_parameters())
    norms = [t for k, t in named.items() if ".resblock." in k and ".norm." in k]
    assert norms and all(torch.all(t == (1 if k.endswith("weight") else 0)) for k, t in named.items()
                         if ".resblock." in k and ".norm." in k)
    signs = [t for k, t in named.items() if ".ensemble." in k and k.rsplit(".", 1)[1] in ("r", "s")]
    assert signs and all(set(t.unique().tolist()) == {-1.0, 1.0} for t in signs)
    for sigma in ("0_01", "1_0"):
        freq = named[f"trunk.stem.num.periodic.sigma{sigma}.freq"]
        assert float(freq.detach().std()) == pytest.approx(float(sigma.replace("_", ".")), rel=0.35)


def test_sandwich_training_lowers_the_tabular_extremes_loss(bank):
    """40 sandwich steps through the one loop lower the validation loss of the largest and
    the smallest tabular candidates (ensemble members, embeddings, residual blocks: the
    gradients reach the shared tensors)."""
    _, data = bank
    suite = _suite()
    torch.manual_seed(0)
    b = SuperNet.for_suite(load_grammar(GRAMMAR), suite, data, n_samples=60, seed=1)  # its own: training moves the tensors
    assert any(o.op == "ensemble" for o in b.largest.stages[0].ops)
    before = [candidate_loss(b, s, suite, data) for s in (b.largest, b.smallest)]
    r = train_supernet(b, suite, data, TrainConfig(steps=40, batch_size=64, lr=3e-3, schedule="constant"), n_random=1)
    after = [candidate_loss(b, s, suite, data) for s in (b.largest, b.smallest)]
    assert r["steps"] == 40
    assert after[0] < 0.8 * before[0], (before, after)
    assert after[1] < 0.8 * before[1], (before, after)


def _suite():
    from nasmt.data.suite import load_suite

    return load_suite(ROOT / "tasks" / "people.toml")


def test_the_stem_reader_takes_each_feature_from_its_own_bank_column(bank):
    """The layer reading the stem sees canonical columns: a candidate with catembed(d=4) and
    one with catembed(d=16), otherwise the same, give column b's unit t the same weights in
    the reading layer, wherever the stem put it (a first-columns slice would hand unit 4 of
    column 0 in one to unit 0 of column 1 in the other); the numeric columns that follow the
    embeddings read their raw columns' weights."""
    import optuna

    b, data = bank
    base = dict(b.smallest.genome_dict)
    assert base["trunk.stem.cat.alt"] < 2 / 3 and "trunk.stem.cat.catembed.d" in base  # catembed in the smallest
    nets = {}
    for d in (4, 16):
        spec = b.derive(optuna.trial.FixedTrial({**base, "trunk.stem.cat.catembed.d": d}))
        nets[d] = (b.extract(spec), _module(b.extract(spec), O.CatEmbed))
    (small, ce4), (big, ce16) = nets[4], nets[16]
    w4 = next(m for m in small.trunk[0] if isinstance(m, (O.FC, O.Ensemble))).linear.weight.detach()
    w16 = next(m for m in big.trunk[0] if isinstance(m, (O.FC, O.Ensemble))).linear.weight.detach()
    n_blocks = len(ce4.blocks)
    assert n_blocks >= 2 and w4.shape[0] == w16.shape[0]
    for blk in range(n_blocks):  # embedding unit t of block blk: position blk*d + t
        assert torch.equal(w4[:, blk * 4:(blk + 1) * 4], w16[:, blk * 16:blk * 16 + 4])
    rest = w4.shape[1] - n_blocks * 4  # the features after the embeddings, in the same order in both
    assert rest > 0 and torch.equal(w4[:, n_blocks * 4:], w16[:, n_blocks * 16:])
