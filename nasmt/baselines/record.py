"""Reference records: one `BaselineRecord` per reference model in `DIR/baselines.jsonl`,
and the multi-task gain Δm.

A record's `metrics` hold what a trial's do (validation `<task>.<metric>`,
`<task>.error`, `mean_error`, and `params`, `flops`, `size_bytes` where they apply), so
a reference sits on the same axes as the trials; `test_metrics` hold the same metric
keys on the test split.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from nasmt.data.suite import HIGHER_IS_BETTER, TaskSuite
from nasmt.errors import RunDirError
from nasmt.run import read_jsonl, write_jsonl
from nasmt.run.values import is_finite_number

BASELINES_FILE = "baselines.jsonl"  # in the output directory (a run directory when `search --baselines` wrote it)
SINGLE_TASK = "single-task"  # the reference Δm is measured against
LIGHTGBM = "lightgbm"  # the gradient-boosted-trees reference (vector suites)
NETWORK, GBDT = "network", "gbdt"  # record kinds
SHARED_SETTINGS = ("epochs", "steps", "batch_size", "lr", "seed")  # a search's run.json config keys its baselines share


@dataclass(frozen=True)
class BaselineRecord:
    name: str  # single-task | hard-shared | mmoe | ple | lenet | lightgbm
    kind: str  # NETWORK | GBDT
    label: str  # human name with its reference, e.g. "MMoE (Ma et al. 2018)"
    metrics: dict = field(default_factory=dict)  # validation metrics and costs (a trial's keys)
    test_metrics: dict = field(default_factory=dict)  # the same metrics on the test split
    delta_m_val: float | None = None  # Δm in % against the single-task networks (validation)
    delta_m_test: float | None = None  # ... (test)
    detail: dict = field(default_factory=dict)  # sizes of the model; LightGBM: best iteration per task
    train: dict = field(default_factory=dict)  # steps, epochs, final loss (single-task: per task)
    timings: dict = field(default_factory=dict)  # train_s, eval_s, total_s
    settings: dict = field(default_factory=dict)  # suite, budget, batch size, lr, seed, device
    finished_at: float | None = None

    def value(self, name: str, split: str = "val") -> float | None:
        """A finite metric (validation or test), else None (as `TrialRecord.value`)."""
        v = (self.metrics if split == "val" else self.test_metrics).get(name)
        if not is_finite_number(v):
            return None
        return v

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, d: dict, where: str = "<baseline>") -> "BaselineRecord":
        known = {f.name for f in fields(cls)}
        if not isinstance(d, dict) or not isinstance(d.get("name"), str) or not isinstance(d.get("metrics"), dict):
            raise RunDirError(f"{where}: baseline record without a name and metrics")
        return cls(**{k: v for k, v in d.items() if k in known})


def baselines_path(path: str | Path) -> Path:
    """`DIR/baselines.jsonl` for a directory, the path itself for a file."""
    p = Path(path)
    return p if p.suffix == ".jsonl" else p / BASELINES_FILE


def read_baselines(path: str | Path) -> list[BaselineRecord]:
    """The records of `DIR/baselines.jsonl` (or of that file); [] when there is none."""
    p = baselines_path(path)
    return [BaselineRecord.from_json(d, where=str(p)) for d in read_jsonl(p)]


def write_baselines(path: str | Path, records: list[BaselineRecord]) -> Path:
    """Replace `DIR/baselines.jsonl` atomically."""
    p = baselines_path(path)
    write_jsonl(p, [r.to_json() for r in records])
    return p


def delta_m(metrics: dict, reference: dict, suite: TaskSuite) -> float | None:
    """Multi-task gain in % (Maninis et al. 2019, "Attentive Single-Tasking of Multiple
    Tasks"): Δm = 100/T Σ_t (-1)^l_t (M_t - R_t) / R_t, with M_t the model's and R_t the
    reference's (single-task networks') metric of task t, l_t = 1 where lower is better.
    Positive: better than the reference. None when a metric is missing or R_t is 0."""
    total = 0.0
    for t in suite.tasks:
        key = f"{t.ident}.{t.metric}"
        m, r = metrics.get(key), reference.get(key)
        if not all(is_finite_number(v) for v in (m, r)) or r == 0:
            return None
        sign = 1.0 if HIGHER_IS_BETTER[t.metric] else -1.0
        total += sign * (m - r) / r
    return 100.0 * total / len(suite.tasks)
