"""One trial, the Ray Tune trainable: derive -> build -> train -> evaluate -> record.

The trial sends `trials/NNNNN/{spec.json, weights.safetensors, result.json}` (or
`error.json` with the reason and traceback) through Ray to the driver's sink
(`nasmt.search.sink`), which writes them atomically *before* the trial reports, so a
finished trial survives a driver crash and no node needs the driver's disk; the
driver's callback turns it into the record in trials.jsonl. A worker keeps its dataset loaded between trials (`reuse_actors`)."""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import replace

from nasmt.errors import TrialError
from nasmt.run import ERROR_FILE, RESULT_FILE, SPEC_FILE, WEIGHTS_FILE, TrialRecord, TrialStatus
from nasmt.run.files import json_default
from nasmt.search.config import FAILED_KEY, NUMBER_KEY
from nasmt.search.context import TrialContext
from nasmt.search.space import grammar_of
from nasmt.train import TrainHook


class _EpochReport(TrainHook):
    """Early stopping: report validation metrics to the scheduler after each epoch but
    the last. They are the metrics the trial will be ranked on: the network as deployed
    (`deployed_metrics`: its quantization policy simulated, calibrated afresh at each
    rung; only the optional QAT fine-tuning is left for the end), so a scheduler prunes
    on the quantity the search optimizes, and a stopped trial's recorded metrics are the
    same kind as a complete one's. Every objective is in every report (Tune checks), NaN
    where only known at the end (measured latency)."""

    def __init__(self, model, spec, ctx: TrialContext, data, static: dict, last_epoch: int):
        self.model, self.spec, self.ctx, self.data = model, spec, ctx, data
        self.static, self.last = static, last_epoch

    def metrics(self) -> dict:
        rep = {**deployed_metrics(self.model, self.spec, self.ctx, self.data), **self.static}
        rep.update({k: float("nan") for k in self.ctx.objectives if k not in rep})
        return rep

    def on_epoch(self, epoch, loss):
        from ray import tune

        if epoch >= self.last:
            return
        tune.report({**self.metrics(), "epoch": epoch, "final": False})


def deployed_metrics(model, spec, ctx: TrialContext, data) -> dict:
    """Validation metrics of the network as deployed: under its quantization policy's
    simulation (activation ranges calibrated on the fixed calibration slice), or plain
    fp32 when the policy is fp32 throughout."""
    from nasmt import quant as Q
    from nasmt.train import evaluate

    if Q.is_fp32(spec):
        return evaluate(model, ctx.suite, data, "val", ctx.device)
    with Q.simulate(model, spec, Q.calib_batch(data, ctx.device)):
        return evaluate(model, ctx.suite, data, "val", ctx.device)


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, default=json_default) + "\n").encode("utf-8")


def send_files(ctx: TrialContext, number: int, files: dict[str, bytes]) -> None:
    """Hand files to the driver's sink (through Ray: no shared filesystem needed) and
    wait until they are on the driver's disk."""
    import ray

    ray.get(ctx.sink.write.remote(number, files))


