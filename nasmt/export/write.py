"""Write an export folder for one trial of a run:

    model.py, weights.safetensors   plain PyTorch (see `codegen`) and the trained weights
    preprocessing.json              the data's fitted encoding: model.py's predict(rows) on raw inputs
    model.onnx                      ONNX, checked against torch with onnxruntime
    model.pt2                       a `torch.export` program (`torch.export.load`)
    tasks/<task>/                   model.py + weights + preprocessing of the trunk prefix and branch one task needs
    model_quant.onnx, ...           the quantized artifact, when the spec has a quantization policy
    arch.json, MODEL_CARD.md        the ArchSpec, task names/classes, metrics; the card

The weights are the trial's own, or (`retrain_epochs`) the architecture retrained from
scratch with the run's batch size and learning rate.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from nasmt.data import PreparedData, Preprocessing, load_data
from nasmt.data.encoding import PREPROCESSING_FILE
from nasmt.data.suite import suite_from_json
from nasmt.errors import RunDirError, UserError
from nasmt.export.card import CARD_FILE, model_card
from nasmt.export.choose import choose_trial
from nasmt.export.codegen import generate_source, safe_doc
from nasmt.model import ops as O
from nasmt.model.build import build
from nasmt.model.cost import cost
from nasmt.quant import export_quantized, is_fp32, policy_summary, torch_to_onnx
from nasmt.run import WEIGHTS_FILE, atomic_write_json, atomic_write_text, load_run, read_json, trial_dir
from nasmt.run.files import fsync_dir
from nasmt.space.spec import ArchSpec
from nasmt.train import TrainConfig, evaluate, train

SOURCE_FILE = "model.py"
ONNX_FILE = "model.onnx"
PT2_FILE = "model.pt2"
ARCH_FILE = "arch.json"
TASKS_DIR = "tasks"
EXPORT_FORMAT = 1  # arch.json's "nasmt_export": bumped when its layout changes
# validation examples that trace the torch.export program and check the ONNX file and
# the per-task models against the full model: enough to expose a wrong graph, cheap to run
CHECK_EXAMPLES = 8
RETRAIN_KEYS = ("batch_size", "lr")  # the run's training settings a retrain reuses


def export_run(
    run_dir: Path,
    out: Path,
    trial: int | None = None,
    pick: str | None = None,
    retrain_epochs: float | None = None,
    objectives: str | None = None,
    quantized: bool = True,
    onnx: bool = True,
    seed: int = 0,
    force: bool = False,
) -> Path:
    """Export trial `trial` (or the `pick`, see `choose_trial`) of `run_dir` into `out`
    (a new or empty folder, an earlier export, or with `force` any folder)."""
    run_dir, out = Path(run_dir), Path(out)
    if retrain_epochs is not None and not retrain_epochs > 0:
        raise UserError(f"--retrain-epochs: must be positive (got {retrain_epochs})")
    _check_out(out, force)
    run = load_run(run_dir)
    rec = choose_trial(run_dir, trial, pick, objectives)
    spec = ArchSpec.from_json(rec.spec)
    suite = suite_from_json(run["suite"], file=run.get("suite_file", "<run>"))
    data = load_data(suite)
    model, retrain = _trained_model(run_dir, run, rec, spec, suite, data, retrain_epochs, seed)
    final = out
    if out.is_dir() and is_export(out):  # written beside it, then swapped in: no stale file of the earlier export stays
        out = Path(tempfile.mkdtemp(prefix=f".{final.name}.new", dir=final.parent))
        os.chmod(out, final.stat().st_mode & 0o7777)  # mkdtemp makes it private; keep the folder's own mode
    try:
        _write_export(out, final, run_dir, run, rec, spec, suite, data, model, retrain, retrain_epochs, quantized, onnx)
    except BaseException:
        if out != final:
            shutil.rmtree(out, ignore_errors=True)
        raise
    if out != final:
        old = final.with_name(f".{final.name}.old{os.getpid()}")
        os.replace(final, old)
        os.replace(out, final)
        fsync_dir(final.parent)
        shutil.rmtree(old, ignore_errors=True)
    return final


def _write_export(out: Path, final: Path, run_dir: Path, run: dict, rec, spec: ArchSpec, suite, data: PreparedData,
                  model: O.MultiTaskNet, retrain: dict | None, retrain_epochs: float | None, quantized: bool,
                  onnx: bool) -> None:
    """Every artifact into `out` (the folder `final` names in the card's command)."""
    out.mkdir(parents=True, exist_ok=True)
    title = f"nasmt export of trial {rec.number} from run {safe_doc(run_dir.name)}"
    x = torch.from_numpy(np.ascontiguousarray(data.x["val"][:CHECK_EXAMPLES]))
    artifacts, onnx_info = _write_full(out, model, spec, data.preprocessing, x, title, onnx)
    arch = {
        "nasmt_export": EXPORT_FORMAT,
        "run": str(run_dir.resolve()),
        "trial": rec.number,
        "spec": spec.to_json(),
        "tasks": _task_info(suite, data),
        "input_shape": list(spec.input_shape),
        "feature_names": list(data.feature_names),
        "objectives": run["objectives"],
        "search_metrics": rec.metrics,
        "final": rec.final,  # the full-budget finish whose weights these are (None: the search's)
        "val_metrics": evaluate(model, suite, data, "val"),
        "test_metrics": evaluate(model, suite, data, "test"),
        "cost": {k: v for k, v in cost(model, spec.input_shape).items() if k in ("params", "flops", "tasks")},
        "onnx": onnx_info,
        "per_task": _write_tasks(out, model, spec, data.preprocessing, x, title),
        "quantized": quantized_artifact(model, spec, suite, data, out) if quantized else None,
        "retrained_epochs": retrain_epochs,
        "retrain": retrain,
        "exported_at": time.time(),
    }
    atomic_write_json(out / ARCH_FILE, arch)
    command = ["nasmt", "export", str(run_dir), "--trial", str(rec.number), "--out", str(final)]
    if retrain_epochs:
        command += ["--retrain-epochs", f"{retrain_epochs:g}"]
    atomic_write_text(out / CARD_FILE, model_card(arch, suite, spec, shlex.join(command), artifacts))


def is_export(folder: Path) -> bool:
    """Whether `folder` holds an export (its arch.json says so)."""
    arch = read_json(folder / ARCH_FILE)
    return isinstance(arch, dict) and "nasmt_export" in arch


def _check_out(out: Path, force: bool) -> None:
    """`--out` may be new, empty, an earlier export (rewritten), or anything with --force."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    if not force and out.is_dir() and any(out.iterdir()) and not is_export(out):
        raise UserError(f"--out {out}: folder is not empty and holds no earlier nasmt export; "
                        "pass --force to write into it anyway")


def _trained_model(run_dir: Path, run: dict, rec, spec: ArchSpec, suite, data: PreparedData,
                   retrain_epochs: float | None, seed: int) -> tuple[O.MultiTaskNet, dict | None]:
    """The model of trial `rec` in eval mode: its full-budget (finalized) weights where
    present, else the search's (a one-shot candidate's: rebuilt from the run's supernet
    bank), or retrained from scratch (then also the training summary: steps, epochs,
    time, loss)."""
    number = rec.number
    torch.manual_seed(seed)
    model = build(spec)
    retrain = None
    if retrain_epochs:
        settings = {k: run["config"][k] for k in RETRAIN_KEYS if run["config"].get(k) is not None}
        settings.update(spec.train_overrides())  # the grammar's train rule (balance, lr, wd) wins
        tc = TrainConfig(epochs=retrain_epochs, seed=seed, **settings)
        retrain = {**train(model, suite, data, tc), "lr": tc.lr, "weight_decay": tc.weight_decay,
                   "batch_size": tc.batch_size}  # the settings it trained with (the train rule's where it has one)
    elif _inherited_only(rec):
        model = _inherited(run_dir, rec, spec, data)
    else:
        weights = trial_dir(run_dir, number) / ((rec.final or {}).get("weights") or WEIGHTS_FILE)
        if not weights.exists():
            raise RunDirError(f"{weights}: weights of trial {number} are missing")
        model.load_state_dict(load_file(str(weights)))
    return model.eval(), retrain


def _inherited_only(rec) -> bool:
    """A one-shot candidate whose only weights are the supernet's (no finish of its own)."""
    from nasmt.search.oneshot.bank import is_inherited

    return is_inherited(rec) and not (rec.final or {}).get("weights")


