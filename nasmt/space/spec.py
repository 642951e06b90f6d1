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
    tap: int  # 1-based trunk stage its path goes through (its group's tap when it joins one)
    layers: tuple[OpSpec, ...] = ()
    head: tuple[OpSpec, ...] = ()
    out: int = 1  # output units (from the task)
    precision: Precision = Precision()
    group: str | None = None  # the task group whose output the branch reads instead of stage `tap`
    kind: str | None = None  # the task's kind, recorded only where an ensemble's members end at this branch
    # (nasmt.model.ops.MemberMean averages probabilities of classification tasks); None: the mean of outputs

    def to_json(self) -> dict:
        d = {
            "task": self.task,
            "tap": self.tap,
            "layers": [o.to_json() for o in self.layers],
            "head": [o.to_json() for o in self.head],
            "out": self.out,
            "precision": self.precision.to_json(),
        }
        if self.group is not None:  # absent for a plain branch: older specs keep their hash
            d["group"] = self.group
        if self.kind is not None:  # likewise absent without an ensemble
            d["kind"] = self.kind
        return d

    @staticmethod
    def from_json(d: dict) -> "BranchSpec":
        return BranchSpec(
            task=d["task"],
            tap=int(d["tap"]),
            layers=tuple(OpSpec.from_json(o) for o in d["layers"]),
            head=tuple(OpSpec.from_json(o) for o in d["head"]),
            out=int(d["out"]),
            precision=Precision(**d.get("precision", {})),
            group=d.get("group"),
            kind=d.get("kind"),
        )


@dataclass(frozen=True)
class GroupSpec:
    """A task group: a partial branch (its own tap and layers) shared by the tasks that
    join it; each of them then adds its own layers and head (a tree of tasks)."""

    name: str  # the label join(group=...) names
    tap: int  # 1-based trunk stage it reads
    layers: tuple[OpSpec, ...] = ()
    precision: Precision = Precision()

    def to_json(self) -> dict:
        return {"name": self.name, "tap": self.tap, "layers": [o.to_json() for o in self.layers],
                "precision": self.precision.to_json()}

    @staticmethod
    def from_json(d: dict) -> "GroupSpec":
        return GroupSpec(d["name"], int(d["tap"]), tuple(OpSpec.from_json(o) for o in d["layers"]),
                         Precision(**d.get("precision", {})))


@dataclass(frozen=True)
class TrainSpec:
    """How a trial trains, when the grammar decides it (the 'train' rule): the loss
    balancing method, the AdamW learning rate / weight decay, and the recipe: rate
    schedule and warm-up share, early-stopping patience, batch size, regression loss
    (None: the run's)."""

    balance: str = "equal"
    lr: float | None = None
    wd: float | None = None
    schedule: str | None = None
    warmup: float | None = None
    patience: int | None = None
    batch_size: int | None = None
    reg_loss: str | None = None

    RECIPE = ("schedule", "warmup", "patience", "batch_size", "reg_loss")  # TrainConfig fields of the same names

    def to_json(self) -> dict:
        d = {"balance": self.balance, "lr": self.lr, "wd": self.wd}
        d.update({k: getattr(self, k) for k in self.RECIPE if getattr(self, k) is not None})  # older specs keep their hash
        return d

    @staticmethod
    def from_json(d: dict) -> "TrainSpec":
        return TrainSpec(d.get("balance", "equal"), d.get("lr"), d.get("wd"),
                         **{k: d.get(k) for k in TrainSpec.RECIPE})


SHARING_FAMILIES = ("hard", "mmoe", "ple", "tree")  # ArchSpec.sharing joins the present ones with "+"


@dataclass(frozen=True)
class ArchSpec:
    space: str  # grammar name
    input_shape: tuple[int, ...]
    stages: tuple[StageSpec, ...]  # only the stages some task reads (deeper ones are dropped)
    branches: tuple[BranchSpec, ...]
    genome: tuple[tuple[str, object], ...] = field(default=(), compare=True)
    groups: tuple[GroupSpec, ...] = ()  # task groups some branch joins
    train: TrainSpec | None = None  # None: the grammar has no 'train' rule (the run's settings, equal balancing)
    columns: tuple[int, ...] = ()  # tabular input layout per raw column (0 numeric, k a k-value one-hot block),
    # set only when an op reads it (an embedding: nasmt.space.vocab.EMBED_OPS)

    @property
    def genome_dict(self) -> dict:
        return dict(self.genome)

    def branch(self, task: str) -> BranchSpec:
        for b in self.branches:
            if b.task == task:
                return b
        raise KeyError(task)

    def group(self, name: str) -> GroupSpec:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)

    @property
    def sharing(self) -> str:
        """The sharing family: 'hard' (tasks tap a shared trunk), 'mmoe' / 'ple' (an expert
        mixture ends the trunk), 'tree' (task groups); several joined with '+'."""
        ops = {o.op for s in self.stages for o in s.ops}
        present = [f for f in SHARING_FAMILIES[1:3] if f in ops] + (["tree"] if self.groups else [])
        return "+".join(present) or "hard"

    def train_overrides(self) -> dict:
        """The TrainConfig fields this architecture fixes through its 'train' rule
        (balance, lr, weight_decay and the recipe's schedule, warmup, patience, batch_size,
        reg_loss); empty without one."""
        if self.train is None:
            return {}
        d: dict = {"balance": self.train.balance}
        if self.train.lr is not None:
            d["lr"] = self.train.lr
        if self.train.wd is not None:
            d["weight_decay"] = self.train.wd
        d.update({k: getattr(self.train, k) for k in TrainSpec.RECIPE if getattr(self.train, k) is not None})
        return d

    @property
    def balance(self) -> str:
        return self.train.balance if self.train is not None else "equal"

    def arch_json(self) -> dict:
        """The architecture (and how it trains), no genome: what the hash covers. Groups
        and the train settings appear only when present, so older specs keep their hash."""
        d = {
            "space": self.space,
            "input_shape": list(self.input_shape),
            "stages": [s.to_json() for s in self.stages],
            "branches": [b.to_json() for b in self.branches],
        }
        if self.groups:
            d["groups"] = [g.to_json() for g in self.groups]
        if self.train is not None:
            d["train"] = self.train.to_json()
        if self.columns:
            d["columns"] = list(self.columns)
        return d

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
            groups=tuple(GroupSpec.from_json(g) for g in d.get("groups", [])),
            train=TrainSpec.from_json(d["train"]) if d.get("train") is not None else None,
            columns=tuple(int(c) for c in d.get("columns", ())),
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
        for g in self.groups:
            lines.append(f"  group {g.name} <- stage {g.tap} ({g.precision}): " + " ".join(str(o) for o in g.layers))
        for b in self.branches:
            ops = " ".join(str(o) for o in (*b.layers, *b.head))
            src = f"group {b.group}" if b.group is not None else f"stage {b.tap}"
            lines.append(f"  task {b.task} <- {src} ({b.precision}): {ops} -> linear({b.out})")
        if self.train is not None:
            lines.append(f"  train: balance={self.train.balance} lr={self.train.lr} wd={self.train.wd}"
                         + "".join(f" {k}={getattr(self.train, k)}" for k in TrainSpec.RECIPE if getattr(self.train, k) is not None))
        return "\n".join(lines)
