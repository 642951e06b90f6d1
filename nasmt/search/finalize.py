"""Full-budget finish (`--final-epochs N` on search, `nasmt finalize RUN --epochs N`).

Every feasible Pareto trial of the run is trained again for N epochs (from scratch; a
one-shot run's inherited candidates are fine-tuned from their inherited weights unless
it chose `--finish scratch`) on the suite's whole training split (same architecture, batch size, learning rate and
seed as in the search; the grammar's train rule's balancing, lr and wd where it has
one), then evaluated on validation and test (under its quantization policy's
simulation, as in the search). The result is stored as the trial's `final` record
(trials.jsonl keeps one line per trial; `final.train` the settings used) with its weights in
`trials/NNNNN/final.safetensors`. Export `--pick` chooses among finalized trials by
their final validation metrics when any exist; the report shows both budgets.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from nasmt.run import (
    TrialRecord,
    atomic_write_bytes,
    ensure_dir,
    load_run,
    objectives_from_run,
    pareto_trials,
    read_trials,
    replace_records,
    trial_dir,
)

FINAL_WEIGHTS = "final.safetensors"


def _evaluate(model, spec, suite, data, split: str) -> dict:
    from nasmt import quant as Q
    from nasmt.train import evaluate

    if Q.is_fp32(spec):
        return evaluate(model, suite, data, split)
    with Q.simulate(model, spec, Q.calib_batch(data)):
        return evaluate(model, suite, data, split)


def train_spec(spec, cfg: dict, suite, data, seed: int, epochs: float, steps: int | None = None,
               init: dict | None = None):
    """Build `spec` (seeded), train it on the run's settings (`cfg`: run.json config's batch
    size and lr; the grammar's train rule wins) for `epochs` (or `steps`) from scratch, or
    from the weights `init`, and evaluate validation as deployed; writes nothing.
    Returns (model, validation metrics, TrainConfig, train's result)."""
    import torch

    from nasmt.model.build import build
    from nasmt.train import TrainConfig, train

    torch.manual_seed(seed)
    model = build(spec)
    if init is not None:
        model.load_state_dict(init)
    settings = {"batch_size": int(cfg.get("batch_size", 128)), "lr": float(cfg.get("lr", 3e-3)),
                **spec.train_overrides()}  # the grammar's train rule (balance, lr, wd) wins over the run's
    tc = TrainConfig(epochs=epochs, steps=steps, seed=seed, **settings)
    tr = train(model, suite, data, tc)
    return model, _evaluate(model, spec, suite, data, "val"), tc, tr


def finalize_trial(rec: TrialRecord, cfg: dict, suite, data, epochs: float, run_dir: Path,
                   init: dict | None = None) -> TrialRecord:
    """Train `rec`'s architecture `epochs` epochs (from the weights `init` when given: a
    one-shot candidate's inherited ones, else from scratch) and record its `final`."""
    from safetensors.torch import save

    from nasmt.search.context import SEED_STRIDE
    from nasmt.space.spec import ArchSpec

    spec = ArchSpec.from_json(rec.spec)
    seed = int(cfg.get("seed", 0)) * SEED_STRIDE + rec.number
    model, val, tc, tr = train_spec(spec, cfg, suite, data, seed, epochs, init=init)
    costs = {k: v for k, v in rec.metrics.items() if k not in val and not isinstance(v, str)}
    # an inherited candidate has no trial folder of its own yet (its weights are the bank's)
    atomic_write_bytes(ensure_dir(trial_dir(run_dir, rec.number)) / FINAL_WEIGHTS,
                       save({k: v.contiguous() for k, v in model.state_dict().items()}))
    final = {
        "epochs": epochs, "steps": tr["steps"], "train_s": tr["train_time_s"], "weights": FINAL_WEIGHTS,
        "start": "inherited" if init is not None else "scratch",
        "train": {"lr": tc.lr, "weight_decay": tc.weight_decay, "balance": tr["balance"], "batch_size": tc.batch_size,
                  **{k: tr[k] for k in ("best_epoch",) if k in tr}},  # early stopping's kept epoch
        "metrics": {**costs, **val}, "test": _evaluate(model, spec, suite, data, "test"), "finished_at": time.time(),
    }
    return replace(rec, final=final)


def finalize_run(run_dir: Path, epochs: float, say=print) -> list[TrialRecord]:
    """Finalize every feasible Pareto trial of a run (see the module docstring)."""
    from nasmt.data import load_data_cached
    from nasmt.data.suite import suite_from_json
    from nasmt.errors import UserError

    if not epochs > 0:
        raise UserError(f"--epochs: must be positive (got {epochs})")
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    front = pareto_trials(read_trials(run_dir), objectives_from_run(run))
    if not front:
        raise UserError(f"{run_dir}: no complete trial within budget to finalize")
    suite = suite_from_json(run["suite"], file=run.get("suite_file", "<run>"))
    data = load_data_cached(suite)
    done = []
    inits = _inherited_weights(run_dir, run, front, data)
    for rec in front:
        t0 = time.time()
        new = finalize_trial(rec, run.get("config", {}), suite, data, epochs, run_dir, inits.get(rec.number))
        replace_records(run_dir, [new])
        done.append(new)
        m = new.final["metrics"]
        say(f"trial {rec.number} finalized ({epochs:g} epochs, {time.time() - t0:.0f} s): val mean_error "
            f"{rec.metrics.get('mean_error', float('nan')):.4f} -> {m.get('mean_error', float('nan')):.4f}, "
            f"test mean_error {new.final['test'].get('mean_error', float('nan')):.4f}")
    return done


def _inherited_weights(run_dir: Path, run: dict, front: list[TrialRecord], data) -> dict[int, dict]:
    """Trial number -> the inherited weights a one-shot run's candidates are fine-tuned
    from (`--finish finetune`); empty for other runs and for `--finish scratch`."""
    from nasmt.search.oneshot.bank import inherited_model, is_inherited, load_bank, recalibration_of
    from nasmt.space.spec import ArchSpec

    cfg = run.get("config", {})
    todo = [r for r in front if is_inherited(r)]
    if not (cfg.get("oneshot") and cfg.get("finish", "finetune") == "finetune" and todo):
        return {}
    bank, _, _ = load_bank(run_dir, data)
    return {r.number: inherited_model(bank, ArchSpec.from_json(r.spec), data, recalibration_of(r)).state_dict()
            for r in todo}
