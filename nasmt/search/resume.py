"""Crash-safe resume of a search: `nasmt search --resume RUN`.

What a run directory holds after a crash (SIGKILL of the driver, power loss, ...):

* `trials.jsonl`: one record per trial the driver saw finish (append + fsync). A torn
  last line (killed mid-append) is cut off here, so later appends stay parseable.
* `trials/NNNNN/result.json` (or `error.json`): written atomically for the trial (by the
  sink actor on the driver's node, `nasmt.search.sink`) *before* it reports to Tune, so a
  trial that finished survives even when the driver died before recording it.
* `study.journal`: Optuna's journal (append + fsync). Trials the driver had asked for
  but not yet told about are left RUNNING.

`prepare_resume` reconciles the three, so that afterwards every Optuna trial in the
journal has exactly one final record in `trials.jsonl` and no trial is RUNNING:

* a trial with a `result.json` but no record is appended as `complete`
  (`"recovered": true`) and told COMPLETE (values = the run's objectives);
* a trial with an `error.json` but no record is appended as `failed` with its reason;
* a trial the sampler had PRUNED (early stop) but no record is appended as `stopped`;
* a trial that was still running when the driver died (no result) is appended as
  `failed` with the reason "interrupted (driver killed)" and `"interrupted": true`,
  and told FAIL.

A trial killed in the middle of its define-by-run derivation (the driver died while
Optuna was answering its decisions) holds a *partial* genome in the journal: some
decisions, not all. It is no candidate and never was one: it never ran, and its
params do not replay under the grammar. Resume treats it like any other interrupted
trial (a `failed` + `interrupted` record without a spec, told FAIL, its number not
reused: the search asks for a fresh trial instead) and, before closing it, marks it in
the journal with the user attr `INCOMPLETE_ATTR` so that no reader of the journal takes
its params for a genome. Which trials are half-derived is decided by replaying their
params strictly under the run's grammar (`nasmt.space.derive.check_genome`): every
decision present, none left over. Nothing in nasmt replays the params of a trial that
is not COMPLETE (the evolution sampler breeds from complete trials, `--warm-start`
copies complete ones), so a half-derived trial cannot become a parent or be replayed.

Interrupted trials do **not** count toward `--max-failures`: killing the driver is not
the architecture's fault, and counting them would let a few restarts exhaust the
failure budget. They keep their trial number (numbers are Optuna's and never reused);
the search simply asks Optuna for more trials until `--trials` are complete.

The resumed search starts a fresh Ray Tune run (no Tune restore, nothing unpickled)
over the same journal study, so the sampler continues from every previous trial.

Resume refuses a run whose driver lock (`nasmt.search.lock`) is held (another driver
is still running it) and, once it holds the lock, removes Optuna's journal lock left
behind by a killed driver (which would otherwise stall the study for 30 s).
"""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path

from nasmt.errors import RunDirError
from nasmt.run import (
    ERROR_FILE,
    INTERRUPTED,
    JOURNAL_FILE,
    RESULT_FILE,
    RUN_FILE,
    SPEC_FILE,
    STOPPED_EARLY,
    TRIALS_FILE,
    TrialRecord,
    TrialStatus,
    append_record,
    load_run,
    objectives_from_run,
    read_json,
    read_trials,
    repair_jsonl_tail,
    trial_dir,
)
from nasmt.run.files import trial_numbers_on_disk
from nasmt.search.config import STUDY_NAME, SearchConfig
from nasmt.search.lock import hold_run_lock
from nasmt.search.study import journal_storage
from nasmt.search.warm import WARM_ATTR

INCOMPLETE_ATTR = "nasmt_incomplete_genome"  # journal user attr of a trial killed mid-derivation


def _config(run: dict, out: Path, quiet: bool) -> SearchConfig:
    raw = run.get("config")
    if not isinstance(raw, dict):
        raise RunDirError(f"{out / RUN_FILE}: no 'config' table; cannot resume")
    names = {f.name for f in fields(SearchConfig)}
    try:
        cfg = SearchConfig(**{k: v for k, v in raw.items() if k in names})
    except TypeError as e:
        raise RunDirError(f"{out / RUN_FILE}: config is incomplete ({e}); cannot resume") from None
    cfg.out = str(out)
    cfg.quiet = quiet
    return cfg


