"""`RecordCallback`: the driver's Tune callback that turns each finished trial into its
one record in trials.jsonl and prints a progress line."""

from __future__ import annotations

from dataclasses import replace
import os
from pathlib import Path
import re

from ray.tune import Callback

from nasmt.run import (
    ERROR_FILE,
    RESULT_FILE,
    SPEC_FILE,
    STOPPED_EARLY,
    Objective,
    TrialRecord,
    TrialStatus,
    append_record,
    read_json,
    trial_dir,
)
from nasmt.run.values import is_finite_number
from nasmt.search.config import FAILED_KEY, NUMBER_KEY

ERROR_LINE_CHARS = 500  # a failure reason is one line; Ray's error file can be long
# How Ray reports a trial whose process or node went away (not the architecture's fault)
NODE_LOST = re.compile(r"ActorDiedError|ActorUnavailableError|NodeDiedError|RayActorError|"
                       r"The actor died|The actor \w+ is unavailable|node .* (has )?died|worker .* died|owner died", re.I)
NEVER_RAN = "never ran: the search was stopped before this trial started"


def record_of(run_dir: Path, number: int, status: TrialStatus, last_result: dict, error_file: str | None) -> TrialRecord:
    """The record of a trial that ended with `status`, from what it wrote itself."""
    tdir = trial_dir(run_dir, number)
    if status == TrialStatus.STOPPED and not last_result:  # ended by the search stopping, never reported
        return TrialRecord(number=number, status=TrialStatus.FAILED, error=NEVER_RAN, interrupted=True,
                           spec=read_json(tdir / SPEC_FILE))
    if status == TrialStatus.STOPPED:  # its last rung's metrics: validation and costs known by then
        return TrialRecord(
            number=number, status=status, error=STOPPED_EARLY, spec=read_json(tdir / SPEC_FILE),
            metrics={k: v for k, v in (last_result or {}).items() if (k in RUNG_METRICS or _metric_key(k))
                     and is_finite_number(v)},
            # the compute it used until it was stopped (Tune's clock of the trial)
            timings={"total_s": float(last_result.get("time_total_s", 0.0))},
        )
    own = read_json(tdir / (RESULT_FILE if status == TrialStatus.COMPLETE else ERROR_FILE))
    if isinstance(own, dict):
        return TrialRecord.from_json({**own, "status": status.value}, where=str(tdir))
    err, text = "trial failed before it could record a reason", ""
    if error_file and os.path.exists(error_file):
        text = open(error_file, errors="replace").read()
        lines = [ln for ln in text.splitlines() if ln.strip()]
        err = lines[-1][:ERROR_LINE_CHARS] if lines else err
    if NODE_LOST.search(text):  # its node or worker died: not counted toward --max-failures
        return TrialRecord(number=number, status=TrialStatus.FAILED, error=f"node died: {err}", interrupted=True,
                           spec=read_json(tdir / SPEC_FILE))
    return TrialRecord(number=number, status=TrialStatus.FAILED, error=err, spec=read_json(tdir / SPEC_FILE))


RUNG_METRICS = ("mean_error", "epoch", "params", "flops", "size_bytes", "predicted_latency_ms")


def _metric_key(k: str) -> bool:
    """A per-task validation metric (`<ident>.<metric>`, `<ident>.error`)."""
    return "." in k and not k.startswith(("config", "time", "date"))


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


class RecordCallback(Callback):
    """Appends each finished trial to trials.jsonl (the driver is its only writer)."""

    def __init__(self, run_dir: Path, objectives: list[Objective], target: int, done: int = 0, say=print,
                 searcher=None):
        self.run_dir, self.objectives, self.target, self.say = Path(run_dir), objectives, target, say
        self.searcher = searcher  # told when a failure is not the trial's fault
        self.counts = {s: 0 for s in TrialStatus}
        self.counts[TrialStatus.COMPLETE] = done

    def _write(self, trial, status: TrialStatus) -> TrialRecord | None:
        number = trial.config.get(NUMBER_KEY)
        if number is None:
            return None
        rec = record_of(self.run_dir, int(number), status, trial.last_result, trial.error_file)
        last = trial.last_result or {}
        worker = {"node": last.get("node_ip"), "pid": last["pid"]} if "pid" in last else None
        rec = replace(rec, trial_id=trial.trial_id, worker=worker)
        append_record(self.run_dir, rec)
        self.counts[rec.status] += 1
        done = self.counts[TrialStatus.COMPLETE]
        if rec.status == TrialStatus.COMPLETE:
            objs = "  ".join(f"{o.name}={fmt(rec.metrics.get(o.name))}" for o in self.objectives)
            self.say(f"[{done:>3}/{self.target}] trial {number:>3} complete  {objs}  ({rec.timings.get('total_s', 0):.1f} s)")
        else:
            self.say(f"[{done:>3}/{self.target}] trial {number:>3} {rec.status}: {rec.error}")
        return rec

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        if last.get(FAILED_KEY):  # its own code failed and wrote error.json; its worker lives on
            self._write(trial, TrialStatus.FAILED)
            return
        self._write(trial, TrialStatus.COMPLETE if last.get("final") else TrialStatus.STOPPED)

    def on_trial_error(self, iteration, trials, trial, **info):
        rec = self._write(trial, TrialStatus.FAILED)
        if rec is not None and rec.interrupted and self.searcher is not None:
            self.searcher.uncount_failure()
