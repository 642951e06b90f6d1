"""The tabular ops (issue 17): periodic, plenc, catembed, ensemble, resblock on the real
fair suite's column layout (two numeric columns, two 6-value categoricals).

* params / FLOPs of `cost()` against hand formulas from the spec's numbers (never
  `p.numel()` of the built modules, never FlopCounterMode);
* the piecewise-linear encoding against a numpy implementation of the paper's formula,
  its bins fitted by the training loop from the train split (and kept when loaded);
* the ensemble's evaluation output against its members computed one by one;
* the quantized artifact of a trained network with every new op: exact `size_bytes`,
  ONNX Runtime metrics within 1.5 points of the simulation.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from nasmt.data import load_data_cached
from nasmt.data.suite import load_suite
from nasmt.model import ops as O
from nasmt.model.build import build
from nasmt.model.cost import cost
from nasmt.quant import ACC_TOLERANCE, export_quantized, size_bytes
from nasmt.space.spec import ArchSpec, BranchSpec, OpSpec, Precision, StageSpec
from nasmt.train import TrainConfig, train
from nasmt.train.losses import task_losses
from conftest import ROOT

torch.set_num_threads(1)
FAIR = ROOT / "tasks" / "fair.toml"
MAC = 2  # FLOPs per multiply-accumulate (cost()'s convention)


@pytest.fixture(scope="module")
def fair():
    suite = load_suite(FAIR)
    return suite, load_data_cached(suite)


def op(name, **kw):
    return OpSpec.from_json({"op": name, **kw})


def spec_of(data, stage1, stage2=(op("resblock", h=5, p=0.0),), prec=Precision()) -> ArchSpec:
    outs = data.n_outputs
    return ArchSpec("tabular", tuple(data.input_shape), (StageSpec(tuple(stage1), prec), StageSpec(tuple(stage2), prec)),
                    tuple(BranchSpec(t, 2, out=outs[t], precision=prec) for t in outs), columns=data.columns)


def test_fair_layout(fair):
    _, data = fair
    assert data.columns == (0, 0, 6, 6)  # age, educ; occupation, occupation_husb (occ1-occ6)
    assert data.input_shape == (14,)


@pytest.mark.parametrize("num", ["periodic", "plenc"])
def test_costs_match_hand_formulas(fair, num):
    _, data = fair
    F, n, d, bins, dc, k, h, rh = 2, 4, 3, 5, 2, 3, 8, 5
    emb = op("periodic", n=n, d=d, sigma=0.1) if num == "periodic" else op("plenc", bins=bins, d=d)
    spec = spec_of(data, (emb, op("catembed", d=dc), op("ensemble", k=k, h=h)), (op("resblock", h=rh, p=0.1),))
    width_in = 2 * n if num == "periodic" else bins  # per-column encoding width
    p_num = (F * n if num == "periodic" else 0) + F * width_in * d + F * d  # frequencies, per-column linear
    f_num = F * width_in * d
    p_cat, f_cat = 2 * (6 * dc + dc), 2 * 6 * dc  # two tables (+ bias) over 6-value one-hot blocks
    din = F * d + 2 * dc
    p_ens = din * h + h + k * din + k * h + k * h  # shared W, c; r_i, s_i, b_i per member
    f_ens = k * din * h
    p_res = 2 * h + (h * rh + rh) + (rh * h + h)  # LayerNorm, two linears
    f_res = k * (h * rh + rh * h)
    heads = {t: (h * o + o, k * h * o) for t, o in data.n_outputs.items()}
    net = build(spec)
    c = cost(net, spec.input_shape)
    assert c["params"] == p_num + p_cat + p_ens + p_res + sum(p for p, _ in heads.values())
    assert c["stages"][0] == {"params": p_num + p_cat + p_ens, "flops": MAC * (f_num + f_cat + f_ens)}
    assert c["stages"][1] == {"params": p_res, "flops": MAC * f_res}
    assert c["flops"] == MAC * (f_num + f_cat + f_ens + f_res + sum(f for _, f in heads.values()))
    for t, (p, f) in heads.items():
        assert c["tasks"][t]["branch_flops"] == MAC * f and c["tasks"][t]["branch_params"] == p
    bins_state = 2 * F * bins if num == "plenc" else 0  # lo and inv_width ship as fp32
    assert size_bytes(net, spec) == 4 * (c["params"] + bins_state)


def _ple_reference(v: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Gorishniy et al. 2022 eq. (PLE) for one column: bins [e_{t-1}, e_t); the first open
    below, the last open above."""
    t = len(edges) - 1
    out = np.zeros((len(v), t), dtype=np.float64)
    for j in range(t):
        z = (v - edges[j]) / (edges[j + 1] - edges[j])
        lo = -np.inf if j == 0 else 0.0
        hi = np.inf if j == t - 1 else 1.0
        out[:, j] = np.clip(z, lo, hi)
    return out


