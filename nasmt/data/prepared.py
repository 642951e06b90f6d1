"""`PreparedData`: a suite's arrays, split into train / val / test, ready for training,
with the fitted `Preprocessing` that produced them (and decodes the model's outputs)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nasmt.data.preprocessing import Preprocessing


@dataclass
class PreparedData:
    x: dict[str, np.ndarray]  # split -> float32 (N,C,H,W) images in [0,1] or (N,D) vectors
    y: dict[str, dict[str, np.ndarray]]  # split -> task ident -> labels
    preprocessing: Preprocessing  # fitted on the train split; encodes x, decodes outputs
    meta: dict = field(default_factory=dict)  # informational: source, row / source indices

    @property
    def input_shape(self) -> tuple[int, ...]:  # (C,H,W) or (D,)
        return self.preprocessing.input_shape

    @property
    def columns(self) -> tuple[int, ...]:  # the tabular column layout embeddings read (0 numeric, k one-hot width)
        return self.preprocessing.layout

    @property
    def n_outputs(self) -> dict[str, int]:  # task ident -> output units
        return self.preprocessing.n_outputs

    @property
    def class_labels(self) -> dict[str, list[str]]:  # task ident -> label names (multiclass / binary)
        return self.preprocessing.class_labels

    @property
    def feature_names(self) -> list[str]:  # vector inputs: encoded column names; images: []
        return self.preprocessing.feature_names

    @property
    def target_stats(self) -> dict[str, tuple[float, float]]:  # regression ident -> (train mean, train std)
        return self.preprocessing.target_stats

    def n(self, split: str) -> int:
        return int(self.x[split].shape[0])
