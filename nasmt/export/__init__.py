"""Export a trial as ordinary PyTorch: generated `model.py` (no nasmt import),
`weights.safetensors`, `arch.json`, ONNX (checked against torch with onnxruntime), a
`torch.export` program, one folder per task holding only the trunk prefix and branch
that task needs, a model card, and (when the spec has a quantization policy) the real
quantized artifact from `nasmt.quant`.

`model.py` is generated from the same classes the builder uses (their source is copied
from nasmt/ops.py), so the exported module reproduces the trained model exactly. Task
names from user files never become code: only their sanitized identifiers appear, as
string literals; the original names live in arch.json.
"""

from __future__ import annotations

import inspect
import json
import shlex
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nasmt.model import ops as O
from nasmt.errors import RunDirError, UserError
from nasmt.run import (
    atomic_write_json,
    atomic_write_text,
    front_candidates,
    knee_point,
    load_run,
    read_trials,
    pareto_trials,
    parse_objectives,
)
from nasmt.space.spec import ArchSpec, BranchSpec

# ----------------------------------------------------------------------------- choose


def choose_trial(run_dir: Path, trial: int | None, pick: str | None, objectives: str | None = None) -> dict:
    run = load_run(run_dir)
    trials = read_trials(run_dir)
    if trial is not None:
        rec = next((t for t in trials if t["number"] == trial), None)
        if rec is None:
            nums = [t["number"] for t in trials if t.get("status") == "complete"]
            raise RunDirError(f"--trial {trial}: no such trial in {run_dir} (complete trials: {_ranges(nums) or 'none'})")
        if rec.get("status") != "complete":
            raise RunDirError(f"--trial {trial}: trial {trial} is {rec.get('status')} ({rec.get('error')}); pick a complete trial")
        return rec
    from nasmt.data.suite import suite_from_json

    suite = suite_from_json(run["suite"])
    if objectives:
        objs = parse_objectives(objectives, suite, "--objectives")
    else:
        from nasmt.run import Objective

        objs = [Objective(o["name"], o["direction"]) for o in run["objectives"]]
    front = pareto_trials(trials, objs)
    if not front:
        raise RunDirError(f"{run_dir}: no complete trials to pick from")
    pick = pick or "knee"
    if pick == "knee":
        return knee_point(front, objs)
    if pick.startswith("best:"):
        name = pick[5:]
        (o,) = parse_objectives(name, suite, "--pick best:<objective>")
        cand = [t for t in front_candidates(trials) if isinstance(t["metrics"].get(o.name), (int, float))]
        return min(cand, key=lambda t: o.sign * t["metrics"][o.name])
    raise UserError(f"--pick: expected 'knee' or 'best:<objective>' (got {pick!r})")


def _ranges(nums: list[int]) -> str:
    return ", ".join(str(n) for n in sorted(nums)[:20]) + (" ..." if len(nums) > 20 else "")


# ----------------------------------------------------------------------------- codegen


def _ctor(m: nn.Module) -> str:
    """Python source that constructs module `m` (a builder-made op)."""
    if isinstance(m, O.ConvBNAct):
        c = m.conv
        return f"ConvBNAct({c.in_channels}, {c.out_channels}, {c.kernel_size[0]}, {c.stride[0]})"
    if isinstance(m, O.DWSep):
        return f"DWSep({m.dw.in_channels}, {m.pw.out_channels}, {m.dw.kernel_size[0]}, {m.dw.stride[0]})"
    if isinstance(m, O.Residual):
        return f"Residual({m.conv1.in_channels}, {m.conv1.kernel_size[0]})"
    if isinstance(m, O.GlobalPool):
        return "GlobalPool()"
    if isinstance(m, O.FC):
        return f"FC({m.linear.in_features}, {m.linear.out_features}, {m.act_name!r})"
    if isinstance(m, nn.MaxPool2d):
        return f"nn.MaxPool2d({int(m.kernel_size)}, {int(m.stride)})"
    if isinstance(m, nn.AvgPool2d):
        return f"nn.AvgPool2d({int(m.kernel_size)}, {int(m.stride)})"
    if isinstance(m, nn.Flatten):
        return "nn.Flatten()"
    if isinstance(m, nn.Dropout):
        return f"nn.Dropout({float(m.p)!r})"
    if isinstance(m, nn.Linear):
        return f"nn.Linear({m.in_features}, {m.out_features})"
    raise TypeError(f"cannot generate code for {type(m).__name__}")  # builder makes no others


def _seq_src(seq: nn.Sequential, indent: str) -> str:
    if len(seq) == 0:
        return "nn.Sequential()"
    inner = "".join(f"{indent}    {_ctor(m)},\n" for m in seq)
    return f"nn.Sequential(\n{inner}{indent})"


