"""README promises about `nasmt search` flags, through the real CLI, checked in what the
run holds (records, the Optuna study, files). Two small searches of mlp.grammar on
tasks/people.toml (trials take well under a second there) carry all of them:

* `flags_run`: --lr, the `:min`/`:max` objective suffix (`params:max` turns params'
  default direction around), a `predicted_latency_ms` objective, `--scheduler asha`
  with `--min-epochs`;
* `enqueue_run`: --enqueue of a flags_run trial's spec.json, --storage PATH, --baselines,
  then a crash-and-resume that must find the same --storage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest
from optuna.study import StudyDirection

from conftest import ROOT, nasmt
from nasmt.baselines import read_baselines
from nasmt.run import STOPPED_EARLY, TRIALS_FILE, TrialStatus, load_run, read_jsonl, read_trials, trial_dir, write_jsonl
from nasmt.search.study import journal_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)

PEOPLE = ROOT / "tasks" / "people.toml"
MLP = ROOT / "search_spaces" / "mlp.grammar"
LR = 0.0123  # not the default 3e-3
EPOCHS, MIN_EPOCHS = 4, 2  # asha's first rung at 2 epochs (not the default 1)
TRIALS = 3
ENQUEUE_SEED = 5  # not flags_run's seed: the enqueued genome is not what the sampler would propose first
ENQUEUE_STEPS = 5
REFERENCES = ["single-task", "hard-shared", "mmoe", "ple", "lightgbm"]  # nasmt baselines on a vector suite


def _study(run: Path) -> optuna.Study:
    return optuna.load_study(study_name="nasmt", storage=journal_storage(run))


def _complete(run: Path):
    return [t for t in read_trials(run) if t.status == TrialStatus.COMPLETE]


@pytest.fixture(scope="module")
def flags_run(tmp_path_factory, shared_ray) -> Path:
    out = tmp_path_factory.mktemp("flags") / "run"
    # one trial at a time: ASHA sees the trials in one fixed order, so which ones stop is
    # reproducible (seed 0 stops some at the first rung)
    nasmt("search", "--space", MLP, "--tasks", PEOPLE, "--objectives", "mean_error,income.auc:max,predicted_latency_ms,params:max",
          "--trials", TRIALS, "--epochs", EPOCHS, "--scheduler", "asha", "--min-epochs", MIN_EPOCHS, "--lr", LR,
          "--batch-size", 256, "--max-concurrent", 1, "--sampler", "random", "--seed", 0, "--out", out, "--quiet", *shared_ray)
    return out


def test_lr_flag_is_every_trials_learning_rate(flags_run):
    done = _complete(flags_run)
    assert len(done) == TRIALS
    assert [t.train["lr"] for t in done] == [LR] * TRIALS
    assert load_run(flags_run)["config"]["lr"] == LR


def test_objective_suffix_sets_the_study_directions(flags_run):
    study = _study(flags_run)
    assert study.metric_names == ["mean_error", "income.auc", "predicted_latency_ms", "params"]
    assert study.directions == [StudyDirection.MINIMIZE, StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE,
                                StudyDirection.MAXIMIZE]  # params is minimized unless told :max
    assert [(o["name"], o["direction"]) for o in load_run(flags_run)["objectives"]] == [
        ("mean_error", "min"), ("income.auc", "max"), ("predicted_latency_ms", "min"), ("params", "max")]
    told = {t.number: t.values for t in study.get_trials(deepcopy=False) if t.values}
    for rec in _complete(flags_run):  # the study got the values as measured (AUC not negated)
        assert told[rec.number] == pytest.approx([rec.metrics["mean_error"], rec.metrics["income.auc"],
                                                  rec.metrics["predicted_latency_ms"], rec.metrics["params"]], rel=1e-9)
        assert 0.5 < rec.metrics["income.auc"] <= 1.0


def test_predicted_latency_objective_in_records_and_study(flags_run):
    recs = read_trials(flags_run)
    assert all(t.metrics["predicted_latency_ms"] > 0 for t in recs)  # stopped trials too: a cost known before training
    assert "predicted_latency_ms" in _study(flags_run).metric_names


def test_asha_with_min_epochs_stops_trials_at_the_first_rung(flags_run):
    recs = read_trials(flags_run)
    stopped = [t for t in recs if t.status == TrialStatus.STOPPED]
    assert stopped, [(t.number, t.status) for t in recs]
    for t in stopped:  # stopped at the rung --min-epochs sets, with that rung's metrics
        assert t.error == STOPPED_EARLY and t.metrics["epoch"] == MIN_EPOCHS and "mean_error" in t.metrics
    assert [t.train["epochs"] for t in _complete(flags_run)] == [EPOCHS] * TRIALS  # survivors got the full budget
    states = {t.number: t.state for t in _study(flags_run).get_trials(deepcopy=False)}
    assert all(states[t.number] == optuna.trial.TrialState.PRUNED for t in stopped)


@pytest.fixture(scope="module")
def enqueue_run(flags_run, tmp_path_factory, shared_ray):
    """A search that enqueues flags_run's last complete trial (its spec.json), keeps Ray
    Tune's files in --storage and trains the references (--baselines); then a crash loses
    its last trial's record and result, and `--resume` finishes it."""
    d = tmp_path_factory.mktemp("enqueue")
    source = _complete(flags_run)[-1]
    spec_file = d / "spec.json"  # a copy: the run's own trial folder is not touched
    shutil.copyfile(trial_dir(flags_run, source.number) / "spec.json", spec_file)
    storage, out = d / "tune-files", d / "run"
    nasmt("search", "--space", MLP, "--tasks", PEOPLE, "--trials", 2, "--steps", ENQUEUE_STEPS,
          "--seed", ENQUEUE_SEED, "--sampler", "random", "--out", out, "--enqueue", spec_file,
          "--storage", storage, "--baselines", "--quiet", *shared_ray)
    first = {"trials": read_trials(out), "storage": sorted(p.name for p in storage.iterdir()),
             "run_files": sorted(p.name for p in out.iterdir())}
    last = first["trials"][-1]
    write_jsonl(out / TRIALS_FILE, [r for r in read_jsonl(out / TRIALS_FILE) if r["number"] != last.number])
    (trial_dir(out, last.number) / "result.json").unlink()
    nasmt("search", "--resume", out, "--quiet")
    return {"out": out, "storage": storage, "spec": json.loads(spec_file.read_text()), "first": first}


