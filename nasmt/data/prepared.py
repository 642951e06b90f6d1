"""`PreparedData`: a suite's arrays, split into train / val / test, ready for training."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class PreparedData:
    x: dict[str, np.ndarray]  # split -> float32 (N,C,H,W) images in [0,1] or (N,D) vectors
    y: dict[str, dict[str, np.ndarray]]  # split -> task ident -> labels
    input_shape: tuple[int, ...]  # (C,H,W) or (D,)
    n_outputs: dict[str, int]  # task ident -> output units
    class_labels: dict[str, list[str]]  # task ident -> label names (multiclass / binary)
    feature_names: list[str]  # vector inputs: encoded column names; images: []
    target_stats: dict[str, tuple[float, float]]  # regression ident -> (train mean, train std)
    meta: dict = field(default_factory=dict)  # informational: source, row / source indices

    def n(self, split: str) -> int:
        return int(self.x[split].shape[0])
