"""What a search is asked to do: `SearchConfig` (the CLI's flags, stored in run.json)
and its validation, which runs before anything touches the run directory."""

from __future__ import annotations

from dataclasses import dataclass

from nasmt.errors import UserError

SCHEDULERS = ("fifo", "asha", "mo-asha")  # fifo: every trial gets its full budget
SAMPLERS = ("auto", "tpe", "nsga2", "random", "evolution")
# --sampler auto (the default), by measurement: random below AUTO_MODEL_FROM trials, AUTO_MODEL
# from there on. reports/bench_samplers.json (NAS-Bench-201 tables, 5 seeds): TPE reaches
# random search's hypervolume at N in 32 / 67 / 90 / 242 trials for N = 100 / 300 / 1,000 /
# 3,000, the fewest of every sampler at every N; reports/bench_efficiency.json (12 trained
# trials): nothing separates from random there.
AUTO_MODEL_FROM = 100
AUTO_MODEL = "tpe"
STUDY_NAME = "nasmt"  # the Optuna study's name inside study.journal
NUMBER_KEY = "nasmt_number"  # Tune config key carrying the Optuna trial number
# A trial's last result when its own code failed (an exception in building, training or
# measuring: it has recorded why): the trainable returns instead of raising, so Tune keeps
# its worker process for the next trial. Tune never reuses the actor of an errored trial,
# and a new one pays its torch and ray.tune imports (and on a GPU a CUDA context) again.
FAILED_KEY = "nasmt_failed"


@dataclass
class SearchConfig:
    space: str
    tasks: str
    out: str
    objectives: str = "mean_error,params"
    trials: int = 16
    sampler: str = "auto"  # auto: `auto_sampler` (by measurement: reports/bench_samplers.json)
    epochs: float = 1.0
    steps: int | None = None
    batch_size: int = 128
    lr: float = 3e-3
    seed: int = 0
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    address: str | None = None
    max_concurrent: int | None = None
    trial_timeout: float | None = None
    max_failures: int = 10
    early_stop: bool = False  # the v0.1 flag: the same as scheduler="asha"
    scheduler: str = "fifo"
    min_epochs: int = 1  # the first rung of asha / mo-asha
    reduction_factor: float = 2.0  # rungs at min_epochs * rf^k; 1/rf of the trials go on at each
    fault: str | None = None  # fault injection for tests (nasmt.search.faults): KIND@NUMBER[,...]
    quiet: bool = False
    max_bytes: int | None = None  # hard budget on size_bytes (Optuna constraint)
    max_latency_ms: float | None = None  # hard budget on latency (measured, else predicted)
    latency_batch: int = 1  # batch size of latency measurement / prediction
    qat_steps: int = 0  # quantization-aware fine-tune steps after training (quantized policies)
    measure_latency: bool = False  # measure the artifact's latency in every trial
    storage: str | None = None  # where Ray Tune keeps its files (path or pyarrow URI); default RUN/ray
    final_epochs: float | None = None  # retrain the feasible Pareto trials this long after the search
    enqueue: tuple[str, ...] = ()  # architectures to evaluate first (arch.json / spec.json / genome files)
    warm_start: tuple[str, ...] = ()  # earlier runs whose complete trials seed the study
    affinity: str | None = None  # a folder holding affinity.json: its task grouping seeds the first trials
    # one-shot search (nasmt.search.oneshot): --trials candidates scored on one supernet's weights
    oneshot: bool = False
    supernet_epochs: int = 4  # sandwich-rule training of the supernet, in epochs over the train split
    supernet_workers: int = 1  # Ray Train workers (data-parallel) training the supernet
    supernet_random: int = 2  # random candidates per step besides the largest and the smallest
    supernet_distill: float = 0.0  # in-place distillation weight of the smaller candidates (nasmt.train.supernet)
    supernet_split: bool = False  # group / branch weights keyed by the features they read (nasmt.model.supernet)
    candidate_batch: int = 64  # candidates asked and scored per round (Ray tasks)
    finish: str = "finetune"  # phase 3: fine-tune the front from inherited weights, or train it from scratch
    sampler_used: str | None = None  # what --sampler resolved to (run_search records it in run.json)

    @property
    def sampler_name(self) -> str:
        """The sampler this search runs: `sampler`, or what `auto` resolves to."""
        if self.sampler_used:
            return self.sampler_used
        return auto_sampler(self.trials, self.oneshot) if self.sampler == "auto" else self.sampler

    @property
    def early_scheduler(self) -> str | None:
        """The early-stopping scheduler in use (asha / mo-asha), or None."""
        s = "asha" if self.early_stop and self.scheduler == "fifo" else self.scheduler
        return None if s == "fifo" else s

    def wants_latency(self, objectives) -> bool:
        """Latency is an objective or a budget: predict it in trials, measure the Pareto set."""
        return self.max_latency_ms is not None or self.measure_latency or any("latency" in o.name for o in objectives)

    def measures_latency(self, objectives) -> bool:
        """Every trial measures its artifact's latency (flag, or latency_ms is an objective)."""
        return self.measure_latency or any(o.name == "latency_ms" for o in objectives)


