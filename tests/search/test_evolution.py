"""The grammar-aware evolution sampler: children replay under the grammar, mutation
re-derives one subtree and keeps the rest of its parent, crossover grafts one subtree of
a second parent, parents are the feasible non-dominated ones, and a resumed study (new
sampler, same journal) keeps evolving; one real search killed and resumed."""

from __future__ import annotations

import functools
import zlib

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from conftest import CONV_SPACE
from nasmt.quant import COSTS_ATTR, constraints_func
from nasmt.run import Objective
from nasmt.search.samplers.evolution import (CROSSOVER, ENQUEUED, MUTATION, PLAN_ATTR, RANDOM, EvolutionSampler, fits, ranked,
                                   subtrees, under)
from nasmt.search.space import define_space
from nasmt.search.samplers import make_sampler
from nasmt.search.study import StudyAdapter
from nasmt.space.derive import replay
from nasmt.space.grammar import load_grammar
from kill_helpers import journal_study

optuna.logging.set_verbosity(optuna.logging.WARNING)

OBJ = [Objective("mean_error", "min"), Objective("params", "min")]
TASKS = ("left", "right")
SHAPE = (1, 28, 28)
OUTPUTS = {"left": 10, "right": 10}
GRAMMAR = load_grammar(CONV_SPACE)


def _adapter(run_dir, sampler) -> StudyAdapter:
    space = functools.partial(define_space, grammar_text=GRAMMAR.text, grammar_file=GRAMMAR.file, tasks=TASKS,
                              input_shape=SHAPE, n_outputs=OUTPUTS)
    return StudyAdapter(run_dir, OBJ, sampler, space)


def _metrics(number: int, genome: dict) -> dict:
    """Synthetic outcomes, a deterministic function of the genome."""
    return {"mean_error": zlib.crc32(repr(sorted(genome.items())).encode()) / 2**32, "params": len(genome)}


def _evolve(adapter: StudyAdapter, n: int, metrics=_metrics) -> None:
    """Ask and tell `n` trials."""
    for _ in range(n):
        number, genome = adapter.ask()
        adapter.tell_complete(number, metrics(number, genome), COSTS_ATTR, ("size_bytes",))


def _inside(params: dict, prefix: str) -> dict:
    return {n: v for n, v in params.items() if under(n, prefix)}


def _check_lineage(study) -> dict[str, int]:
    """Every trial replays under the grammar and inherits as its plan says; counts of ops."""
    trials = study.get_trials(deepcopy=False)
    ops = {RANDOM: 0, MUTATION: 0, CROSSOVER: 0, ENQUEUED: 0}
    for t in trials:
        spec = replay(GRAMMAR, t.params, TASKS, SHAPE, OUTPUTS)
        assert dict(spec.genome) == t.params
        for name, value in t.params.items():
            dist = t.distributions[name]
            assert dist._contains(dist.to_internal_repr(value)), (t.number, name, value)
        plan = t.system_attrs[PLAN_ATTR]
        ops[plan["op"]] += 1
        if plan["op"] in (RANDOM, ENQUEUED):
            continue
        parents = [trials[p] for p in plan["parents"]]
        assert all(p.state == TrialState.COMPLETE and p.number < t.number for p in parents)
        a, prefix = parents[0], plan["prefix"]
        for name, value in t.params.items():
            if not under(name, prefix) and name in a.params:
                assert value == a.params[name], (t.number, plan, name)
        if plan["op"] == CROSSOVER:
            b = parents[1]
            for name, value in _inside(t.params, prefix).items():
                if name in b.params:
                    assert value == b.params[name], (t.number, plan, name)
            assert _inside(t.params, prefix) != _inside(a.params, prefix), "a crossover that changes nothing"
    return ops


def test_children_replay_and_inherit_outside_their_subtree(tmp_path):
    adapter = _adapter(tmp_path, make_sampler("evolution", 0, 18))  # population 6
    assert isinstance(adapter.study.sampler, EvolutionSampler) and adapter.study.sampler.population_size == 6
    _evolve(adapter, 30)
    trials = adapter.study.get_trials(deepcopy=False)
    assert [t.system_attrs[PLAN_ATTR]["op"] for t in trials[:6]] == [RANDOM] * 6
    ops = _check_lineage(adapter.study)
    assert ops[RANDOM] == 6 and ops[MUTATION] >= 5 and ops[CROSSOVER] >= 5, ops
    # mutation re-derives its subtree: at least sometimes the child differs there
    changed = [t for t in trials if t.system_attrs[PLAN_ATTR]["op"] == MUTATION
               and _inside(t.params, t.system_attrs[PLAN_ATTR]["prefix"])
               != _inside(trials[t.system_attrs[PLAN_ATTR]["parents"][0]].params, t.system_attrs[PLAN_ATTR]["prefix"])]
    assert changed