def test_plenc_bins_fitted_by_training_and_encoding_matches_paper(fair):
    suite, data = fair
    bins = 8
    spec = spec_of(data, (op("plenc", bins=bins, d=4), op("catembed", d=2), op("fc", h=16, act="relu")),
                   (op("resblock", h=8, p=0.0),))
    torch.manual_seed(0)
    net = build(spec)
    m = net.trunk[0][0]
    assert isinstance(m, O.PiecewiseLinear) and int(m.fitted) == 0
    train(net, suite, data, TrainConfig(steps=3, batch_size=64))
    assert int(m.fitted) == 1
    x = data.x["train"].astype(np.float64)
    enc = m.encode(torch.from_numpy(data.x["val"])).double().numpy()
    for j, col in enumerate((0, 1)):  # age, educ (standardized)
        edges = np.unique(np.quantile(x[:, col], np.linspace(0, 1, bins + 1)))
        real = len(edges) - 1
        np.testing.assert_allclose(m.lo[j, bins - real:].numpy(), edges[:-1], rtol=1e-5, atol=1e-5)
        assert (m.inv_width[j, : bins - real] == 0).all()  # leading empty bins encode 0
        v = data.x["val"][:, col].astype(np.float64)
        ref = _ple_reference(v, edges)
        inside = v >= edges[0]  # below the training minimum the first real bin is clipped at 0 (documented)
        np.testing.assert_allclose(enc[inside, j, bins - real:], ref[inside], atol=1e-5)
        assert (enc[:, j, : bins - real] == 0).all()
    # the fitted bins are state: a fresh build loading the weights has them and is not refitted
    other = build(spec)
    other.load_state_dict(net.state_dict())
    assert int(other.trunk[0][0].fitted) == 1
    train(other, suite, data, TrainConfig(steps=1, batch_size=8, lr=0.0))
    assert torch.equal(other.trunk[0][0].lo, m.lo)


def test_ensemble_mean_of_members_and_loss_per_member(fair):
    suite, data = fair
    k, h = 4, 6
    spec = spec_of(data, (op("catembed", d=3), op("ensemble", k=k, h=h)), (op("fc", h=5, act="relu"),))
    torch.manual_seed(1)
    net = build(spec).eval()
    x = torch.from_numpy(data.x["val"][:16])
    out = net(x)
    cat, ens = net.trunk[0][0], net.trunk[0][1]
    z = cat(x)
    members = []
    for i in range(k):
        y = torch.relu(((z * ens.r[i]) @ ens.linear.weight.T + ens.linear.bias) * ens.s[i] + ens.bias[i])
        members.append({t: br[:-1](net.trunk[1](y)) for t, br in net.branches.items()})  # branch without MemberMean
    for t in out:
        want = torch.stack([mb[t] for mb in members]).mean(0)
        torch.testing.assert_close(out[t], want, rtol=1e-5, atol=1e-6)
    net.train()  # training keeps every member's output: k rows per example, each scored on its example
    tout = net(x)
    ys = {t: torch.from_numpy(v[:16]) for t, v in data.y["val"].items()}
    assert all(v.shape[0] == 16 * k for v in tout.values())
    _, parts = task_losses(suite, data, tout, ys, "l1")
    for t in suite.tasks:
        per = [task_losses(suite, data, {u: v[i::k] for u, v in tout.items()}, ys, "l1")[1][t.ident] for i in range(k)]
        torch.testing.assert_close(parts[t.ident], torch.stack(per).mean())


def test_regression_losses_match_their_definitions(fair):
    suite, data = fair
    out = {t.ident: torch.randn(32, data.n_outputs[t.ident], generator=torch.Generator().manual_seed(2))
           for t in suite.tasks}
    ys = {t: torch.from_numpy(v[:32]) for t, v in data.y["train"].items()}
    mean, std = data.target_stats["years_married"]
    z = (ys["years_married"].float() - mean) / std
    d = out["years_married"][:, 0] - z
    for fn, want in (("mse", d.pow(2).mean()), ("l1", d.abs().mean()),
                     ("huber", torch.where(d.abs() < 1, 0.5 * d.pow(2), d.abs() - 0.5).mean()),
                     ("match", d.abs().mean())):  # years_married is scored by MAE
        torch.testing.assert_close(task_losses(suite, data, out, ys, fn)[1]["years_married"], want)
    rmse = replace(suite, tasks=tuple(replace(t, metric="rmse") if t.ident == "years_married" else t for t in suite.tasks))
    torch.testing.assert_close(task_losses(rmse, data, out, ys, "match")[1]["years_married"], d.pow(2).mean())