def _check_inputs(run: dict, cfg: SearchConfig, out: Path) -> None:
    """The grammar and suite files must still say what they said when the run started:
    the journal study's parameter domains come from them."""
    from nasmt.data.suite import load_suite

    g = run.get("grammar") or {}
    space = Path(cfg.space)
    if not space.is_file():
        raise RunDirError(f"{out / RUN_FILE}: config.space: grammar file {cfg.space} not found (resume needs the run's grammar)")
    if "text" in g and space.read_text(encoding="utf-8", errors="replace") != g["text"]:
        raise RunDirError(f"{cfg.space}: the grammar changed since this run started (resume needs the same search space)")
    tasks = Path(cfg.tasks)
    if not tasks.is_file():
        raise RunDirError(f"{out / RUN_FILE}: config.tasks: task suite file {cfg.tasks} not found (resume needs the run's suite)")
    if "suite" in run and load_suite(tasks).to_dict() != run["suite"]:
        raise RunDirError(f"{cfg.tasks}: the task suite changed since this run started (resume needs the same suite)")


def _load_study(out: Path):
    """The run's Optuna study, or None when the driver died before creating it."""
    import optuna

    journal = out / JOURNAL_FILE
    if not journal.exists() or journal.stat().st_size == 0:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=STUDY_NAME, storage=journal_storage(out))
    except KeyError:
        return None
    except (ValueError, json.JSONDecodeError) as e:
        raise RunDirError(f"{journal}: corrupt Optuna journal ({e})") from None


def _lost_record(n: int, state, d: Path) -> TrialRecord:
    """The record of trial n that finished without one (see the module docstring)."""
    from optuna.trial import TrialState

    res, err = read_json(d / RESULT_FILE), read_json(d / ERROR_FILE)
    if isinstance(res, dict) and res.get("status") == TrialStatus.COMPLETE.value and state not in (
            TrialState.FAIL, TrialState.PRUNED):
        return TrialRecord.from_json({**res, "number": n, "recovered": True})
    if state == TrialState.PRUNED:
        return TrialRecord(number=n, status=TrialStatus.STOPPED, error=STOPPED_EARLY, spec=read_json(d / SPEC_FILE))
    if isinstance(err, dict):
        return TrialRecord.from_json({**err, "number": n, "status": TrialStatus.FAILED.value, "recovered": True})
    if state == TrialState.FAIL:
        return TrialRecord(number=n, status=TrialStatus.FAILED, spec=read_json(d / SPEC_FILE),
                           error="trial failed; its reason was lost when the driver was killed")
    if state == TrialState.COMPLETE:  # told COMPLETE, but its result file is gone
        return TrialRecord(number=n, status=TrialStatus.FAILED, error="result.json missing for a completed trial")
    # RUNNING / WAITING / unknown to the journal: in flight when the driver died
    return TrialRecord(number=n, status=TrialStatus.FAILED, error=INTERRUPTED, interrupted=True,
                       spec=read_json(d / SPEC_FILE))


def _close(study, rec: TrialRecord, objectives, frozen=None, incomplete: bool = False) -> None:
    """Tell Optuna how a trial it still thinks is running ended (`incomplete`: its
    derivation was cut short; marked with INCOMPLETE_ATTR first)."""
    from optuna.trial import TrialState

    if incomplete and frozen is not None:
        # the study's storage, as Optuna's samplers write trial attrs (a new Trial object
        # would call the sampler's before_trial)
        study._storage.set_trial_user_attr(frozen._trial_id, INCOMPLETE_ATTR, True)
    vals = [rec.value(o.name) for o in objectives]
    if rec.status == TrialStatus.COMPLETE and None not in vals:
        study.tell(rec.number, vals, state=TrialState.COMPLETE)
    elif rec.status == TrialStatus.STOPPED:
        study.tell(rec.number, None, state=TrialState.PRUNED)
    else:
        study.tell(rec.number, None, state=TrialState.FAIL)


