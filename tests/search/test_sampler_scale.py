"""Samplers at one-shot scale (issue 19): which sampler `--sampler auto` gives a budget, the
bounded-history TPE / NSGA-II (valid proposals, the model sees at most the bound, the same
proposals as Optuna's own while the history fits the bound) and the evolution sampler's
incremental elite (the same trials, in the same order, as re-ranking the whole history).
All on small real Optuna studies: no Ray, no training."""

from __future__ import annotations

import argparse
import dataclasses
import pickle

import numpy as np

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.samplers import TPESampler
from optuna.study import StudyDirection
from optuna.trial import TrialState, create_trial

from nasmt.cli import build_parser
from nasmt.search import entry
from nasmt.search.config import AUTO_MODEL, AUTO_MODEL_FROM, SearchConfig, auto_sampler
from nasmt.search.samplers import make_sampler
from nasmt.search.samplers.bounded import (
    BoundedHistory,
    BoundedNSGAIISampler,
    BoundedTPESampler,
)
from nasmt.search.samplers.elite import EliteArchive
from nasmt.search.samplers.evolution import EvolutionSampler, ranked

OPS = ["none", "skip", "c1", "c3", "pool"]
DECISIONS = [f"cell.e{i}.op" for i in range(4)]
# a fixed 4-objective table over the 625 cells (values in a few levels: ties and duplicates)
TABLE = np.random.default_rng(0).integers(0, 7, size=(len(OPS) ** len(DECISIONS), 3)).astype(float)


def _values(params: dict) -> list[float]:
    i = int("".join(str(OPS.index(params[d])) for d in DECISIONS), len(OPS))
    return [*TABLE[i], float(sum(OPS.index(params[d]) for d in DECISIONS))]


def _drive(sampler, n: int, directions=("minimize",) * 4):
    study = optuna.create_study(directions=list(directions), sampler=sampler)
    for _ in range(n):
        t = study.ask()
        params = {d: t.suggest_categorical(d, OPS) for d in DECISIONS}
        study.tell(t, _values(params))
    return study


def test_auto_gives_random_to_small_budgets_and_tpe_from_the_measured_count():
    assert [auto_sampler(n) for n in (1, 12, AUTO_MODEL_FROM - 1)] == ["random"] * 3
    assert [auto_sampler(n) for n in (AUTO_MODEL_FROM, 3000, 100_000)] == [AUTO_MODEL] * 3 == ["tpe"] * 3
    assert auto_sampler(48, oneshot=True) == "random" and auto_sampler(5000, oneshot=True) == "tpe"
    cfg = SearchConfig(space="g", tasks="t", out="o", trials=500)
    assert cfg.sampler == "auto" and cfg.sampler_name == "tpe"
    assert dataclasses.replace(cfg, trials=16).sampler_name == "random"
    assert dataclasses.replace(cfg, sampler="nsga2").sampler_name == "nsga2"
    assert dataclasses.replace(cfg, trials=16, sampler_used="tpe").sampler_name == "tpe"  # what run.json recorded


def test_the_cli_help_says_how_auto_chooses():
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    for cmd in ("search", "quickstart"):
        (act,) = [a for a in sub.choices[cmd]._actions if a.dest == "sampler"]
        assert act.default == "auto" and "auto" in act.choices
        assert f"random below {AUTO_MODEL_FROM} trials" in act.help and f"{AUTO_MODEL} from {AUTO_MODEL_FROM} on" in act.help


def test_run_search_records_what_auto_resolved_to(tmp_path, monkeypatch):
    """run_search resolves `auto` once, before the driver writes run.json from the config."""
    seen = []
    monkeypatch.setattr(entry, "run_trials", lambda cfg, resume, done, failed: seen.append(cfg))
    for trials, want in ((16, "random"), (AUTO_MODEL_FROM, "tpe")):
        entry.run_search(SearchConfig(space="g", tasks="t", out=str(tmp_path / f"r{trials}"), trials=trials))
        assert seen[-1].sampler == "auto" and seen[-1].sampler_used == want
        assert dataclasses.asdict(seen[-1])["sampler_used"] == want  # run.json's config is asdict(cfg)


class _SeenTPE(TPESampler):
    """Optuna's TPE noting how many trials the study it is handed holds at each ask."""

    def sample_relative(self, study, trial, search_space):
        self.sizes.append(len(study.get_trials(deepcopy=False)))
        return super().sample_relative(study, trial, search_space)


class _ProbeTPE(BoundedHistory, _SeenTPE):
    def __init__(self, elite, window, **kw):
        super().__init__(**kw)
        self._bound(elite, window)
        self.sizes, self.seens = [], []

    def before_trial(self, study, trial):
        super().before_trial(study, trial)
        self.seens.append(self.seen)


def test_the_model_sees_at_most_the_bound():
    sampler = _ProbeTPE(5, 15, seed=0, n_startup_trials=4)
    study = _drive(sampler, 80)
    # the whole study while it fits (the trials so far + the one asked), then 5 elite + 15 finished + the one asked
    assert sampler.sizes == sampler.seens
    assert sampler.sizes[:20] == list(range(1, 21)) and max(sampler.sizes) == 21 and min(sampler.sizes[20:]) >= 16
    done = study.get_trials(states=(TrialState.COMPLETE,))
    view = {t.number for t in sampler.history_view(study).get_trials()}
    assert len(view) <= 20 and {t.number for t in ranked(done, study.directions)[:5]} <= view  # the elite is in it


