"""`nasmt search --oneshot` end to end through the real CLI on people.toml with
mtl.grammar (small budget): supernet, inherited candidates, the finished front, report,
export and predict; and a SIGKILLed one-shot search that resumes without training its
supernet from zero (from its last epoch, with AdamW's moments unless the kill fell between
their file and the bank's), scoring a candidate twice or losing one."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, nasmt
from kill_helpers import journal_study, run_until, start
from nasmt.run import TrialStatus, read_trials, trials_frame
from nasmt.search.oneshot.bank import read_state, supernet_dir
from nasmt.search.oneshot.train import OPTIM_FILE, _optim_epoch
from nasmt.search.oneshot.driver import REQUEUED_ATTR
from nasmt.search.resume import INCOMPLETE_ATTR

sys.path.append(str(ROOT / "tests" / "report"))  # the report tests' helpers (tests/ has no packages)
from dashboard_helpers import page_payload  # noqa: E402

PEOPLE = ROOT / "tasks" / "people.toml"
MTL = ROOT / "search_spaces" / "mtl.grammar"


def _search(out, *extra):
    return ["search", "--space", MTL, "--tasks", PEOPLE, "--oneshot", "--out", out, "--seed", 3,
            "--supernet-random", 1, "--batch-size", 64, *extra]


@pytest.fixture(scope="module")
def oneshot_run(tmp_path_factory, shared_ray):
    out = tmp_path_factory.mktemp("oneshot") / "run"
    p = nasmt(*_search(out, "--trials", 48, "--candidate-batch", 24, "--supernet-epochs", 2, "--final-epochs", 0.5,
                       "--supernet-distill", 0.25, "--supernet-split", *shared_ray))
    return out, p.stdout


def test_every_candidate_is_an_inherited_record(oneshot_run):
    out, log = oneshot_run
    state = read_state(out)
    assert state["epochs_done"] == 2
    assert state["train"]["distill"] == 0.25  # --supernet-distill reached the supernet's training
    assert state["bank"]["split"] is True  # --supernet-split: a split bank, scored / finished / exported below
    recs = read_trials(out)
    complete = [r for r in recs if r.status == TrialStatus.COMPLETE]
    assert len(complete) == 48
    assert len({r.number for r in recs}) == len(recs)
    for r in complete:
        info = r.train["inherited"]
        assert info["supernet_epochs"] == 2 and info["batches"] > 0
        assert np.isfinite(r.metrics["mean_error"]) and r.metrics["params"] > 0
        assert r.metrics["sharing"] and r.metrics["balance"]
    frame = trials_frame(out)
    assert len(frame) == len(recs)
    # the sampler's proposals, not one architecture again and again
    assert len({json.dumps(r.spec, sort_keys=True) for r in complete}) > 24


def test_the_front_is_finished_from_inherited_weights(oneshot_run):
    out, _ = oneshot_run
    final = [r for r in read_trials(out) if r.final]
    assert final, "no candidate of the front was finished"
    for r in final:
        assert r.final["start"] == "inherited"
        assert r.final["epochs"] == 0.5
        assert (out / "trials" / f"{r.number:05d}" / "final.safetensors").exists()


def test_report_export_and_predict_of_an_inherited_candidate(oneshot_run, tmp_path):
    out, _ = oneshot_run
    nasmt("report", out, "--out", tmp_path / "r.html")
    rows = page_payload((tmp_path / "r.html").read_text())["table"]["rows"]
    assert len(rows) == len(read_trials(out))
    plain = next(r for r in read_trials(out) if r.status == TrialStatus.COMPLETE and not r.final)
    nasmt("export", out, "--trial", plain.number, "--out", tmp_path / "exp")
    arch = json.loads((tmp_path / "exp" / "arch.json").read_text())
    assert arch["spec"] == plain.spec and arch["trial"] == plain.number
    # the exported network is the evaluated candidate: the same deployed validation metrics
    # (up to float summation order: the export runs with more torch threads than a scoring task;
    # tests/search/test_oneshot_evaluate.py checks the outputs themselves, max abs diff 0)
    assert arch["val_metrics"]["mean_error"] == pytest.approx(plain.metrics["mean_error"], rel=1e-3)
    raw = pd.read_csv(ROOT / "tasks" / "people.csv").head(20)
    raw.drop(columns=["income_class", "marital_status", "years_employed"]).to_csv(tmp_path / "rows.csv", index=False)
    nasmt("predict", tmp_path / "exp", "--input", tmp_path / "rows.csv", "--out", tmp_path / "preds.csv")
    preds = pd.read_csv(tmp_path / "preds.csv")
    assert len(preds) == 20 and {"income", "marital", "tenure"} <= set(preds.columns)
    assert preds["tenure"].notna().all()


def _asked_not_recorded(out) -> bool:
    """Some candidates are recorded and later ones are asked (in the journal) but not yet
    recorded: the kill point of the scoring phase (an event, not a clock)."""
    if not (out / "trials.jsonl").exists() or len(read_trials(out)) < 8:
        return False
    recorded = {r.number for r in read_trials(out)}
    try:
        asked = journal_study(out).get_trials(deepcopy=False)
    except (ValueError, KeyError):  # a journal line being written right now
        return False
    return any(t.number not in recorded for t in asked)


def test_a_killed_oneshot_search_resumes_without_repeating_work(tmp_path):
    out = tmp_path / "run"
    args = _search(out, "--trials", 40, "--candidate-batch", 8, "--supernet-epochs", 2, "--supernet-distill", 0.25)
    # kill 1: the supernet has finished its first epoch (its checkpoint is on disk)
    p = start(args, tmp_path / "log1")
    run_until(p, out, lambda: (read_state(out) or {}).get("epochs_done", 0) >= 1, tmp_path / "log1")
    killed = read_state(out)
    k, epoch1 = killed["epochs_done"], killed["train"]["history"][0]
    # AdamW's moments are saved before the bank: the kill may fall between the two files
    stamp = _optim_epoch((supernet_dir(out) / OPTIM_FILE).read_bytes())
    assert stamp in (k, k + 1)
    # kill 2, in the resumed session: the supernet is done and some candidates are recorded
    p = start(["search", "--resume", out], tmp_path / "log2")
    run_until(p, out, lambda: _asked_not_recorded(out), tmp_path / "log2")
    state = read_state(out)
    assert state["epochs_done"] == 2
    assert state["train"]["distill"] == 0.25  # the resumed session kept the run's --supernet-distill
    assert state["train"]["history"][0] == epoch1  # epoch 1 was not trained again: resumed from its checkpoint
    assert [h["epoch"] for h in state["train"]["history"]] == [1, 2]
    said = (tmp_path / "log2").read_text()
    if k < 2:  # the resumed session trained the missing epoch only, from the moments saved with epoch k
        assert f"supernet: resuming after epoch {k} of 2" in said, said[-3000:]
        assert ("restarts its moments" in said) == (stamp != k), (stamp, k, said[-3000:])
    nasmt("search", "--resume", out)
    recs = read_trials(out)
    assert len({r.number for r in recs}) == len(recs)
    complete = [r for r in recs if r.status == TrialStatus.COMPLETE]
    assert len(complete) == 40
    # a candidate asked but not recorded when the driver died is closed as interrupted and
    # its genome asked again, once: none lost, none scored twice
    study = journal_study(out)
    again = {t.user_attrs[REQUEUED_ATTR]: t for t in study.get_trials(deepcopy=False) if REQUEUED_ATTR in t.user_attrs}
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    recs_by = {x.number: x for x in recs}
    interrupted = [r for r in recs if r.interrupted]
    assert interrupted  # the kill point guarantees candidates in flight
    for r in interrupted:
        if by_number[r.number].user_attrs.get(INCOMPLETE_ATTR):
            continue  # killed mid-derivation: not a candidate
        assert r.number in again, f"interrupted candidate {r.number} was not asked again"
        assert again[r.number].params == by_number[r.number].params
        assert recs_by[again[r.number].number].status == TrialStatus.COMPLETE
    assert all(by_number[n].user_attrs.get(INCOMPLETE_ATTR) or recs_by[n].interrupted for n in again)
