"""`nasmt oneshot-check RUN`: n inherited-weight candidates of a one-shot run trained from
scratch at the run's per-trial budget, Kendall tau / Spearman rho between the inherited and
the from-scratch validation mean_error, in RUN/oneshot_check.json.

The run directory is built by hand as the one-shot driver leaves it (tasks/people.toml with
search_spaces/mtl.grammar): run.json (`driver.run_record`, config.oneshot, a per-trial budget
of STEPS_PER_TRIAL steps and seed 2), `supernet/` (`bank.write_checkpoint` after a few
sandwich-rule steps), N_INHERITED COMPLETE records scored on the bank's weights
(`bank.inherited_model`, deployed validation metrics and exact costs as a trial records
them, the `train["inherited"]` marker), one ordinary trained record and one failed one."""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, nasmt
from nasmt.data import load_data_cached
from nasmt.data.suite import load_suite
from nasmt.model.build import build
from nasmt.model.cost import cost
from nasmt.model.supernet import random_specs
from nasmt.run import RUN_FILE, TRIALS_FILE, TrialRecord, TrialStatus, append_record, atomic_write_json, ensure_dir, read_trials
from nasmt.run.objectives import parse_objectives
from nasmt.search.config import SearchConfig
from nasmt.search.context import SEED_STRIDE, TrialContext
from nasmt.search.driver import run_record
from nasmt.search.oneshot import bank as B
from nasmt.search.oneshot.check import CHECK_FILE, kendall_tau, spearman_rho
from nasmt.search.trial import deployed_metrics, static_costs
from nasmt.space.grammar import load_grammar
from nasmt.space.spec import ArchSpec
from nasmt.train import TrainConfig, train
from nasmt.train.supernet import train_supernet

torch.set_num_threads(1)
PEOPLE = ROOT / "tasks" / "people.toml"
MTL = ROOT / "search_spaces" / "mtl.grammar"
SIZING = 60  # random derivations sizing the bank (library default 300)
SUPERNET_STEPS = 12  # sandwich-rule steps
STEPS_PER_TRIAL = 8  # the run's per-trial budget (config.steps)
RUN_SEED = 2  # config.seed: trial n trains with seed RUN_SEED * SEED_STRIDE + n
N_INHERITED = 6
RECAL = B.Recalibration(batches=4, batch_size=64, seed=3)


def _metrics(model, spec, ctx, data) -> dict:
    m = deployed_metrics(model, spec, ctx, data)
    m.update(static_costs(model, spec, cost(model, spec.input_shape), ctx))
    return m | {"sharing": spec.sharing, "balance": spec.balance, "feasible": True}


def build_oneshot_run(folder: Path) -> Path:
    """A one-shot run directory (module docstring): inherited records 0..N_INHERITED-1, a
    trained record N_INHERITED, a failed record N_INHERITED+1."""
    suite, grammar = load_suite(PEOPLE), load_grammar(MTL)
    data = load_data_cached(suite)
    cfg = SearchConfig(space=str(MTL), tasks=str(PEOPLE), out=str(folder), oneshot=True, supernet_epochs=1,
                       steps=STEPS_PER_TRIAL, batch_size=64, seed=RUN_SEED)
    objectives = parse_objectives(cfg.objectives, suite)
    ensure_dir(folder)
    atomic_write_json(folder / RUN_FILE, run_record(cfg, grammar, suite, objectives))
    ctx = TrialContext.from_config(cfg, grammar, suite, objectives)
    settings = B.BankSettings(n_samples=SIZING, seed=0)
    torch.manual_seed(0)
    bank = B.new_bank(grammar, suite, data, settings)
    train_supernet(bank, suite, data, TrainConfig(steps=SUPERNET_STEPS, batch_size=64, lr=3e-3, seed=0))
    B.write_checkpoint(folder, B.bank_bytes(bank), B.state_record(settings, 1, {"steps": SUPERNET_STEPS}))
    specs = [s for s in random_specs(grammar, suite.tasks, data.input_shape, data.n_outputs, 40, seed=5) if bank.fits(s)]
    assert len(specs) > N_INHERITED, "too few sampled candidates fit the bank"
    for number, spec in enumerate(specs[:N_INHERITED]):
        model = B.inherited_model(bank, spec, data, RECAL)
        append_record(folder, TrialRecord(
            number=number, status=TrialStatus.COMPLETE, spec=spec.to_json(), metrics=_metrics(model, spec, ctx, data),
            train={B.INHERITED: {"supernet_epochs": 1, "batches": RECAL.batches, "batch_size": RECAL.batch_size,
                                 "seed": RECAL.seed}, "balance": spec.balance, "lr": cfg.lr},
            timings={"total_s": 0.1}))
    spec = specs[N_INHERITED]  # an ordinary trial: trained on its own (few steps), no inheritance marker
    torch.manual_seed(ctx.trial_seed(N_INHERITED))
    model = build(spec)
    train(model, suite, data, TrainConfig(steps=STEPS_PER_TRIAL, batch_size=64, seed=ctx.trial_seed(N_INHERITED)))
    append_record(folder, TrialRecord(number=N_INHERITED, status=TrialStatus.COMPLETE, spec=spec.to_json(),
                                      metrics=_metrics(model, spec, ctx, data), train={"steps": STEPS_PER_TRIAL},
                                      timings={"total_s": 0.2}))
    append_record(folder, TrialRecord(number=N_INHERITED + 1, status=TrialStatus.FAILED, error="boom"))
    return folder


