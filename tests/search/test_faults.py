"""Trial faults: a failing trial is recorded with its reason, replaced, and never enters
the Pareto set; too many failures stop the search cleanly; early-stopped trials are
`stopped`, never complete, never Pareto.

`--inject-fault KIND@NUMBER` (nasmt.search.faults) makes trial NUMBER fail the way the
real fault would: exception (the trainable raises), nan (non-finite loss), oom
(torch.OutOfMemoryError), slow (steps sleep, so the CLI's --trial-timeout fires through
the training loop's real time limit), blind (all-zero inputs: cannot learn, so the
early-stopping scheduler must stop it).
"""

from __future__ import annotations

import json
import textwrap

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from conftest import TINY_SPACE, nasmt
from nasmt.errors import UserError
from nasmt.run import Objective, TrialStatus, pareto_trials, read_jsonl, read_trials, trial_dir
from nasmt.search.callback import RecordCallback
from nasmt.search.config import FAILED_KEY
from nasmt.search.faults import parse_faults

optuna.logging.set_verbosity(optuna.logging.WARNING)
OBJ = [Objective("mean_error", "min"), Objective("params", "min")]
C, F, S = TrialStatus.COMPLETE, TrialStatus.FAILED, TrialStatus.STOPPED
# --trial-timeout, in test_too_many_failures_stop_cleanly where every other trial fails at
# once, so the limit needs no room for a healthy trial: the slow trial needs >= 40 steps x
# SLOW_STEP_S = 20 s of sleep alone, whatever the machine, so it always hits 2 s
TIMEOUT_S = 2