def run_trial(config: dict, ctx: TrialContext) -> None:
    """The trainable (module level, so Ray can import it on any worker)."""
    import torch
    from ray import tune

    torch.set_num_threads(ctx.threads)
    t_start = time.time()
    number = int(config[NUMBER_KEY])
    genome = {k: v for k, v in config.items() if k != NUMBER_KEY}
    spec, poisoned = None, False
    try:
        from nasmt.data import load_data_cached
        from nasmt.space.derive import replay

        data = load_data_cached(ctx.suite)
        t_data = time.time()
        spec = replay(grammar_of(ctx.grammar_text, ctx.grammar_file), genome, ctx.suite.tasks, data.input_shape,
                      data.n_outputs, data.columns)
        send_files(ctx, number, {SPEC_FILE: _json_bytes(spec.to_json())})
        rec, weights = _train_and_measure(ctx, number, spec, data)
        rec = replace(rec, timings={**rec.timings, "data_s": t_data - t_start, "total_s": time.time() - t_start})
        send_files(ctx, number, {WEIGHTS_FILE: weights, RESULT_FILE: _json_bytes(rec.to_json())})
    except BaseException as e:  # record why, then end the trial as failed (FAILED_KEY)
        if isinstance(e, (KeyboardInterrupt, SystemExit)):  # SystemExit: Tune stopping the trial (early stop)
            raise
        rec = TrialRecord(
            number=number, status=TrialStatus.FAILED, spec=spec.to_json() if spec is not None else None,
            error=failure_reason(e), error_type=type(e).__name__, traceback=traceback.format_exc(limit=8),
            finished_at=time.time(), timings={"total_s": time.time() - t_start},
        )
        poisoned = poisons_worker(e)
    if rec.status == TrialStatus.FAILED:  # out of the except block: its traceback (the model, tensors) is gone
        send_files(ctx, number, {ERROR_FILE: _json_bytes(rec.to_json())})  # if this fails, Tune errors the trial
        if poisoned:  # a Tune error: Tune replaces this worker (the record is error.json's all the same)
            raise TrialError(f"{rec.error} (this worker's device context is unusable: Tune starts another)")
        _release_memory()
        tune.report({FAILED_KEY: True, "final": True})  # no metrics: the schedulers skip it
        return
    tune.report({**rec.metrics, "final": True})


def poisons_worker(e: BaseException) -> bool:
    """A failure after which this process must not train again: a CUDA error other than
    running out of memory (a device-side assert, an illegal memory access) leaves the
    device context unusable, and every later trial in the process would fail too."""
    import torch

    if isinstance(e, torch.OutOfMemoryError):  # recoverable: the allocator's cache is emptied
        return False
    if isinstance(e, getattr(torch, "AcceleratorError", ())):
        return True
    text = str(e)
    return any(s in text for s in ("CUDA error", "device-side assert", "CUBLAS_STATUS_", "CUDNN_STATUS_",
                                   "NCCL error"))