def _inherited(run_dir: Path, rec, spec: ArchSpec, data: PreparedData) -> O.MultiTaskNet:
    """The evaluated network of an inherited-weight candidate, rebuilt from the run's bank:
    its slices and its BatchNorm statistics recalibrated with the recorded settings."""
    from nasmt.search.oneshot.bank import inherited_info, inherited_model, load_bank, read_state, recalibration_of

    want = inherited_info(rec).get("supernet_epochs")
    have = (read_state(run_dir) or {}).get("epochs_done")
    if want is not None and have is not None and int(want) != int(have):
        raise RunDirError(f"{run_dir}: trial {rec.number} was evaluated on the supernet after {want} epoch(s), "
                          f"the run's bank holds {have}: its weights cannot be rebuilt (finish or retrain it)")
    bank, _, _ = load_bank(run_dir, data)
    return inherited_model(bank, spec, data, recalibration_of(rec))


def _task_info(suite, data: PreparedData) -> list[dict]:
    return [
        {**t.to_dict(), "outputs": int(data.n_outputs[t.ident]), "classes": data.class_labels.get(t.ident),
         "target_stats": data.target_stats.get(t.ident)}
        for t in suite.tasks
    ]


def _write_model(folder: Path, model: O.MultiTaskNet, spec: ArchSpec, pre: Preprocessing, title: str) -> None:
    """model.py + weights.safetensors of `model` and the preprocessing its `predict` uses
    into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / PREPROCESSING_FILE, pre.to_json())
    atomic_write_text(folder / SOURCE_FILE, generate_source(model, spec, title))
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(folder / WEIGHTS_FILE))


def _write_full(out: Path, model: O.MultiTaskNet, spec: ArchSpec, pre: Preprocessing, x: torch.Tensor,
                title: str, onnx: bool) -> tuple[dict[str, str], dict | None]:
    """The whole model as source + weights, torch.export program and ONNX; returns the
    artifact descriptions (for the card) and the ONNX check."""
    _write_model(out, model, spec, pre, title)
    artifacts = {SOURCE_FILE: "generated PyTorch source; predict(rows) on raw inputs", WEIGHTS_FILE: "trained weights",
                 PREPROCESSING_FILE: "the training data's fitted encoding (feature order, scaling, vocabularies, labels)"}
    torch.export.save(torch.export.export(model, (x,)), str(out / PT2_FILE))
    artifacts[PT2_FILE] = "torch.export program (torch.export.load)"
    if not onnx:
        return artifacts, None
    info = _write_onnx(model, x, out / ONNX_FILE)
    artifacts[ONNX_FILE] = f"ONNX (max abs diff vs torch {info['max_abs_diff_vs_torch']:.2e})"
    return artifacts, info


def _write_onnx(model: O.MultiTaskNet, x: torch.Tensor, path: Path) -> dict:
    """ONNX export (one output per task, dynamic batch), checked against torch with
    onnxruntime on `x`."""
    names = list(model.branches)
    torch_to_onnx(model, x, path, names, dynamic_batch=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(names, {sess.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        want = model(x)
    diff = max(float(np.abs(g - want[n].numpy()).max()) for g, n in zip(got, names))
    return {"file": path.name, "bytes": path.stat().st_size, "max_abs_diff_vs_torch": diff}


def _sub_spec(spec: ArchSpec, task: str) -> ArchSpec:
    """The trunk prefix up to `task`'s tap, the group it joins, and its branch alone."""
    b = spec.branch(task)
    groups = tuple(g for g in spec.groups if g.name == b.group)
    return ArchSpec(spec.space, spec.input_shape, spec.stages[: b.tap], (b,), spec.genome, groups, spec.train)


