"""Latency of a policy's artifact: measured, and predicted from a per-op table.

`model_latency()` measures the real artifact (median of repeated ORT runs after a
warm-up, 1 intra-op thread). `predicted_latency_ms()` is an FBNet-style per-op lookup
table built lazily once per device and cached in `$NASMT_CACHE/latency-<device>.json`
(default ~/.cache/nasmt): each distinct (op, params, input shape, precision, batch) is
exported alone and measured once; predicted = per-run overhead + sum of entries.
"""

from __future__ import annotations

import json
import os
import platform
import re
import tempfile
from pathlib import Path

import torch
from torch import nn

from nasmt.cache import cache_dir
from nasmt.model.build import members, units
from nasmt.quant.artifact import ARTIFACT, OPSET, export_onnx
from nasmt.quant.policy import group_paths
from nasmt.quant.runtime import TIMED_RUNS, measure_latency
from nasmt.space.spec import ArchSpec, Precision

OVERHEAD_REPS = 100  # timed runs of the empty (Identity) model: the per-run overhead
OP_REPS = 30  # timed runs of one op's model
OP_CALIB_N = 16  # random calibration inputs of one op's model
DEVICE_SLUG_LEN = 40  # characters of the CPU model name kept in the device name


def device_name(threads: int = 1) -> str:
    """e.g. 'cpu-amd-epyc-7b13-ort1.22.0-t1': CPU model, ORT version, intra-op threads."""
    import onnxruntime as ort

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    slug = re.sub(r"[^a-z0-9]+", "-", cpu.lower()).strip("-")[:DEVICE_SLUG_LEN]
    return f"cpu-{slug}-ort{ort.__version__}-t{threads}"


def _shape_key(shape) -> str:
    return "x".join(map(str, shape))


class LatencyTable:
    """Per-op latency lookup table (ms) for one device, persisted as JSON."""

    def __init__(self, path: Path | None = None, threads: int = 1):
        self.threads = threads
        self.path = Path(path) if path else cache_dir() / f"latency-{device_name(threads)}.json"
        self.entries: dict[str, float] = {}
        self.measured = 0  # entries measured by this object (the rest came from disk)
        self.entries.update(self._read())

    def _read(self) -> dict:
        """The entries on disk; an unreadable file counts as empty (it is only a cache)."""
        if not self.path.exists():
            return {}
        try:
            return json.loads(self.path.read_text()).get("entries", {})
        except (json.JSONDecodeError, OSError):
            return {}

    def _save(self):
        """Merge with what other workers wrote meanwhile, then replace the file atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        disk = self._read()
        disk.update(self.entries)
        self.entries = disk
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps({"device": device_name(self.threads), "entries": disk}, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    def overhead(self, input_shape, batch: int) -> float:
        """Latency of a model that does nothing (one Identity): the per-run overhead."""
        key = f"__overhead__|{_shape_key(input_shape)}|b{batch}"
        if key not in self.entries:
            import onnx
            from onnx import TensorProto, helper

            x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", *input_shape])
            y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", *input_shape])
            m = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "id", [x], [y]),
                                  opset_imports=[helper.make_opsetid("", OPSET)])
            m.ir_version = 10
            with tempfile.TemporaryDirectory() as d:
                p = Path(d) / "id.onnx"
                onnx.save(m, str(p))
                self.entries[key] = measure_latency(p, input_shape, batch, reps=OVERHEAD_REPS, threads=self.threads)
            self.measured += 1
            self._save()
        return self.entries[key]

    def op(self, key: str, module: nn.Module, prec: Precision, in_shape: tuple, batch: int) -> float:
        """Latency of one op's artifact minus the per-run overhead (>= 0). `batch`: the rows
        the op sees (an ensemble's members are k rows per example)."""
        if key not in self.entries:
            torch.manual_seed(0)
            module = module.eval()
            calib = torch.rand(OP_CALIB_N, *in_shape)
            with tempfile.TemporaryDirectory() as d:
                p = Path(d) / "op.onnx"
                export_onnx(module, [("", prec)], calib, p, output_names=["y"])
                t = measure_latency(p, in_shape, batch, reps=OP_REPS, threads=self.threads)
            self.entries[key] = max(t - self.overhead(in_shape, batch), 0.0)
            self.measured += 1
            self._save()
        return self.entries[key]


def _units(spec: ArchSpec) -> list[tuple[str, nn.Module, Precision, tuple, int]]:
    """(key, modules, precision, input shape, rows per example) of every op the artifact
    runs, in order: rows is an ensemble's k after its `ensemble` op (its members are k rows),
    else 1. Ops without modules and dropout (the identity at inference) run nothing."""
    precision = dict(group_paths(spec))
    out = []
    rows = 1
    for u in units(spec):
        if not u.modules or u.op in ("dropout", "mean"):  # an ensemble's mean: a reshape and a sum, left out
            continue
        seq = nn.Sequential(*u.modules)
        has_w = any(isinstance(m, (nn.Conv2d, nn.Linear)) for m in seq.modules())
        p = precision[u.group] if has_w else Precision()
        out.append((f"{u.label}|{_shape_key(u.shape.dims)}|{p.w}/{p.a}", seq, p, u.shape.dims, rows))
        if u.op == "ensemble":
            rows = members(spec)
    return out


_TABLES: dict = {}  # one table per (path, threads) per worker process


def latency_table(path: Path | None = None, threads: int = 1) -> LatencyTable:
    key = (str(path) if path else None, threads)
    if key not in _TABLES:
        _TABLES[key] = LatencyTable(path, threads)
    return _TABLES[key]


def predicted_latency_ms(spec: ArchSpec, batch: int = 1, table: LatencyTable | None = None) -> float:
    """Per-run overhead + sum of per-op table entries (measuring any missing entry once)."""
    table = table or latency_table()
    total = table.overhead(tuple(spec.input_shape), batch)
    for key, mods, prec, in_shape, rows in _units(spec):
        total += table.op(f"{key}|b{batch * rows}", mods, prec, in_shape, batch * rows)
    return float(total)


def model_latency(model: nn.Module, spec: ArchSpec, calib_x: torch.Tensor, batch: int = 1, act: dict | None = None,
                  reps: int = TIMED_RUNS) -> float:
    """Measured latency (ms) of the deployable artifact of (model, spec)."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / ARTIFACT
        export_onnx(model, group_paths(spec), calib_x, p, act=act)
        return measure_latency(p, spec.input_shape, batch, reps=reps)