@pytest.mark.parametrize("num", ["periodic", "plenc"])
def test_quantized_artifact_of_tabular_ops(fair, tmp_path, num):
    """w8a8 in the stem and the blocks, w4 weights in the heads: the ONNX Runtime artifact's
    payload is exactly size_bytes and its val metrics within 1.5 points of the simulation."""
    suite, data = fair
    emb = op("periodic", n=8, d=8, sigma=0.1) if num == "periodic" else op("plenc", bins=8, d=8)
    spec = spec_of(data, (emb, op("catembed", d=4), op("ensemble", k=4, h=32)), (op("resblock", h=32, p=0.0),),
                   prec=Precision("int8", "int8"))
    spec = ArchSpec(spec.space, spec.input_shape, spec.stages,
                    tuple(BranchSpec(b.task, b.tap, out=b.out, precision=Precision("int4", "fp32")) for b in spec.branches),
                    columns=spec.columns)
    torch.manual_seed(0)
    net = build(spec)
    train(net, suite, data, TrainConfig(epochs=1, batch_size=128, lr=3e-3, schedule="cosine", reg_loss="l1"))
    r = export_quantized(net, spec, suite, data, tmp_path)
    assert r["artifact_weight_bytes"] == r["size_bytes"] == size_bytes(net, spec)
    assert r["max_abs_diff"] <= ACC_TOLERANCE, (r["accuracy"], r["simulated"])
    assert r["accuracy"]["affair"] > 0.55  # the artifact learned something (AUC; chance 0.5)


def test_periodic_and_catembed_match_their_formulas(fair):
    """PLR per numeric column (sin/cos of 2 pi c x, the column's own linear layer, ReLU) and
    a categorical column's embedding (its table's row for the value, plus the bias), in numpy."""
    _, data = fair
    torch.manual_seed(3)
    net = build(spec_of(data, (op("periodic", n=4, d=3, sigma=0.5), op("catembed", d=2), op("fc", h=4, act="relu"))))
    per, cat = net.trunk[0][0], net.trunk[0][1]
    x = data.x["val"][:32].astype(np.float64)
    with torch.no_grad():
        got = cat(per(torch.from_numpy(data.x["val"][:32]))).double().numpy()
    c = per.freq.detach().double().numpy()  # (F, n)
    w = per.linear.weight.detach().double().numpy().reshape(2, 3, 8)  # per column: (d, 2n)
    b = per.linear.bias.detach().double().numpy().reshape(2, 3)
    for j in range(2):
        v = 2 * np.pi * c[j][None] * x[:, j : j + 1]
        want = np.maximum(np.concatenate([np.sin(v), np.cos(v)], 1) @ w[j].T + b[j], 0)
        np.testing.assert_allclose(got[:, 4 + 3 * j : 7 + 3 * j], want, rtol=1e-5, atol=1e-5)  # after the embeddings
    for j, start in enumerate((2, 8)):  # occupation, occupation_husb one-hot blocks in the raw features
        table = cat.embed[j].weight.detach().double().numpy().T  # (values, d)
        code = x[:, start : start + 6].argmax(1)
        want = table[code] + cat.embed[j].bias.detach().double().numpy()
        np.testing.assert_allclose(got[:, 2 * j : 2 * j + 2], want, rtol=1e-5, atol=1e-6)  # embeddings come first


def test_size_bytes_equals_artifact_on_sampled_tabular_specs(fair, tmp_path):
    """Random tabular.grammar specs as `nasmt sample` draws them (untrained, mixed
    precisions, every sharing family): the QDQ artifact stores exactly size_bytes."""
    import optuna

    from nasmt import quant as Q
    from nasmt.space.derive import derive
    from nasmt.space.grammar import load_grammar

    suite, data = fair
    g = load_grammar(ROOT / "search_spaces" / "tabular.grammar")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    calib = Q.calib_batch(data)[:16]
    ops, fams = set(), set()
    for i in range(6):
        spec = derive(g, study.ask(), suite.tasks, data.input_shape, data.n_outputs, data.columns)
        torch.manual_seed(i)
        model = build(spec).eval()
        p = tmp_path / f"m{i}.onnx"
        Q.export_onnx(model, Q.group_paths(spec), calib, p)
        assert Q.artifact_weight_bytes(p) == Q.size_bytes(model, spec), spec.describe()
        ops |= {o.op for s in spec.stages for o in s.ops}
        fams |= set(spec.sharing.split("+"))
    assert {"plenc", "periodic", "catembed", "ensemble", "resblock"} <= ops, ops  # the draw covers the new ops
    assert fams == {"hard", "mmoe", "ple", "tree"}, fams