@pytest.mark.parametrize("cls", [BoundedTPESampler, BoundedNSGAIISampler])
def test_bounded_samplers_propose_valid_cells(cls):
    kw = {"n_startup_trials": 4} if cls is BoundedTPESampler else {"population_size": 4}
    sampler = cls(seed=0, history_elite=5, history_window=15, **kw)
    study = optuna.create_study(directions=["minimize"] * 4, sampler=sampler)
    seen = []
    for _ in range(80):
        t = study.ask()
        seen.append(sampler.seen)
        study.tell(t, _values({d: t.suggest_categorical(d, OPS) for d in DECISIONS}))
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 80 and all(set(t.params) == set(DECISIONS) and set(t.params.values()) <= set(OPS) for t in done)
    assert max(seen) == 21 and seen[-1] >= 16
    if cls is BoundedNSGAIISampler:  # generations went on past the window: parents found beyond it
        gens = [t.system_attrs.get("NSGAIISampler:generation", 0) for t in done]
        assert max(gens) >= 10 and len(sampler.get_parent_population(study, max(gens))) == 4


@pytest.mark.parametrize("cls", [BoundedTPESampler, BoundedNSGAIISampler])
def test_a_pickled_bounded_sampler_goes_on_sampling(cls):
    """Ray pickles the searcher that holds the sampler (Optuna >= 5.1's GA samplers hold a
    thread lock, which cannot be pickled): the copy samples valid cells past the bound."""
    kw = {"n_startup_trials": 4} if cls is BoundedTPESampler else {"population_size": 4}
    study = optuna.create_study(directions=["minimize"] * 4, sampler=cls(seed=0, history_elite=5, history_window=15, **kw))
    for _ in range(30):
        t = study.ask()
        study.tell(t, _values({d: t.suggest_categorical(d, OPS) for d in DECISIONS}))
    study.sampler = pickle.loads(pickle.dumps(study.sampler))
    for _ in range(10):
        t = study.ask()
        study.tell(t, _values({d: t.suggest_categorical(d, OPS) for d in DECISIONS}))
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 40 and all(set(t.params.values()) <= set(OPS) for t in done)
    assert 16 <= study.sampler.seen <= 21  # the copy keeps the bound


def test_bounded_tpe_is_optunas_tpe_while_the_history_fits():
    kw = {"seed": 3, "multivariate": True, "group": True, "constant_liar": True, "n_startup_trials": 5}
    bounded = _drive(BoundedTPESampler(history_elite=10, history_window=20, **kw), 30)
    plain = _drive(TPESampler(**kw), 30)
    assert [t.params for t in bounded.trials] == [t.params for t in plain.trials]
    later = _drive(BoundedTPESampler(history_elite=10, history_window=20, **kw), 60)
    assert later.sampler.seen <= 31 and len(later.trials) == 60


def test_make_sampler_bounds_tpe_and_nsga2_unless_told():
    assert isinstance(make_sampler("tpe", 0, 500), BoundedTPESampler)
    assert isinstance(make_sampler("nsga2", 0, 500), BoundedNSGAIISampler)
    assert type(make_sampler("tpe", 0, 500, bounded=False)) is TPESampler


def _trial(number: int, state, values, c: float):
    t = create_trial(state=state, values=values, params={"a": "x"}, distributions={"a": CategoricalDistribution(["x"])},
                     user_attrs={"c": c})
    t.number = number
    return t


@pytest.mark.parametrize("budgets", [False, True])
def test_incremental_elite_is_the_full_rerank(budgets):
    """Values in 6 levels (ties, duplicates), some trials failed, some finishing late (running
    first, complete later), a budget making some infeasible; the archive is asked at random
    moments (batches of any size) and with a small guard, so screening is exercised."""
    rng = np.random.default_rng(7)
    dirs = [StudyDirection.MINIMIZE, StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]
    cf = (lambda t: [t.user_attrs["c"]]) if budgets else None
    for rep in range(6):
        size = int(rng.integers(2, 9))
        arch = EliteArchive(size, dirs, cf)
        arch.GUARD = int(rng.integers(1, 6))
        trials, late = [], []
        for i in range(100):
            vals = [float(v) for v in rng.integers(0, 6, 3)]
            r = rng.random()
            state = TrialState.FAIL if r < 0.1 else TrialState.RUNNING if r < 0.25 else TrialState.COMPLETE
            trials.append(_trial(i, state, None if state == TrialState.FAIL else vals if state == TrialState.COMPLETE
                                 else None, float(rng.normal() - 1.0)))
            if state == TrialState.RUNNING:
                late.append((i, vals))
            if late and rng.random() < 0.2:  # a running trial completes
                j, v = late.pop(int(rng.integers(len(late))))
                trials[j] = _trial(j, TrialState.COMPLETE, v, trials[j].user_attrs["c"])
            if rng.random() < 0.25 or i == 99:
                complete = [t for t in trials if t.state == TrialState.COMPLETE]
                want = [t.number for t in ranked(complete, dirs, cf)[:size]]
                assert [t.number for t in arch.elite(trials)] == want, (rep, i)
        assert len(arch.candidates) < len([t for t in trials if t.state == TrialState.COMPLETE])


def test_evolution_sampler_breeds_from_the_full_reranks_elite():
    sampler = EvolutionSampler(population_size=6, seed=1)
    study = _drive(sampler, 120, directions=("minimize", "maximize", "minimize", "minimize"))
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    elite = sampler._archive.elite(study.get_trials(deepcopy=False))
    assert [t.number for t in elite] == [t.number for t in ranked(complete, study.directions)[:6]]
    assert sampler._archive.n_complete == 120
