"""`stratify = "<task>"` in a tabular suite's [data]: every split keeps the task's class
shares (tasks/loans.toml: paid_off, 447 positives in 10,000 loans), the split sizes stay
those of the plain split, and a suite without it keeps its plain split."""

from __future__ import annotations

import numpy as np

from nasmt.data import load_data_cached
from nasmt.data.splits import SPLITS
from nasmt.data.suite import load_suite
from nasmt.data.tabular import split_indices
from conftest import ROOT


def test_loans_splits_keep_the_positive_share():
    suite = load_suite(ROOT / "tasks" / "loans.toml")
    assert suite.data.options["stratify"] == "paid_off"
    data = load_data_cached(suite)
    pos = {s: int(data.y[s]["paid_off"].sum()) for s in SPLITS}
    assert sum(pos.values()) == 447
    for s in SPLITS:
        assert abs(pos[s] - 447 * data.n(s) / 10000) < 1.0, (s, pos)  # the plain split's val held 38 of 44.7
    rows = np.concatenate([data.meta["rows"][s] for s in SPLITS])
    assert len(np.unique(rows)) == 10000  # a partition of the rows


def test_every_class_in_its_share_and_sizes_unchanged():
    rng = np.random.default_rng(3)
    codes = rng.choice(5, size=997, p=[0.6, 0.25, 0.1, 0.04, 0.01])
    plain = split_indices(997, {"split_seed": 4, "val_fraction": 0.15})
    strat = split_indices(997, {"split_seed": 4, "val_fraction": 0.15}, codes)
    assert {s: len(v) for s, v in strat.items()} == {s: len(v) for s, v in plain.items()}
    assert np.array_equal(np.sort(np.concatenate(list(strat.values()))), np.arange(997))
    for s, idx in strat.items():
        share = np.bincount(codes[idx], minlength=5) / len(idx)
        assert np.abs(share * len(idx) - np.bincount(codes, minlength=5) / 997 * len(idx)).max() <= 1.0, s
    # a cap (n_train) takes the first rows of a split: they stay a random draw, not one class's block
    assert len(np.unique(codes[strat["train"][:60]])) >= 3
