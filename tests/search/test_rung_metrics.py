"""A scheduler's rung reports are the metrics the trial will be ranked on: the network as
deployed (its quantization policy simulated), not the fp32 network. Pure: the epoch
report's metrics are computed without a Tune session."""

from __future__ import annotations

import math

from conftest import small_conv_net, small_conv_spec

from nasmt import quant as Q
from nasmt.search.context import TrialContext
from nasmt.search.trial import _EpochReport, deployed_metrics
from nasmt.train import TrainConfig, evaluate, train


def _trained(mm, policy):
    suite, data = mm
    fp32 = small_conv_net(data, seed=0)
    train(fp32, suite, data, TrainConfig(steps=150, batch_size=64, lr=1e-2, seed=0))
    spec = Q.with_policy(small_conv_spec(data), *policy) if policy else small_conv_spec(data)
    return fp32, spec


def test_rung_report_is_the_simulated_deployed_metric(mm):
    suite, data = mm
    model, spec = _trained(mm, ("int4", "int8"))
    ctx = TrialContext(grammar_text="", grammar_file="", suite=suite, objectives=("mean_error", "params", "latency_ms"))
    rep = _EpochReport(model, spec, ctx, data, {"params": 123}, last_epoch=3).metrics()
    fp32 = evaluate(model, suite, data, "val", "cpu")
    with Q.simulate(model, spec, Q.calib_batch(data)):
        simulated = evaluate(model, suite, data, "val", "cpu")
    assert {k: rep[k] for k in fp32} != fp32  # int4 weights change this network's predictions
    for k, v in simulated.items():
        assert rep[k] == v
    assert rep["params"] == 123 and math.isnan(rep["latency_ms"])  # only known at the end
    # the simulation leaves the trained weights as they were
    assert evaluate(model, suite, data, "val", "cpu") == fp32


def test_an_fp32_policy_reports_the_plain_metrics(mm):
    suite, data = mm
    model, spec = _trained(mm, None)
    ctx = TrialContext(grammar_text="", grammar_file="", suite=suite, objectives=("mean_error",))
    assert Q.is_fp32(spec)
    assert deployed_metrics(model, spec, ctx, data) == evaluate(model, suite, data, "val", "cpu")
