"""The search driver: validate everything, then run Ray Tune trials proposed by Optuna.

The driver checks grammar, suite, objectives and resources before it touches the run
directory. Optuna (define-by-run over the grammar, journal storage in the run
directory) proposes genomes; Ray Tune runs trials with `reuse_actors=True`, so a worker
loads the dataset once and only the architecture changes per trial. `--trials N` asks
for N complete trials: a failed trial is replaced, until `--max-failures` failures stop
the search cleanly. The driver is the only writer of trials.jsonl.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from ray.tune.stopper import Stopper

from nasmt.errors import ResourceError, RunDirError
from nasmt.run import (RUN_FILE, TrialStatus, atomic_write_json, count_status, ensure_dir, is_run_dir, load_run,
                       pareto_trials, read_trials)
from nasmt.search.callback import RecordCallback
from nasmt.search.config import SearchConfig, check_config
from nasmt.search.context import TrialContext
from nasmt.search.lock import hold_run_lock
from nasmt.search.searcher import NasmtSearcher
from nasmt.search.sink import start_sink
from nasmt.search.space import define_space
from nasmt.search.samplers import make_sampler
from nasmt.search.schedulers import make_scheduler
from nasmt.search.study import StudyAdapter
from nasmt.search.trial import run_trial

RESUME_SEED_STRIDE = 1000  # session k of a run samples with seed + 1000 k: no replayed proposals


def prepare(cfg: SearchConfig):
    """Validate every input; returns (grammar, suite, objectives, data). Touches nothing."""
    from nasmt.data import load_data_cached
    from nasmt.data.suite import load_suite
    from nasmt.run import parse_objectives
    from nasmt.space.grammar import load_grammar
    from nasmt.space.validate import check_compatible

    check_config(cfg)
    grammar = load_grammar(cfg.space)
    suite = load_suite(cfg.tasks)
    check_compatible(grammar, suite.is_image, suite.file)
    objectives = parse_objectives(cfg.objectives, suite)
    data = load_data_cached(suite)
    if cfg.enqueue:
        from nasmt.search.warm import enqueued_genomes

        enqueued_genomes(cfg.enqueue, grammar, suite, data)  # one line naming the file if one does not fit
    if cfg.affinity:
        from nasmt.search.affinity import check_prior

        check_prior(cfg.affinity, grammar, suite)  # one line if it does not fit
    for r in cfg.warm_start:
        from nasmt.run import load_run

        load_run(r)
    return grammar, suite, objectives, data


def check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out}: exists and is not a directory")
    if is_run_dir(out):
        raise RunDirError(f"--out {out}: already holds a nasmt run (continue it with `nasmt search --resume {out}`, or choose another --out)")
    if out.exists() and any(out.iterdir()):
        raise RunDirError(f"--out {out}: directory is not empty and is not a nasmt run")


def init_ray(address: str | None) -> None:
    import ray

    # Tune's settings, read when a search starts: set them also where this process joined
    # Ray before (a program that called ray.init itself, a second search in one process)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # a failed trial's last result carries FAILED_KEY and no objectives (the schedulers skip
    # it; the searcher and the record callback read the key): Tune's check that every result
    # holds the searcher's metrics would take it for a bug
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    if ray.is_initialized():
        return
    kw = dict(logging_level=logging.ERROR, log_to_driver=False, configure_logging=True)
    # every trial failure is printed once, as one line, by the record callback (its
    # traceback is in trials/NNNNN/error.json): Tune's own per-failure tracebacks go
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    if not address:
        # "local": always a fresh cluster of our own, never one named by RAY_ADDRESS or a
        # (possibly stale) `ray_current_cluster` file in Ray's temp folder
        ray.init(address="local", include_dashboard=False, **kw)
        return
    try:
        ray.init(address=address, **kw)
    except (ConnectionError, RuntimeError, ValueError) as e:
        hint = ""
        if not os.environ.get("RAY_AUTH_MODE"):
            # Ray >= 2.59 starts clusters with token authentication; a driver given an
            # explicit address only sends the token when RAY_AUTH_MODE=token is set.
            hint = "; if the cluster uses token authentication, set RAY_AUTH_MODE=token (and RAY_AUTH_TOKEN), or use --address auto on a cluster node"
        raise ResourceError(f"--address {address}: cannot join the Ray cluster ({str(e).splitlines()[0]}){hint}") from None


def check_resources(cfg: SearchConfig) -> int:
    """Fail clearly instead of leaving trials PENDING forever; returns max concurrency."""
    import ray

    res = ray.cluster_resources()
    cpus, gpus = res.get("CPU", 0.0), res.get("GPU", 0.0)
    if cfg.gpus_per_trial > 0 and gpus <= 0:
        raise ResourceError(
            f"--gpus-per-trial {cfg.gpus_per_trial:g}: the Ray cluster has no GPU "
            f"(resources: {cpus:g} CPU, 0 GPU); drop the flag to run on CPUs"
        )
    if cfg.gpus_per_trial > gpus:
        raise ResourceError(f"--gpus-per-trial {cfg.gpus_per_trial:g}: the cluster has only {gpus:g} GPU(s)")
    if cfg.cpus_per_trial > cpus:
        raise ResourceError(f"--cpus-per-trial {cfg.cpus_per_trial:g}: the cluster has only {cpus:g} CPU(s)")
    conc = int(cpus // cfg.cpus_per_trial)
    if cfg.gpus_per_trial > 0:
        conc = min(conc, int(gpus // cfg.gpus_per_trial + 1e-9))
    if cfg.max_concurrent:
        conc = min(conc, cfg.max_concurrent)
    return max(1, conc)


def run_record(cfg: SearchConfig, grammar, suite, objectives) -> dict:
    """run.json: everything needed to read, resume or reproduce the run."""
    return {
        "nasmt_run": 1,
        "config": {**asdict(cfg), "space": str(Path(cfg.space).resolve()), "tasks": str(Path(cfg.tasks).resolve())},
        "grammar": {"file": grammar.file, "name": grammar.name, "text": grammar.text},
        "suite": suite.to_dict(),
        "suite_file": suite.file,
        "objectives": [o.to_json() for o in objectives],
        "created_at": time.time(),
        "python": sys.version.split()[0],
    }


class CapacityStopper(Stopper):
    """Ends the search when the cluster can no longer run a single trial (its nodes
    died), instead of leaving the remaining trials PENDING forever."""

    CHECK_EVERY_S = 2.0  # the cluster's resources are asked at most this often

    def __init__(self, cpus: float, gpus: float):
        self.cpus, self.gpus = cpus, gpus
        self.lost: str | None = None
        self._next = 0.0

    def __call__(self, trial_id, result) -> bool:
        return False

    def stop_all(self) -> bool:
        import ray

        if self.lost is None and time.monotonic() >= self._next:
            self._next = time.monotonic() + self.CHECK_EVERY_S
            res = ray.cluster_resources()
            cpu, gpu = res.get("CPU", 0.0), res.get("GPU", 0.0)
            if cpu < self.cpus or gpu < self.gpus:
                self.lost = (f"the Ray cluster has no capacity left for a trial ({cpu:g} CPU, {gpu:g} GPU; "
                             f"a trial needs {self.cpus:g} CPU, {self.gpus:g} GPU): a node died")
        return self.lost is not None


def _say(quiet: bool):
    return (lambda msg: None) if quiet else (lambda msg: print(msg, flush=True))


def start_run(cfg: SearchConfig, out: Path, grammar, suite, objectives, resume: bool) -> int:
    """Join or start Ray, check the resources (returns how many trials fit at once) and,
    for a new run, create the run directory, take its driver lock and write run.json."""
    init_ray(cfg.address)
    conc = check_resources(cfg)
    if not resume:
        ensure_dir(out)
        hold_run_lock(out)  # released by the kernel when this driver dies; resume checks it
        atomic_write_json(out / RUN_FILE, run_record(cfg, grammar, suite, objectives))
    else:
        run = load_run(out)
        if run["config"].get("address") != cfg.address:  # resume --address: the run lives on that cluster now
            atomic_write_json(out / RUN_FILE, {**run, "config": {**run["config"], "address": cfg.address}})
    return conc


def run_trials(cfg: SearchConfig, resume: bool = False, done: int = 0, failed: int = 0) -> Path:
    """A search of trials trained on their own (`nasmt.search.entry.run_search` checked the
    run directory, or prepared the resume and counted `done` / `failed`)."""
    out = Path(cfg.out)
    say = _say(cfg.quiet)
    grammar, suite, objectives, data = prepare(cfg)
    target = cfg.trials
    if done >= target:
        say(f"{out}: already has {done} complete trials of {target}; nothing to do")
        return out
    if failed >= cfg.max_failures:
        say(f"{out}: stopped earlier after {failed} failed trials (--max-failures {cfg.max_failures}); nothing to do")
        return out
    conc = start_run(cfg, out, grammar, suite, objectives, resume)
    seeds = ([], []) if resume else _warm_start(cfg, grammar, suite, objectives, data)
    sink = start_sink(out)
    capacity, tuner = _tuner(cfg, out, grammar, suite, objectives, data, conc, done, failed, say, seeds, sink)
    say(f"nasmt search: {target - done} trial(s) of {suite.name} over {grammar.name}, "
        f"{conc} at a time, objectives {', '.join(o.name + ':' + o.direction for o in objectives)}")
    t0 = time.time()
    try:
        tuner.fit()
    finally:  # a process that runs several searches keeps no idle sink actors
        import ray

        ray.kill(sink)
    _summary(cfg, out, objectives, time.time() - t0, say)
    if cfg.final_epochs and not capacity.lost:
        from nasmt.search.finalize import finalize_run

        finalize_run(out, cfg.final_epochs, say=say)
    if capacity.lost:
        say(f"stopped: {capacity.lost}; continue with `nasmt search --resume {out}` once the cluster has capacity again")
    return out


def tune_storage(cfg: SearchConfig, out: Path) -> str:
    """Where Ray Tune keeps its own files: --storage (a path or a pyarrow URI such as
    s3://bucket/prefix), else RUN/ray. nasmt's records never depend on it."""
    if not cfg.storage:
        return str(out / "ray")
    return cfg.storage if "://" in cfg.storage else str(Path(cfg.storage).resolve())


def _list_sessions(storage: str):
    """Earlier Tune sessions of this run (tune-1, tune-2, ...) in the storage."""
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(storage if "://" in storage else f"file://{storage}")
    try:
        infos = fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
    except (OSError, ValueError):
        return []
    return [i for i in infos if i.base_name.startswith("tune-")]


def _warm_start(cfg: SearchConfig, grammar, suite, objectives, data) -> tuple[list, list[dict]]:
    """(completed trials, genomes to evaluate first): --warm-start runs, then --enqueue files."""
    from nasmt.search.warm import enqueued_genomes, warm_trials

    budgets = {"max_bytes": cfg.max_bytes, "max_latency_ms": cfg.max_latency_ms}
    add, genomes = warm_trials(cfg.warm_start, grammar, suite, objectives=objectives, data=data, budgets=budgets)
    prior = []
    if cfg.affinity:  # the measured task grouping as the prior of the first trials; its heatmap goes in the report
        from nasmt.run import AFFINITY_FILE, atomic_write_bytes
        from nasmt.search.affinity import affinity_genomes

        prior, _ = affinity_genomes(cfg.affinity, grammar, suite, data, cfg.trials, cfg.seed)
        atomic_write_bytes(Path(cfg.out) / AFFINITY_FILE, (Path(cfg.affinity) / AFFINITY_FILE).read_bytes())
    return add, enqueued_genomes(cfg.enqueue, grammar, suite, data) + prior + genomes


def _tuner(cfg, out: Path, grammar, suite, objectives, data, conc: int, done: int, failed: int, say, seeds, sink):
    from ray import tune

    space = functools.partial(define_space, grammar_text=grammar.text, grammar_file=grammar.file,
                              tasks=tuple(t.ident for t in suite.tasks), input_shape=tuple(data.input_shape),
                              n_outputs=dict(data.n_outputs), columns=tuple(data.columns))
    storage = tune_storage(cfg, out)
    session = 1 + sum(1 for p in _list_sessions(storage))
    sampler = make_sampler(cfg.sampler_name, cfg.seed + RESUME_SEED_STRIDE * (session - 1), cfg.trials, cfg.max_bytes,
                           cfg.max_latency_ms)
    adapter = StudyAdapter(out, objectives, sampler, space)
    adapter.seed(*seeds)
    searcher = NasmtSearcher(adapter, cfg.trials, cfg.max_failures, done, failed)
    ctx = TrialContext.from_config(cfg, grammar, suite, objectives, sink=sink)
    trainable = tune.with_resources(tune.with_parameters(run_trial, ctx=ctx),
                                    {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial})
    scheduler = make_scheduler(cfg, objectives)
    capacity = CapacityStopper(cfg.cpus_per_trial, cfg.gpus_per_trial)
    return capacity, tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler,
            # the searcher ends the run (target complete or max failures); trials an early-stop
            # scheduler stops count as neither, so then Tune must not cap the trial count
            num_samples=-1 if scheduler is not None else (cfg.trials - done) + (cfg.max_failures - failed) + 1,
            max_concurrent_trials=conc, reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=f"tune-{session}", storage_path=storage, verbose=0, stop=capacity,
            callbacks=[RecordCallback(out, objectives, cfg.trials, done, say, searcher=searcher)],
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),
        ),
    )


def _summary(cfg: SearchConfig, out: Path, objectives, seconds: float, say) -> None:
    trials = read_trials(out)
    n = count_status(trials)
    n_counted = sum(1 for t in trials if t.counts_as_failure)
    front = pareto_trials(trials, objectives)
    say(f"done in {seconds:.0f} s: {n[TrialStatus.COMPLETE]} complete, {n[TrialStatus.FAILED]} failed; Pareto front: trials "
        + ", ".join(str(t.number) for t in front))
    if n_counted >= cfg.max_failures:
        say(f"stopped: {n_counted} trials failed (--max-failures {cfg.max_failures})")
    if cfg.wants_latency(objectives) and n[TrialStatus.COMPLETE]:
        from nasmt.search.measure import measure_front

        e = measure_front(out, objectives, say=say)["predictor_error"]
        if e["n"]:
            say(f"latency predictor vs measured on the Pareto set: median {100 * e['median_rel_error']:.1f}%, "
                f"worst {100 * e['worst_rel_error']:.1f}% relative error")
    say(f"run directory: {out}")