def generate_source(model: O.MultiTaskNet, spec: ArchSpec, title: str) -> str:
    for t in model.branches:
        if not t.isidentifier():  # idents are sanitized at suite load; never emit anything else
            raise ValueError(f"unsafe task identifier {t!r}")
    classes = "\n\n".join(inspect.getsource(c) for c in O.EXPORTED_CLASSES)
    trunk = "".join(f"        {_seq_src(s, '        ')},  # stage {i}\n" for i, s in enumerate(model.trunk, 1))
    branches = "".join(
        f"        {t!r}: {_seq_src(b, '        ')},\n" for t, b in model.branches.items()
    )
    taps = ", ".join(f"{t!r}: {k}" for t, k in model.taps.items())
    shape = tuple(int(x) for x in spec.input_shape)
    return f'''"""{title}

Generated by nasmt from architecture {spec.hash} (search space '{_safe_doc(spec.space)}').
Plain PyTorch: this file does not import nasmt. Usage:

    import model
    net = model.load()                  # weights from weights.safetensors beside this file
    out = net(torch.zeros(1, *model.INPUT_SHAPE))   # -> {{task: logits}}

Task identifiers, their original names, classes and metrics are in arch.json.
"""

from pathlib import Path

import torch
from torch import nn

INPUT_SHAPE = {shape!r}
TASKS = {tuple(model.branches)!r}


{classes}


def build_model():
    trunk = [
{trunk}    ]
    branches = {{
{branches}    }}
    return MultiTaskNet(trunk, branches, taps={{{taps}}})


def load(weights=None, device="cpu"):
    """The network with its trained weights, in eval mode."""
    from safetensors.torch import load_file

    net = build_model()
    path = Path(weights) if weights else Path(__file__).with_name("weights.safetensors")
    net.load_state_dict(load_file(str(path), device=str(device)))
    return net.to(device).eval()
'''


def _safe_doc(s: str) -> str:
    return "".join(ch for ch in str(s) if ch.isalnum() or ch in "-_. ")[:80]


# ----------------------------------------------------------------------------- export


def _sub_spec(spec: ArchSpec, task: str) -> ArchSpec:
    b = spec.branch(task)
    return ArchSpec(spec.space, spec.input_shape, spec.stages[: b.tap], (b,), spec.genome)


def _state(model: nn.Module) -> dict:
    return {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}


def _write_model(folder: Path, model: O.MultiTaskNet, spec: ArchSpec, title: str) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "model.py", generate_source(model, spec, title))
    save_file(_state(model), str(folder / "weights.safetensors"))


def _onnx(model: nn.Module, x: torch.Tensor, path: Path) -> dict:
    """ONNX export, checked against torch with onnxruntime."""
    import onnxruntime as ort

    names = list(model.branches)
    wrapper = _TupleOut(model, names).eval()  # a train-mode wrapper would flip the model back to train()
    torch.onnx.export(
        wrapper, (x,), str(path), input_names=["x"], output_names=names,
        dynamic_axes={"x": {0: "batch"}, **{n: {0: "batch"} for n in names}}, dynamo=False,
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x.numpy()})
    with torch.no_grad():
        ref = model(x)
    diff = max(float(np.abs(g - ref[n].numpy()).max()) for g, n in zip(got, names))
    return {"file": path.name, "bytes": path.stat().st_size, "max_abs_diff_vs_torch": diff}