@pytest.fixture(scope="module")
def oneshot_run(tmp_path_factory) -> Path:
    return build_oneshot_run(tmp_path_factory.mktemp("oneshot-check") / "run")


def _copy(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(run, dst)
    (dst / CHECK_FILE).unlink(missing_ok=True)
    return dst


# -- independent rank correlations (numpy, pair signs; not the module's loops) ----------------


def _tau_b(x, y) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    sx = np.sign(x[:, None] - x[None, :])
    sy = np.sign(y[:, None] - y[None, :])
    iu = np.triu_indices(len(x), 1)
    s = (sx * sy)[iu].sum()
    n0 = len(iu[0])
    n1, n2 = (sx[iu] == 0).sum(), (sy[iu] == 0).sum()
    return float(s / math.sqrt((n0 - n1) * (n0 - n2)))


def _rho(x, y) -> float:
    def avg_rank(v):
        v = np.asarray(v, float)
        return np.array([(v < a).sum() + ((v == a).sum() + 1) / 2 for a in v])

    return float(np.corrcoef(avg_rank(x), avg_rank(y))[0, 1])


def test_rank_correlations_against_an_independent_computation():
    """tau-b and rho with ties (on one side, the other, both), reversed and constant sides."""
    rng = random.Random(11)
    for _ in range(40):
        n = rng.randint(2, 12)
        x = [rng.choice([0.1, 0.2, 0.3, 0.4, rng.random()]) for _ in range(n)]
        y = [rng.choice([0.5, 0.6, rng.random()]) for _ in range(n)]
        if len(set(x)) < 2 or len(set(y)) < 2:
            assert kendall_tau(x, y) is None and spearman_rho(x, y) is None
            continue
        assert kendall_tau(x, y) == pytest.approx(_tau_b(x, y), abs=1e-12)
        assert spearman_rho(x, y) == pytest.approx(_rho(x, y), abs=1e-12)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman_rho([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)


def test_check_through_the_cli(oneshot_run):
    """--n 4: four inherited candidates (never the trained or failed record), their inherited
    values the records', their from-scratch values what training that architecture for the
    run's STEPS_PER_TRIAL steps with its trial seed and evaluating it as deployed gives, and
    the correlations those of the pairs; one line printed."""
    p = nasmt("oneshot-check", oneshot_run, "--n", 4, "--seed", 3)
    assert len(p.stdout.strip().splitlines()) == 1 and str(oneshot_run / CHECK_FILE) in p.stdout
    out = json.loads((oneshot_run / CHECK_FILE).read_text())
    assert out["n"] == 4 and out["steps"] == STEPS_PER_TRIAL and out["metric"] == "mean_error" and out["seconds"] >= 0
    recs = {r.number: r for r in read_trials(oneshot_run)}
    nums = [q["number"] for q in out["pairs"]]
    assert len(nums) == 4 and len(set(nums)) == 4 and set(nums) <= set(range(N_INHERITED))
    suite = load_suite(PEOPLE)
    data = load_data_cached(suite)
    cfg = json.loads((oneshot_run / RUN_FILE).read_text())["config"]
    grammar = load_grammar(MTL)
    ctx = TrialContext.from_config(SearchConfig(space=str(MTL), tasks=str(PEOPLE), out=str(oneshot_run)), grammar,
                                   suite, parse_objectives("mean_error,params", suite))
    for q in out["pairs"]:
        rec = recs[q["number"]]
        assert q["inherited"] == rec.metrics["mean_error"]
        spec = ArchSpec.from_json(rec.spec)
        seed = RUN_SEED * SEED_STRIDE + rec.number
        torch.manual_seed(seed)
        model = build(spec)
        rule = {"lr": cfg["lr"]} | spec.train_overrides()  # mtl.grammar's train rule wins over the run's lr
        tr = train(model, suite, data, TrainConfig(steps=STEPS_PER_TRIAL, batch_size=cfg["batch_size"], seed=seed, **rule))
        assert tr["steps"] == STEPS_PER_TRIAL
        assert q["scratch"] == pytest.approx(deployed_metrics(model, spec, ctx, data)["mean_error"], abs=1e-9)
    x, y = [q["inherited"] for q in out["pairs"]], [q["scratch"] for q in out["pairs"]]
    assert out["kendall_tau"] == pytest.approx(_tau_b(x, y), abs=1e-12)
    assert out["spearman_rho"] == pytest.approx(_rho(x, y), abs=1e-12)
    assert f"{out['kendall_tau']:.3f}" in p.stdout and f"{out['spearman_rho']:.3f}" in p.stdout


def test_repeats_report_the_noise_ceiling_of_two_real_trainings(oneshot_run, tmp_path):
    """--repeats 2: each candidate trained twice, first with its trial seed (the pair's
    `scratch`, as without --repeats), then with that seed + REPEAT_SEED_STEP (recomputed
    here for each candidate); the noise ceiling is the correlation of the two trainings'
    values, and the printed line says it."""
    from nasmt.search.oneshot.check import REPEAT_SEED_STEP

    run = _copy(oneshot_run, tmp_path)
    p = nasmt("oneshot-check", run, "--n", 4, "--seed", 3, "--repeats", 2)
    out = json.loads((run / CHECK_FILE).read_text())
    cfg = json.loads((run / RUN_FILE).read_text())["config"]
    suite = load_suite(PEOPLE)
    data = load_data_cached(suite)
    ctx = TrialContext.from_config(SearchConfig(space=str(MTL), tasks=str(PEOPLE), out=str(run)), load_grammar(MTL),
                                   suite, parse_objectives("mean_error,params", suite))
    recs = {r.number: r for r in read_trials(run)}
    for q in out["pairs"]:
        assert len(q["scratch_repeats"]) == 2 and q["scratch_repeats"][0] == q["scratch"]
        spec = ArchSpec.from_json(recs[q["number"]].spec)
        seed = RUN_SEED * SEED_STRIDE + q["number"] + REPEAT_SEED_STEP
        torch.manual_seed(seed)
        model = build(spec)
        rule = {"lr": cfg["lr"]} | spec.train_overrides()
        train(model, suite, data, TrainConfig(steps=STEPS_PER_TRIAL, batch_size=cfg["batch_size"], seed=seed, **rule))
        assert q["scratch_repeats"][1] == pytest.approx(deployed_metrics(model, spec, ctx, data)["mean_error"], abs=1e-9)
    a, b = [q["scratch_repeats"][0] for q in out["pairs"]], [q["scratch_repeats"][1] for q in out["pairs"]]
    assert a != b  # two seeds, two trainings
    nc = out["noise_ceiling"]
    assert nc["repeats"] == 2 and nc["kendall_tau"] == pytest.approx(_tau_b(a, b), abs=1e-12)
    assert nc["spearman_rho"] == pytest.approx(_rho(a, b), abs=1e-12)
    assert "noise ceiling" in p.stdout and f"{nc['kendall_tau']:.3f}" in p.stdout
    # the inherited side is as without --repeats: against the first training
    x = [q["inherited"] for q in out["pairs"]]
    assert out["kendall_tau"] == pytest.approx(_tau_b(x, a), abs=1e-12)


def test_noise_ceiling_is_the_mean_over_pairs_of_repeats():
    from nasmt.search.oneshot.check import noise_ceiling

    vals = [[0.1, 0.3, 0.2], [0.2, 0.1, 0.4], [0.3, 0.2, 0.1], [0.4, 0.4, 0.3]]
    cols = list(zip(*vals))
    want = np.mean([_tau_b(cols[r], cols[s]) for r, s in ((0, 1), (0, 2), (1, 2))])
    assert noise_ceiling(vals)["kendall_tau"] == pytest.approx(want, abs=1e-12)
    assert noise_ceiling(vals)["repeats"] == 3


def test_epochs_flag_and_seed_choose_the_budget_and_the_draw(oneshot_run, tmp_path):
    """--epochs replaces the run's steps budget; the draw is the seeded sample of the complete
    inherited candidates (every one of them with --n equal to their count)."""
    run = _copy(oneshot_run, tmp_path)
    nasmt("oneshot-check", run, "--n", N_INHERITED, "--epochs", 0.05)
    out = json.loads((run / CHECK_FILE).read_text())
    assert out["epochs"] == 0.05 and out["steps"] is None
    assert [q["number"] for q in out["pairs"]] == list(range(N_INHERITED))


def _bad(run: Path, *args) -> str:
    p = nasmt("oneshot-check", run, *args, check=False)
    assert p.returncode == 2, p.stderr
    assert p.stdout == "" and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (run / CHECK_FILE).exists()
    return p.stderr


def test_bad_inputs_one_line_exit_2_nothing_written(oneshot_run, tmp_path):
    run = _copy(oneshot_run, tmp_path)
    assert "--n" in _bad(run, "--n", 1)
    assert "--repeats: must be at least 1 (got 0)" in _bad(run, "--repeats", 0)
    assert f"has {N_INHERITED} complete candidates with inherited weights" in _bad(run, "--n", N_INHERITED + 1)
    # not one-shot: inherited records but no supernet ...
    no_bank = tmp_path / "no-bank"
    shutil.copytree(run, no_bank)
    shutil.rmtree(no_bank / B.SUPERNET_DIR)
    assert f"{no_bank}: not a one-shot run" in _bad(no_bank, "--n", 2)
    # ... or a supernet but no inherited candidate (only the trained and the failed record)
    plain = tmp_path / "plain"
    shutil.copytree(run, plain)
    lines = (plain / TRIALS_FILE).read_text().splitlines(keepends=True)
    (plain / TRIALS_FILE).write_text("".join(ln for ln in lines if f'"{B.INHERITED}"' not in ln))
    assert len(read_trials(plain)) == 2
    assert f"{plain}: not a one-shot run" in _bad(plain, "--n", 2)
