"""The searcher and its Optuna adapter without Tune: suggest / complete calls as Tune
makes them, over a real journal study and the real define-by-run grammar walk."""

from __future__ import annotations

import functools

import optuna
import pytest
from optuna.trial import TrialState

from conftest import TINY_SPACE
from nasmt.errors import UserError
from nasmt.run import Objective
from nasmt.search.config import FAILED_KEY, NUMBER_KEY, SearchConfig, check_config
from nasmt.search.searcher import NasmtSearcher
from nasmt.search.space import define_space
from nasmt.search.samplers import make_sampler
from nasmt.search.study import StudyAdapter
from nasmt.space.grammar import load_grammar
from nasmt.space.nodes import Grammar

OBJ = [Objective("mean_error", "min"), Objective("params", "min")]


def _searcher(tmp_path, target=2, max_failures=2):
    g: Grammar = load_grammar(TINY_SPACE)
    space = functools.partial(define_space, grammar_text=g.text, grammar_file=g.file, tasks=("a", "b"),
                              input_shape=(1, 28, 28), n_outputs={"a": 10, "b": 10})
    adapter = StudyAdapter(tmp_path, OBJ, make_sampler("random", 0, target), space)
    return NasmtSearcher(adapter, target, max_failures), adapter


def _done(params):
    return {"mean_error": 0.5, "params": params, "final": True}


def test_searcher_replaces_failures_and_never_completes_stopped_trials(tmp_path):
    s, adapter = _searcher(tmp_path, max_failures=3)
    c0, c1 = s.suggest("t0"), s.suggest("t1")
    assert c0[NUMBER_KEY] == 0 and c1[NUMBER_KEY] == 1 and "branch.a.tap" in c0 and "trunk.conv.c" in c0
    assert s.suggest("t2") is None  # two in flight already make the target
    s.on_trial_complete("t0", error=True)  # failed: replaced
    s.on_trial_complete("t1", {"mean_error": 0.1, "final": False})  # stopped early: replaced
    c2, c3 = s.suggest("t2"), s.suggest("t3")
    assert (c2[NUMBER_KEY], c3[NUMBER_KEY]) == (2, 3)
    s.on_trial_complete("t2", {FAILED_KEY: True, "final": True})  # its own code failed: replaced, no Tune error
    c4 = s.suggest("t4")
    assert c4[NUMBER_KEY] == 4
    s.on_trial_complete("t3", _done(50))
    s.on_trial_complete("t4", _done(100))
    assert s.suggest("t5") == NasmtSearcher.FINISHED
    states = {t.number: t.state for t in adapter.study.get_trials(deepcopy=False)}
    assert states == {0: TrialState.FAIL, 1: TrialState.PRUNED, 2: TrialState.FAIL, 3: TrialState.COMPLETE,
                      4: TrialState.COMPLETE}
    assert adapter.study.trials[3].values == [0.5, 50]
    assert (s.n_complete, s.n_failed) == (2, 2)


def test_searcher_stops_after_max_failures(tmp_path):
    s, _ = _searcher(tmp_path, target=5, max_failures=2)
    for i in range(2):
        s.suggest(f"t{i}")
        s.on_trial_complete(f"t{i}", error=True)
    assert s.suggest("t9") == NasmtSearcher.FINISHED


def test_the_genome_replays_the_same_architecture(tmp_path):
    """What the searcher hands a trial is exactly what Optuna recorded as the params."""
    s, adapter = _searcher(tmp_path)
    cfg = s.suggest("t0")
    assert {k: v for k, v in cfg.items() if k != NUMBER_KEY} == adapter.study.trials[0].params


@pytest.mark.parametrize("field,value,flag", [
    ("trials", 0, "--trials"), ("epochs", 0, "--epochs"), ("max_concurrent", 0, "--max-concurrent"),
    ("latency_batch", 0, "--latency-batch"), ("qat_steps", -1, "--qat-steps"), ("sampler", "grid", "--sampler"),
    ("fault", "boom@1", "--inject-fault"), ("max_bytes", -5, "--max-bytes"),
])
def test_config_errors_name_the_flag(field, value, flag):
    cfg = SearchConfig(space="s", tasks="t", out="o")
    setattr(cfg, field, value)
    with pytest.raises(UserError, match=flag):
        check_config(cfg)


def test_samplers_are_the_named_ones():
    assert isinstance(make_sampler("nsga2", 0, 12), optuna.samplers.NSGAIISampler)
    assert isinstance(make_sampler("tpe", 0, 12), optuna.samplers.TPESampler)
    with pytest.raises(UserError, match="--sampler"):
        make_sampler("grid", 0, 12)
