"""A real Ray Tune + Optuna search (the session's `tiny_run`) records every trial.

(The export tests that used to live here are in tests/export/; this search test belongs
in tests/search/.)"""

import optuna
import pytest

from nasmt.run import JOURNAL_FILE, WEIGHTS_FILE, Objective, TrialStatus, load_run, pareto_trials, read_trials, trial_dir
from nasmt.space.spec import ArchSpec


def test_search_records_every_trial(tiny_run):
    run = load_run(tiny_run)
    trials = read_trials(tiny_run)
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert all(t.status == TrialStatus.COMPLETE for t in trials)
    for t in trials:
        m = t.metrics
        assert 0.0 <= m["mean_error"] <= 1.0 and m["params"] > 0 and m["flops"] > 0
        assert {"left.accuracy", "right.accuracy"} <= set(m)
        spec = ArchSpec.from_json(t.spec)
        assert spec.hash == t.arch_hash
        assert (trial_dir(tiny_run, t.number) / WEIGHTS_FILE).exists()
        assert t.timings["train_s"] > 0
    # the Optuna journal holds the same trials, all complete, with the same objective values
    study = optuna.load_study(
        study_name="nasmt",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tiny_run / JOURNAL_FILE))),
    )
    done = {ft.number: ft for ft in study.trials if ft.state == optuna.trial.TrialState.COMPLETE}
    assert sorted(done) == [0, 1, 2, 3]
    for t in trials:
        assert done[t.number].values == pytest.approx([t.metrics["mean_error"], t.metrics["params"]])
        # genome in the record == parameters Optuna sampled for that trial
        assert done[t.number].params == t.genome
    objs = [Objective(**o) for o in run["objectives"]]
    front = pareto_trials(trials, objs)
    assert front
    for f in front:  # nobody dominates a front point
        for t in trials:
            a, b = t.metrics, f.metrics
            assert not (a["mean_error"] <= b["mean_error"] and a["params"] <= b["params"]
                        and (a["mean_error"] < b["mean_error"] or a["params"] < b["params"]))