def _sub_model(model: O.MultiTaskNet, b) -> O.MultiTaskNet:
    """The modules one task needs, taken from the full model (weights shared): the trunk
    prefix (an expert mixture there stays whole: every gate reads all its experts), the
    group it joins, its branch."""
    reader = "group." + b.group if b.group is not None else b.task
    return O.MultiTaskNet(
        list(model.trunk[: b.tap]), {b.task: model.branches[b.task]}, {b.task: b.tap},
        groups={b.group: model.groups[b.group]} if b.group is not None else None,
        group_taps={b.group: b.tap} if b.group is not None else None,
        joins={b.task: b.group} if b.group is not None else None,
        slots={reader: model.slots[reader]} if reader in model.slots else None,
    )


def _write_tasks(out: Path, model: O.MultiTaskNet, spec: ArchSpec, pre: Preprocessing, x: torch.Tensor,
                 title: str) -> dict:
    """One folder per task holding only the trunk prefix, group and branch it needs."""
    with torch.no_grad():
        want = model(x)
    per_task = {}
    for b in spec.branches:
        sub = _sub_spec(spec, b.task)
        m = _sub_model(model, b).eval()
        folder = out / TASKS_DIR / b.task  # an identifier (sanitized at suite load): a safe path
        _write_model(folder, m, sub, pre.for_task(b.task), f"{title}: task {b.task} only")
        with torch.no_grad():
            diff = float((m(x)[b.task] - want[b.task]).abs().max())
        per_task[b.task] = {
            "folder": f"{TASKS_DIR}/{b.task}",
            "params": sum(p.numel() for p in m.parameters()),
            "bytes": (folder / WEIGHTS_FILE).stat().st_size,
            "max_abs_diff_vs_full": diff,
        }
    return per_task


def quantized_artifact(model: nn.Module, spec: ArchSpec, suite, data: PreparedData, out: Path) -> dict | None:
    """The quantized artifact of `spec`'s policy in `out` (None for an all-fp32 policy).
    A quantized policy always gets it: a missing dependency is a one-line error."""
    if is_fp32(spec):
        return None
    try:
        return export_quantized(model, spec, suite, data, out)
    except ImportError as e:
        raise UserError(
            f"export: the quantized artifact ({policy_summary(spec)}) needs the Python module "
            f"{e.name or e}: install it, or pass --no-quantized"
        ) from None
