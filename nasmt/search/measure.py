"""After a search that cares about latency: measure the real artifact latency of the
Pareto set, update those trials' records in place (one line per trial stays one line
per trial) and write latency.json with predicted vs measured and the predictor's error."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nasmt.run import (
    LATENCY_FILE,
    WEIGHTS_FILE,
    TrialRecord,
    atomic_write_json,
    load_run,
    objectives_from_run,
    pareto_trials,
    read_trials,
    replace_records,
    trial_dir,
)


def load_trial_model(run_dir: Path, rec: TrialRecord):
    """(ArchSpec, eval-mode model with the trial's weights)."""
    from safetensors.torch import load_file

    from nasmt.model.build import build
    from nasmt.space.spec import ArchSpec

    spec = ArchSpec.from_json(rec.spec)
    model = build(spec)
    model.load_state_dict(load_file(str(trial_dir(run_dir, rec.number) / WEIGHTS_FILE)))
    return spec, model.eval()


def predictor_error(rows: list[dict]) -> dict:
    """Median and worst relative error of predicted vs measured latency."""
    e = [r["rel_error"] for r in rows if r.get("rel_error") is not None]
    if not e:
        return {"n": 0, "median_rel_error": None, "worst_rel_error": None}
    return {"n": len(e), "median_rel_error": float(np.median(e)), "worst_rel_error": float(max(e))}


def measure_front(run_dir: Path, objectives=None, batch: int | None = None, say=print) -> dict:
    from nasmt import quant as Q
    from nasmt.data import load_data_cached
    from nasmt.data.suite import suite_from_json

    run_dir = Path(run_dir)
    run = load_run(run_dir)
    cfg = run.get("config", {})
    batch = batch or int(cfg.get("latency_batch") or 1)
    objectives = objectives or objectives_from_run(run)
    front = pareto_trials(read_trials(run_dir), objectives)
    suite = suite_from_json(run["suite"], file=run.get("suite_file", "<run>"))
    calib = Q.calib_batch(load_data_cached(suite))
    rows, updated = [], []
    for rec in front:
        spec, model = load_trial_model(run_dir, rec)
        lat = Q.model_latency(model, spec, calib, batch)
        pred = rec.metrics.get("predicted_latency_ms")
        new = rec.with_metrics(latency_ms=lat, latency_source="measured")
        updated.append(new.with_metrics(feasible=Q.feasible(new.metrics, cfg.get("max_bytes"), cfg.get("max_latency_ms"))))
        rows.append({"number": rec.number, "measured_ms": lat, "predicted_ms": pred,
                     "rel_error": (abs(pred - lat) / lat) if pred else None, "policy": Q.policy_summary(spec)})
        say(f"trial {rec.number}: measured {lat:.3f} ms" + (f", predicted {pred:.3f} ms" if pred else ""))
    if updated:
        replace_records(run_dir, updated)
    res = {"batch": batch, "device": Q.device_name(1), "trials": rows, "predictor_error": predictor_error(rows)}
    atomic_write_json(run_dir / LATENCY_FILE, res)
    return res
