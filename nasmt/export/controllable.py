"""`nasmt export RUN --controllable --out DIR`: the front of a one-shot run as one folder,
the trade-off chosen at run time (issue 18).

    shared.safetensors   each supernet bank tensor the front uses, once, cut to the box
                         holding every candidate's slice (nothing any candidate leaves unused
                         outside that box; the L-shaped corner a box may add is counted in
                         front.json "weights")
    own.safetensors      what is each candidate's own: BatchNorm running statistics
    front.json           per candidate: genome, spec, where each parameter comes from,
                         validation and test metrics of the network model.py runs, costs
                         (params, FLOPs, bytes, deployed size_bytes, measured latency),
                         per-task latency, the torch-vs-extracted check, ONNX files
    model.py             standalone (no nasmt import): load(), select(), predict()
    preprocessing.json   the data's fitted encoding; MODEL_CARD.md the card
    onnx/c<id>/          model.onnx per candidate (checked against torch with onnxruntime)
                         and, for quantized policies, the quantized artifact

Every candidate's network is the one a plain export of that trial rebuilds (bank slices,
BatchNorm recalibrated with the recorded settings); the exporter loads the written
folder back through the runtime model.py runs and records, per candidate, the max abs
difference of its outputs from that network's.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from nasmt.data import load_data_cached
from nasmt.data.encoding import PREPROCESSING_FILE
from nasmt.data.suite import suite_from_json
from nasmt.errors import RunDirError, UserError
from nasmt.export.codegen import safe_doc
from nasmt.export.controllable_card import controllable_card
from nasmt.export.controllable_codegen import FRONT_FILE, OWN_FILE, SHARED_FILE, generate_controllable
from nasmt.export.controllable_runtime import ControllableNet
from nasmt.export.card import CARD_FILE
from nasmt.export.write import CHECK_EXAMPLES, SOURCE_FILE, _write_onnx, quantized_artifact
from nasmt.model.build import build
from nasmt.model.supernet import _slice, plan_sources
from nasmt.quant import policy_summary
from nasmt.run import atomic_write_json, atomic_write_text, load_run, parse_objectives, read_json, read_trials
from nasmt.search.oneshot.bank import BANK_FILE, SUPERNET_DIR, inherited_model, load_bank, read_state, recalibration_of
from nasmt.run.controllable_front import controllable_front, front_objectives, thin_front
from nasmt.space.spec import ArchSpec
from nasmt.train import evaluate

CONTROLLABLE_FORMAT = 1  # front.json's "nasmt_controllable"
ONNX_DIR = "onnx"
ONNX_TOLERANCE = 1e-4  # max abs diff of a candidate's ONNX file from torch
LATENCY_REPEATS = 30


def is_controllable(folder: Path) -> bool:
    d = read_json(Path(folder) / FRONT_FILE)
    return isinstance(d, dict) and "nasmt_controllable" in d


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    if not force and out.is_dir() and any(out.iterdir()) and not is_controllable(out):
        raise UserError(f"--out {out}: folder is not empty and holds no earlier controllable export; "
                        "pass --force to write into it anyway")


def export_controllable(run_dir: Path, out: Path, objectives: str | None = None, quantized: bool = True,
                        onnx: bool = True, force: bool = False, latency_repeats: int = LATENCY_REPEATS,
                        max_candidates: int | None = None) -> Path:
    """Write the controllable export of one-shot run `run_dir` into `out` (see the module
    docstring); nothing in `out` changes unless every artifact was written. `max_candidates`:
    thin the front to that many (`thin_front`: the cheapest, each task's best, then spread)."""
    run_dir, out = Path(run_dir), Path(out)
    if max_candidates is not None and max_candidates < 1:
        raise UserError(f"--max-candidates: must be at least 1 (got {max_candidates})")
    run = load_run(run_dir)
    state = read_state(run_dir)
    if state is None:
        raise UserError(f"--controllable: {run_dir} is not a one-shot run (no {SUPERNET_DIR}/{BANK_FILE}); "
                        "search with --oneshot, or export one trial without --controllable")
    _check_out(out, force)
    suite = suite_from_json(run["suite"], file=run.get("suite_file", "<run>"))
    objs = parse_objectives(objectives, suite) if objectives else front_objectives(run, suite)
    front = controllable_front(read_trials(run_dir), objs, state.get("epochs_done"))
    if not front:
        raise RunDirError(f"{run_dir}: no complete, within-budget inherited candidate on the bank it holds")
    n_front = len(front)
    if max_candidates is not None:
        front = thin_front(front, objs, max_candidates)
    data = load_data_cached(suite)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.new", dir=out.parent if out.parent.is_dir() else None))
    try:
        _write(tmp, out, run_dir, run, suite, data, front, objs, quantized, onnx, latency_repeats, n_front)
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _swap_in(tmp: Path, out: Path) -> None:
    if out.is_dir() and (is_controllable(out) or not any(out.iterdir())):
        old = out.with_name(f".{out.name}.old{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    elif out.is_dir():  # --force into a folder holding other files: ours replace same-named ones
        for p in tmp.iterdir():
            dst = out / p.name
            if dst.is_dir():
                shutil.rmtree(dst)
            os.replace(p, dst)
        tmp.rmdir()
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)
    os.chmod(out, 0o755)


def shared_tensors(bank, plans: dict) -> tuple[dict, dict]:
    """(bank key -> the bank tensor cut to the box of every plan's slices, weight
    accounting: elements stored and elements the union of the slices covers)."""
    params = dict(bank.named_parameters())
    shapes: dict = {}
    grouped: set = set()  # keys of reshaped / mapped pieces: stored as first entries of every dimension
    for sources in plans.values():
        for pieces in sources.values():
            for k, shape, *final in pieces:
                grouped.update([k] if final else [])
                old = shapes.get(k)
                shapes[k] = tuple(shape) if old is None else tuple(max(a, b) for a, b in zip(old, shape))
    region = lambda t, k, s: _slice(t, s, s if k in grouped else None)  # noqa: E731
    shared = {k: region(params[k].detach(), k, s).contiguous().clone().cpu() for k, s in sorted(shapes.items())}
    union = 0
    for k, t in shared.items():
        mask = torch.zeros(t.shape, dtype=torch.bool)
        for sources in plans.values():
            for pieces in sources.values():
                for key, shape, *rest in pieces:
                    if key == k and len(rest) > 1:  # a mapped piece: its first rows, its columns
                        mask[: shape[0], list(rest[1])] = True
                    elif key == k:
                        region(mask, k, shape).fill_(True)
        union += int(mask.sum())
    return shared, {"stored_elements": sum(t.numel() for t in shared.values()), "union_elements": union}


def _state_bytes(model) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def _write(tmp: Path, final: Path, run_dir: Path, run: dict, suite, data, front: list, objs, quantized: bool,
           onnx: bool, latency_repeats: int, n_front: int) -> None:
    bank, _, _ = load_bank(run_dir, data)
    specs = [ArchSpec.from_json(r.spec) for r in front]
    models = {i: inherited_model(bank, s, data, recalibration_of(r)) for i, (s, r) in enumerate(zip(specs, front))}
    plans = {i: plan_sources(bank.grammar, s, bank.split).sources for i, s in enumerate(specs)}
    shared, weights = shared_tensors(bank, plans)
    own = {f"c{i}.{n}": b.detach().clone().cpu() for i, m in models.items() for n, b in m.named_buffers()}
    save_file(shared, str(tmp / SHARED_FILE))
    if own:
        save_file(own, str(tmp / OWN_FILE))
    atomic_write_json(tmp / PREPROCESSING_FILE, data.preprocessing.to_json())
    with torch.device("meta"):
        structures = {i: build(s) for i, s in enumerate(specs)}
    title = f"nasmt controllable export of run {safe_doc(run_dir.name)}"
    idents = [t.ident for t in suite.tasks]
    atomic_write_text(tmp / SOURCE_FILE, generate_controllable(structures, specs[0].input_shape, idents, title))
    cands = []
    for i, (spec, rec) in enumerate(zip(specs, front)):
        m, rm = models[i], rec.metrics  # the record's costs are build(spec)'s, exactly
        val, test = evaluate(m, suite, data, "val"), evaluate(m, suite, data, "test")
        cands.append({
            "id": i, "trial": rec.number, "hash": spec.hash, "genome": spec.genome_dict, "sharing": spec.sharing,
            "policy": policy_summary(spec), "spec": spec.to_json(),
            "sources": {n: [[k, list(sh), *(None if x is None else list(x) for x in rest)] for k, sh, *rest in pieces]
                        for n, pieces in plans[i].items()},
            "val": {t.ident: val[f"{t.ident}.{t.metric}"] for t in suite.tasks},
            "test": {t.ident: test[f"{t.ident}.{t.metric}"] for t in suite.tasks},
            "val_error": {t: val[f"{t}.error"] for t in idents}, "test_error": {t: test[f"{t}.error"] for t in idents},
            "val_mean_error": val["mean_error"], "test_mean_error": test["mean_error"],
            "search_metrics": {k: v for k, v in rec.metrics.items() if isinstance(v, (int, float, str, bool))},
            "costs": {"params": rm["params"], "flops": rm["flops"], "bytes": _state_bytes(m),
                      "size_bytes": rm.get("size_bytes"), "latency_ms": None},
            "task_paths": {t: {"params": rm.get(f"{t}.path_params"), "flops": rm.get(f"{t}.path_flops")} for t in idents},
        })
    doc = {
        "nasmt_controllable": CONTROLLABLE_FORMAT, "run": str(run_dir.resolve()),
        "tasks": [{"ident": t.ident, "name": t.name, "kind": t.kind, "metric": t.metric} for t in suite.tasks],
        "input_shape": list(specs[0].input_shape), "feature_names": list(data.feature_names),
        "front_objectives": [o.to_json() for o in objs], "supernet_epochs": read_state(run_dir)["epochs_done"],
        "front_size": n_front,
        "selection": "highest preference-weighted validation quality within budget (nasmt/run/controllable.py)",
        "latency": {"batch": 1, "threads": 1, "repeats": latency_repeats,
                    "what": "median torch eager forward of model.py's network, CPU"},
        "candidates": cands,
    }
    atomic_write_json(tmp / FRONT_FILE, doc)
    _check_and_measure(tmp, doc, structures, models, data, latency_repeats)
    x = torch.from_numpy(np.ascontiguousarray(data.x["val"][:CHECK_EXAMPLES]))
    for c, spec in zip(cands, specs):
        folder = tmp / ONNX_DIR / f"c{c['id']}"
        folder.mkdir(parents=True, exist_ok=True)
        m = models[c["id"]]
        c["onnx"] = {**_write_onnx(m, x, folder / "model.onnx"), "file": f"{ONNX_DIR}/c{c['id']}/model.onnx"} if onnx else None
        if c["onnx"] and c["onnx"]["max_abs_diff_vs_torch"] > ONNX_TOLERANCE:
            raise RuntimeError(f"candidate {c['id']}: ONNX differs from torch by {c['onnx']['max_abs_diff_vs_torch']:.2e}")
        q = quantized_artifact(m, spec, suite, data, folder) if quantized else None
        c["quantized"] = {**q, "file": f"{ONNX_DIR}/c{c['id']}/{q['file']}"} if q else None
        if not any(folder.iterdir()):
            folder.rmdir()
    if (tmp / ONNX_DIR).is_dir() and not any((tmp / ONNX_DIR).iterdir()):
        (tmp / ONNX_DIR).rmdir()
    doc["weights"] = {**weights, "shared_bytes": (tmp / SHARED_FILE).stat().st_size,
                      "own_bytes": (tmp / OWN_FILE).stat().st_size if own else 0,
                      "separate_sum_bytes": sum(c["costs"]["bytes"] for c in cands),
                      "largest_single_bytes": max(c["costs"]["bytes"] for c in cands)}
    doc["exported_at"] = time.time()
    atomic_write_json(tmp / FRONT_FILE, doc)
    command = ["nasmt", "export", str(run_dir), "--controllable", "--out", str(final)]
    if len(cands) < n_front:
        command += ["--max-candidates", str(len(cands))]
    atomic_write_text(tmp / CARD_FILE, controllable_card(doc, shlex.join(command)))


def load_controllable(folder: Path, front: dict | None = None) -> ControllableNet:
    """The folder's network through the runtime model.py runs (structures from the specs)."""
    from safetensors.torch import load_file

    front = front or read_json(folder / FRONT_FILE)
    shared = load_file(str(folder / SHARED_FILE))
    own = load_file(str(folder / OWN_FILE)) if (folder / OWN_FILE).exists() else {}
    with torch.device("meta"):
        structures = [build(ArchSpec.from_json(c["spec"])) for c in front["candidates"]]
    return ControllableNet(front, structures, shared, own, read_json(folder / PREPROCESSING_FILE))


@torch.no_grad()
def _check_and_measure(folder: Path, doc: dict, structures, models, data, repeats: int) -> None:
    """Load the written folder back; per candidate: max abs diff of its outputs from the
    extracted network's on the validation split, then latency (all tasks, each task)."""
    net = load_controllable(folder, doc)
    x = torch.from_numpy(np.ascontiguousarray(data.x["val"]))
    for c in doc["candidates"]:
        net.select(candidate=c["id"])
        got, want = net(x), models[c["id"]](x)
        c["check"] = {"max_abs_diff_vs_extracted": max(float((got[t] - want[t]).abs().max()) for t in want),
                      "rows": int(len(x))}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        total = net.measure_latency(batch=1, repeats=repeats)
        per_task = {t: net.measure_latency(batch=1, repeats=repeats, tasks=[t]) for t in net.tasks}
    finally:
        torch.set_num_threads(threads)
    for c in doc["candidates"]:
        c["costs"]["latency_ms"] = total[c["id"]]
        c["task_latency_ms"] = {t: per_task[t][c["id"]] for t in net.tasks}
