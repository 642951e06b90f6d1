"""The controllable front of a one-shot run (`nasmt export RUN --controllable`, the report's
controllable view): the candidates a controllable export ships.

Only inherited candidates qualify (their weights are slices of the run's supernet bank,
rebuilt exactly from it) that are complete and within the run's hard budgets, and were
evaluated on the bank the run holds now (same supernet epochs). A finished (fine-tuned)
candidate's own weights are no longer shared: the controllable export uses its inherited
weights and inherited metrics. The front is the Pareto set over every task's error (so
it holds the task trade-offs a preference chooses among) and the run's cost objectives
(default `params`); one candidate per architecture.
"""

from __future__ import annotations

from nasmt.run.objectives import COST_OBJECTIVES, Objective, objectives_from_run
from nasmt.run.pareto import pareto_trials

# Written here, not imported: nasmt.search loads Ray and torch, which the report (a user of
# this module) never needs. tests/export/test_controllable.py checks it equals nasmt.search's.
INHERITED_KEY = "inherited"  # nasmt.search.oneshot.bank.INHERITED: the record's train[...] marker


def front_objectives(run: dict, suite) -> list[Objective]:
    """Every task's error (min), then the run's cost objectives other than mean_error
    (params when it has none)."""
    costs = [o for o in objectives_from_run(run) if o.name in COST_OBJECTIVES and o.name != "mean_error"]
    return [Objective(f"{t.ident}.error", "min") for t in suite.tasks] + (costs or [Objective("params", "min")])


def controllable_front(records, objectives: list[Objective], epochs_done: int | None) -> list:
    """The front's records (see the module docstring), sorted by the objectives."""
    ok = []
    for r in records:
        info = (r.train or {}).get(INHERITED_KEY)
        if info is None or not r.is_front_candidate:
            continue
        if epochs_done is not None and info.get("supernet_epochs") not in (None, int(epochs_done)):
            continue
        ok.append(r)
    seen, out = set(), []
    for r in pareto_trials(ok, objectives):
        if r.arch_hash not in seen:
            seen.add(r.arch_hash)
            out.append(r)
    return out


def thin_front(front: list, objectives: list[Objective], k: int) -> list:
    """At most `k` candidates of `front` that keep its extremes and spread: the cheapest
    (the last objective, a cost), each error objective's best, then farthest-point picks
    in the min-max normalized objective space; returned in front order."""
    import numpy as np

    from nasmt.run.objectives import objective_matrix

    if k >= len(front):
        return list(front)
    m = objective_matrix(front, objectives)
    lo, hi = np.nanmin(m, axis=0), np.nanmax(m, axis=0)
    z = (m - lo) / np.where(hi > lo, hi - lo, 1.0)
    order = [int(np.argmin(m[:, -1]))] + [int(np.argmin(m[:, j])) for j in range(m.shape[1] - 1)]
    picked: list[int] = []
    for i in order:
        if i not in picked and len(picked) < k:
            picked.append(i)
    while len(picked) < k:
        d = np.min(np.linalg.norm(z[:, None, :] - z[None, picked, :], axis=2), axis=1)
        d[picked] = -1.0
        picked.append(int(np.argmax(d)))
    return [front[i] for i in sorted(picked)]
