"""ArchSpec: the plain-data contract between derivation, building, training and export.

Frozen dataclasses of builtins, a JSON round trip, a stable hash of the architecture,
and the genome (decision name -> value) it was derived from, so that
`derive(grammar, optuna.trial.FixedTrial(spec.genome_dict), suite) == spec`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class OpSpec:
    op: str
    params: tuple[tuple[str, object], ...] = ()  # sorted by name

    def get(self, name: str, default=None):
        for k, v in self.params:
            if k == name:
                return v
        return default

    def to_json(self) -> dict:
        return {"op": self.op, **{k: v for k, v in self.params}}

    @staticmethod
    def from_json(d: dict) -> "OpSpec":
        d = dict(d)
        op = d.pop("op")
        return OpSpec(op, tuple(sorted(d.items())))

    def __str__(self) -> str:
        return f"{self.op}({', '.join(f'{k}={v}' for k, v in self.params)})"


@dataclass(frozen=True)
class Precision:
    w: str = "fp32"
    a: str = "fp32"

    def to_json(self) -> dict:
        return {"w": self.w, "a": self.a}

    def __str__(self) -> str:
        return f"w:{self.w}/a:{self.a}"


@dataclass(frozen=True)
class StageSpec:
    ops: tuple[OpSpec, ...]
    precision: Precision = Precision()

    def to_json(self) -> dict:
        return {"ops": [o.to_json() for o in self.ops], "precision": self.precision.to_json()}

    @staticmethod
    def from_json(d: dict) -> "StageSpec":
        return StageSpec(tuple(OpSpec.from_json(o) for o in d["ops"]), Precision(**d.get("precision", {})))


@dataclass(frozen=True)
class BranchSpec:
    task: str  # task ident
    tap: int  # 1-based trunk stage whose output the branch reads
    layers: tuple[OpSpec, ...] = ()
    head: tuple[OpSpec, ...] = ()
    out: int = 1  # output units (from the task)
    precision: Precision = Precision()

    def to_json(self) -> dict:
        return {
            "task": self.task,
            "tap": self.tap,
            "layers": [o.to_json() for o in self.layers],
            "head": [o.to_json() for o in self.head],
            "out": self.out,
            "precision": self.precision.to_json(),
        }

    @staticmethod
    def from_json(d: dict) -> "BranchSpec":
        return BranchSpec(
            task=d["task"],
            tap=int(d["tap"]),
            layers=tuple(OpSpec.from_json(o) for o in d["layers"]),
            head=tuple(OpSpec.from_json(o) for o in d["head"]),
            out=int(d["out"]),
            precision=Precision(**d.get("precision", {})),
        )


@dataclass(frozen=True)
class ArchSpec:
    space: str  # grammar name
    input_shape: tuple[int, ...]
    stages: tuple[StageSpec, ...]  # only the stages some task reads (deeper ones are dropped)
    branches: tuple[BranchSpec, ...]
    genome: tuple[tuple[str, object], ...] = field(default=(), compare=True)

    @property
    def genome_dict(self) -> dict:
        return dict(self.genome)

    def branch(self, task: str) -> BranchSpec:
        for b in self.branches:
            if b.task == task:
                return b
        raise KeyError(task)

    def arch_json(self) -> dict:
        """The architecture alone (no genome): what the hash covers."""
        return {
            "space": self.space,
            "input_shape": list(self.input_shape),
            "stages": [s.to_json() for s in self.stages],
            "branches": [b.to_json() for b in self.branches],
        }

    def to_json(self) -> dict:
        return {**self.arch_json(), "genome": dict(self.genome), "hash": self.hash}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)

    @staticmethod
    def from_json(d: dict) -> "ArchSpec":
        return ArchSpec(
            space=d["space"],
            input_shape=tuple(int(x) for x in d["input_shape"]),
            stages=tuple(StageSpec.from_json(s) for s in d["stages"]),
            branches=tuple(BranchSpec.from_json(b) for b in d["branches"]),
            genome=tuple(sorted(d.get("genome", {}).items())),
        )

    @staticmethod
    def loads(s: str) -> "ArchSpec":
        return ArchSpec.from_json(json.loads(s))

    @property
    def hash(self) -> str:
        blob = json.dumps(self.arch_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def describe(self) -> str:
        lines = [f"{self.space} [{self.hash}] input {tuple(self.input_shape)}"]
        for i, s in enumerate(self.stages, 1):
            lines.append(f"  stage {i} ({s.precision}): " + " ".join(str(o) for o in s.ops))
        for b in self.branches:
            ops = " ".join(str(o) for o in (*b.layers, *b.head))
            lines.append(f"  task {b.task} <- stage {b.tap} ({b.precision}): {ops} -> linear({b.out})")
        return "\n".join(lines)
