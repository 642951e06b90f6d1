"""`run_baselines`: train every reference for a suite with the search's budget, split,
optimizer and seed, and write `DIR/baselines.jsonl`.

Vector suites get single-task networks, the hard-shared bottom, MMoE, PLE and one
LightGBM model per task; image suites single-task networks and the LeNet shared trunk
(see `nasmt.baselines.nets`). Every network is trained by `nasmt.train.train` with the
same `TrainConfig` a trial gets (AdamW, OneCycle, the budget in epochs or steps, batch
size, learning rate; seed = the search's seed) and scored by the same metric code on
the validation split (the split trials are scored on) and the test split.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch

from nasmt.baselines.gbdt import GRID, check_grid, fit_gbdt
from nasmt.baselines.nets import (BOTTOM_LAYERS, HIDDEN, MMOE_EXPERTS, PLE_LEVELS, PLE_SHARED_EXPERTS, PLE_TASK_EXPERTS,
                                  hard_shared, lenet, mmoe, ple)
from nasmt.baselines.record import (GBDT, LIGHTGBM, NETWORK, SINGLE_TASK, BaselineRecord, baselines_path, delta_m,
                                    write_baselines)
from nasmt.data import load_data_cached
from nasmt.data.suite import TaskSuite, load_suite, suite_from_json
from nasmt.errors import UserError
from nasmt.model.cost import cost
from nasmt.model.ops import MultiTaskNet
from nasmt.quant.size import FP32_BYTES
from nasmt.run import ensure_dir, is_run_dir, load_run
from nasmt.train import TrainConfig, metrics_from_outputs, predict, tensors, train

SPLITS = ("val", "test")  # scored splits: validation (as trials) and test
SINGLE_LABEL = "single-task networks"
GBDT_LABEL = "LightGBM, one model per task"


class _Net(NamedTuple):
    label: str  # its name and reference, shown in the report
    build: Callable  # (input_shape, {task: outputs}) -> module
    detail: dict  # its sizes, recorded


def _on_vectors(make):
    return lambda shape, n_outputs: make(shape[0], n_outputs)


VECTOR_NETS = {
    "hard-shared": _Net("hard-shared bottom (Caruana 1997)", _on_vectors(hard_shared),
                        {"layers": BOTTOM_LAYERS, "hidden": HIDDEN}),
    "mmoe": _Net("MMoE (Ma et al. 2018)", _on_vectors(mmoe), {"experts": MMOE_EXPERTS, "hidden": HIDDEN}),
    "ple": _Net("PLE (Tang et al. 2020)", _on_vectors(ple),
                {"levels": PLE_LEVELS, "shared_experts": PLE_SHARED_EXPERTS, "task_experts": PLE_TASK_EXPERTS}),
}
IMAGE_NETS = {"lenet": _Net("LeNet shared trunk (Sener & Koltun 2018)", lenet, {})}
SINGLE_BODY = {False: "hard-shared", True: "lenet"}  # suite.is_image -> the body a single-task network has


def _nets(suite: TaskSuite) -> dict[str, _Net]:
    return IMAGE_NETS if suite.is_image else VECTOR_NETS


def names_for(suite: TaskSuite) -> list[str]:
    """The references of a suite, in training order (single-task first: Δm needs it)."""
    return [SINGLE_TASK, *_nets(suite), *([] if suite.is_image else [LIGHTGBM])]


def network_cost(model: MultiTaskNet, input_shape) -> dict:
    """params, flops (per example, as `nasmt.model.cost` counts a trial's: every reference
    is a MultiTaskNet) and size_bytes (fp32 weights: these networks have no BatchNorm to
    fold, so this is the fp32 artifact's payload)."""
    c = cost(model, input_shape)
    return {"params": c["params"], "flops": c["flops"], "size_bytes": c["params"] * FP32_BYTES}


def _fit_network(suite: TaskSuite, data, build, cfg: TrainConfig) -> tuple[dict, dict, dict]:
    """Build (seeded), train and predict one network: ({split: outputs}, cost, train summary)."""
    torch.manual_seed(cfg.seed)
    model = build(tuple(data.input_shape), {t.ident: data.n_outputs[t.ident] for t in suite.tasks})
    c = network_cost(model, data.input_shape)
    tr = train(model, suite, data, cfg)
    dev = torch.device(cfg.device)
    outs = {s: {k: v.cpu() for k, v in predict(model, tensors(data, s, dev)[0]).items()} for s in SPLITS}
    return outs, c, {"steps": tr["steps"], "epochs": tr["epochs"], "final_loss": tr["loss"]}


def _fit(name: str, suite: TaskSuite, data, cfg: TrainConfig, gbdt_grid=GRID) -> tuple[dict, dict, dict, dict]:
    """({split: {task: outputs}}, costs, train summary, detail) of one reference."""
    if name == LIGHTGBM:
        outs, detail = fit_gbdt(suite, data, cfg.seed, SPLITS, gbdt_grid)
        return outs, {}, {}, detail
    if name != SINGLE_TASK:
        net = _nets(suite)[name]
        outs, c, tr = _fit_network(suite, data, net.build, cfg)
        return outs, c, tr, dict(net.detail)
    body = SINGLE_BODY[suite.is_image]
    outs, costs, trains = {s: {} for s in SPLITS}, {"params": 0, "flops": 0, "size_bytes": 0}, {}
    for t in suite.tasks:  # one network per task, trained on that task alone (a one-task sub-suite)
        o, c, trains[t.ident] = _fit_network(dataclasses.replace(suite, tasks=(t,)), data, _nets(suite)[body].build, cfg)
        for s in SPLITS:
            outs[s].update(o[s])
        costs = {k: costs[k] + c[k] for k in costs}
    return outs, costs, trains, {"networks": len(suite.tasks), "body": body, **_nets(suite)[body].detail}


def _label(suite: TaskSuite, name: str) -> str:
    return {SINGLE_TASK: SINGLE_LABEL, LIGHTGBM: GBDT_LABEL}.get(name) or _nets(suite)[name].label


def fit_reference(name: str, suite: TaskSuite, data, cfg: TrainConfig, single: BaselineRecord | None,
                  settings: dict, gbdt_grid=GRID) -> BaselineRecord:
    """Train and score one reference; Δm against `single` (the single-task record).
    LightGBM searches `gbdt_grid` (num_leaves values, learning rates) per task."""
    t0 = time.time()
    outs, costs, tr, detail = _fit(name, suite, data, cfg, gbdt_grid)
    t1 = time.time()
    m = {}
    for s in SPLITS:
        ys = tensors(data, s, torch.device("cpu"))[1]
        m[s] = {**metrics_from_outputs(suite, data, outs[s], ys), **costs}
    ref_val, ref_test = (single.metrics, single.test_metrics) if single is not None else (m["val"], m["test"])
    return BaselineRecord(
        name=name, kind=GBDT if name == LIGHTGBM else NETWORK, label=_label(suite, name), metrics=m["val"],
        test_metrics=m["test"], delta_m_val=delta_m(m["val"], ref_val, suite),
        delta_m_test=delta_m(m["test"], ref_test, suite), detail=detail, train=tr,
        timings={"train_s": t1 - t0, "eval_s": time.time() - t1, "total_s": time.time() - t0},
        settings=settings, finished_at=time.time(),
    )


def _check_settings(epochs, steps, batch_size, lr, device: str) -> None:
    if device != "cpu" and not (device.startswith("cuda") and torch.cuda.is_available()):
        raise UserError(f"--device: {device!r} is not available here (use cpu{', cuda' if torch.cuda.is_available() else ''})")
    if steps is None and not epochs > 0:
        raise UserError(f"--epochs: must be positive (got {epochs})")
    if steps is not None and steps < 1:
        raise UserError(f"--steps: must be at least 1 (got {steps})")
    if batch_size < 1:
        raise UserError(f"--batch-size: must be at least 1 (got {batch_size})")
    if not lr > 0:
        raise UserError(f"--lr: must be positive (got {lr})")


def _check_out(out: Path, suite: TaskSuite) -> None:
    """An existing run directory takes only references of its own suite (same data, same split)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    if is_run_dir(out) and load_run(out).get("suite") != suite.to_dict():
        raise UserError(f"--out {out}: this run searched another task suite than {suite.file}; "
                        "its baselines must be trained on the run's own suite")


def _line(r: BaselineRecord) -> str:
    dm = "" if r.delta_m_test is None or r.name == SINGLE_TASK else f", Δm {r.delta_m_test:+.2f} % (test)"
    size = f", {r.metrics['params']:,} params" if "params" in r.metrics else ""
    return (f"{r.name}: mean_error {r.metrics['mean_error']:.4f} (val) / {r.test_metrics['mean_error']:.4f} (test)"
            f"{dm}{size}, {r.timings['total_s']:.1f} s")


def run_baselines(suite_path: str | Path | TaskSuite, out_dir: str | Path, epochs: float = TrainConfig.epochs,
                  steps: int | None = TrainConfig.steps, batch_size: int = TrainConfig.batch_size,
                  lr: float = TrainConfig.lr, seed: int = TrainConfig.seed, quiet: bool = False,
                  device: str = TrainConfig.device, gbdt_grid=GRID) -> Path:
    """Train every reference of the suite and write `out_dir/baselines.jsonl` (rewritten
    after each reference, so an interrupted run keeps the finished ones). Returns its path.
    `gbdt_grid`: (num_leaves values, learning rates) LightGBM is tuned over per task."""
    _check_settings(epochs, steps, batch_size, lr, device)
    gbdt_grid = check_grid(*gbdt_grid)
    suite = suite_path if isinstance(suite_path, TaskSuite) else load_suite(suite_path)
    out = Path(out_dir)
    _check_out(out, suite)
    data = load_data_cached(suite)
    ensure_dir(out)
    cfg = TrainConfig(epochs=epochs, steps=steps, batch_size=batch_size, lr=lr, seed=seed, device=device)
    settings = {"suite": suite.name, "epochs": epochs, "steps": steps, "batch_size": batch_size, "lr": lr,
                "seed": seed, "device": device}
    records: list[BaselineRecord] = []
    for name in names_for(suite):
        single = records[0] if records else None  # names_for puts the single-task networks first
        records.append(fit_reference(name, suite, data, cfg, single, settings, gbdt_grid))
        write_baselines(out, records)
        if not quiet:
            print(_line(records[-1]), flush=True)
    return baselines_path(out)


def suite_of_run(run_dir: str | Path) -> TaskSuite:
    """The task suite a run searched (from its run.json)."""
    return suite_from_json(load_run(run_dir)["suite"], file=str(Path(run_dir)))
