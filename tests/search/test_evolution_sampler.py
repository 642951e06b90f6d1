"""The evolution sampler on public Optuna API only: no private Optuna module is imported
anywhere in nasmt, feasibility is recomputed with the budgets' `constraints_func` (never
read from or written to the trial's stored constraints); and the study a search creates
names its objective dimensions (optuna-dashboard says `mean_error`, not `Objective 0`)."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import optuna
from optuna.distributions import FloatDistribution

from kill_helpers import journal_study
from nasmt.quant import COSTS_ATTR, constraints_func
from nasmt.run import Objective
from nasmt.search.samplers.evolution import PLAN_ATTR, EvolutionSampler, ranked
from nasmt.search.samplers import make_sampler
from nasmt.search.study import StudyAdapter

optuna.logging.set_verbosity(optuna.logging.WARNING)

NASMT = Path(__file__).resolve().parents[2] / "nasmt"
EVOLUTION = NASMT / "search" / "samplers" / "evolution.py"
BUDGET = functools.partial(constraints_func, max_bytes=1000)


def _private_optuna(source: str) -> list[tuple[int, str]]:
    """(line, name) of the `optuna...` imports and attribute chains in a module's source
    that name a private part (`optuna.samplers._base`, `from optuna.x import _y`)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Attribute):
            chain, n = [node.attr], node.value
            while isinstance(n, ast.Attribute):
                chain.append(n.attr)
                n = n.value
            names = [".".join([n.id, *reversed(chain)])] if isinstance(n, ast.Name) else []
        else:
            continue
        out += [(node.lineno, name) for name in names
                if name.split(".")[0] == "optuna" and any(p.startswith("_") for p in name.split(".")[1:])]
    return sorted(set(out))


def test_checker_finds_private_optuna_imports():
    src = ("import optuna.samplers._base\nfrom optuna.samplers._base import _process_constraints_after_trial\n"
           "from optuna.samplers import _base\nimport optuna\nx = optuna.study._constrained_optimization\n"
           "from optuna.trial import FrozenTrial\ny = optuna.samplers.RandomSampler\n")
    assert _private_optuna(src) == [
        (1, "optuna.samplers._base"), (2, "optuna.samplers._base"),
        (2, "optuna.samplers._base._process_constraints_after_trial"), (3, "optuna.samplers._base"),
        (5, "optuna.study._constrained_optimization")]


def test_nasmt_imports_no_private_optuna_module():
    modules = sorted(NASMT.rglob("*.py"))
    assert EVOLUTION in modules
    hits = {str(m.relative_to(NASMT)): _private_optuna(m.read_text(encoding="utf-8")) for m in modules}
    assert {m: h for m, h in hits.items() if h} == {}


def test_evolution_never_touches_stored_constraints():
    """No `.constraints` (FrozenTrial.constraints exists only from Optuna 5.0), no
    `set_constraint`, no `"constraints"` system attr: feasibility is recomputed."""
    tree = ast.parse(EVOLUTION.read_text(encoding="utf-8"))
    attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert not {"constraints", "set_constraint"} & attrs
    assert not {s for s in strings if s.startswith("constraints")}


def _trial(values, size_bytes=None, stored=None):
    """A complete trial with its measured size (the user attr the searcher sets before
    `tell`) and, optionally, constraint values stored by some earlier sampler."""
    costs = {} if size_bytes is None else {"size_bytes": size_bytes}
    t = optuna.trial.create_trial(params={"x.y": 0.5}, distributions={"x.y": FloatDistribution(0.0, 1.0)},
                                  values=values, user_attrs={COSTS_ATTR: costs})
    if stored is not None:
        t.set_constraint("0", stored)
    return t


def test_elite_ranks_infeasible_after_feasible_by_recomputed_constraints():
    study = optuna.create_study(directions=["minimize", "minimize"])
    trials = [
        _trial([0.0, 0.0], size_bytes=3000, stored=-1.0),  # 0: dominates all, but over budget (stored says fine)
        _trial([0.5, 0.5], size_bytes=900),                # 1: feasible, dominated by 2
        _trial([0.2, 0.2], size_bytes=1000),               # 2: feasible (at the budget), best feasible
        _trial([0.1, 0.1], size_bytes=1500, stored=-5.0),  # 3: over budget by 500
        _trial([0.1, 0.1]),                                # 4: no size measured: violated (1.0)
        _trial([0.9, 0.9], size_bytes=float("nan")),       # 5: NaN cost: infinitely violated, last
    ]
    for t in trials:
        study.add_trial(t)
    complete = study.get_trials(deepcopy=False)
    assert [t.number for t in ranked(complete, study.directions, BUDGET)] == [2, 1, 4, 3, 0, 5]
    # no budgets: nothing is infeasible, whatever was stored; non-dominated order
    assert [t.number for t in ranked(complete, study.directions)][:3] == [0, 3, 4]
    # the sampler ranks with its own constraints_func: the elite is 2, 1, 4 and a binary
    # tournament never picks the elite's worst first; all x.y are equal, so no crossover
    # changes anything and every child is a mutation of 2 or 1 (without budgets: 0 or 3)
    study.sampler = EvolutionSampler(population_size=3, seed=0, constraints_func=BUDGET)
    parents = set()
    for _ in range(20):
        t = study.ask()
        t.suggest_float("x.y", 0.0, 1.0)
        study.tell(t, [1.0, 1.0])
        parents.update(study.trials[t.number].system_attrs[PLAN_ATTR]["parents"])
    assert parents == {1, 2}
    # the new trials (no size measured: infeasible, never parents) have nothing stored
    assert all(not any(k.startswith("constraints") for k in t.system_attrs) for t in study.trials[6:])


def test_searched_study_names_its_metrics_and_resume_keeps_them(tmp_path):
    objectives = [Objective("mean_error", "min"), Objective("params", "min"), Objective("accuracy.left", "max")]
    adapter = StudyAdapter(tmp_path, objectives, make_sampler("evolution", 0, 12), space=None)
    assert adapter.study.metric_names == ["mean_error", "params", "accuracy.left"]
    assert journal_study(tmp_path).metric_names == ["mean_error", "params", "accuracy.left"]  # in the journal
    # resume: a second adapter on the same journal opens it without error and keeps the names
    resumed = StudyAdapter(tmp_path, objectives, make_sampler("evolution", 1, 12), space=None)
    assert resumed.study.metric_names == ["mean_error", "params", "accuracy.left"]
    # a study someone already named (e.g. by hand for a dashboard) is not renamed
    named = journal_study(tmp_path)
    named.set_metric_names(["err", "p", "acc"])
    again = StudyAdapter(tmp_path, objectives, make_sampler("tpe", 0, 12), space=None)
    assert again.study.metric_names == ["err", "p", "acc"]
