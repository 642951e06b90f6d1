"""Warm starts: --enqueue evaluates given architectures first; --warm-start seeds the
study with an earlier run's complete trials, and such a study survives --resume."""

from __future__ import annotations

import json

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from conftest import CONV_SPACE, SMALL_SUITE, nasmt
from nasmt.data import load_data_cached
from nasmt.data.suite import load_suite
from nasmt.run import TRIALS_FILE, Objective, TrialStatus, read_jsonl, read_trials, trial_dir, write_jsonl
from nasmt.search.warm import WARM_ATTR, warm_trials
from nasmt.space.grammar import load_grammar

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _journal(run):
    st = optuna.load_study(study_name="nasmt", storage=JournalStorage(JournalFileBackend(str(run / "study.journal"))))
    return st.get_trials(deepcopy=False)


def test_enqueue_refuses_a_genome_that_does_not_fit(tiny_run, tmp_path):
    genome = dict(read_trials(tiny_run)[0].genome)
    genome["trunk.stem.conv.c"] = 7  # not a choice of conv.grammar
    f = tmp_path / "g.json"
    f.write_text(json.dumps(genome))
    r = nasmt("search", "--space", CONV_SPACE, "--tasks", SMALL_SUITE, "--out", tmp_path / "run", "--enqueue", f,
              check=False)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert f"--enqueue {f}" in r.stderr and "trunk.stem.conv.c: 7 is not one of" in r.stderr
    assert not (tmp_path / "run").exists()


def test_warm_start_and_enqueue_seed_the_study_and_survive_resume(tiny_run, tmp_path, shared_ray):
    """One search carries both: --warm-start seeds the study with the earlier run's
    complete trials, and an exported arch.json given to --enqueue is the run's first own
    trial; then a crash and --resume."""
    old = [t for t in read_trials(tiny_run) if t.status == TrialStatus.COMPLETE]
    pick = read_trials(tiny_run)[-1]
    nasmt("export", tiny_run, "--trial", pick.number, "--out", tmp_path / "exp", "--no-quantized")
    arch = json.loads((tmp_path / "exp" / "arch.json").read_text())
    out = tmp_path / "run"
    nasmt("search", "--space", CONV_SPACE, "--tasks", SMALL_SUITE, "--trials", 2, "--steps", 5, "--out", out,
          "--sampler", "tpe", "--seed", 4, "--warm-start", tiny_run, "--enqueue", tmp_path / "exp" / "arch.json",
          "--quiet", *shared_ray)
    first = read_trials(out)[0]
    assert first.number == len(old) and first.arch_hash == arch["spec"]["hash"] == pick.arch_hash
    jt = _journal(out)
    warm = [t for t in jt if WARM_ATTR in t.user_attrs]
    assert len(warm) == len(old) and all(t.state == TrialState.COMPLETE for t in warm)
    assert sorted(tuple(t.values) for t in warm) == sorted((t.metrics["mean_error"], t.metrics["params"]) for t in old)
    own = read_trials(out)
    assert [t.number for t in own] == [len(old), len(old) + 1], "the run's own trials come after the seeded ones"
    # a crash lost the last trial's record and result: resume closes it and runs another
    last = own[-1]
    write_jsonl(out / TRIALS_FILE, [r for r in read_jsonl(out / TRIALS_FILE) if r["number"] != last.number])
    (trial_dir(out, last.number) / "result.json").unlink()
    r = nasmt("search", "--resume", out)
    assert "resuming" in r.stdout
    after = read_trials(out)
    assert {t.number for t in after} >= {t.number for t in own}
    assert not [t for t in after if t.number < len(old)], "seeded trials got records of this run"
    assert sum(t.status == TrialStatus.COMPLETE for t in after) == 2
    assert [t.state for t in _journal(out) if WARM_ATTR in t.user_attrs] == [TrialState.COMPLETE] * len(old)


def test_warm_start_from_another_suite_enqueues_genomes(tiny_run, tmp_path):
    suite_file = tmp_path / "other.toml"
    suite_file.write_text(SMALL_SUITE.read_text().replace("n_train = 1024", "n_train = 512"))
    suite = load_suite(suite_file)
    grammar = load_grammar(CONV_SPACE)
    add, genomes = warm_trials([tiny_run], grammar, suite, load_data_cached(suite),
                               [Objective("mean_error", "min")], {})
    old = [t for t in read_trials(tiny_run) if t.status == TrialStatus.COMPLETE]
    assert add == [] and genomes == [t.genome for t in old]