def _release_memory() -> None:
    """After a failure, before this worker's next trial: free what the failed one held
    (a CUDA out-of-memory error leaves the allocator's cache full)."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _train_and_measure(ctx: TrialContext, number: int, spec, data) -> tuple[TrialRecord, bytes]:
    """Build, train, evaluate and cost one architecture: (its record, its weights)."""
    import math

    import torch
    from safetensors.torch import save

    from nasmt.model.build import build
    from nasmt.model.cost import cost
    from nasmt.search.faults import inject
    from nasmt.train import TrainConfig, train

    seed = ctx.trial_seed(number)
    torch.manual_seed(seed)
    model = build(spec)
    c = cost(model, spec.input_shape)
    hooks = inject(ctx.fault, number, model)
    settings = {"lr": ctx.lr, "batch_size": ctx.batch_size, **spec.train_overrides()}  # the grammar's train rule wins
    tc = TrainConfig(epochs=ctx.epochs, steps=ctx.steps, seed=seed,
                     device=ctx.device, time_limit_s=ctx.trial_timeout, **settings)
    static = static_costs(model, spec, c, ctx)  # once per trial: early-stop reports and the record share it
    if ctx.early_stop:
        hooks.append(_EpochReport(model, spec, ctx, data, static, last_epoch=math.ceil(tc.epochs)))
    tr = train(model, ctx.suite, data, tc, hooks=hooks)
    t_eval = time.time()
    metrics = trained_metrics(model, spec, ctx, data, seed, tc.lr, c, static)
    model.cpu()
    weights = save({k: v.contiguous() for k, v in model.state_dict().items()})
    rec = TrialRecord(
        number=number, status=TrialStatus.COMPLETE, spec=spec.to_json(), metrics=metrics,
        train={"steps": tr["steps"], "epochs": tr["epochs"], "final_loss": tr["loss"], "device": ctx.device,
               "threads": torch.get_num_threads(), "lr": tc.lr, "weight_decay": tc.weight_decay,
               "balance": tr.get("balance", "equal"), "task_weights": tr.get("task_weights"),
               **{k: v for k, v in (("batch_size", tc.batch_size), ("best_epoch", tr.get("best_epoch"))) if v}},
        # backward_s: time in the loss balancer's backward (per-task-gradient methods pay extra passes here)
        timings={"train_s": tr["train_time_s"], "backward_s": tr.get("backward_s"), "eval_s": time.time() - t_eval},
        finished_at=time.time(),
    )
    return rec, weights


def trained_metrics(model, spec, ctx: TrialContext, data, seed: int, lr: float, c: dict | None = None,
                    static: dict | None = None) -> dict:
    """The record's metrics of a trained network (a trial's, or a one-shot candidate's with
    inherited weights): validation metrics as deployed (`quant_metrics`: under the
    quantization policy, after QAT when `ctx.qat_steps`), the `static_costs`, feasibility,
    the sharing family and balancing method (the report's colouring) and each task's path
    params / FLOPs. `c` (`cost(model, spec.input_shape)`) and `static` when known already."""
    from nasmt import quant as Q
    from nasmt.model.cost import cost
    from nasmt.train import evaluate

    c = c if c is not None else cost(model, spec.input_shape)
    static = static if static is not None else static_costs(model, spec, c, ctx)
    model.eval()  # as `evaluate` leaves it, whichever branch runs
    # fp32 validation metrics only for an fp32 policy: a quantized one's are replaced by
    # quant_metrics' simulated ones (same keys)
    metrics = evaluate(model, ctx.suite, data, "val", ctx.device) if Q.is_fp32(spec) else {}
    metrics.update(static)
    metrics.update(quant_metrics(model, spec, data, ctx, seed, static, lr))
    metrics["sharing"] = spec.sharing  # the sharing family and balancing method, for the report's colouring
    metrics["balance"] = spec.balance
    for t, tc_ in c["tasks"].items():
        metrics[f"{t}.path_params"] = tc_["path_params"]
        metrics[f"{t}.path_flops"] = tc_["path_flops"]
    return metrics


def static_costs(model, spec, c: dict, ctx: TrialContext) -> dict:
    """Costs known before training, from the architecture alone (they count from a
    scheduler's first rung): params, FLOPs, exact size_bytes, predicted latency."""
    from nasmt import quant as Q

    out = {"params": c["params"], "flops": c["flops"], "size_bytes": Q.size_bytes(model, spec)}
    if ctx.predict_latency:
        out["predicted_latency_ms"] = Q.predicted_latency_ms(spec, ctx.latency_batch)
    return out


def quant_metrics(model, spec, data, ctx: TrialContext, seed: int, static: dict, lr: float) -> dict:
    """The network as deployed: for a quantized policy, optional QAT, calibration and
    validation metrics under simulation (they replace the fp32 ones); measured latency
    when asked; budget feasibility over these and the `static` costs."""
    from nasmt import quant as Q
    from nasmt.train import evaluate

    m: dict = {}
    calib = Q.calib_batch(data, ctx.device)
    act = None  # activation scales: calibrated once, reused for the latency artifact
    if not Q.is_fp32(spec):
        if ctx.qat_steps:
            m.update(Q.qat(model, spec, ctx.suite, data, ctx.qat_steps, lr=lr * QAT_LR_FACTOR,
                           batch_size=ctx.batch_size, seed=seed, device=ctx.device))
        with Q.simulate(model, spec, calib) as act:
            m.update(evaluate(model, ctx.suite, data, "val", ctx.device))
    m["quant_policy"] = Q.policy_summary(spec)
    if ctx.measure_latency:
        m["latency_ms"] = Q.model_latency(model.cpu(), spec, calib.cpu(), ctx.latency_batch, act=act)
        m["latency_source"] = "measured"
    m["latency_batch"] = ctx.latency_batch
    m["feasible"] = Q.feasible({**static, **m}, ctx.max_bytes, ctx.max_latency_ms)
    return m


QAT_LR_FACTOR = 0.1  # QAT fine-tunes a trained network: a tenth of the training learning rate


def failure_reason(e: BaseException) -> str:
    """One line: why the trial failed."""
    import torch

    if isinstance(e, torch.OutOfMemoryError):
        return f"out of memory: {str(e).splitlines()[0]}"
    if isinstance(e, TrialError):
        return str(e)
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".strip()
