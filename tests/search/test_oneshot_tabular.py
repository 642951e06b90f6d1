"""`nasmt search --oneshot` of tabular.grammar through the real CLI on people.toml (small
budget): the supernet trains in a Ray Train worker over the tabular ops (embeddings,
ensembles, residual blocks), candidates are scored with inherited weights, and the front is
fine-tuned from them with the fitted piecewise-linear bins the candidate was scored with; the
controllable export of its front binds the per-column (grouped) weights from one shared copy."""

from __future__ import annotations

import json

import numpy as np
import torch
from safetensors.torch import load_file

from conftest import ROOT, nasmt
from nasmt.model import ops as O
from nasmt.run import TrialStatus, read_trials
from nasmt.search.oneshot import bank as B
from nasmt.space.spec import ArchSpec

torch.set_num_threads(1)


def test_a_tabular_oneshot_search_trains_scores_and_finishes(tmp_path, shared_ray):
    out = tmp_path / "run"
    nasmt("search", "--space", ROOT / "search_spaces" / "tabular.grammar", "--tasks", ROOT / "tasks" / "people.toml",
          "--oneshot", "--out", out, "--seed", 2, "--supernet-random", 1, "--batch-size", 128, "--trials", 10,
          "--candidate-batch", 10, "--supernet-epochs", 1, "--final-epochs", 0.25, *shared_ray)
    assert B.read_state(out)["epochs_done"] == 1
    recs = read_trials(out)
    complete = [r for r in recs if r.status == TrialStatus.COMPLETE]
    assert len(complete) == 10 and all(B.is_inherited(r) for r in complete)
    assert all(np.isfinite(r.metrics["mean_error"]) and r.metrics["params"] > 0 for r in complete)
    stems = {o.op for r in complete for o in ArchSpec.from_json(r.spec).stages[0].ops}
    assert {"periodic", "plenc", "catembed", "ensemble"} & stems  # the tabular vocabulary was scored
    final = [r for r in recs if r.final]
    assert final and all(r.final["start"] == "inherited" for r in final)
    # a finished plenc candidate keeps the bins it was scored with (fitted on the train split once)
    bank, _, data = B.load_bank(out)
    for r in final:
        spec = ArchSpec.from_json(r.spec)
        inherited = B.inherited_model(bank, spec, data, B.recalibration_of(r))
        saved = load_file(str(out / "trials" / f"{r.number:05d}" / "final.safetensors"))
        for name, m in inherited.named_modules():
            if isinstance(m, O.PiecewiseLinear):
                assert torch.equal(saved[f"{name}.lo"], m.lo) and int(saved[f"{name}.fitted"]) == 1

    # the front as one controllable network: grouped per-column weights reshaped from the shared
    # tensors in model.py compute what each extracted candidate computes
    nasmt("export", out, "--controllable", "--out", tmp_path / "ctl")
    doc = json.loads((tmp_path / "ctl" / "front.json").read_text())
    assert doc["candidates"] and all(c["check"]["max_abs_diff_vs_extracted"] == 0.0 for c in doc["candidates"])
    assert any(len(p) == 3 for c in doc["candidates"] for ps in c["sources"].values() for p in ps)
