"""Trial faults: a failing trial is recorded with its reason, replaced, and never enters
the Pareto set; too many failures stop the search cleanly; early-stopped trials are
`stopped`, never complete, never Pareto.

`--inject-fault KIND@NUMBER` makes trial NUMBER fail the way the real fault would:
exception (the trainable raises), nan (non-finite loss), oom (torch.OutOfMemoryError),
timeout (the --trial-timeout limit, hit at once).
"""

from __future__ import annotations

import json
import textwrap

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from conftest import TINY_SPACE, nasmt
from nasmt.run import Objective, read_trials, pareto_trials, read_jsonl
from nasmt.search import _record_callback

optuna.logging.set_verbosity(optuna.logging.WARNING)
OBJ = [Objective("mean_error", "min"), Objective("params", "min")]


def _suite(tmp_path):
    """MultiMNIST with 256 training images: batch 8 gives 32 steps per epoch, so the
    NaN check (every 25 steps) fires before the first epoch-end report."""
    p = tmp_path / "mm_fault.toml"
    p.write_text(textwrap.dedent("""
        name = "mm-fault"
        [data]
        source = "multimnist"
        n_train = 256
        n_val = 256
        n_test = 256
        [[tasks]]
        name = "left"
        kind = "multiclass"
        [[tasks]]
        name = "right"
        kind = "multiclass"
    """))
    return p


def _journal_states(run):
    st = optuna.load_study(study_name="nasmt", storage=JournalStorage(JournalFileBackend(str(run / "study.journal"))))
    return {t.number: t.state for t in st.get_trials(deepcopy=False)}


def test_each_fault_kind_is_recorded_and_replaced_and_early_stop(tmp_path):
    run = tmp_path / "run"
    r = nasmt(
        "search", "--space", TINY_SPACE, "--tasks", _suite(tmp_path), "--trials", 4, "--epochs", 2,
        "--batch-size", 8, "--early-stop", "--sampler", "random", "--seed", 11, "--out", run,
        "--inject-fault", "exception@0,nan@1,oom@2,timeout@3", "--max-failures", 5,
    )
    assert "Traceback" not in r.stdout
    trials = read_trials(run)
    by = {t["number"]: t for t in trials}
    expect = {
        0: "RuntimeError: injected fault: exception in the trainable",
        1: "non-finite loss",
        2: "out of memory",
        3: "time limit",
    }
    for n, text in expect.items():
        assert by[n]["status"] == "failed", by[n]
        assert text in by[n]["error"], by[n]["error"]
        assert (run / "trials" / f"{n:05d}" / "error.json").exists()
    complete = [t for t in trials if t["status"] == "complete"]
    assert len(complete) == 4, [(t["number"], t["status"]) for t in trials]
    front = pareto_trials(trials, OBJ)
    assert front and {t["number"] for t in front} <= {t["number"] for t in complete}
    assert not {t["number"] for t in front} & {t["number"] for t in trials if t["status"] != "complete"}
    # early-stopped trials: `stopped`, no result and no error file, PRUNED in the journal
    stopped = [t for t in trials if t["status"] == "stopped"]
    for t in stopped:
        d = run / "trials" / f"{t['number']:05d}"
        assert not (d / "result.json").exists() and not (d / "error.json").exists()
    states = _journal_states(run)
    assert sorted(n for n, s in states.items() if s == TrialState.PRUNED) == sorted(t["number"] for t in stopped)
    assert sorted(n for n, s in states.items() if s == TrialState.FAIL) == sorted(expect)
    assert sorted(n for n, s in states.items() if s == TrialState.COMPLETE) == sorted(t["number"] for t in complete)
    assert set(states) == set(by), "every Optuna trial has exactly one record"
    nums = [x["number"] for x in read_jsonl(run / "trials.jsonl")]
    assert len(nums) == len(set(nums))


def test_too_many_failures_stop_cleanly(tmp_path):
    """Exit code 0 and a `stopped: N trials failed` line; every failure is recorded."""
    run = tmp_path / "run"
    r = nasmt(
        "search", "--space", TINY_SPACE, "--tasks", _suite(tmp_path), "--trials", 3, "--steps", 5,
        "--sampler", "random", "--out", run, "--max-failures", 2,
        "--inject-fault", ",".join(f"exception@{i}" for i in range(8)),
    )
    assert r.returncode == 0
    assert "stopped: " in r.stdout and "(--max-failures 2)" in r.stdout, r.stdout
    trials = read_trials(run)
    failed = [t for t in trials if t["status"] == "failed"]
    assert len(failed) >= 2 and all("injected fault" in t["error"] for t in failed)
    assert not [t for t in trials if t["status"] == "complete"]
    assert pareto_trials(trials, OBJ) == []
    states = _journal_states(run)
    assert TrialState.RUNNING not in states.values() and set(states) == {t["number"] for t in trials}


# ----------------------------------------------------------------------------- Recorder, no Ray


class _FakeTrial:
    def __init__(self, number, last_result, trial_id="t0", error_file=None):
        self.config = {"nasmt_number": number}
        self.last_result = last_result
        self.trial_id = trial_id
        self.error_file = error_file


def test_recorder_stopped_and_failed_records(tmp_path):
    (tmp_path / "trials" / "00000").mkdir(parents=True)
    (tmp_path / "trials" / "00000" / "spec.json").write_text(json.dumps({"genome": {"a": 1}}))
    err = tmp_path / "error.txt"
    err.write_text("Traceback (most recent call last):\n  ...\nValueError: boom\n")
    lines = []
    rec = _record_callback(tmp_path, OBJ, 3, lines.append, {"complete": 0})
    # an early-stopped trial: its last report was not final
    rec.on_trial_complete(0, [], _FakeTrial(0, {"mean_error": 0.01, "epoch": 1, "final": False, "params": 1}))
    # a failed trial that could not write error.json: the reason comes from Tune's error file
    rec.on_trial_error(0, [], _FakeTrial(1, None, "t1", str(err)))
    trials = read_trials(tmp_path)
    assert [(t["number"], t["status"]) for t in trials] == [(0, "stopped"), (1, "failed")]
    assert trials[0]["spec"] == {"genome": {"a": 1}} and trials[0]["metrics"] == {"mean_error": 0.01, "epoch": 1}
    assert trials[1]["error"] == "ValueError: boom"
    # the stopped trial has the best mean_error there is, yet no Pareto set holds it
    assert pareto_trials(trials, OBJ) == []
    assert any("stopped" in l for l in lines) and any("failed" in l for l in lines)
