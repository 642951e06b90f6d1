"""The trial record: one typed `TrialRecord` per finished trial in `trials.jsonl`.

`trials.jsonl` holds exactly one line per trial number. Whoever changes a recorded
trial (the driver, after measuring the Pareto set's latency) rewrites the file
atomically with `replace_records`; resume only appends records for trials that have
none. `read_trials` and `trials_frame` are the documented readers: a list of records,
or a pandas DataFrame with one row per trial (`metrics.<name>` columns), e.g.

    >>> from nasmt.run import trials_frame
    >>> df = trials_frame("runs/mm")
    >>> df[df.status == "complete"].sort_values("metrics.mean_error").head()

If an older file holds several lines for one number, the last one wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from enum import Enum
from pathlib import Path

from nasmt.errors import RunDirError
from nasmt.run.files import TRIALS_FILE, append_jsonl, no_gc, read_jsonl, write_jsonl
from nasmt.run.values import is_finite_number


class TrialStatus(str, Enum):
    COMPLETE = "complete"  # trained to its full budget and evaluated
    FAILED = "failed"  # raised (its reason in `error`); replaced by another trial
    STOPPED = "stopped"  # stopped early by a scheduler (last rung's metrics)

    def __str__(self) -> str:  # JSON and messages show the plain value
        return self.value


INTERRUPTED = "interrupted (driver killed)"
STOPPED_EARLY = "stopped early by the scheduler"


@dataclass(frozen=True)
class TrialRecord:
    number: int
    status: TrialStatus
    spec: dict | None = None  # ArchSpec.to_json() (None when the trial failed before deriving)
    metrics: dict = field(default_factory=dict)  # validation metrics, costs, feasibility
    train: dict | None = None  # steps, epochs, final loss
    timings: dict = field(default_factory=dict)  # data_s, train_s, eval_s, total_s
    error: str | None = None  # one line: why it failed or stopped
    error_type: str | None = None
    traceback: str | None = None
    finished_at: float | None = None
    trial_id: str | None = None  # Ray Tune's id
    recovered: bool = False  # written by --resume from the trial's own result/error file
    interrupted: bool = False  # running when the driver died: not counted as a failure
    final: dict | None = None  # the full-budget finish (nasmt finalize): epochs, val metrics, test, weights
    worker: dict | None = None  # the Ray worker process that ran it, from its last result: node IP, pid
    extra: dict = field(default_factory=dict)  # fields this version does not know, kept verbatim

    # -- what a record means

    @property
    def feasible(self) -> bool:
        """Within the run's hard budgets (`metrics.feasible` is False when over one)."""
        return self.metrics.get("feasible", True) is not False

    @property
    def is_front_candidate(self) -> bool:
        """May be on a Pareto front or picked for export: complete and within budget.
        Failed, stopped and over-budget trials never are."""
        return self.status == TrialStatus.COMPLETE and self.feasible

    @property
    def counts_as_failure(self) -> bool:
        """Counts toward --max-failures (interrupted trials are not the architecture's fault)."""
        return self.status == TrialStatus.FAILED and not self.interrupted

    @property
    def arch_hash(self) -> str:
        return str((self.spec or {}).get("hash") or "")

    @property
    def genome(self) -> dict:
        return dict((self.spec or {}).get("genome") or {})

    @property
    def is_finalized(self) -> bool:
        return bool(self.final)

    @property
    def metrics_final_first(self) -> dict:
        """The search metrics with the full-budget finish's metrics merged over them (the
        retrained network's validation metrics where finalized; the costs stay): what
        `export --pick` chooses by and what the report draws."""
        return {**self.metrics, **(self.final or {}).get("metrics", {})}

    def value(self, name: str) -> float | None:
        """A finite numeric metric, else None."""
        v = self.metrics.get(name)
        if not is_finite_number(v):
            return None
        return v

    # -- JSON

    def to_json(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        d["status"] = self.status.value
        for k in ("recovered", "interrupted", "final", "worker"):
            if not d[k]:
                del d[k]
        return {**self.extra, **d}

    @classmethod
    def from_json(cls, d: dict, where: str = "<record>") -> "TrialRecord":
        if not isinstance(d, dict):
            raise RunDirError(f"{where}: trial record is not a JSON object")
        try:
            number = int(d["number"])
            status = TrialStatus(d["status"])
        except (KeyError, TypeError, ValueError) as e:
            raise RunDirError(f"{where}: trial record without a valid number/status ({e})") from None
        known = _known_fields()
        kw = {k: d[k] for k in known if k in d and k not in ("number", "status")}
        for k in ("metrics", "timings"):
            if not isinstance(kw.get(k), dict):
                kw[k] = {}
        if kw.get("spec") is not None and not isinstance(kw["spec"], dict):
            raise RunDirError(f"{where}: trial {number}: spec is not a JSON object")
        kw["recovered"] = bool(kw.get("recovered", False))
        kw["interrupted"] = bool(kw.get("interrupted", False))
        extra = {k: v for k, v in d.items() if k not in known}
        return cls(number=number, status=status, extra=extra, **kw)

    def with_metrics(self, **updates) -> "TrialRecord":
        return replace(self, metrics={**self.metrics, **updates})


_KNOWN: frozenset[str] = frozenset()


def _known_fields() -> frozenset[str]:
    """TrialRecord's field names but `extra` (computed once: `fields()` per record costs
    more than the rest of `from_json` on a 100,000-line file)."""
    global _KNOWN
    if not _KNOWN:
        _KNOWN = frozenset(f.name for f in fields(TrialRecord)) - {"extra"}
    return _KNOWN


# ----------------------------------------------------------------------------- reading


def read_trials(run_dir: str | Path) -> list[TrialRecord]:
    """Every trial of a run, one record per number in number order (last line wins)."""
    path = Path(run_dir) / TRIALS_FILE
    with no_gc():
        return records_in_order(read_jsonl(path), str(path))


def records_in_order(dicts: list[dict], where: str, by_num: dict[int, TrialRecord] | None = None) -> list[TrialRecord]:
    """Typed records of JSON objects, one per number in number order (a later object
    wins); `by_num` (number -> record) is updated in place when given."""
    by_num = {} if by_num is None else by_num
    from_json = TrialRecord.from_json
    with no_gc():
        for d in dicts:
            r = from_json(d, where=where)
            by_num[r.number] = r
    return [by_num[k] for k in sorted(by_num)]


def front_candidates(records: list[TrialRecord]) -> list[TrialRecord]:
    return [r for r in records if r.is_front_candidate]


def count_status(records: list[TrialRecord]) -> dict[TrialStatus, int]:
    out = {s: 0 for s in TrialStatus}
    for r in records:
        out[r.status] += 1
    return out


def append_record(run_dir: str | Path, rec: TrialRecord) -> None:
    append_jsonl(Path(run_dir) / TRIALS_FILE, rec.to_json())


def replace_records(run_dir: str | Path, updated: list[TrialRecord]) -> None:
    """Rewrite trials.jsonl atomically with `updated` in place of the records of the same
    numbers (one line per trial stays one line per trial)."""
    new = {r.number: r for r in updated}
    recs = read_trials(run_dir)
    missing = set(new) - {r.number for r in recs}
    if missing:
        raise ValueError(f"replace_records: no record for trial(s) {sorted(missing)}")
    write_jsonl(Path(run_dir) / TRIALS_FILE, [new.get(r.number, r).to_json() for r in recs])


def trials_frame(run_dir: str | Path):
    """The documented way to read a run: a pandas DataFrame, one row per trial number.

    Columns: number, status, error, interrupted, recovered, finished_at, total_s,
    arch_hash, then one `metrics.<name>` column per metric any trial recorded."""
    import numpy as np
    import pandas as pd

    with no_gc():  # 10^5 records: millions of live objects, which every collector pass would walk
        recs = read_trials(run_dir)
        cols = ["number", "status", "error", "interrupted", "recovered", "finished_at", "total_s", "arch_hash"]
        if not recs:
            return pd.DataFrame(columns=cols)
        # column by column (a frame from 100,000 row dicts costs seconds); a metric a trial
        # lacks is NaN, as pandas fills a list of row dicts, and metric columns come in the
        # order a trial first records them
        data = {
            "number": [r.number for r in recs], "status": [r.status.value for r in recs], "error": [r.error for r in recs],
            "interrupted": [r.interrupted for r in recs], "recovered": [r.recovered for r in recs],
            "finished_at": [r.finished_at for r in recs], "total_s": [r.timings.get("total_s") for r in recs],
            "arch_hash": [r.arch_hash for r in recs],
        }
        names = dict.fromkeys(k for r in recs for k in r.metrics)
        for k in names:
            data[f"metrics.{k}"] = [r.metrics.get(k, np.nan) for r in recs]
        df = pd.DataFrame(data)
    return df.set_index("number", drop=False)


__all__ = [
    "INTERRUPTED", "STOPPED_EARLY", "TrialRecord", "TrialStatus", "append_record", "count_status",
    "front_candidates", "read_trials", "replace_records", "trials_frame",
]
