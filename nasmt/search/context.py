"""`TrialContext`: everything a trial needs besides its genome, typed and frozen.

The driver builds it once per search from the validated `SearchConfig`; Ray ships it to
every worker with `tune.with_parameters`. A trial never touches the driver's disk: the
grammar travels as text, the suite as data, and the trial's files go back through the
sink actor."""

from __future__ import annotations

from dataclasses import dataclass

from nasmt.data.suite import TaskSuite


SEED_STRIDE = 100003  # a prime above any trial count: (search seed, trial) pairs never share a seed


@dataclass(frozen=True)
class TrialContext:
    grammar_text: str
    grammar_file: str
    suite: TaskSuite
    objectives: tuple[str, ...]
    epochs: float = 1.0
    steps: int | None = None
    batch_size: int = 128
    lr: float = 3e-3
    seed: int = 0
    threads: int = 1  # torch intra-op threads (= whole CPUs per trial)
    device: str = "cpu"  # "cuda" when the trial holds a GPU share
    trial_timeout: float | None = None
    early_stop: bool = False  # report validation metrics each epoch to the scheduler
    fault: str | None = None  # test-only fault injection (nasmt.search.faults)
    max_bytes: int | None = None
    max_latency_ms: float | None = None
    latency_batch: int = 1
    qat_steps: int = 0
    measure_latency: bool = False  # measure the artifact's latency in the trial
    predict_latency: bool = False  # predict it from the per-op table
    sink: object = None  # the TrialSink actor handle (nasmt.search.sink): where trial files go

    def trial_seed(self, number: int) -> int:
        """The seed of trial `number`: distinct per trial and per search seed."""
        return self.seed * SEED_STRIDE + number

    @classmethod
    def from_config(cls, cfg, grammar, suite, objectives, sink=None) -> "TrialContext":
        return cls(
            grammar_text=grammar.text, grammar_file=grammar.file, suite=suite,
            objectives=tuple(o.name for o in objectives), epochs=cfg.epochs, steps=cfg.steps,
            batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, threads=max(1, int(cfg.cpus_per_trial)),
            device="cuda" if cfg.gpus_per_trial > 0 else "cpu", trial_timeout=cfg.trial_timeout,
            early_stop=cfg.early_scheduler is not None, fault=cfg.fault, max_bytes=cfg.max_bytes, max_latency_ms=cfg.max_latency_ms,
            latency_batch=cfg.latency_batch, qat_steps=cfg.qat_steps,
            measure_latency=cfg.measures_latency(objectives), predict_latency=cfg.wants_latency(objectives), sink=sink,
        )
