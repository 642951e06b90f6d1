"""A finalized trial records the epoch early stopping kept (`final.train.best_epoch`, what
bench_tabular reports beside the finalized pick); without early stopping there is none."""

from __future__ import annotations

from dataclasses import replace

import torch

from nasmt.data import load_data_cached
from nasmt.data.suite import load_suite
from nasmt.run import TrialRecord, TrialStatus
from nasmt.search.finalize import finalize_trial
from nasmt.space.spec import ArchSpec, BranchSpec, OpSpec, StageSpec, TrainSpec
from conftest import ROOT

torch.set_num_threads(1)


def test_final_records_the_kept_epoch(tmp_path):
    suite = load_suite(ROOT / "tasks" / "fair.toml")
    data = load_data_cached(suite)
    spec = ArchSpec("t", tuple(data.input_shape), (StageSpec((OpSpec("fc", (("act", "relu"), ("h", 8))),)),),
                    tuple(BranchSpec(t, 1, out=n) for t, n in data.n_outputs.items()),
                    train=TrainSpec(lr=0.003, wd=0.0, patience=2, batch_size=256))
    rec = TrialRecord(0, TrialStatus.COMPLETE, spec=spec.to_json(), metrics={"mean_error": 1.0})
    new = finalize_trial(rec, {"seed": 0}, suite, data, 3, tmp_path)
    kept = new.final["train"]["best_epoch"]
    assert 1 <= kept <= 3 and new.final["steps"] >= kept * (data.n("train") // 256)
    plain = replace(spec, train=TrainSpec(lr=0.003, wd=0.0, batch_size=256))
    new = finalize_trial(replace(rec, spec=plain.to_json()), {"seed": 0}, suite, data, 1, tmp_path)
    assert "best_epoch" not in new.final["train"]