class _TupleOut(nn.Module):
    def __init__(self, model, names):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, x):
        out = self.model(x)
        return tuple(out[n] for n in self.names)


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
) -> Path:
    from safetensors.torch import load_file

    from nasmt.model.build import build, cost
    from nasmt.data import load_data
    from nasmt.data.suite import suite_from_json
    from nasmt.train import TrainConfig, evaluate, train

    run_dir, out = Path(run_dir), Path(out)
    if retrain_epochs is not None and not retrain_epochs > 0:
        raise UserError(f"--retrain-epochs: must be positive (got {retrain_epochs})")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    run = load_run(run_dir)
    rec = choose_trial(run_dir, trial, pick, objectives)
    number = int(rec["number"])
    spec = ArchSpec.from_json(rec["spec"])
    suite = suite_from_json(run["suite"], file=run.get("suite_file", "<run>"))
    wfile = run_dir / "trials" / f"{number:05d}" / "weights.safetensors"
    data = load_data(suite)
    torch.manual_seed(seed)
    model = build(spec)
    if retrain_epochs:
        train(model, suite, data, TrainConfig(epochs=retrain_epochs, seed=seed, batch_size=run["config"].get("batch_size", 128), lr=run["config"].get("lr", 3e-3)))
    else:
        if not wfile.exists():
            raise RunDirError(f"{wfile}: weights of trial {number} are missing")
        model.load_state_dict(load_file(str(wfile)))
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    title = f"nasmt export of trial {number} from run {_safe_doc(run_dir.name)}"
    _write_model(out, model, spec, title)
    metrics_val = evaluate(model, suite, data, "val")
    metrics_test = evaluate(model, suite, data, "test")
    c = cost(model, spec.input_shape)
    x = torch.from_numpy(np.ascontiguousarray(data.x["val"][:8]))
    artifacts: dict = {"model.py": "generated PyTorch source", "weights.safetensors": "trained weights"}
    # torch.export program
    ep = torch.export.export(model, (x,))
    torch.export.save(ep, str(out / "model.pt2"))
    artifacts["model.pt2"] = "torch.export program (torch.export.load)"
    onnx_info = None
    if onnx:
        onnx_info = _onnx(model, x, out / "model.onnx")
        artifacts["model.onnx"] = f"ONNX (max abs diff vs torch {onnx_info['max_abs_diff_vs_torch']:.2e})"
    # one folder per task: only the trunk prefix and the branch it needs
    per_task = {}
    for b in spec.branches:
        sub = _sub_spec(spec, b.task)
        m = build(sub)
        full = model.state_dict()
        m.load_state_dict({k: full[k] for k in m.state_dict()})
        m.eval()
        folder = out / "tasks" / b.task
        _write_model(folder, m, sub, f"{title}: task {b.task} only")
        with torch.no_grad():
            diff = float((m(x)[b.task] - model(x)[b.task]).abs().max())
        per_task[b.task] = {
            "folder": f"tasks/{b.task}",
            "params": sum(p.numel() for p in m.parameters()),
            "bytes": (folder / "weights.safetensors").stat().st_size,
            "max_abs_diff_vs_full": diff,
        }
    quant_info = None
    if quantized and any(
        p.w != "fp32" or p.a != "fp32" for p in [*(s.precision for s in spec.stages), *(b.precision for b in spec.branches)]
    ):
        try:
            from nasmt import quantNone
        except ImportError:
            quant = None
        if quant is not None and hasattr(quant, "export_quantized"):
            quant_info = quant.export_quantized(model, spec, suite, data, out)
    arch = {
        "nasmt_export": 1,
        "run": str(run_dir.resolve()),
        "trial": number,
        "spec": spec.to_json(),
        "tasks": [
            {**t.to_dict(), "outputs": int(data.n_outputs[t.ident]), "classes": data.class_labels.get(t.ident),
             "target_stats": data.target_stats.get(t.ident)}
            for t in suite.tasks
        ],
        "input_shape": list(spec.input_shape),
        "feature_names": list(data.feature_names),
        "objectives": run["objectives"],
        "search_metrics": rec["metrics"],
        "val_metrics": metrics_val,
        "test_metrics": metrics_test,
        "cost": {"params": c["params"], "flops": c["flops"], "tasks": c["tasks"]},
        "onnx": onnx_info,
        "per_task": per_task,
        "quantized": quant_info,
        "retrained_epochs": retrain_epochs,
        "exported_at": time.time(),
    }
    atomic_write_json(out / "arch.json", arch)
    cmd = ["nasmt", "export", str(run_dir), "--trial", str(number), "--out", str(out)]
    if retrain_epochs:
        cmd += ["--retrain-epochs", f"{retrain_epochs:g}"]
    atomic_write_text(out / "MODEL_CARD.md", _card(arch, suite, spec, rec, shlex.join(cmd), run, artifacts))
    return out


def _card(arch, suite, spec: ArchSpec, rec, cmd, run, artifacts) -> str:
    from html import escape

    def e(s):  # user text in markdown: escape HTML and pipes
        return escape(str(s)).replace("|", "\\|")

    objs = ", ".join(f"{o['name']} ({o['direction']})" for o in run["objectives"])
    rows = []
    for t in suite.tasks:
        m = t.metric
        rows.append(
            f"| {e(t.name)} | {t.kind} | {m} | {arch['val_metrics'][f'{t.ident}.{m}']:.4f} | "
            f"{arch['test_metrics'][f'{t.ident}.{m}']:.4f} | {arch['cost']['tasks'][t.ident]['path_params']:,} | "
            f"{spec.branch(t.ident).tap} | {spec.branch(t.ident).precision} |"
        )
    stages = "\n".join(
        f"| {i} | {' '.join(str(o) for o in s.ops) or 'identity'} | {s.precision} |" for i, s in enumerate(spec.stages, 1)
    )
    arts = "\n".join(f"- `{k}`: {v}" for k, v in artifacts.items())
    q = arch.get("quantized")
    qline = f"\nQuantized artifact: `{q.get('file')}` ({q.get('bytes', 0):,} bytes).\n" if q else ""
    return f"""# Model card: trial {rec['number']} ({spec.hash})

Suite **{e(suite.name)}**, search space **{e(spec.space)}**; chosen from run `{e(Path(arch['run']).name)}`
searched for {e(objs)}.

| task | kind | metric | validation | test | path params | taps stage | precision (w/a) |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Whole model: {arch['cost']['params']:,} parameters, {arch['cost']['flops']:,} FLOPs per example.

| stage | ops | precision (w/a) |
|---|---|---|
{stages}
{qline}
Artifacts:
{arts}
- `tasks/<task>/`: the trunk prefix and branch one task needs (model.py + weights)
- `arch.json`: the ArchSpec, task names/classes, metrics

Reproduce: `{cmd}`

Inputs: {"images " + str(tuple(spec.input_shape)) + " in [0, 1]" if len(spec.input_shape) == 3 else "vectors of the encoded features listed in arch.json (standardized numerics, one-hot categoricals)"}.
"""