def auto_sampler(trials: int, oneshot: bool = False) -> str:
    """What `--sampler auto` runs for a budget of `trials` complete trials (one-shot:
    candidates scored). Random search while the budget is small (at 12 trained trials
    nothing beat it, bench_efficiency), the bounded-history TPE from AUTO_MODEL_FROM
    trials on (bench_samplers: the fewest trials to random search's hypervolume at every
    count measured, 100 to 3,000; 13 ms per ask at 10^5 trials). One-shot searches score thousands of
    candidates and get the same rule: by trial count, measured without training."""
    return AUTO_MODEL if trials >= AUTO_MODEL_FROM else "random"


def _positive(value, flag: str, at_least_one: bool = False) -> None:
    if at_least_one and value < 1:
        raise UserError(f"{flag}: must be at least 1 (got {value})")
    if not at_least_one and not value > 0:
        raise UserError(f"{flag}: must be positive (got {value})")


def check_config(cfg: SearchConfig) -> None:
    """One line naming the flag for every value a search cannot use."""
    from nasmt.search.faults import parse_faults

    _positive(cfg.trials, "--trials", at_least_one=True)
    if cfg.sampler not in SAMPLERS:
        raise UserError(f"--sampler: unknown sampler {cfg.sampler!r} (choose {', '.join(SAMPLERS)})")
    if cfg.steps is None:
        _positive(cfg.epochs, "--epochs")
    else:
        _positive(cfg.steps, "--steps", at_least_one=True)
    if cfg.gpus_per_trial < 0 or cfg.cpus_per_trial <= 0:
        raise UserError("--gpus-per-trial / --cpus-per-trial: must be positive")
    _positive(cfg.batch_size, "--batch-size", at_least_one=True)
    _positive(cfg.lr, "--lr")
    if cfg.max_concurrent is not None:
        _positive(cfg.max_concurrent, "--max-concurrent", at_least_one=True)
    if cfg.trial_timeout is not None:
        _positive(cfg.trial_timeout, "--trial-timeout")
    _positive(cfg.max_failures, "--max-failures", at_least_one=True)
    if cfg.max_bytes is not None:
        _positive(cfg.max_bytes, "--max-bytes")
    if cfg.max_latency_ms is not None:
        _positive(cfg.max_latency_ms, "--max-latency-ms")
    _positive(cfg.latency_batch, "--latency-batch", at_least_one=True)
    if cfg.qat_steps < 0:
        raise UserError(f"--qat-steps: must be 0 or more (got {cfg.qat_steps})")
    parse_faults(cfg.fault)
    if cfg.final_epochs is not None:
        _positive(cfg.final_epochs, "--final-epochs")
    if cfg.scheduler not in SCHEDULERS:
        raise UserError(f"--scheduler: unknown scheduler {cfg.scheduler!r} (choose {', '.join(SCHEDULERS)})")
    _positive(cfg.min_epochs, "--min-epochs", at_least_one=True)
    if not cfg.reduction_factor > 1:
        raise UserError(f"--reduction-factor: must be greater than 1 (got {cfg.reduction_factor})")
    if cfg.oneshot:
        check_oneshot_config(cfg)
    if cfg.early_scheduler is not None and (cfg.steps is not None or cfg.epochs < 2 * cfg.min_epochs):
        flag = f"--scheduler {cfg.scheduler}" if cfg.scheduler != "fifo" else "--early-stop"
        raise UserError(f"{flag}: needs an --epochs budget of at least 2 x --min-epochs (its rungs are epochs)")


FINISHES = ("finetune", "scratch")


def check_oneshot_config(cfg: SearchConfig) -> None:
    """The flags a one-shot search cannot serve, one line each (why, and what instead)."""
    _positive(cfg.supernet_epochs, "--supernet-epochs", at_least_one=True)
    _positive(cfg.supernet_workers, "--supernet-workers", at_least_one=True)
    if cfg.supernet_random < 0:
        raise UserError(f"--supernet-random: must be 0 or more (got {cfg.supernet_random})")
    if not 0.0 <= cfg.supernet_distill <= 1.0:  # NaN too
        raise UserError(f"--supernet-distill: must be between 0 and 1 (got {cfg.supernet_distill})")
    _positive(cfg.candidate_batch, "--candidate-batch", at_least_one=True)
    if cfg.finish not in FINISHES:
        raise UserError(f"--finish: unknown finish {cfg.finish!r} (choose {', '.join(FINISHES)})")
    if cfg.early_scheduler is not None:
        flag = f"--scheduler {cfg.scheduler}" if cfg.scheduler != "fifo" else "--early-stop"
        raise UserError(f"{flag}: not with --oneshot (candidates inherit weights and are not trained, so there is "
                        f"no training to stop early)")
    if cfg.qat_steps:
        raise UserError("--qat-steps: not with --oneshot (inherited candidates are scored with their quantization "
                        "simulated on the supernet's weights, without per-candidate fine-tuning)")
    if cfg.warm_start:
        raise UserError("--warm-start: not with --oneshot (an earlier run's trials were trained on their own; "
                        "their metrics are not comparable with inherited ones)")
    if cfg.fault:
        raise UserError("--inject-fault: not with --oneshot")
