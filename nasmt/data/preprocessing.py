"""`Preprocessing`: what a suite's loader fitted on the training split, as plain data.

Inputs: tabular features in the order the model sees them (numeric columns with their
train mean and std, categoricals with their vocabulary in encoded order), or an image
shape and pixel scale. Outputs: per task its class labels (binary: negative, positive)
or the regression target's train mean and std. `to_json()` is `preprocessing.json` of
an export; `encode` (see `nasmt.data.encoding`) is the one path from raw columns to
features, used by the loader and, copied, by every exported `model.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nasmt.data import encoding

FORMAT = 1  # preprocessing.json's "format": bumped when its layout changes
NUMERIC, CATEGORICAL = "numeric", "categorical"
TABULAR, IMAGE = "tabular", "image"


@dataclass(frozen=True)
class Column:
    """One raw input column: numeric (standardized with `mean`, `std`; a missing value
    becomes the mean) or categorical (one-hot over `values`, the training split's
    distinct values as `encoding.category_key` text; missing or unseen: all zeros)."""

    name: str
    kind: str
    mean: float = 0.0
    std: float = 1.0
    values: tuple[str, ...] = ()

    def feature_names(self) -> list[str]:
        return [self.name] if self.kind == NUMERIC else [f"{self.name}={v}" for v in self.values]

    def to_json(self) -> dict:
        if self.kind == NUMERIC:
            return {"name": self.name, "kind": NUMERIC, "mean": self.mean, "std": self.std}
        return {"name": self.name, "kind": CATEGORICAL, "values": list(self.values)}


@dataclass(frozen=True)
class TaskCoding:
    """How one task's output decodes: multiclass `labels` (class index order), binary
    `labels` (negative, positive), regression `mean` / `std` (the network predicts the
    standardized target)."""

    ident: str
    kind: str
    labels: tuple[str, ...] = ()
    mean: float = 0.0
    std: float = 1.0

    @property
    def n_outputs(self) -> int:
        return len(self.labels) if self.kind == "multiclass" else 1

    def to_json(self) -> dict:
        if self.kind == "regression":
            return {"ident": self.ident, "kind": self.kind, "mean": self.mean, "std": self.std}
        return {"ident": self.ident, "kind": self.kind, "labels": list(self.labels)}


@dataclass(frozen=True)
class Preprocessing:
    input_kind: str  # TABULAR | IMAGE
    input_shape: tuple[int, ...]  # (D,) or (C, H, W)
    tasks: tuple[TaskCoding, ...]
    columns: tuple[Column, ...] = ()  # tabular
    pixel_scale: float | None = None  # images: uint8 pixels are divided by this

    @property
    def feature_names(self) -> list[str]:
        return [n for c in self.columns for n in c.feature_names()]

    @property
    def layout(self) -> tuple[int, ...]:
        """The encoded columns in feature order: 0 a numeric column, k a categorical one's
        k-value one-hot block (a categorical with no training values encodes to nothing
        and is left out); () for images. What an embedding op reads (ArchSpec.columns)."""
        return tuple(0 if c.kind == NUMERIC else len(c.values) for c in self.columns if c.kind == NUMERIC or c.values)

    @property
    def class_labels(self) -> dict[str, list[str]]:
        return {t.ident: list(t.labels) for t in self.tasks if t.kind != "regression"}

    @property
    def target_stats(self) -> dict[str, tuple[float, float]]:
        return {t.ident: (t.mean, t.std) for t in self.tasks if t.kind == "regression"}

    @property
    def n_outputs(self) -> dict[str, int]:
        return {t.ident: t.n_outputs for t in self.tasks}

    def for_task(self, ident: str) -> Preprocessing:
        """The same inputs, only task `ident`'s output (a per-task export)."""
        return Preprocessing(self.input_kind, self.input_shape, tuple(t for t in self.tasks if t.ident == ident),
                             self.columns, self.pixel_scale)

    def encode(self, columns, where: str = "input") -> tuple[np.ndarray, dict[str, int]]:
        """(float32 features, unseen categories per column) of raw `columns`."""
        return encoding.encode(self.to_json(), columns, where)

    def to_json(self) -> dict:
        inp = {"kind": self.input_kind, "shape": list(self.input_shape)}
        if self.input_kind == TABULAR:
            inp["columns"] = [c.to_json() for c in self.columns]
        else:
            inp["scale"] = self.pixel_scale
        return {"format": FORMAT, "input": inp, "tasks": [t.to_json() for t in self.tasks]}

    @classmethod
    def from_json(cls, d: dict) -> Preprocessing:
        inp = d["input"]
        columns = tuple(
            Column(c["name"], c["kind"], c.get("mean", 0.0), c.get("std", 1.0), tuple(c.get("values", ())))
            for c in inp.get("columns", ())
        )
        tasks = tuple(
            TaskCoding(t["ident"], t["kind"], tuple(t.get("labels", ())), t.get("mean", 0.0), t.get("std", 1.0))
            for t in d["tasks"]
        )
        return cls(inp["kind"], tuple(inp["shape"]), tasks, columns, inp.get("scale"))
