"""Phase 2 of the one-shot search: candidates scored with inherited weights, recorded like trials.

A candidate is a genome the sampler derived over the grammar, as for any trial. Its network
is `bank.inherited_model` (bank slices, BatchNorm statistics recalibrated on training
batches with the recorded `Recalibration`), and its record holds the same metrics a
complete trial records, computed by the same function (`nasmt.search.trial.trained_metrics`:
validation metrics as deployed under the quantization policy's simulation, the exact costs
of `build(spec)`, feasibility, sharing / balance, per-task path costs). Differences from a
trial, on purpose:

- no QAT (`qat_steps` is held at 0): the candidate is judged on the shared weights as
  they are; QAT belongs to finishing the front;
- no weights file: `train["inherited"]` names the supernet epochs and the recalibration
  settings, so export / finish rebuild exactly the evaluated network from the bank;
- the train rule (balance, lr, wd) is not judged by inheritance: `train["balance"]` /
  `train["lr"]` are the candidate's rule's values (the run's lr without one), recorded for
  the finish, not settings these weights were trained with.

Batches run as Ray tasks (`evaluate_batch`, wrapped with `remote_evaluate_batch`): the
driver puts the bank's safetensors bytes in Ray's object store once (`put_bank`); each
worker process rebuilds the SuperNet structure once (seconds: the sizing derivations) and
loads a given bank's bytes once, then evaluates every candidate of every batch it gets.
"""

from __future__ import annotations

import hashlib
import time
import traceback
from dataclasses import dataclass, replace

from nasmt.run import TrialRecord, TrialStatus
from nasmt.search.context import TrialContext
from nasmt.search.oneshot.bank import INHERITED, Recalibration, inherited_model

NOT_FITTING = ("does not fit the supernet's bank (a tensor larger than every architecture of the bank's "
               "sizing sample); not evaluated")


@dataclass(frozen=True)
class BankHandle:
    """The bank's bytes in Ray's object store (`ref`, put once by the driver) and an id
    that names that content (a worker loads each id once). Pass the handle itself to a
    task: the ref inside it is not resolved, so a worker that has the bank already never
    fetches the bytes again."""

    id: str
    ref: object  # ray.ObjectRef of the safetensors bytes


def put_bank(blob: bytes, bank_id: str | None = None) -> BankHandle:
    """Put the bank's safetensors bytes (`bank.bank_bytes`) in the object store once."""
    import ray

    ref = ray.put(blob)
    return BankHandle(bank_id or ref.hex(), ref)


def evaluate_candidate(bank, spec, ctx: TrialContext, data, number: int, recal: Recalibration,
                       supernet_epochs: int) -> TrialRecord:
    """The record of candidate `spec` (trial `number`) with inherited weights: COMPLETE
    with the metrics a complete trial records, or FAILED (one line) when `spec` does not
    fit the bank or its evaluation raises."""
    from nasmt.search.trial import failure_reason, trained_metrics

    t0 = time.time()
    try:
        if not bank.fits(spec):
            return TrialRecord(number=number, status=TrialStatus.FAILED, spec=spec.to_json(), error=NOT_FITTING,
                               error_type="DoesNotFit", finished_at=time.time(),
                               timings={"total_s": time.time() - t0})
        model = inherited_model(bank, spec, data, recal)
        t_eval = time.time()
        held = replace(ctx, qat_steps=0)  # no QAT for inherited candidates (the module docstring says why)
        rule = spec.train_overrides()
        lr = float(rule.get("lr", ctx.lr))
        metrics = trained_metrics(model, spec, held, data, ctx.trial_seed(number), lr)
    except Exception as e:  # noqa: BLE001 - a candidate's failure is recorded, the batch goes on
        return TrialRecord(number=number, status=TrialStatus.FAILED, spec=spec.to_json(), error=failure_reason(e),
                           error_type=type(e).__name__, traceback=traceback.format_exc(limit=8),
                           finished_at=time.time(), timings={"total_s": time.time() - t0})
    t_end = time.time()
    return TrialRecord(
        number=number, status=TrialStatus.COMPLETE, spec=spec.to_json(), metrics=metrics,
        train={INHERITED: {"supernet_epochs": int(supernet_epochs), "batches": recal.batches,
                           "batch_size": recal.batch_size, "seed": recal.seed},
               "balance": spec.balance, "lr": lr, "weight_decay": rule.get("weight_decay")},
        timings={"recalibrate_s": t_eval - t0, "eval_s": t_end - t_eval, "total_s": t_end - t0},
        finished_at=t_end,
    )


