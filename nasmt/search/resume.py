"""Crash-safe resume of a search: `nasmt search --resume RUN`.

What a run directory holds after a crash (SIGKILL of the driver, power loss, ...):

* `trials.jsonl`: one record per trial the driver saw finish (append + fsync). A torn
  last line (killed mid-append) is cut off here, so later appends stay parseable.
* `trials/NNNNN/result.json` (or `error.json`): written atomically by the trial itself
  *before* it reports to Tune, so a trial that finished survives even when the driver
  died before recording it.
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

Interrupted trials do **not** count toward `--max-failures`: killing the driver is not
the architecture's fault, and counting them would let a few restarts exhaust the
failure budget. They keep their trial number (numbers are Optuna's and never reused);
the search simply asks Optuna for more trials until `--trials` are complete.

The resumed search starts a fresh Ray Tune run (no Tune restore, nothing unpickled)
over the same journal study, so the sampler continues from every previous trial.

A driver holds an exclusive `flock` on `RUN/.nasmt.lock` for its lifetime; the kernel
drops it when the process dies. Resume refuses a run whose lock is held (another driver
is still running it) and, once it holds the lock, removes Optuna's journal lock left
behind by a killed driver (which would otherwise stall the study for 30 s).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import fields
from pathlib import Path

from nasmt.errors import RunDirError
from nasmt.run import JOURNAL_FILE, RUN_FILE, TRIALS_FILE, append_jsonl, atomic_write_text, load_run, read_trials

LOCK_FILE = ".nasmt.lock"
INTERRUPTED = "interrupted (driver killed)"

_HELD: dict[str, int] = {}  # run dir -> fd of the flock this process holds


def hold_run_lock(run_dir: Path) -> None:
    """Take the run directory's driver lock for the rest of this process's life
    (idempotent within a process). Raises RunDirError if another process holds it."""
    import fcntl

    key = str(Path(run_dir).resolve())
    if key in _HELD:
        return
    fd = os.open(os.path.join(key, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise RunDirError(f"{run_dir}: another nasmt process is running this search (wait for it or stop it first)") from None
    os.set_inheritable(fd, False)
    _HELD[key] = fd


def release_run_lock(run_dir: Path) -> None:
    fd = _HELD.pop(str(Path(run_dir).resolve()), None)
    if fd is not None:
        os.close(fd)


def repair_jsonl_tail(path: Path) -> bool:
    """Cut a torn last line (no trailing newline) off an append-only JSONL file, so the
    next append does not glue onto it. Returns True if something was cut."""
    path = Path(path)
    if not path.exists():
        return False
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return False
    keep = data[: data.rfind(b"\n") + 1]
    atomic_write_text(path, keep.decode("utf-8", errors="replace"))
    return True


def _read_json(p: Path):
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # missing, or torn by a crash before the atomic rename (cannot happen) or by hand


def _config(run: dict, out: Path, caller) -> "SearchConfig":
    from nasmt.search import SearchConfig

    raw = run.get("config")
    if not isinstance(raw, dict):
        raise RunDirError(f"{out / RUN_FILE}: no 'config' table; cannot resume")
    names = {f.name for f in fields(SearchConfig)}
    try:
        cfg = SearchConfig(**{k: v for k, v in raw.items() if k in names})
    except TypeError as e:
        raise RunDirError(f"{out / RUN_FILE}: config is incomplete ({e}); cannot resume") from None
    cfg.out = str(out)
    cfg.quiet = bool(getattr(caller, "quiet", False))
    return cfg


def _check_inputs(run: dict, cfg, out: Path) -> None:
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


def _values(metrics: dict, objectives: list[dict]) -> list[float] | None:
    vals = []
    for o in objectives:
        v = (metrics or {}).get(o["name"])
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return None
        vals.append(float(v))
    return vals


def reconcile(out: Path, objectives: list[dict]) -> dict:
    """Make trials.jsonl and the journal agree (see the module docstring).
    Returns counts of what was done: recovered, interrupted, closed."""
    import optuna
    from optuna.trial import TrialState

    from nasmt.search import STUDY_NAME, journal_storage

    stats = {"recovered": 0, "interrupted": 0, "closed": 0, "torn": 0}
    for f in (out / TRIALS_FILE, out / JOURNAL_FILE):
        stats["torn"] += repair_jsonl_tail(f)
    recs = {int(r["number"]): r for r in read_trials(out)}
    tdirs = {}
    if (out / "trials").is_dir():
        for d in (out / "trials").iterdir():
            if d.is_dir() and d.name.isdigit():
                tdirs[int(d.name)] = d
    journal = out / JOURNAL_FILE
    jtrials = {}
    study = None
    if journal.exists() and journal.stat().st_size > 0:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            study = optuna.load_study(study_name=STUDY_NAME, storage=journal_storage(out))
        except KeyError:
            study = None  # the driver died before it created the study
        except (ValueError, json.JSONDecodeError) as e:
            raise RunDirError(f"{journal}: corrupt Optuna journal ({e})") from None
        if study is not None:
            jtrials = {t.number: t for t in study.get_trials(deepcopy=False)}

    for n in sorted(set(tdirs) | set(jtrials)):
        jt = jtrials.get(n)
        state = jt.state if jt is not None else None
        rec = recs.get(n)
        d = tdirs.get(n, out / "trials" / f"{n:05d}")
        if rec is None:
            res = _read_json(d / "result.json")
            err = _read_json(d / "error.json")
            if isinstance(res, dict) and res.get("status") == "complete" and state not in (TrialState.FAIL, TrialState.PRUNED):
                rec = {**res, "status": "complete", "recovered": True}
                stats["recovered"] += 1
            elif state == TrialState.PRUNED:  # stopped early (before the SystemExit fix, it left an error.json)
                spec = _read_json(d / "spec.json")
                rec = {"number": n, "status": "stopped", "error": "stopped early by the scheduler", "spec": spec, "metrics": {}}
            elif isinstance(err, dict):
                rec = {**err, "status": "failed", "recovered": True}
            elif state == TrialState.FAIL:
                rec = {"number": n, "status": "failed", "spec": _read_json(d / "spec.json"),
                       "error": "trial failed; its reason was lost when the driver was killed"}
            elif state == TrialState.COMPLETE:  # told COMPLETE, but its result file is gone
                rec = {"number": n, "status": "failed", "spec": None, "error": "result.json missing for a completed trial"}
            else:  # RUNNING / WAITING / unknown to the journal: in flight when the driver died
                rec = {"number": n, "status": "failed", "error": INTERRUPTED, "interrupted": True,
                       "spec": _read_json(d / "spec.json")}
                stats["interrupted"] += 1
            rec["number"] = n
            append_jsonl(out / TRIALS_FILE, rec)
            recs[n] = rec
        if study is not None and state in (TrialState.RUNNING, TrialState.WAITING):
            vals = _values(rec.get("metrics"), objectives) if rec.get("status") == "complete" else None
            if vals is not None:
                study.tell(n, vals, state=TrialState.COMPLETE)
            elif rec.get("status") == "stopped":
                study.tell(n, None, state=TrialState.PRUNED)
            else:
                study.tell(n, None, state=TrialState.FAIL)
            stats["closed"] += 1
    return stats


def prepare_resume(out: Path, cfg) -> tuple:
    """Check that `out` is a run, take its driver lock, rebuild the SearchConfig from
    run.json (keeping the caller's `quiet`) and reconcile records with the journal.
    Returns (SearchConfig, n_complete, n_failed), where n_failed excludes interrupted
    trials (they do not count toward --max-failures)."""
    out = Path(out).resolve()
    run = load_run(out)  # RunDirError for a missing / non-run directory
    new = _config(run, out, cfg)
    objectives = run.get("objectives")
    if not isinstance(objectives, list) or not objectives:
        raise RunDirError(f"{out / RUN_FILE}: no objectives recorded; cannot resume")
    _check_inputs(run, new, out)
    hold_run_lock(out)
    lock = out / (JOURNAL_FILE + ".lock")
    if os.path.lexists(lock):  # left by a killed driver: we hold the run, nobody else writes
        os.unlink(lock)
    stats = reconcile(out, objectives)
    trials = read_trials(out)
    n_complete = sum(1 for t in trials if t.get("status") == "complete")
    n_failed = sum(1 for t in trials if t.get("status") == "failed" and not t.get("interrupted"))
    if not new.quiet:
        extra = []
        if stats["recovered"]:
            extra.append(f"{stats['recovered']} finished trial(s) recovered")
        if stats["interrupted"]:
            extra.append(f"{stats['interrupted']} interrupted trial(s) closed")
        print(f"nasmt: resuming {out}: {n_complete} of {new.trials} trials complete, {n_failed} failed"
              + (f" ({'; '.join(extra)})" if extra else ""), flush=True)
    return new, n_complete, n_failed
