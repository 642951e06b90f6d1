"""Grammar-aware evolution: an Optuna sampler that edits whole subtrees of a derivation.

A genome's decisions are named by derivation paths (`trunk.stage.1.block.0.conv.k`), so
the decisions under a dotted prefix (`trunk.stage.1`) are one subtree of the derivation.
NSGA-II sees the same decisions as a flat list whose length changes with the derivation;
here a child is one parent with one subtree re-derived under the grammar's weights
(mutation), or one parent with one subtree taken whole from a second parent (crossover,
as in einspace).

How Optuna drives it, in call order:

* `before_trial`: an enqueued trial (`Study.enqueue_trial`, nasmt's `--enqueue`) keeps
  its given decisions. While fewer than `population_size` trials are complete, a trial is a
  fresh random draw (uniform `.alt` floats honour the PCFG weights). After that it is a
  child: parents come from the elite (the best `population_size` complete trials:
  feasible first, then by non-dominated rank, then by crowding distance; kept up to date
  by `elite.EliteArchive` as trials complete, not re-ranked at every ask) by binary
  tournament, and a subtree is picked uniformly among the parent's distinct subtrees.
  The plan (operator, parent numbers, prefix) is stored in the trial's system attrs
  (`PLAN_ATTR`): a resumed study (new sampler, same journal) selects from the same
  complete trials, and every child records where it came from.
* `sample_independent`, once per decision of the define-by-run walk: a decision under
  the prefix is drawn fresh (mutation) or copied from the second parent (crossover);
  any other decision is copied from the first parent. A decision the source lacks (the
  derivation changed shape) or whose value is outside the asked domain is drawn fresh.
* `after_trial`: forgets the trial's plan.

Feasibility is recomputed, never stored: `constraints_func` (nasmt's budgets,
`nasmt.quant.constraints_func`) is a pure function of a complete trial's user attrs, so
ranking the elite calls it once on each complete trial. Nothing here reads
`FrozenTrial.constraints` or imports a private Optuna module; the one private access left
is `study._storage` to keep the plan in the trial's system attrs, which is how Optuna's
own samplers keep per-trial state (no public API writes a system attr from a sampler).

Every draw comes from generators seeded by `seed`: the same study history and seed give
the same children.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
)
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from nasmt.run import crowding, nondominated_ranks
from nasmt.search.samplers.elite import ConstraintsFunc, EliteArchive, violation

PLAN_ATTR = "nasmt_evolution"  # trial system attr: {"op", "parents", "prefix"}
RANDOM, MUTATION, CROSSOVER, ENQUEUED = "random", "mutation", "crossover", "enqueued"
FIXED_PARAMS_ATTR = "fixed_params"  # where Optuna's enqueue_trial keeps a trial's given decisions
SEED_SPAN = 2**31  # the fresh-draw sampler's seed is drawn below this from the sampler's seed


@dataclass(frozen=True)
class _Plan:
    prefix: str
    inside: dict  # where decisions under the prefix come from ({}: drawn fresh)
    outside: dict  # where the other decisions come from (the first parent)


def under(name: str, prefix: str) -> bool:
    """Whether decision `name` belongs to the subtree rooted at `prefix`."""
    return name == prefix or name.startswith(prefix + ".")


def _prefixes(names) -> set[str]:
    """The derivation nodes owning decisions: every proper dotted prefix of a name."""
    out = set()
    for name in names:
        parts = name.split(".")
        out.update(".".join(parts[:d]) for d in range(1, len(parts)))
    return out


def subtrees(names) -> list[str]:
    """One prefix per distinct subtree (the shortest of the prefixes that own exactly the
    same decisions, e.g. `trunk.stem` over `trunk.stem.conv`), sorted."""
    roots: dict[frozenset, str] = {}
    for p in sorted(_prefixes(names), key=lambda p: (len(p), p)):
        roots.setdefault(frozenset(n for n in names if under(n, p)), p)
    return sorted(roots.values())


def fits(distribution: BaseDistribution, value) -> bool:
    """Whether an inherited value is in the domain this trial asks for (nasmt's walk asks
    categoricals and [0, 1) floats; anything else is drawn fresh)."""
    if isinstance(distribution, CategoricalDistribution):
        return value in distribution.choices
    if isinstance(distribution, FloatDistribution):
        return distribution.low <= value <= distribution.high
    return False


def ranked(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection],
           constraints_func: ConstraintsFunc | None = None) -> list[FrozenTrial]:
    """Complete trials best first: feasible before infeasible (infeasible by total
    constraint violation, recomputed with `constraints_func`), then by non-dominated rank,
    then widest crowding distance."""
    signs = np.array([1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in directions])
    values = np.array([t.values for t in trials], dtype=float).reshape(len(trials), len(signs)) * signs
    violations = np.array([violation(t, constraints_func) for t in trials])
    rank = np.zeros(len(trials))
    crowd = np.zeros(len(trials))
    feasible = np.flatnonzero(violations == 0)  # complete trials have no NaN values: Optuna fails those
    rank[feasible] = nondominated_ranks(values[feasible])
    for r in np.unique(rank[feasible]):
        front = feasible[rank[feasible] == r]
        crowd[front] = crowding(values[front])
    order = sorted(range(len(trials)), key=lambda i: (violations[i], rank[i], -crowd[i], trials[i].number))
    return [trials[i] for i in order]


class EvolutionSampler(BaseSampler):
    """Mutation re-derives one subtree of a parent; crossover grafts one subtree of a
    second parent; parents by binary tournament over the non-dominated-sorted elite."""

    def __init__(self, population_size: int = 8, p_mutation: float = 0.5, seed: int | None = None,
                 constraints_func: ConstraintsFunc | None = None):
        if population_size < 2:
            raise ValueError(f"population_size must be at least 2 (got {population_size})")
        if not 0.0 <= p_mutation <= 1.0:
            raise ValueError(f"p_mutation must be in [0, 1] (got {p_mutation})")
        self.population_size = population_size
        self.p_mutation = p_mutation
        self.constraints_func = constraints_func
        self._rng = np.random.RandomState(seed)
        self._fresh = RandomSampler(seed=int(self._rng.randint(SEED_SPAN)))
        self._plans: dict[int, _Plan] = {}  # trial id -> plan, from before_trial to after_trial
        self._archive: EliteArchive | None = None  # the elite, updated as trials complete (not re-ranked per ask)

    def reseed_rng(self) -> None:
        self._rng.seed()
        self._fresh.reseed_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}  # every decision is sampled independently, along the walk

    def sample_relative(self, study: Study, trial: FrozenTrial, search_space: dict) -> dict:
        return {}

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        if self._archive is None:
            self._archive = EliteArchive(self.population_size, study.directions, self.constraints_func)
        trials = study.get_trials(deepcopy=False)
        self._archive.update(trials)
        record, plan = {"op": RANDOM, "parents": [], "prefix": None}, None
        if trial.system_attrs.get(FIXED_PARAMS_ATTR):  # enqueued: given decisions, any others drawn fresh
            record = {**record, "op": ENQUEUED}
        elif self._archive.n_complete >= self.population_size:
            # the first population_size trials of `ranked(complete trials)`, kept incrementally
            record, plan = self._plan(self._archive.elite(trials), record)
        if plan is not None:
            self._plans[trial._trial_id] = plan
        # how Optuna's own samplers keep per-trial state in the study's storage
        study._storage.set_trial_system_attr(trial._trial_id, PLAN_ATTR, record)

    def _tournament(self, pool: int, exclude: int | None = None) -> int:
        """Index of the better (lower) of two distinct random indices of a best-first pool."""
        cands = [i for i in range(pool) if i != exclude]
        if len(cands) == 1:
            return cands[0]
        return int(min(self._rng.choice(cands, size=2, replace=False)))

    def _plan(self, elite: list[FrozenTrial], fallback: dict) -> tuple[dict, _Plan | None]:
        """The stored record and the plan of one child of `elite` (best first); `fallback`
        (no plan: a fresh draw) when the parent has no subtree (a grammar without decisions)."""
        i = self._tournament(len(elite))
        a = elite[i]
        if self._rng.uniform() >= self.p_mutation:
            b = elite[self._tournament(len(elite), exclude=i)]
            b_nodes = _prefixes(b.params)
            # subtrees both parents hold and that differ: a crossover there changes the child
            differ = [p for p in subtrees(a.params) if p in b_nodes
                      and {n: v for n, v in a.params.items() if under(n, p)}
                      != {n: v for n, v in b.params.items() if under(n, p)}]
            if differ:
                prefix = differ[self._rng.randint(len(differ))]
                return ({"op": CROSSOVER, "parents": [a.number, b.number], "prefix": prefix},
                        _Plan(prefix, inside=b.params, outside=a.params))
        nodes = subtrees(a.params)
        if not nodes:
            return fallback, None
        prefix = nodes[self._rng.randint(len(nodes))]
        return {"op": MUTATION, "parents": [a.number], "prefix": prefix}, _Plan(prefix, inside={}, outside=a.params)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution):
        plan = self._plans.get(trial._trial_id)
        if plan is not None:
            source = plan.inside if under(param_name, plan.prefix) else plan.outside
            if param_name in source and fits(param_distribution, source[param_name]):
                return source[param_name]
        return self._fresh.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._plans.pop(trial._trial_id, None)

