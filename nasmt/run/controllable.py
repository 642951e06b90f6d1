"""Choosing a candidate of a controllable front at run time: the trade-off a deployer asks
for (a budget on costs, a preference over tasks, the tasks to run) -> one candidate.

A front is a list of candidates (dicts, as `front.json` of a controllable export holds
them) each with `id`, `trial`, `val_error` ({task ident: comparable validation error,
lower is better}) and `costs` ({cost name: value}). The choice:

- quality: per task, a candidate's error is placed on the front's own range,
  q = (worst - error) / (worst - best) (1 on the front's best candidate for that task, 0
  on its worst; 1 for every candidate when they are all equal). A preference's score is
  the preference-weighted mean of q over the tasks it weights (default: equal weights
  over the tasks run);
- budget: every named cost at most its value (`latency_ms`, `params`, `flops`, `bytes`,
  `size_bytes`); a budget no candidate meets is an error naming the cheapest candidate
  (the one whose largest cost / budget ratio is smallest);
- the highest score within budget wins; ties go to the lower latency, then fewer params.

Everything below this docstring is plain Python with no import: the generated `model.py`
of a controllable export copies it verbatim (as it copies the ops), and the report's
controllable view calls the same function, so both choose exactly alike.
"""

COSTS = ("latency_ms", "params", "flops", "bytes", "size_bytes")


class SelectionError(ValueError):
    """A selection that cannot be honoured; `field` names the argument at fault
    ('budget', 'preference', 'tasks' or 'candidate')."""

    def __init__(self, field, message):
        super().__init__(f"{field}: {message}")
        self.field = field


def _is_finite_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and v not in (float("inf"), float("-inf"))


def resolve_tasks(tasks, idents, names=None):
    """The task idents `tasks` names (idents or original names), in front order; None: all."""
    if tasks is None:
        return list(idents)
    if isinstance(tasks, str):
        tasks = [tasks]
    alias = {v: k for k, v in (names or {}).items()}
    out = []
    for t in tasks:
        k = t if t in idents else alias.get(t)
        if k is None:
            raise SelectionError("tasks", f"unknown task {t!r} (tasks: {', '.join(idents)})")
        if k not in out:
            out.append(k)
    if not out:
        raise SelectionError("tasks", "give at least one task")
    return [k for k in idents if k in out]


def check_preference(preference, idents, run_tasks, names=None):
    """{task ident: weight} from a preference over task idents or names; None: equal
    weights over `run_tasks`. Weights are finite and >= 0, at least one positive, and
    only on tasks that are run."""
    if preference is None:
        return {t: 1.0 for t in run_tasks}
    if not isinstance(preference, dict) or not preference:
        raise SelectionError("preference", "give a mapping task -> weight, e.g. {'left': 0.8, 'right': 0.2}")
    alias = {v: k for k, v in (names or {}).items()}
    out = {}
    for t, w in preference.items():
        k = t if t in idents else alias.get(t)
        if k is None:
            raise SelectionError("preference", f"unknown task {t!r} (tasks: {', '.join(idents)})")
        if not _is_finite_number(w):
            raise SelectionError("preference", f"weight of {t!r} must be a number (got {w!r})")
        if w < 0:
            raise SelectionError("preference", f"weight of {t!r} is negative ({w!r}); weights are >= 0")
        if k not in run_tasks:
            raise SelectionError("preference", f"task {t!r} is weighted but not run (tasks run: {', '.join(run_tasks)})")
        out[k] = out.get(k, 0.0) + float(w)
    if not any(w > 0 for w in out.values()):
        raise SelectionError("preference", "every weight is 0; give at least one task a positive weight")
    return out


def check_budget(budget):
    """{cost: limit} with known costs and non-negative finite limits; None: no budget."""
    if budget is None:
        return {}
    if not isinstance(budget, dict):
        raise SelectionError("budget", "give a mapping cost -> limit, e.g. {'latency_ms': 0.5, 'params': 50000}")
    out = {}
    for k, v in budget.items():
        if k not in COSTS:
            raise SelectionError("budget", f"unknown cost {k!r} (costs: {', '.join(COSTS)})")
        if not _is_finite_number(v) or v < 0:
            raise SelectionError("budget", f"limit of {k!r} must be a number >= 0 (got {v!r})")
        out[k] = float(v)
    return out


def task_quality(candidates, tasks):
    """[{task: q}] per candidate: its validation error placed on the front's range (see
    the module docstring)."""
    out = [{} for _ in candidates]
    for t in tasks:
        errs = [c["val_error"][t] for c in candidates]
        lo, hi = min(errs), max(errs)
        for q, e in zip(out, errs):
            q[t] = (hi - e) / (hi - lo) if hi > lo else 1.0
    return out


def _fmt(v):
    return f"{int(v):,}" if float(v).is_integer() and abs(v) >= 1000 else f"{v:.4g}"


def select_candidate(candidates, budget=None, preference=None, tasks=None, names=None, idents=None):
    """(index of the chosen candidate, {"score", "tasks", "preference", "budget"}): the
    highest preference-weighted quality within `budget`. SelectionError (one line) on a
    bad argument or when no candidate meets the budget. `idents`: the task order
    (default the candidates' own)."""
    if not candidates:
        raise SelectionError("candidate", "the front is empty")
    idents = list(idents or candidates[0]["val_error"])
    run = resolve_tasks(tasks, idents, names)
    pref = check_preference(preference, idents, run, names)
    limits = check_budget(budget)
    for k in limits:
        missing = [c["id"] for c in candidates if not _is_finite_number(c["costs"].get(k))]
        if missing:
            raise SelectionError("budget", f"cost {k!r} was not measured for candidate(s) {missing}")
    weighted = [t for t, w in pref.items() if w > 0]
    quality = task_quality(candidates, weighted)
    total = sum(pref[t] for t in weighted)
    scores = [sum(pref[t] * q[t] for t in weighted) / total for q in quality]
    ok = [i for i, c in enumerate(candidates) if all(c["costs"][k] <= v for k, v in limits.items())]
    if not ok:
        def ratio(c):
            return max((c["costs"][k] / v if v > 0 else (0.0 if c["costs"][k] <= 0 else float("inf")))
                       for k, v in limits.items())

        cheap = min(candidates, key=ratio)
        asked = ", ".join(f"{k} <= {_fmt(v)}" for k, v in limits.items())
        has = ", ".join(f"{k} {_fmt(cheap['costs'][k])}" for k in limits)
        raise SelectionError("budget", f"no candidate of the front meets {asked}; the cheapest is candidate "
                             f"{cheap['id']} (trial {cheap['trial']}: {has})")

    def key(i):
        c = candidates[i]["costs"]
        return (-round(scores[i], 12), c.get("latency_ms") or 0.0, c.get("params") or 0)

    best = min(ok, key=key)
    return best, {"score": scores[best], "tasks": run, "preference": pref, "budget": limits}
