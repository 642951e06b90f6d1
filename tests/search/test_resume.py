"""Crash-safe resume: SIGKILL a real search twice, resume, and nothing is lost. The
search runs the grammar-aware evolution sampler (so its journal-derived state, parents and
half-derived trials are checked across the kills too) and its last session starts its own
local cluster with a stale `ray_current_cluster` file in Ray's temp folder.

Plus fast reconciliation tests on a copy of the shared tiny run (no Ray).
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nasmt.cli import main
from nasmt.errors import RunDirError
from nasmt.run import INTERRUPTED, TrialStatus, read_jsonl, read_trials, repair_jsonl_tail
from nasmt.search.lock import LOCKED_MESSAGE
from nasmt.search import resume_config
from nasmt.search.resume import INCOMPLETE_ATTR, prepare_resume
from nasmt.search.samplers.evolution import CROSSOVER, MUTATION, PLAN_ATTR
from nasmt.space.derive import replay
from nasmt.space.derive import check_genome
from nasmt.space.grammar import load_grammar

from conftest import SMALL_SUITE, TINY_SPACE, free_port, nasmt
from kill_helpers import (complete_numbers, in_flight, kill_session, lock_holder, result_numbers, run_until, start,
                          journal_study)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_resume_after_two_sigkills(tmp_path, capsys):
    run = tmp_path / "run"
    trials = 6

    # session 1: one trial at a time; trial 1 sleeps 0.5 s per step (fault `slow`, >= 10 s
    # in all), so it is still training when the poll sees trial 0's record and trial 1's
    # spec.json: the kill point is an event in the run directory, never a clock, and resume
    # always has an interrupted trial to close. The evolution sampler's population is 4:
    # the last session breeds children from the journal.
    p = start(["search", "--space", TINY_SPACE, "--tasks", SMALL_SUITE, "--trials", trials, "--steps", 20,
                "--sampler", "evolution", "--seed", 5, "--out", run, "--quiet", "--max-concurrent", 1,
                "--inject-fault", "slow@1"], tmp_path / "s1.log")
    run_until(p, run, lambda: 0 in complete_numbers(run) and 1 in in_flight(run), tmp_path / "s1.log")
    assert p.returncode == -signal.SIGKILL
    before1 = result_numbers(run)
    cut1 = in_flight(run)
    assert before1 == {0} and cut1 == {1}, (before1, cut1)
    n_asked1 = len(journal_study(run).get_trials(deepcopy=False))

    # session 2: resumed, killed once it has recorded a new trial and 3 in all
    p = start(["search", "--resume", run, "--quiet"], tmp_path / "s2.log")

    def ready2():
        done = complete_numbers(run)
        return len(done) >= 3 and bool(set(done) - before1)

    try:
        deadline = time.monotonic() + 240
        while lock_holder(run) != p.pid:
            assert p.poll() is None and time.monotonic() < deadline, (tmp_path / "s2.log").read_text()
            time.sleep(0.1)
        # while session 2 runs, a second driver on the same run is refused
        capsys.readouterr()
        code = main(["search", "--resume", str(run), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and LOCKED_MESSAGE in err and err.count("\n") == 1, err
    except BaseException:
        kill_session(p)
        raise
    run_until(p, run, ready2, tmp_path / "s2.log")
    assert p.returncode == -signal.SIGKILL
    before2 = result_numbers(run)

    # session 3: resumed to the end on a fresh local cluster of its own, whatever Ray's temp
    # folder says (a crashed cluster leaves its address there: nothing listens at this one)
    n_asked2 = len(journal_study(run).get_trials(deepcopy=False))
    stale = Path("/tmp/ray/ray_current_cluster")
    saved = stale.read_bytes() if stale.exists() else None
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text(f"127.0.0.1:{free_port()}\n")
    try:
        r = nasmt("search", "--resume", run, timeout=300)
    finally:
        if saved is None:
            stale.unlink(missing_ok=True)
        else:
            stale.write_bytes(saved)
    assert "resuming" in r.stdout

    recs = read_jsonl(run / "trials.jsonl")
    numbers = [int(x["number"]) for x in recs]
    assert len(numbers) == len(set(numbers)), f"a trial was recorded twice: {sorted(numbers)}"
    final = read_trials(run)
    complete = {t.number: t for t in final if t.status == TrialStatus.COMPLETE}
    assert len(complete) == trials
    assert before1 <= before2 <= set(complete), "a trial that finished before a kill was lost"
    study = journal_study(run)
    jt = study.get_trials(deepcopy=False)
    assert not [t.number for t in jt if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert {t.number for t in jt if t.state == TrialState.COMPLETE} == set(complete)
    assert {t.number for t in jt} == {t.number for t in final}, "journal and records disagree"
    for t in jt:
        if t.state == TrialState.COMPLETE:
            rec = complete[t.number]
            assert t.params == rec.genome
            assert t.values == [rec.metrics["mean_error"], rec.metrics["params"]]
    # the (slow) trial in flight at the first kill was closed as interrupted
    by = {t.number: t for t in final}
    assert by[1].status == TrialStatus.FAILED and by[1].interrupted and by[1].error == INTERRUPTED, by[1]
    # interrupted trials are failed records that do not count toward --max-failures
    for t in final:
        if t.status == TrialStatus.FAILED:
            assert t.interrupted and t.error == INTERRUPTED and not t.counts_as_failure
    # session 2 did not replay session 1's proposals (same --seed, but a new sampler seed)
    params = {t.number: t.params for t in jt}
    assert not (params[n_asked1] == params[0] and params[n_asked1 + 1] == params[1])
    # evolution across the kills: the last session bred children from the journal (once 4
    # trials are complete; --max-concurrent 1), parents are complete trials only, and every
    # trial the journal holds as a genome replays under the grammar; a trial killed in the
    # middle of its derivation is closed as FAIL and marked INCOMPLETE_ATTR (its partial
    # params are no genome), wherever the kill point fell
    plans = [t.system_attrs.get(PLAN_ATTR, {}) for t in jt]
    assert any(pl.get("op") in (MUTATION, CROSSOVER) for pl in plans[n_asked2:]), plans
    tiny = load_grammar(TINY_SPACE)
    for t in jt:
        assert all(jt[n].state == TrialState.COMPLETE for n in t.system_attrs.get(PLAN_ATTR, {}).get("parents", []))
        if t.user_attrs.get(INCOMPLETE_ATTR):
            assert t.state == TrialState.FAIL and t.number < n_asked2, t
            continue
        assert dict(replay(tiny, t.params, ("left", "right"), (1, 28, 28), {"left": 10, "right": 10}).genome) == t.params


# ----------------------------------------------------------------------------- reconcile, no Ray


def test_resume_recovers_unrecorded_and_closes_running(run_copy):
    recs = read_jsonl(run_copy / "trials.jsonl")
    comp = [r for r in recs if r["status"] == TrialStatus.COMPLETE.value]
    lost = comp[-1]["number"]
    # the driver died after the trial wrote result.json, before it recorded it ...
    kept = [json.dumps(r) for r in recs if r["number"] != lost]
    # ... and mid-append of another record (torn last line) ...
    (run_copy / "trials.jsonl").write_text("\n".join(kept) + '\n{"number": 99, "sta')
    # ... and while Optuna had a trial RUNNING that never wrote anything
    study = journal_study(run_copy)
    running = study.ask()
    n_before = len(study.get_trials(deepcopy=False))
    cfg, n_complete, n_failed = prepare_resume(run_copy, quiet=True)
    assert cfg.quiet and cfg.out == str(run_copy.resolve())
    assert cfg.trials == json.loads((run_copy / "run.json").read_text())["config"]["trials"]
    assert n_complete == len(comp)
    assert n_failed == sum(1 for r in recs if r["status"] == "failed")
    final = {t.number: t for t in read_trials(run_copy)}
    assert final[lost].status == TrialStatus.COMPLETE and final[lost].recovered
    assert final[running.number].status == TrialStatus.FAILED and final[running.number].interrupted
    assert (run_copy / "trials.jsonl").read_bytes().endswith(b"\n")
    study = journal_study(run_copy)
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert len(states) == n_before
    assert states[running.number] == TrialState.FAIL
    assert TrialState.RUNNING not in states.values()
    # a second reconciliation changes nothing
    size = (run_copy / "trials.jsonl").stat().st_size
    prepare_resume(run_copy, quiet=True)
    assert (run_copy / "trials.jsonl").stat().st_size == size


def test_resume_closes_a_half_derived_trial_and_never_replays_it(run_copy, mm):
    """The driver killed in the middle of a define-by-run derivation leaves a RUNNING
    trial holding only the first decisions of a genome. Built here with Optuna's public
    API on the run's journal (no kill timing): resume closes it as interrupted, marks it
    as no genome, and every trial it does not mark replays under the grammar."""
    suite, data = mm
    grammar = load_grammar(json.loads((run_copy / "run.json").read_text())["config"]["space"])
    study = journal_study(run_copy)
    whole = next(t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE)
    names = list(whole.params)  # in the order the derivation asked them
    assert len(names) >= 2

    def asked(keep):  # a trial that made the decisions `keep` of `whole`, with whole's values
        study.enqueue_trial({n: whole.params[n] for n in keep})
        return study.ask(fixed_distributions={n: whole.distributions[n] for n in keep})

    half = asked(names[: len(names) // 2])
    full = asked(names)  # derived to the end, killed before it started
    n_before = len(study.get_trials(deepcopy=False))

    def replays(params):
        try:
            check_genome(grammar, params, suite.tasks, data.input_shape, data.n_outputs)
        except ValueError:
            return False
        return True

    assert not replays(journal_study(run_copy).trials[half.number].params)  # the premise: a partial genome
    cfg, n_complete, n_failed = prepare_resume(run_copy, quiet=True)
    jt = {t.number: t for t in journal_study(run_copy).get_trials(deepcopy=False)}
    assert len(jt) == n_before and TrialState.RUNNING not in {t.state for t in jt.values()}
    assert jt[half.number].state == TrialState.FAIL and jt[half.number].user_attrs.get(INCOMPLETE_ATTR) is True
    assert jt[full.number].state == TrialState.FAIL and INCOMPLETE_ATTR not in jt[full.number].user_attrs
    recs = {t.number: t for t in read_trials(run_copy)}
    for n in (half.number, full.number):  # interrupted: no spec, not a failure of the architecture
        assert recs[n].status == TrialStatus.FAILED and recs[n].interrupted and recs[n].spec is None
        assert not recs[n].counts_as_failure
    assert n_failed == sum(1 for t in recs.values() if t.counts_as_failure)
    assert not [t for t in recs.values() if t.status == TrialStatus.COMPLETE and t.number in (half.number, full.number)]
    # the rule for readers of the journal: every trial not marked half-derived replays
    for t in jt.values():
        assert replays(t.params) == (INCOMPLETE_ATTR not in t.user_attrs), t.number


def test_resume_repairs_a_torn_journal_tail(run_copy, shared_ray):
    """The README's promise: a crash mid-append leaves a partial last line in
    study.journal; `nasmt search --resume` cuts it off, continues the study after it, and
    the study still holds every earlier trial. The cluster the run recorded is gone (nothing
    listens at its address): `--resume RUN --address` continues it on another one, and
    run.json records that one for the next resume."""
    journal = run_copy / "study.journal"
    before = {t.number: (t.state, t.params, t.values) for t in journal_study(run_copy).get_trials(deepcopy=False)}
    last = journal.read_bytes().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    with open(journal, "ab") as f:  # the first half of a real journal operation, no newline
        f.write(last[: len(last) // 2])
    run = json.loads((run_copy / "run.json").read_text())
    run["config"]["trials"] += 1  # the run asked for one trial more than it finished: resume runs it
    run["config"]["address"] = f"127.0.0.1:{free_port()}"  # its cluster is gone
    (run_copy / "run.json").write_text(json.dumps(run))
    r = nasmt("search", "--resume", run_copy, *shared_ray)
    assert "resuming" in r.stdout and "Traceback" not in r.stderr, r.stderr
    assert resume_config(run_copy).address == shared_ray[1]  # where the next resume goes
    lines = journal.read_bytes().split(b"\n")
    assert lines[-1] == b""  # ends with a newline ...
    for line in lines[:-1]:  # ... and every line is one whole JSON operation (none glued to the torn half)
        json.loads(line)
    after = {t.number: (t.state, t.params, t.values) for t in journal_study(run_copy).get_trials(deepcopy=False)}
    assert {n: after[n] for n in before} == before, "an earlier trial changed or was lost"
    assert sum(st == TrialState.COMPLETE for st, _, _ in after.values()) == run["config"]["trials"]
    assert sum(t.status == TrialStatus.COMPLETE for t in read_trials(run_copy)) == run["config"]["trials"]


def test_resume_completed_run_is_a_no_op(run_copy, capsys):
    before = (run_copy / "trials.jsonl").read_bytes()
    assert main(["search", "--resume", str(run_copy)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert (run_copy / "trials.jsonl").read_bytes() == before


def _point_config(run_copy, key, path):
    run = json.loads((run_copy / "run.json").read_text())
    run["config"][key] = str(path)
    (run_copy / "run.json").write_text(json.dumps(run))
    return run


def test_resume_refuses_changed_grammar(run_copy, tmp_path):
    run = json.loads((run_copy / "run.json").read_text())
    g = tmp_path / "g.grammar"
    g.write_text(run["grammar"]["text"] + "# edited\n")
    _point_config(run_copy, "space", g)
    with pytest.raises(RunDirError, match="grammar changed"):
        prepare_resume(run_copy, quiet=True)


def test_resume_refuses_changed_suite(run_copy, tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text(SMALL_SUITE.read_text().replace("n_train = 1024", "n_train = 1000"))
    _point_config(run_copy, "tasks", suite)
    before = (run_copy / "trials.jsonl").read_bytes()
    r = nasmt("search", "--resume", run_copy, check=False)
    assert r.returncode == 2 and "task suite changed" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert (run_copy / "trials.jsonl").read_bytes() == before


@pytest.mark.parametrize("key,what", [("space", "grammar file"), ("tasks", "task suite file")])
def test_resume_refuses_missing_input_file(run_copy, tmp_path, key, what):
    _point_config(run_copy, key, tmp_path / "gone")
    r = nasmt("search", "--resume", run_copy, check=False)
    assert r.returncode == 2 and f"config.{key}: {what}" in r.stderr and "not found" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_repair_jsonl_tail(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text('{"a": 1}\n{"a": 2}\n{"a"')
    assert repair_jsonl_tail(f)
    assert f.read_text() == '{"a": 1}\n{"a": 2}\n'
    assert not repair_jsonl_tail(f)


def test_resume_config_is_the_settings_a_resume_runs_with_and_changes_nothing(run_copy, tmp_path):
    """`nasmt.search.resume_config`: run.json's settings (the recorded --address among them,
    the rule the tests' in-process resumes rely on to know which cluster they join),
    read without taking the run's lock or touching its files."""
    before = {p.relative_to(run_copy): p.read_bytes() for p in run_copy.rglob("*") if p.is_file()}
    cfg, recorded = resume_config(run_copy), json.loads((run_copy / "run.json").read_text())["config"]
    assert cfg.address == recorded["address"] and cfg.address.startswith("127.0.0.1:")
    assert cfg.out == str(run_copy.resolve()) and cfg.trials == recorded["trials"]
    assert {p.relative_to(run_copy): p.read_bytes() for p in run_copy.rglob("*") if p.is_file()} == before
    with pytest.raises(RunDirError, match="not a nasmt run directory"):
        resume_config(tmp_path)
