"""Ray Tune + OptunaSearch wiring: one trial = derive, build, train, evaluate, record.

The driver validates everything (grammar, suite, objectives, resources) before it
touches the run directory. Optuna (define-by-run over the grammar, journal storage in
the run directory) proposes genomes; Ray Tune runs trials with `reuse_actors=True`, so a
worker process loads the dataset once and only the architecture changes per trial.
Each trial writes `trials/NNNNN/{spec.json,weights.safetensors,result.json}` itself, and
the driver appends its record to `trials.jsonl` as it finishes.

`--trials N` asks for N complete trials: a failed trial is replaced, until
`--max-failures` failures stop the search cleanly.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nasmt.errors import ResourceError, RunDirError, TrialError, UserError
from nasmt.run import (
    JOURNAL_FILE,
    RUN_FILE,
    TRIALS_FILE,
    Objective,
    append_jsonl,
    atomic_write_json,
    is_run_dir,
    read_trials,
    pareto_trials,
    parse_objectives,
)

SAMPLERS = ("tpe", "nsga2", "random")
STUDY_NAME = "nasmt"
NUMBER_KEY = "nasmt_number"  # config key carrying the Optuna trial number


@dataclass
class SearchConfig:
    space: str
    tasks: str
    out: str
    objectives: str = "mean_error,params"
    trials: int = 16
    sampler: str = "tpe"
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
    early_stop: bool = False
    fault: str | None = None  # fault injection for tests: KIND@NUMBER[,KIND@NUMBER...]
    quiet: bool = False
    max_bytes: int | None = None  # hard budget on size_bytes (Optuna constraint)
    max_latency_ms: float | None = None  # hard budget on latency (measured, else predicted)
    latency_batch: int = 1  # batch size of latency measurement / prediction
    qat_steps: int = 0  # quantization-aware fine-tune steps after training (quantized policies)
    measure_latency: bool = False  # measure the artifact's latency in every trial


# ----------------------------------------------------------------------------- define-by-run

_GRAMMARS: dict = {}


def _grammar(text: str, file: str):
    from nasmt.space.grammar import parse_grammar

    key = (text, file)
    if key not in _GRAMMARS:
        _GRAMMARS[key] = parse_grammar(text, file=file)
    return _GRAMMARS[key]


def define_space(trial, grammar_text: str, grammar_file: str, tasks: tuple, input_shape: tuple, n_outputs: dict):
    """Optuna define-by-run hook (module level, so Ray can pickle it via functools.partial)."""
    from nasmt.space.derive import derive

    derive(_grammar(grammar_text, grammar_file), trial, tasks, input_shape, n_outputs)
    return {NUMBER_KEY: trial.number}


# ----------------------------------------------------------------------------- the trial


def _faults(spec: str | None) -> dict[int, str]:
    out = {}
    for part in (spec or "").split(","):
        if part.strip():
            kind, _, num = part.partition("@")
            out[int(num)] = kind.strip()
    return out


FAULT_KINDS = ("exception", "nan", "oom", "timeout")


def _inject(kind: str, model):
    """Deliberate faults for tests (--inject-fault); each mimics the real failure."""
    import torch

    if kind == "exception":
        raise RuntimeError("injected fault: exception in the trainable")
    if kind == "oom":
        raise torch.OutOfMemoryError("injected fault: CUDA out of memory. Tried to allocate 64.00 GiB")
    if kind == "nan":
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float("nan"))


def run_trial(config: dict, ctx: dict) -> None:
    """The Ray Tune trainable: derive -> build -> train -> evaluate -> record -> report."""
    import torch
    from ray import tune

    from nasmt.model.build import build, cost
    from nasmt.data import load_data_cached
    from nasmt.space.derive import replay
    from nasmt.run import atomic_write_json as write_json
    from nasmt.train import TrainConfig, evaluate, train

    torch.set_num_threads(max(1, int(ctx["threads"])))
    t_start = time.time()
    number = int(config[NUMBER_KEY])
    genome = {k: v for k, v in config.items() if k != NUMBER_KEY}
    suite = ctx["suite"]
    tdir = Path(ctx["run_dir"]) / "trials" / f"{number:05d}"
    tdir.mkdir(parents=True, exist_ok=True)
    spec = None
    try:
        device = "cuda" if ctx["gpus_per_trial"] > 0 else "cpu"
        data = load_data_cached(suite)
        t_data = time.time()
        grammar = _grammar(ctx["grammar_text"], ctx["grammar_file"])
        spec = replay(grammar, genome, suite.tasks, data.input_shape, data.n_outputs)
        write_json(tdir / "spec.json", spec.to_json())
        seed = ctx["seed"] * 100003 + number
        torch.manual_seed(seed)
        model = build(spec)
        c = cost(model, spec.input_shape)
        fault = _faults(ctx.get("fault")).get(number)
        if fault == "timeout":
            time_limit = 0.0
        else:
            time_limit = ctx["trial_timeout"]
        if fault in ("exception", "oom", "nan"):
            _inject(fault, model)
        tc = TrainConfig(
            epochs=ctx["epochs"], steps=ctx["steps"], batch_size=ctx["batch_size"], lr=ctx["lr"],
            seed=seed, device=device, time_limit_s=time_limit,
        )
        on_epoch = None
        if ctx["early_stop"]:
            def on_epoch(epoch, loss):
                if epoch < math.ceil(tc.epochs):
                    val = evaluate(model, suite, data, "val", device)
                    model.train()
                    # every objective must be in every report (Tune's strict metric check);
                    # ones only known at the end are NaN here (ASHA reads mean_error only)
                    rep = {**val, "params": c["params"], "flops": c["flops"]}
                    rep.update({k: float("nan") for k in ctx.get("objectives", ()) if k not in rep})
                    tune.report({**rep, "epoch": epoch, "final": False})
        tr = train(model, suite, data, tc, on_epoch=on_epoch)
        t_eval = time.time()
        metrics = evaluate(model, suite, data, "val", device)
        metrics["params"] = c["params"]
        metrics["flops"] = c["flops"]
        metrics.update(_quant_metrics(model, spec, suite, data, ctx, seed, device))
        for t, tc_ in c["tasks"].items():
            metrics[f"{t}.path_params"] = tc_["path_params"]
            metrics[f"{t}.path_flops"] = tc_["path_flops"]
        from safetensors.torch import save_file

        model.cpu()
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tdir / "weights.safetensors"))
        timings = {
            "data_s": t_data - t_start,
            "train_s": tr["train_time_s"],
            "eval_s": time.time() - t_eval,
            "total_s": time.time() - t_start,
        }
        result = {
            "number": number,
            "status": "complete",
            "spec": spec.to_json(),
            "metrics": metrics,
            "train": {"steps": tr["steps"], "epochs": tr["epochs"], "final_loss": tr["loss"]},
            "timings": timings,
            "error": None,
            "finished_at": time.time(),
        }
        write_json(tdir / "result.json", result)
    except BaseException as e:  # record why, then let Tune mark the trial as errored
        if isinstance(e, (KeyboardInterrupt, SystemExit)):  # SystemExit: Tune stopping the trial (early stop)
            raise
        reason = _reason(e)
        write_json(
            tdir / "error.json",
            {
                "number": number,
                "status": "failed",
                "spec": spec.to_json() if spec is not None else None,
                "error": reason,
                "error_type": type(e).__name__,
                "traceback": traceback.format_exc(limit=8),
                "finished_at": time.time(),
                "timings": {"total_s": time.time() - t_start},
            },
        )
        raise
    tune.report({**metrics, "final": True})


def _wants_latency(cfg, objectives) -> bool:
    """Latency is an objective or a budget: predict it in trials, measure the Pareto set."""
    return cfg.max_latency_ms is not None or cfg.measure_latency or any("latency" in o.name for o in objectives)


def _quant_metrics(model, spec, suite, data, ctx, seed, device) -> dict:
    """The network as deployed: for a quantized policy, optional QAT, calibration and
    validation metrics under simulation (they replace the fp32 ones); exact size_bytes
    of the artifact; predicted (and optionally measured) latency; budget feasibility."""
    from nasmt import quant as Q
    from nasmt.train import evaluate

    m: dict = {}
    calib = Q.calib_batch(data, device)
    act = None  # activation scales: calibrated once, reused for the latency artifact
    if not Q.is_fp32(spec):
        if ctx.get("qat_steps"):
            m.update(Q.qat(model, spec, suite, data, ctx["qat_steps"], lr=ctx["lr"] * 0.1,
                           batch_size=ctx["batch_size"], seed=seed, device=device))
        with Q.simulate(model, spec, calib) as act:
            m.update(evaluate(model, suite, data, "val", device))
    m["quant_policy"] = Q.policy_summary(spec)
    m["size_bytes"] = Q.size_bytes(model, spec)
    batch = int(ctx.get("latency_batch") or 1)
    if ctx.get("predict_latency"):
        m["predicted_latency_ms"] = Q.predicted_latency_ms(spec, batch)
    if ctx.get("measure_latency"):
        m["latency_ms"] = Q.model_latency(model.cpu(), spec, calib.cpu(), batch, act=act)
        m["latency_source"] = "measured"
    m["feasible"] = Q.feasible(m, ctx.get("max_bytes"), ctx.get("max_latency_ms"))
    return m


def _reason(e: BaseException) -> str:
    import torch

    if isinstance(e, torch.OutOfMemoryError):
        return f"out of memory: {str(e).splitlines()[0]}"
    if isinstance(e, TrialError):
        return str(e)
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".strip()


# ----------------------------------------------------------------------------- searcher


def _make_searcher(space, objectives: list[Objective], sampler, storage, target: int, max_failures: int, done: int, failed: int):
    from ray.tune.search import Searcher
    from ray.tune.search.optuna import OptunaSearch

    class NasmtSearch(OptunaSearch):
        """OptunaSearch that stops proposing once `target` trials completed (failed
        ones are replaced up to `max_failures`) and never tells Optuna that a trial
        stopped early is complete."""

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.n_complete, self.n_failed, self.in_flight = done, failed, set()

        def suggest(self, trial_id):
            if self.n_complete >= target or self.n_failed >= max_failures:
                return Searcher.FINISHED  # final: Tune asks no more
            if self.n_complete + len(self.in_flight) >= target:
                return None  # not now: a trial in flight may still fail or be stopped early
            cfg = super().suggest(trial_id)
            if cfg is not None:
                self.in_flight.add(trial_id)
            return cfg

        def on_trial_complete(self, trial_id, result=None, error=False):
            self.in_flight.discard(trial_id)
            ot_trial = self._ot_trials.get(trial_id)
            if error or not result or not result.get("final"):
                if error:
                    self.n_failed += 1
                if ot_trial is not None and trial_id not in self._completed_trials:
                    from optuna.trial import TrialState

                    state = TrialState.FAIL if error else TrialState.PRUNED
                    try:
                        self._ot_study.tell(ot_trial, None, state=state)
                    except Exception:  # already finished in the journal
                        pass
                    self._completed_trials.add(trial_id)
                return
            self.n_complete += 1
            if ot_trial is not None:
                from nasmt.quant import COSTS_ATTR

                costs = {k: result[k] for k in ("size_bytes", "latency_ms", "predicted_latency_ms") if k in result}
                ot_trial.set_user_attr(COSTS_ATTR, costs)
            super().on_trial_complete(trial_id, result=result, error=False)

    return NasmtSearch(
        space=space,
        metric=[o.name for o in objectives],
        mode=[o.direction for o in objectives],
        sampler=sampler,
        storage=storage,
        study_name=STUDY_NAME,
    )


def make_sampler(name: str, seed: int, trials: int, max_bytes=None, max_latency_ms=None):
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # Ray warns when the define-by-run hook takes > 1 s; TPE's multivariate model on a
    # loaded machine can, and the hook only derives (no training), so the hint is moot.
    warnings.filterwarnings("ignore", message="Define-by-run function passed in the `space` argument took")
    cons = None
    if max_bytes is not None or max_latency_ms is not None:
        from nasmt.quant import constraints_func

        cons = functools.partial(constraints_func, max_bytes=max_bytes, max_latency_ms=max_latency_ms)
        # Optuna 5 deprecates constraints_func (in favour of Trial.set_constraint) but still honours it
        warnings.filterwarnings("ignore", message=".*constraints_func.*", category=FutureWarning)

    if name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, constant_liar=True,
            n_startup_trials=max(4, min(10, trials // 3)), constraints_func=cons,
        )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, trials // 3)), constraints_func=cons)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UserError(f"--sampler: unknown sampler {name!r} (choose {', '.join(SAMPLERS)})")


def journal_storage(run_dir: Path):
    import optuna

    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(run_dir / JOURNAL_FILE)))


# ----------------------------------------------------------------------------- driver


class _Printer:
    def __init__(self, quiet: bool):
        self.quiet = quiet

    def __call__(self, msg: str):
        if not self.quiet:
            print(msg, flush=True)


def _record_callback(run_dir: Path, objectives: list[Objective], target: int, say, counts: dict):
    from ray.tune import Callback

    class Recorder(Callback):
        """Appends each finished trial to trials.jsonl and prints a progress line."""

        def _write(self, trial, status: str):
            number = trial.config.get(NUMBER_KEY)
            if number is None:
                return
            tdir = run_dir / "trials" / f"{int(number):05d}"
            rec = None
            src = tdir / ("result.json" if status == "complete" else "error.json")
            if src.exists():
                try:
                    rec = json.loads(src.read_text())
                except json.JSONDecodeError:
                    rec = None
            if status == "stopped":
                spec_file = tdir / "spec.json"
                rec = {
                    "number": int(number), "status": "stopped", "error": "stopped early by the scheduler",
                    "spec": json.loads(spec_file.read_text()) if spec_file.exists() else None,
                    "metrics": {k: v for k, v in (trial.last_result or {}).items() if k in ("mean_error", "epoch")},
                }
            if rec is None:
                err = "trial failed before it could record a reason"
                if trial.error_file and os.path.exists(trial.error_file):
                    lines = [l for l in open(trial.error_file, errors="replace").read().splitlines() if l.strip()]
                    err = lines[-1][:500] if lines else err
                rec = {"number": int(number), "status": "failed", "error": err, "spec": None}
            rec["status"] = status
            rec["trial_id"] = trial.trial_id
            append_jsonl(run_dir / TRIALS_FILE, rec)
            counts[status] = counts.get(status, 0) + 1
            if status == "complete":
                m = rec["metrics"]
                objs = "  ".join(f"{o.name}={_fmt(m.get(o.name))}" for o in objectives)
                say(f"[{counts['complete']:>3}/{target}] trial {number:>3} complete  {objs}  ({rec['timings']['total_s']:.1f} s)")
            else:
                say(f"[{counts.get('complete', 0):>3}/{target}] trial {number:>3} {status}: {rec.get('error')}")

        def on_trial_complete(self, iteration, trials, trial, **info):
            final = bool((trial.last_result or {}).get("final"))
            self._write(trial, "complete" if final else "stopped")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._write(trial, "failed")

    return Recorder()


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def prepare(cfg: SearchConfig, resume: bool = False):
    """Validate every input; returns (grammar, suite, objectives, data). Touches nothing."""
    from nasmt.data import load_data_cached
    from nasmt.space.grammar import check_compatible, load_grammar
    from nasmt.data.suite import load_suite

    if cfg.trials < 1:
        raise UserError(f"--trials: must be at least 1 (got {cfg.trials})")
    if cfg.sampler not in SAMPLERS:
        raise UserError(f"--sampler: unknown sampler {cfg.sampler!r} (choose {', '.join(SAMPLERS)})")
    if cfg.steps is None and not cfg.epochs > 0:
        raise UserError(f"--epochs: must be positive (got {cfg.epochs})")
    if cfg.steps is not None and cfg.steps < 1:
        raise UserError(f"--steps: must be at least 1 (got {cfg.steps})")
    if cfg.gpus_per_trial < 0 or cfg.cpus_per_trial <= 0:
        raise UserError("--gpus-per-trial / --cpus-per-trial: must be positive")
    if cfg.batch_size < 1:
        raise UserError(f"--batch-size: must be at least 1 (got {cfg.batch_size})")
    if not cfg.lr > 0:
        raise UserError(f"--lr: must be positive (got {cfg.lr})")
    if cfg.trial_timeout is not None and not cfg.trial_timeout > 0:
        raise UserError(f"--trial-timeout: must be positive (got {cfg.trial_timeout})")
    if cfg.max_failures < 1:
        raise UserError(f"--max-failures: must be at least 1 (got {cfg.max_failures})")
    if cfg.max_bytes is not None and not cfg.max_bytes > 0:
        raise UserError(f"--max-bytes: must be positive (got {cfg.max_bytes})")
    if cfg.max_latency_ms is not None and not cfg.max_latency_ms > 0:
        raise UserError(f"--max-latency-ms: must be positive (got {cfg.max_latency_ms})")
    if cfg.latency_batch < 1:
        raise UserError(f"--latency-batch: must be at least 1 (got {cfg.latency_batch})")
    if cfg.qat_steps < 0:
        raise UserError(f"--qat-steps: must be 0 or more (got {cfg.qat_steps})")
    _faults_checked(cfg.fault)
    grammar = load_grammar(cfg.space)
    suite = load_suite(cfg.tasks)
    check_compatible(grammar, suite.is_image, suite.file)
    objectives = parse_objectives(cfg.objectives, suite)
    data = load_data_cached(suite)
    return grammar, suite, objectives, data


def _faults_checked(spec):
    try:
        f = _faults(spec)
    except ValueError:
        raise UserError(f"--inject-fault: expected KIND@TRIAL[,KIND@TRIAL] (got {spec!r})") from None
    for k in f.values():
        if k not in FAULT_KINDS:
            raise UserError(f"--inject-fault: unknown fault {k!r} (choose {', '.join(FAULT_KINDS)})")
    return f


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out}: exists and is not a directory")
    if is_run_dir(out):
        raise RunDirError(f"--out {out}: already holds a nasmt run (continue it with `nasmt search --resume {out}`, or choose another --out)")
    if out.exists() and any(out.iterdir()):
        raise RunDirError(f"--out {out}: directory is not empty and is not a nasmt run")


def _init_ray(cfg: SearchConfig):
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    kw = dict(logging_level=logging.ERROR, log_to_driver=False, configure_logging=True)
    if cfg.address:
        try:
            ray.init(address=cfg.address, **kw)
        except (ConnectionError, RuntimeError, ValueError) as e:
            hint = ""
            if not os.environ.get("RAY_AUTH_MODE"):
                # Ray >= 2.59 starts clusters with token authentication; a driver given an
                # explicit address only sends the token when RAY_AUTH_MODE=token is set.
                hint = "; if the cluster uses token authentication, set RAY_AUTH_MODE=token (and RAY_AUTH_TOKEN), or use --address auto on a cluster node"
            raise ResourceError(f"--address {cfg.address}: cannot join the Ray cluster ({str(e).splitlines()[0]}){hint}") from None
    else:
        ray.init(include_dashboard=False, **kw)


def _check_resources(cfg: SearchConfig) -> int:
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


def run_search(cfg: SearchConfig, resume: bool = False) -> Path:
    """Run (or continue) a search; returns the run directory."""
    out = Path(cfg.out).resolve()
    say = _Printer(cfg.quiet)
    if resume:
        from nasmt.search.resume import prepare_resume

        cfg, done, failed = prepare_resume(out, cfg)
    else:
        _check_out_dir(out)
        done, failed = 0, 0
    grammar, suite, objectives, data = prepare(cfg, resume)
    target = cfg.trials
    if done >= target:
        say(f"{out}: already has {done} complete trials of {target}; nothing to do")
        return out
    if failed >= cfg.max_failures:
        say(f"{out}: stopped earlier after {failed} failed trials (--max-failures {cfg.max_failures}); nothing to do")
        return out
    _init_ray(cfg)
    conc = _check_resources(cfg)
    if not resume:
        from nasmt.search.resume import hold_run_lock

        out.mkdir(parents=True, exist_ok=True)
        hold_run_lock(out)  # released by the kernel when this driver dies; resume checks it
        atomic_write_json(out / RUN_FILE, run_record(cfg, grammar, suite, objectives))
    import optuna
    from ray import tune

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = functools.partial(
        define_space,
        grammar_text=grammar.text,
        grammar_file=grammar.file,
        tasks=tuple(t.ident for t in suite.tasks),
        input_shape=tuple(data.input_shape),
        n_outputs=dict(data.n_outputs),
    )
    attempt = 1 + sum(1 for p in (out / "ray").glob("tune-*")) if (out / "ray").exists() else 1
    # A resumed session must not replay the first session's random proposals.
    searcher = _make_searcher(
        space, objectives, make_sampler(cfg.sampler, cfg.seed + 1000 * (attempt - 1), cfg.trials, cfg.max_bytes, cfg.max_latency_ms), journal_storage(out),
        target, cfg.max_failures, done, failed,
    )
    ctx = {
        "grammar_text": grammar.text,
        "grammar_file": grammar.file,
        "suite": suite,
        "run_dir": str(out),
        "threads": max(1, int(cfg.cpus_per_trial)),
        "gpus_per_trial": cfg.gpus_per_trial,
        "epochs": cfg.epochs,
        "steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "seed": cfg.seed,
        "trial_timeout": cfg.trial_timeout,
        "early_stop": cfg.early_stop,
        "objectives": [o.name for o in objectives],
        "fault": cfg.fault,
        "max_bytes": cfg.max_bytes,
        "max_latency_ms": cfg.max_latency_ms,
        "latency_batch": cfg.latency_batch,
        "qat_steps": cfg.qat_steps,
        "measure_latency": cfg.measure_latency or any(o.name == "latency_ms" for o in objectives),
        "predict_latency": _wants_latency(cfg, objectives),
    }
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, ctx=ctx), {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial}
    )
    scheduler = None
    if cfg.early_stop and cfg.steps is None and cfg.epochs >= 2:
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(
            metric="mean_error", mode="min", time_attr="training_iteration",
            max_t=int(math.ceil(cfg.epochs)), grace_period=1, reduction_factor=2,
        )
    counts = {"complete": done}
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            # NasmtSearch ends the run (target complete or max failures); trials an early-stop
            # scheduler stops count as neither, so then Tune must not cap the trial count
            num_samples=-1 if scheduler is not None else (target - done) + (cfg.max_failures - failed) + 1,
            max_concurrent_trials=conc,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=f"tune-{attempt}",
            storage_path=str(out / "ray"),
            verbose=0,
            callbacks=[_record_callback(out, objectives, target, say, counts)],
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),
        ),
    )
    say(f"nasmt search: {target - done} trial(s) of {suite.name} over {grammar.name}, "
        f"{conc} at a time, objectives {', '.join(o.name + ':' + o.direction for o in objectives)}")
    t0 = time.time()
    tuner.fit()
    trials = read_trials(out)
    n_ok = sum(1 for t in trials if t["status"] == "complete")
    n_fail = sum(1 for t in trials if t["status"] == "failed")
    n_counted = sum(1 for t in trials if t["status"] == "failed" and not t.get("interrupted"))
    front = pareto_trials(trials, objectives)
    say(f"done in {time.time() - t0:.0f} s: {n_ok} complete, {n_fail} failed; Pareto front: trials "
        + ", ".join(str(t["number"]) for t in front))
    if n_counted >= cfg.max_failures:
        say(f"stopped: {n_counted} trials failed (--max-failures {cfg.max_failures})")
    if _wants_latency(cfg, objectives) and n_ok:
        from nasmt.quant import measure_front

        lat = measure_front(out, objectives, say=say)
        e = lat["predictor_error"]
        if e["n"]:
            say(f"latency predictor vs measured on the Pareto set: median {100 * e['median_rel_error']:.1f}%, "
                f"worst {100 * e['worst_rel_error']:.1f}% relative error")
    say(f"run directory: {out}")
    return out


def run_record(cfg: SearchConfig, grammar, suite, objectives) -> dict:
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