def _suite(tmp_path, n_train=1024):
    """MultiMNIST with 1024 training images: batch 16 gives 64 steps per epoch, so the
    NaN check (every 25 steps) fires before the first epoch-end report, and a network
    that sees its inputs learns something in one epoch (a blind one does not)."""
    p = tmp_path / "mm_fault.toml"
    p.write_text(textwrap.dedent(f"""
        name = "mm-fault"
        [data]
        source = "multimnist"
        n_train = {n_train}
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


def test_each_fault_kind_is_recorded_and_replaced_and_early_stop(tmp_path, shared_ray):
    run = tmp_path / "run"
    r = nasmt(
        "search", "--space", TINY_SPACE, "--tasks", _suite(tmp_path), "--trials", 3, "--epochs", 2,
        "--batch-size", 16, "--early-stop", "--sampler", "random", "--seed", 11, "--out", run,
        "--max-failures", 6, "--max-concurrent", 1,
        "--inject-fault", "exception@0,nan@1,oom@2," + ",".join(f"blind@{i}" for i in range(5, 9)),
        *shared_ray,
    )
    assert "Traceback" not in r.stdout
    trials = read_trials(run)
    by = {t.number: t for t in trials}
    # a trial whose own code failed ends without a Tune error, so Tune keeps its worker
    # process: one trial at a time, every trial ran in one process (a new one would pay
    # its torch and ray.tune imports again after each failure)
    assert all(t.worker for t in trials), [(t.number, t.worker) for t in trials]
    assert len({(t.worker["node"], t.worker["pid"]) for t in trials}) == 1, [(t.number, t.worker) for t in trials]
    expect = {
        0: "RuntimeError: injected fault: exception in the trainable",
        1: "non-finite loss",
        2: "out of memory",
    }
    for n, text in expect.items():
        assert by[n].status == F, by[n]
        assert text in by[n].error, by[n].error
        assert (trial_dir(run, n) / "error.json").exists()
    complete = [t for t in trials if t.status == C]
    assert len(complete) == 3, [(t.number, t.status) for t in trials]
    front = pareto_trials(trials, OBJ)
    assert front and {t.number for t in front} <= {t.number for t in complete}
    # early stop: the blind trials after the first learning ones cannot beat the rung's cutoff
    stopped = [t for t in trials if t.status == S]
    assert stopped, [(t.number, t.status, t.metrics.get("mean_error")) for t in trials]
    assert all(t.metrics.get("epoch") == 1 for t in stopped)
    assert not {t.number for t in front} & {t.number for t in stopped}
    for t in stopped:  # no result and no error file, PRUNED in the journal
        d = trial_dir(run, t.number)
        assert not (d / "result.json").exists() and not (d / "error.json").exists()
    states = _journal_states(run)
    assert sorted(n for n, s in states.items() if s == TrialState.PRUNED) == sorted(t.number for t in stopped)
    assert sorted(n for n, s in states.items() if s == TrialState.FAIL) == sorted(expect)
    assert sorted(n for n, s in states.items() if s == TrialState.COMPLETE) == sorted(t.number for t in complete)
    assert set(states) == set(by), "every Optuna trial has exactly one record"
    nums = [x["number"] for x in read_jsonl(run / "trials.jsonl")]
    assert len(nums) == len(set(nums))


def test_too_many_failures_stop_cleanly(tmp_path, shared_ray):
    """Exit code 0 and a `stopped: N trials failed` line; every failure is recorded. Trial 0
    is slow: the CLI's --trial-timeout, hit by the training loop's real time limit, fails it
    with the reason and its error file."""
    run = tmp_path / "run"
    r = nasmt(
        "search", "--space", TINY_SPACE, "--tasks", _suite(tmp_path), "--trials", 3, "--steps", 40,
        "--batch-size", 16, "--sampler", "random", "--out", run, "--max-failures", 2, "--trial-timeout", TIMEOUT_S,
        "--max-concurrent", 1,  # trial 0 fails (time limit) before trial 1 (exception) reaches --max-failures 2
        "--inject-fault", "slow@0," + ",".join(f"exception@{i}" for i in range(1, 8)), *shared_ray,
    )
    assert r.returncode == 0
    assert "stopped: " in r.stdout and "(--max-failures 2)" in r.stdout, r.stdout
    trials = read_trials(run)
    failed = [t for t in trials if t.status == F]
    by = {t.number: t for t in failed}
    assert 0 in by and f"trial exceeded its time limit of {TIMEOUT_S} s" in by[0].error, by.get(0)
    assert (trial_dir(run, 0) / "error.json").exists()
    assert sorted(by) == [0, 1] and "injected fault" in by[1].error
    assert not [t for t in trials if t.status == C]
    assert pareto_trials(trials, OBJ) == []
    states = _journal_states(run)
    assert TrialState.RUNNING not in states.values() and set(states) == {t.number for t in trials}


def test_fault_flag_is_checked():
    assert parse_faults("exception@0, slow@3") == {0: "exception", 3: "slow"}
    for bad in ("exception", "explode@1", "nan@x"):
        with pytest.raises(UserError, match="--inject-fault"):
            parse_faults(bad)


# ----------------------------------------------------------------------------- the record callback, no Ray


class _FakeTrial:
    def __init__(self, number, last_result, trial_id="t0", error_file=None):
        self.config = {"nasmt_number": number}
        self.last_result = last_result
        self.trial_id = trial_id
        self.error_file = error_file


def test_record_callback_stopped_and_failed_records(tmp_path):
    trial_dir(tmp_path, 0).mkdir(parents=True)
    (trial_dir(tmp_path, 0) / "spec.json").write_text(json.dumps({"genome": {"a": 1}}))
    err = tmp_path / "error.txt"
    err.write_text("Traceback (most recent call last):\n  ...\nValueError: boom\n")
    lines = []
    rec = RecordCallback(tmp_path, OBJ, 3, 0, lines.append)
    # an early-stopped trial: its last report was not final
    rec.on_trial_complete(0, [], _FakeTrial(0, {"mean_error": 0.01, "epoch": 1, "final": False, "params": 1}))
    # a failed trial that could not write error.json: the reason comes from Tune's error file
    rec.on_trial_error(0, [], _FakeTrial(1, None, "t1", str(err)))
    # a trial Tune calls complete whose result.json is missing is failed, not complete
    rec.on_trial_complete(0, [], _FakeTrial(2, {"mean_error": 0.5, "final": True}, "t2"))
    # a trial whose own code failed: it wrote error.json and ended with FAILED_KEY (no Tune
    # error); its record is that file's, with the worker process of its last result
    trial_dir(tmp_path, 3).mkdir(parents=True)
    (trial_dir(tmp_path, 3) / "error.json").write_text(json.dumps(
        {"number": 3, "status": "failed", "error": "non-finite loss at step 7", "error_type": "TrialError"}))
    rec.on_trial_complete(0, [], _FakeTrial(3, {FAILED_KEY: True, "final": True, "pid": 4242, "node_ip": "10.0.0.9"},
                                            "t3"))
    trials = read_trials(tmp_path)
    assert [(t.number, t.status) for t in trials] == [(0, S), (1, F), (2, F), (3, F)]
    assert trials[3].error == "non-finite loss at step 7" and trials[3].counts_as_failure
    assert trials[3].worker == {"node": "10.0.0.9", "pid": 4242} and trials[1].worker is None
    assert trials[0].spec == {"genome": {"a": 1}}
    assert trials[0].metrics == {"mean_error": 0.01, "epoch": 1, "params": 1}  # the last rung's metrics
    assert trials[1].error == "ValueError: boom" and trials[1].trial_id == "t1"
    # the stopped trial has the best mean_error there is, yet no Pareto set holds it
    assert pareto_trials(trials, OBJ) == []
    assert any("stopped" in ln for ln in lines) and any("failed" in ln for ln in lines)


def test_only_a_broken_device_context_costs_the_trial_its_worker():
    """A failed trial's worker runs the next trial, except after a CUDA error that leaves
    the device context unusable (then the trainable raises and Tune starts another)."""
    import torch

    from nasmt.search.trial import poisons_worker

    assert not poisons_worker(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not poisons_worker(RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x8 and 9x2)"))
    assert not poisons_worker(ValueError("non-finite loss"))
    assert poisons_worker(RuntimeError("CUDA error: device-side assert triggered"))
    assert poisons_worker(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert poisons_worker(RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"))
    if hasattr(torch, "AcceleratorError"):
        assert poisons_worker(torch.AcceleratorError("unspecified launch failure"))
