"""size_bytes equals what the written artifact stores, on random specs drawn from the
shipped grammars the way `nasmt sample` draws them (seeded Optuna RandomSampler +
derive), untrained: freshly initialised BatchNorm weights / biases are all ones / all
zeros, identical across layers of one width, which the ONNX exporter used to merge into
one initializer (the artifact then stored less than size_bytes counted)."""

from __future__ import annotations

from pathlib import Path

import optuna
import torch

from conftest import ROOT
from nasmt import quant as Q
from nasmt.data import load_data_cached
from nasmt.data.suite import load_suite
from nasmt.model.build import build
from nasmt.space.derive import derive
from nasmt.space.grammar import load_grammar

torch.set_num_threads(1)
PEOPLE = ROOT / "tasks" / "people.toml"


def _sampled(grammar: str, suite, data, n: int, seed: int):
    """n specs as `nasmt sample --seed seed -n n` derives them (cli.cmd_sample)."""
    g = load_grammar(ROOT / "search_spaces" / grammar)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(n):
        t = study.ask()
        spec = derive(g, t, suite.tasks, data.input_shape, data.n_outputs)
        study.tell(t, 0.0)
        yield spec


def _check(specs, data, tmp_path: Path) -> list:
    calib = Q.calib_batch(data)[:16]
    seen = []
    for i, spec in enumerate(specs):
        torch.manual_seed(i)
        model = build(spec).eval()  # untrained
        p = tmp_path / f"m{i}.onnx"
        Q.export_onnx(model, Q.group_paths(spec), calib, p)
        assert Q.artifact_weight_bytes(p) == Q.size_bytes(model, spec), f"spec {i}: {spec.describe()}"
        seen.append(spec)
    return seen


def test_size_bytes_equals_artifact_on_sampled_conv_mtl_specs(mm, tmp_path):
    suite, data = mm
    specs = _check(_sampled("conv_mtl.grammar", suite, data, 14, seed=0), data, tmp_path)
    # the draw covers the families and precisions the bytes depend on
    fams = {f for s in specs for f in s.sharing.split("+")}
    assert {"hard", "mmoe", "ple", "tree"} <= fams, fams
    precs = {Q.effective(p).w for s in specs for _, p in Q.group_paths(s)}
    assert {"fp32", "bf16", "int8", "int4"} <= precs, precs
    # identical freshly initialised BatchNorm tensors across layers (what the exporter merged)
    assert any(_duplicate_bn(build(s)) for s in specs)


def _duplicate_bn(model) -> bool:
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    return any(a.num_features == b.num_features for i, a in enumerate(bns) for b in bns[i + 1:])


def test_size_bytes_equals_artifact_on_sampled_mtl_specs(tmp_path):
    suite = load_suite(PEOPLE)
    data = load_data_cached(suite)
    _check(_sampled("mtl.grammar", suite, data, 4, seed=0), data, tmp_path)
