"""MO-ASHA and the full-budget finish end to end on a CSV suite, and `nasmt finalize`."""

from __future__ import annotations

import json

import pytest

from conftest import ROOT, nasmt
from nasmt.run import TRIALS_FILE, Objective, TrialStatus, pareto_trials, read_jsonl, read_trials, trial_dir

PEOPLE = ROOT / "tasks" / "people.toml"
MLP = ROOT / "search_spaces" / "mlp.grammar"


@pytest.fixture(scope="module")
def mo_run(tmp_path_factory, shared_ray):
    out = tmp_path_factory.mktemp("moasha") / "run"
    r = nasmt("search", "--space", MLP, "--tasks", PEOPLE, "--objectives", "mean_error,params", "--trials", 3,
              "--epochs", 3, "--scheduler", "mo-asha", "--reduction-factor", 4, "--final-epochs", 2,
              "--sampler", "random", "--seed", 2, "--out", out, *shared_ray)
    return out, r.stdout


def test_mo_asha_stops_trials_with_their_rung_metrics(mo_run):
    out, _ = mo_run
    trials = read_trials(out)
    stopped = [t for t in trials if t.status == TrialStatus.STOPPED]
    assert stopped, [(t.number, t.status) for t in trials]
    for t in stopped:  # the rung's validation metrics and the costs known before training
        assert t.metrics["epoch"] == 1 and {"mean_error", "params", "flops", "size_bytes"} <= set(t.metrics)
        assert t.timings["total_s"] > 0
    assert sum(t.status == TrialStatus.COMPLETE for t in trials) == 3
    objs = [Objective("mean_error", "min"), Objective("params", "min")]
    assert not {t.number for t in pareto_trials(trials, objs)} & {t.number for t in stopped}


def test_final_epochs_finalize_the_pareto_set(mo_run):
    out, stdout = mo_run
    trials = read_trials(out)
    front = pareto_trials(trials, [Objective("mean_error", "min"), Objective("params", "min")])
    final = [t for t in trials if t.is_finalized]
    assert {t.number for t in final} == {t.number for t in front}
    for t in final:
        assert t.final["epochs"] == 2 and (trial_dir(out, t.number) / t.final["weights"]).exists()
        assert {"income.auc", "marital.accuracy", "tenure.mae", "mean_error"} <= set(t.final["test"])
        assert t.final["metrics"]["params"] == t.metrics["params"]
        assert "finalized" in stdout
    raw = read_jsonl(out / TRIALS_FILE)
    assert len(raw) == len({x["number"] for x in raw}), "finalizing added lines"


def test_export_pick_chooses_among_finalized_trials(mo_run, tmp_path):
    out, _ = mo_run
    nasmt("export", out, "--pick", "best:mean_error", "--out", tmp_path / "exp", "--no-quantized")
    arch = json.loads((tmp_path / "exp" / "arch.json").read_text())
    final = {t.number: t for t in read_trials(out) if t.is_finalized}
    assert arch["trial"] in final and arch["final"]["epochs"] == 2
    best = min(final.values(), key=lambda t: t.final["metrics"]["mean_error"])
    assert arch["trial"] == best.number
    # the exported weights are the finalized ones
    from safetensors.torch import load_file

    exported = load_file(str(tmp_path / "exp" / "weights.safetensors"))
    final_w = load_file(str(trial_dir(out, best.number) / best.final["weights"]))
    search_w = load_file(str(trial_dir(out, best.number) / "weights.safetensors"))
    assert exported.keys() == final_w.keys() and all((exported[k] == final_w[k]).all() for k in exported)
    assert any((exported[k] != search_w[k]).any() for k in exported)


def test_finalize_command_on_an_existing_run(tiny_finalized, run_copy):
    run, stdout = tiny_finalized  # `nasmt finalize RUN --epochs 0.2` on a copy of tiny_run
    done = [t for t in read_trials(run) if t.is_finalized]
    assert done and stdout.count("finalized") == len(done)
    before = (run_copy / "trials.jsonl").read_bytes()
    bad = nasmt("finalize", run_copy, "--epochs", 0, check=False)
    assert bad.returncode == 2 and "--epochs" in bad.stderr
    assert (run_copy / "trials.jsonl").read_bytes() == before


def test_report_shows_search_budget_and_final_side_by_side(mo_run):
    from nasmt.report import load_runs, make_context, resolve_objectives
    from nasmt.report.table import get_table_info

    out, _ = mo_run
    runs = load_runs([out])
    ctx = make_context(runs, resolve_objectives(runs))
    tab = get_table_info(ctx)
    # the report's fronts stand on the final metrics where a trial has them
    from dataclasses import replace

    best = [replace(t, metrics=t.metrics_final_first) for t in read_trials(out)]
    assert ctx.fronts[0] == {t.number for t in pareto_trials(best, ctx.objectives)}
    keys = [c.key for c in tab.columns]
    assert {"final.mean_error", "final.params", "final.test.mean_error"} <= set(keys)
    for row in tab.rows:
        rec = next((t for t in read_trials(out) if t.number == row[tab.index("number")]), None)
        if rec is None:
            continue
        if rec.is_finalized:
            assert row[tab.index("final.mean_error")] == pytest.approx(rec.final["metrics"]["mean_error"], rel=1e-5)
            assert row[tab.index("final.test.mean_error")] == pytest.approx(rec.final["test"]["mean_error"], rel=1e-5)
            assert row[tab.index("mean_error")] == pytest.approx(rec.metrics["mean_error"], rel=1e-5)
        else:
            assert row[tab.index("final.mean_error")] is None