def reconcile(out: Path, objectives, is_genome=None) -> dict:
    """Make trials.jsonl and the journal agree (see the module docstring).
    `is_genome(params) -> bool` says whether a journal trial's params are a whole
    derivation; a still-running trial whose params are not is closed as half-derived
    (None: no check). Returns counts of what was done: recovered, interrupted, closed,
    incomplete, torn."""
    from optuna.trial import TrialState

    stats = {"recovered": 0, "interrupted": 0, "closed": 0, "incomplete": 0, "torn": 0}
    for f in (out / TRIALS_FILE, out / JOURNAL_FILE):
        stats["torn"] += repair_jsonl_tail(f)
    recs = {r.number: r for r in read_trials(out)}
    study = _load_study(out)
    # trials copied from earlier runs (--warm-start) are not this run's: no record, no folder
    jtrials = {t.number: t for t in (study.get_trials(deepcopy=False) if study is not None else [])
               if WARM_ATTR not in t.user_attrs}
    for n in sorted(set(trial_numbers_on_disk(out)) | set(jtrials)):
        state = jtrials[n].state if n in jtrials else None
        rec = recs.get(n)
        if rec is None:
            rec = _lost_record(n, state, trial_dir(out, n))
            stats["recovered"] += rec.recovered and rec.status == TrialStatus.COMPLETE
            stats["interrupted"] += rec.interrupted
            append_record(out, rec)
            recs[n] = rec
        if study is not None and state in (TrialState.RUNNING, TrialState.WAITING):
            ft = jtrials[n]
            # a trial that started wrote spec.json: its genome was whole; else replay its params
            incomplete = (state == TrialState.RUNNING and rec.status != TrialStatus.COMPLETE and rec.spec is None
                          and is_genome is not None and not is_genome(dict(ft.params)))
            _close(study, rec, objectives, ft, incomplete)
            stats["closed"] += 1
            stats["incomplete"] += incomplete
    return stats


def _genome_check(cfg: SearchConfig):
    """`params -> bool`: whether params are one whole derivation of the run's grammar
    for its suite (strict replay). The data (input shape, outputs) loads only when a
    trial needs checking; `load_data_cached` keeps it for the search that follows."""
    from nasmt.space.derive import check_genome
    from nasmt.space.grammar import load_grammar

    cache = {}

    def is_genome(params: dict) -> bool:
        if not cache:
            from nasmt.data import load_data_cached
            from nasmt.data.suite import load_suite

            suite = load_suite(cfg.tasks)  # checked equal to the run's suite
            data = load_data_cached(suite)
            cache["args"] = (load_grammar(cfg.space),  # checked unchanged since the run started
                             tuple(t.ident for t in suite.tasks), tuple(data.input_shape), dict(data.n_outputs),
                             tuple(data.columns))
        grammar, tasks, shape, outs, cols = cache["args"]
        try:
            check_genome(grammar, params, tasks, shape, outs, cols)
        except ValueError:
            return False
        return True

    return is_genome


def resume_config(out: Path, quiet: bool = False) -> SearchConfig:
    """The settings `nasmt search --resume OUT` (without --address) runs with: run.json's,
    its Ray address among them (the recorded one; None starts a fresh local cluster).
    Reads only: no lock, no reconciliation. RunDirError when OUT is not a run with a
    config."""
    out = Path(out).resolve()
    return _config(load_run(out), out, quiet)


def prepare_resume(out: Path, quiet: bool = False, address: str | None = None) -> tuple[SearchConfig, int, int]:
    """Check that `out` is a run, take its driver lock, rebuild the SearchConfig from
    run.json and reconcile records with the journal. `address` (resume's --address)
    moves the run to that Ray cluster. Returns (SearchConfig, n_complete, n_failed),
    where n_failed excludes interrupted trials (they do not count toward --max-failures)."""
    out = Path(out).resolve()
    run = load_run(out)  # RunDirError for a missing / non-run directory
    cfg = _config(run, out, quiet)
    try:
        objectives = objectives_from_run(run)
    except (KeyError, TypeError):
        objectives = []
    if not objectives:
        raise RunDirError(f"{out / RUN_FILE}: no objectives recorded; cannot resume")
    _check_inputs(run, cfg, out)
    hold_run_lock(out)
    if address:  # run.json records it once the cluster took the driver (driver.start_run)
        cfg.address = address
    lock = out / (JOURNAL_FILE + ".lock")
    if os.path.lexists(lock):  # left by a killed driver: we hold the run, nobody else writes
        os.unlink(lock)
    stats = reconcile(out, objectives, _genome_check(cfg))
    trials = read_trials(out)
    n_complete = sum(1 for t in trials if t.status == TrialStatus.COMPLETE)
    n_failed = sum(1 for t in trials if t.counts_as_failure)
    if not quiet:
        extra = []
        if stats["recovered"]:
            extra.append(f"{stats['recovered']} finished trial(s) recovered")
        if stats["interrupted"]:
            extra.append(f"{stats['interrupted']} interrupted trial(s) closed")
        if stats["incomplete"]:
            extra.append(f"{stats['incomplete']} of them killed mid-derivation (partial genome, not a candidate)")
        print(f"nasmt: resuming {out}: {n_complete} of {cfg.trials} trials complete, {n_failed} failed"
              + (f" ({'; '.join(extra)})" if extra else ""), flush=True)
    return cfg, n_complete, n_failed