# -- batches as Ray tasks -------------------------------------------------------------------

_STRUCTURES: dict = {}  # (grammar, suite, settings) -> SuperNet: built once per worker process
_LOADED: dict = {}  # same key -> id of the bank content loaded into it
STRUCTURES_KEPT = 2


def _structure_key(ctx: TrialContext, settings) -> tuple:
    import json

    suite = json.dumps(ctx.suite.to_dict(), sort_keys=True, default=str)
    return (hashlib.sha256(ctx.grammar_text.encode()).hexdigest(), ctx.grammar_file,
            hashlib.sha256(suite.encode()).hexdigest(), settings)


def worker_bank(bank_ref, run_info: dict, ctx: TrialContext, data):
    """This process's SuperNet for `run_info` (the supernet's state.json: how the bank is
    sized) with `bank_ref`'s content loaded: the structure is built once per process, the
    bytes fetched and loaded once per bank id. `bank_ref`: a `BankHandle`, an ObjectRef
    (passed nested, so Ray does not resolve it), or the bytes themselves."""
    from nasmt.search.oneshot.bank import load_bank_bytes, new_bank, settings_of
    from nasmt.search.space import grammar_of

    settings = settings_of(run_info)
    key = _structure_key(ctx, settings)
    bank = _STRUCTURES.get(key)
    if bank is None:
        while len(_STRUCTURES) >= STRUCTURES_KEPT:
            old = next(iter(_STRUCTURES))
            _STRUCTURES.pop(old)
            _LOADED.pop(old, None)
        bank = new_bank(grammar_of(ctx.grammar_text, ctx.grammar_file), ctx.suite, data, settings)
        _STRUCTURES[key] = bank
    if isinstance(bank_ref, (bytes, bytearray, memoryview)):
        blob = bytes(bank_ref)
        bank_id, fetch = hashlib.sha256(blob).hexdigest(), (lambda: blob)
    else:
        import ray

        ref = bank_ref.ref if isinstance(bank_ref, BankHandle) else bank_ref
        bank_id = bank_ref.id if isinstance(bank_ref, BankHandle) else ref.hex()
        fetch = lambda: ray.get(ref)  # noqa: E731
    if _LOADED.get(key) != bank_id:
        _LOADED.pop(key, None)
        load_bank_bytes(bank, fetch())
        _LOADED[key] = bank_id
    return bank.eval()


def evaluate_batch(bank_ref, run_info: dict, ctx: TrialContext, items: list[tuple[int, dict]], recal: Recalibration,
                   supernet_epochs: int) -> list[dict]:
    """Evaluate candidates `items` ((trial number, genome) pairs) with the bank's inherited
    weights; returns their records' JSON in the order given. A genome that does not
    replay over the grammar is a FAILED record (one line). Module level: the driver wraps
    it as a Ray task (`remote_evaluate_batch`)."""
    import torch

    from nasmt.data import load_data_cached
    from nasmt.search.space import grammar_of
    from nasmt.search.trial import failure_reason
    from nasmt.space.derive import replay

    torch.set_num_threads(ctx.threads)
    data = load_data_cached(ctx.suite)
    bank = worker_bank(bank_ref, run_info, ctx, data)
    grammar = grammar_of(ctx.grammar_text, ctx.grammar_file)
    out = []
    for number, genome in items:
        t0 = time.time()
        try:
            spec = replay(grammar, genome, ctx.suite.tasks, data.input_shape, data.n_outputs, data.columns)
        except Exception as e:  # noqa: BLE001
            rec = TrialRecord(number=int(number), status=TrialStatus.FAILED, error=f"genome does not replay: {failure_reason(e)}",
                              error_type=type(e).__name__, finished_at=time.time(),
                              timings={"total_s": time.time() - t0})
        else:
            rec = evaluate_candidate(bank, spec, ctx, data, int(number), recal, supernet_epochs)
        out.append(rec.to_json())
    return out


def remote_evaluate_batch(num_cpus: float = 1, num_gpus: float = 0):
    """`evaluate_batch` as a Ray remote function with these resources (call `.remote(...)`
    with a `BankHandle`, so the bytes are fetched only by processes that lack them)."""
    import ray

    return ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(evaluate_batch)
