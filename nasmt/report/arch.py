"""The architecture view: a compact drawing of the selected trial's ArchSpec (trunk
stages with their ops and precision, and per task the stage its branch taps, the layers
of the task group it joins (labelled "group <name>:"), its own layers, head and output
size).

The data is computed here, once per distinct architecture (`payload["archs"]`, keyed by
spec hash); the drawing itself is `drawArch` in static/dashboard.js, because it changes
with the selection on the page, without a round trip to Python."""

from __future__ import annotations

from typing import NamedTuple

DEFAULT_PRECISION = "fp32"  # a spec without a precision entry runs in full precision


class _Precision(NamedTuple):
    w: str  # weights
    a: str  # activations


class _Stage(NamedTuple):
    ops: list[str]
    prec: _Precision


class _Branch(NamedTuple):
    task: str  # task name
    tap: int  # 1-based trunk stage it reads
    layers: list[str]
    head: list[str]
    out: int | None  # output size
    prec: _Precision


class _ArchInfo(NamedTuple):
    space: str
    input: list
    stages: list[_Stage]
    branches: list[_Branch]
    hash: str

    def to_json(self) -> dict:
        """The JSON the page's `drawArch` reads (nested objects, not arrays)."""
        return {
            "space": self.space, "input": self.input, "hash": self.hash,
            "stages": [{"ops": s.ops, "prec": s.prec._asdict()} for s in self.stages],
            "branches": [b._asdict() | {"prec": b.prec._asdict()} for b in self.branches],
        }


def _op_label(op: dict) -> str:
    name = str(op.get("op", "?"))
    rest = " ".join(f"{k}={v}" for k, v in sorted(op.items()) if k != "op")
    return f"{name} {rest}".strip()


def _prec(p: dict | None) -> _Precision:
    p = p or {}
    return _Precision(str(p.get("w", DEFAULT_PRECISION)), str(p.get("a", DEFAULT_PRECISION)))


def get_arch_info(spec: dict | None, task_names: dict[str, str] | None = None) -> _ArchInfo | None:
    """Drawing data of an ArchSpec JSON (None when the trial recorded no spec)."""
    if not spec:
        return None
    task_names = task_names or {}
    stages = [_Stage([_op_label(o) for o in s.get("ops", [])], _prec(s.get("precision"))) for s in spec.get("stages", [])]
    groups = {str(g.get("name")): g for g in spec.get("groups", [])}
    branches = []
    for b in spec.get("branches", []):
        ident = str(b.get("task", "?"))
        g = groups.get(str(b.get("group")))  # a task of a group: the group's shared layers come first
        shared = [f"group {g.get('name')}: {_op_label(o)}" for o in g.get("layers", [])] if g else []
        branches.append(_Branch(
            task=task_names.get(ident, ident), tap=int(b.get("tap", 1)),
            layers=shared + [_op_label(o) for o in b.get("layers", [])], head=[_op_label(o) for o in b.get("head", [])],
            out=b.get("out"), prec=_prec(b.get("precision")),
        ))
    return _ArchInfo(str(spec.get("space", "")), list(spec.get("input_shape", [])), stages, branches,
                     str(spec.get("hash", "")))
