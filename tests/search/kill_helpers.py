"""Helpers of the tests that SIGKILL a search and resume it (test_resume, test_evolution):
start the real CLI in its own session, wait for a kill point, kill the whole session,
and read what the run directory and its Optuna journal hold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from conftest import ROOT, kill_session  # noqa: F401 (re-exported for the kill tests)


def journal_study(run: Path):
    storage = JournalStorage(JournalFileBackend(str(run / "study.journal")))
    return optuna.load_study(study_name="nasmt", storage=storage)


def complete_numbers(run: Path) -> list[int]:
    f = run / "trials.jsonl"
    if not f.exists():
        return []
    out = []
    for line in f.read_text(encoding="utf-8").splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written right now
        if r.get("status") == "complete":
            out.append(int(r["number"]))
    return out


def result_numbers(run: Path) -> set[int]:
    return {int(p.parent.name) for p in (run / "trials").glob("*/result.json")} if (run / "trials").exists() else set()


def in_flight(run: Path) -> set[int]:
    """Trials that started (spec.json written) and have not finished (no result/error)."""
    if not (run / "trials").exists():
        return set()
    return {int(d.name) for d in (run / "trials").iterdir()
            if (d / "spec.json").exists() and not (d / "result.json").exists() and not (d / "error.json").exists()}


def lock_holder(run: Path) -> int | None:
    """pid holding the run's driver flock, read from /proc/locks (without touching it)."""
    try:
        ino = os.stat(run / ".nasmt.lock").st_ino
    except FileNotFoundError:
        return None
    for line in Path("/proc/locks").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5].rsplit(":", 1)[-1] == str(ino):
            return int(parts[4])
    return None


def start(args, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "nasmt.cli", *map(str, args)],
        cwd=ROOT, start_new_session=True, stdout=open(log, "w"), stderr=subprocess.STDOUT,
    )


def run_until(p: subprocess.Popen, run: Path, ready, log: Path, limit_s: float = 600) -> None:
    """Poll the run directory until `ready()` (an event there: a record, a trial's files),
    then SIGKILL the search. The kill point is that event, never a clock; `limit_s` only
    bounds how long a broken search may take to fail the test (generous: slow machines)."""
    deadline = time.monotonic() + limit_s
    try:
        while not ready():
            if p.poll() is not None:
                raise AssertionError(f"search ended (rc {p.returncode}) before the kill point:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"kill point not reached:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
    finally:
        kill_session(p)