def test_same_seed_same_children(tmp_path):
    genomes = []
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        adapter = _adapter(tmp_path / d, make_sampler("evolution", 3, 12))
        _evolve(adapter, 10)
        genomes.append([(t.params, t.system_attrs[PLAN_ATTR]) for t in adapter.study.get_trials(deepcopy=False)])
    assert genomes[0] == genomes[1]


def test_resumed_study_keeps_evolving_from_the_journal(tmp_path):
    _evolve(_adapter(tmp_path, make_sampler("evolution", 0, 12)), 8)  # population 4
    # a new process: new sampler object (another seed, as the driver's resume gives), same journal
    resumed = _adapter(tmp_path, make_sampler("evolution", 1, 12))
    given = dict(resumed.study.trials[3].params)
    resumed.study.enqueue_trial(given)  # as --enqueue / --warm-start do: evaluated as given, not bred
    _evolve(resumed, 9)
    study = journal_study(tmp_path)  # plans read back from the journal file
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 17
    assert trials[8].params == given and trials[8].system_attrs[PLAN_ATTR]["op"] == ENQUEUED
    resumed = [t.system_attrs[PLAN_ATTR] for t in trials[9:]]
    assert all(p["op"] in (MUTATION, CROSSOVER) for p in resumed), resumed
    assert any(n < 8 for p in resumed for n in p["parents"]), "the resumed study ignored the first session"
    _check_lineage(study)


BUDGET = functools.partial(constraints_func, max_bytes=1000)  # feasibility recomputed from the costs


def _trial(values, violation=0.0):
    return optuna.trial.create_trial(params={"x.y": 0.5}, distributions={"x.y": FloatDistribution(0.0, 1.0)},
                                     values=values, user_attrs={COSTS_ATTR: {"size_bytes": 1000 + violation}})


def test_parents_are_feasible_and_non_dominated():
    study = optuna.create_study(directions=["minimize", "maximize"])
    front = [_trial([1, 5]), _trial([2, 6]), _trial([3, 7], violation=0.0)]
    dominated = [_trial([2, 5]), _trial([4, 1])]
    infeasible = [_trial([0.5, 10], violation=2.0), _trial([0.1, 20], violation=1.0)]
    for t in dominated + infeasible + front:
        study.add_trial(t)
    numbers = [t.number for t in ranked(study.get_trials(deepcopy=False), study.directions, BUDGET)]
    assert numbers[:3] == [4, 6, 5]  # the front, its boundary points (infinite crowding) first
    assert numbers[3:] == [0, 1, 3, 2]  # then the next fronts; infeasible last, smaller violation first
    # the elite is the front: every parent comes from it (a binary tournament never picks
    # the worst of the elite, here 5, as first parent, nor as second when only it is left)
    study.sampler = EvolutionSampler(population_size=3, seed=0, constraints_func=BUDGET)
    parents = set()
    for _ in range(40):
        t = study.ask()
        t.suggest_float("x.y", 0.0, 1.0)
        parents.update(study._storage.get_trial_system_attrs(t._trial_id)[PLAN_ATTR]["parents"])
    assert parents == {4, 6}


def test_budgets_become_constraints_and_infeasible_trials_are_not_parents(tmp_path):
    adapter = _adapter(tmp_path, make_sampler("evolution", 0, 12, max_bytes=1000))  # population 4

    def metrics(number, genome):  # from trial 5 on, every other trial is best at everything but 1000 bytes over
        if number >= 5 and number % 2:
            return {"mean_error": 0.0, "params": 1, "size_bytes": 2000}
        return {**_metrics(number, genome), "size_bytes": 500}

    _evolve(adapter, 16, metrics)
    trials = adapter.study.get_trials(deepcopy=False)
    cons = adapter.study.sampler.constraints_func  # recomputed from the costs, not stored
    assert [cons(t) for t in trials[5:7]] == [[1000.0], [-500.0]]
    _check_lineage(adapter.study)
    parents = {n for t in trials for n in t.system_attrs[PLAN_ATTR]["parents"]}
    assert parents and all(cons(trials[n])[0] <= 0 for n in parents)


def test_subtrees_and_fits():
    names = ["trunk.stem.conv.c", "trunk.stage.n", "trunk.stage.0.block.0.alt", "trunk.stage.0.block.0.conv.k",
             "branch.left.tap"]
    # one root per distinct set of decisions: trunk.stem (not .conv), trunk.stage.0 (not .block, .block.0)
    assert subtrees(names) == ["branch", "trunk", "trunk.stage", "trunk.stage.0", "trunk.stage.0.block.0.conv",
                               "trunk.stem"]
    assert under("trunk.stage.1.n", "trunk.stage.1") and not under("trunk.stage.10.n", "trunk.stage.1")
    assert fits(CategoricalDistribution((3, 5)), 5) and not fits(CategoricalDistribution((3, 5)), 4)
    assert fits(FloatDistribution(0.0, 1.0), 0.25) and not fits(FloatDistribution(0.0, 1.0), 1.5)
    assert not fits(IntDistribution(0, 3), 1)