def test_enqueued_spec_json_is_the_first_trial(enqueue_run):
    spec, first = enqueue_run["spec"], enqueue_run["first"]["trials"]
    assert first[0].number == 0 and first[0].genome == spec["genome"] and first[0].arch_hash == spec["hash"]
    params = _study(enqueue_run["out"]).trials[0].params  # what Optuna evaluated first
    assert params == spec["genome"]
    assert first[1].genome != spec["genome"]  # the sampler's own proposal differs: trial 0 came from the file


def test_search_baselines_writes_the_references(enqueue_run):
    recs = read_baselines(enqueue_run["out"])
    assert [r.name for r in recs] == REFERENCES
    for r in recs:  # trained with the search's suite and budget
        assert r.settings["suite"] == "people" and r.settings["steps"] == ENQUEUE_STEPS
        assert r.settings["seed"] == ENQUEUE_SEED and r.settings["lr"] == 3e-3
        assert {"income.auc", "marital.accuracy", "tenure.mae", "mean_error"} <= set(r.test_metrics)


def test_storage_holds_ray_tune_files_and_resume_finds_it(enqueue_run):
    out, storage = enqueue_run["out"], enqueue_run["storage"]
    assert enqueue_run["first"]["storage"] == ["tune-1"]  # Ray Tune's session folder went where asked
    assert "ray" not in enqueue_run["first"]["run_files"]  # ... not to the default RUN/ray
    assert load_run(out)["config"]["storage"] == str(storage)
    # the resumed search found the run's storage: its session is the second one there
    assert sorted(p.name for p in storage.iterdir()) == ["tune-1", "tune-2"]
    assert not (out / "ray").exists()
    recs = read_trials(out)
    assert sum(t.status == TrialStatus.COMPLETE for t in recs) == 2
    assert any(t.status == TrialStatus.FAILED and t.number == 1 for t in recs)  # the trial lost in the crash
