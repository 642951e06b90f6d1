"""`nasmt oneshot-check RUN --n 30`: does inheritance rank candidates as training them does?

n candidates of a one-shot run are drawn (seeded, uniformly) among its COMPLETE records with
inherited weights (`bank.is_inherited`); each architecture is trained from scratch at the
run's per-trial budget (run.json config `epochs` / `steps`, batch size, lr; the grammar's
train rule where it has one: `nasmt.search.finalize.train_spec`, the finish's training) with
the seed its trial number has in the run, and its validation metrics are measured as
deployed (quantization policy simulated, no QAT: as the inherited score). The result is
Kendall's tau-b and Spearman's rho between the inherited and the from-scratch validation
`mean_error`, written atomically to `RUN/oneshot_check.json`:

    {"n", "epochs", "steps", "seed", "metric": "mean_error",
     "pairs": [{"number", "inherited", "scratch"}], "kendall_tau", "spearman_rho", "seconds"}
    (+ "noise_ceiling" with --repeats >= 2, below)

(`steps` is None for an epoch budget; a correlation is None when one side is constant).

`--repeats R` (R >= 2) trains every candidate R times, the first with its trial's seed (the
pairs' `scratch`, as with R = 1) and the others with seeds REPEAT_SEED_STEP apart; each pair
then also holds `scratch_repeats` (the R values) and the output a `noise_ceiling`:
{"repeats", "kendall_tau", "spearman_rho"}, the mean over pairs of repeats of the
correlation between two from-scratch trainings of the same candidates. That is how well
the from-scratch side ranks itself at this budget: inheritance cannot be expected to
rank better than it (a low ceiling means the budget is too short to rank candidates).
The trainings run one after another in this process (no Ray: a check is a few minutes of
small networks, and the numbers do not depend on a cluster). The report draws the pairs as
a scatter (`nasmt.report.oneshot`). The command line is in nasmt/cli.py (`check_run`, then
the one line of `summary`)."""

from __future__ import annotations

import math
import time
from pathlib import Path

CHECK_FILE = "oneshot_check.json"
METRIC = "mean_error"
REPEAT_SEED_STEP = 7919  # seed offset of repeat r: trial seed + r * REPEAT_SEED_STEP


# -- rank correlations ------------------------------------------------------------------------


def _ranks(xs: list[float]) -> list[float]:
    """1-based ranks, ties given their average rank."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    out = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def kendall_tau(x: list[float], y: list[float]) -> float | None:
    """Kendall's tau-b (ties on either side counted as in scipy.stats.kendalltau); None
    when one side is constant."""
    conc = disc = tx = ty = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                tx += 1
            elif dy == 0:
                ty += 1
            elif (dx > 0) == (dy > 0):
                conc += 1
            else:
                disc += 1
    den = math.sqrt((conc + disc + tx) * (conc + disc + ty))
    return (conc - disc) / den if den > 0 else None


def spearman_rho(x: list[float], y: list[float]) -> float | None:
    """Spearman's rho: Pearson's correlation of the average ranks; None when one side is
    constant."""
    rx, ry = _ranks(x), _ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else None


# -- the check --------------------------------------------------------------------------------


def candidates(run_dir: Path) -> list:
    """The run's COMPLETE inherited-weight records with a finite validation mean_error;
    UserError "RUN: not a one-shot run (...)" when it has no supernet or none such."""
    from nasmt.errors import UserError
    from nasmt.run import TrialStatus, read_trials
    from nasmt.search.oneshot.bank import BANK_FILE, SUPERNET_DIR, is_inherited, read_state

    if read_state(run_dir) is None:
        raise UserError(f"{run_dir}: not a one-shot run (no trained supernet: {SUPERNET_DIR}/{BANK_FILE} "
                        f"is missing; run `nasmt search --oneshot`)")
    out = []
    for r in read_trials(run_dir):
        v = r.metrics.get(METRIC)
        if r.status == TrialStatus.COMPLETE and is_inherited(r) and isinstance(v, (int, float)) and math.isfinite(v):
            out.append(r)
    if not out:
        raise UserError(f"{run_dir}: not a one-shot run (no complete candidate with inherited weights in its trials)")
    return out


def check_run(run_dir: str | Path, n: int, epochs: float | None = None, seed: int = 0, say=print,
              repeats: int = 1) -> dict:
    """Run the check (module docstring) and write RUN/oneshot_check.json; returns its content.
    Bad inputs raise UserError (one line) before anything is trained or written."""
    import random

    from nasmt.data import load_data_cached
    from nasmt.data.suite import suite_from_json
    from nasmt.errors import UserError
    from nasmt.run import atomic_write_json, load_run
    from nasmt.search.context import SEED_STRIDE
    from nasmt.search.finalize import train_spec
    from nasmt.space.spec import ArchSpec

    run_dir = Path(run_dir)
    if n < 2:
        raise UserError(f"--n: at least 2 candidates are needed for a rank correlation (got {n})")
    if epochs is not None and not epochs > 0:
        raise UserError(f"--epochs: must be positive (got {epochs})")
    if repeats < 1:
        raise UserError(f"--repeats: must be at least 1 (got {repeats})")
    run = load_run(run_dir)  # one line when it is not a run directory
    pool = candidates(run_dir)
    if n > len(pool):
        raise UserError(f"--n: {run_dir} has {len(pool)} complete candidates with inherited weights (got --n {n})")
    cfg = run.get("config") or {}
    budget_epochs = float(epochs if epochs is not None else cfg.get("epochs", 1.0))
    budget_steps = None if epochs is not None or cfg.get("steps") is None else int(cfg["steps"])
    picked = sorted(random.Random(seed).sample(pool, n), key=lambda r: r.number)
    suite = suite_from_json(run["suite"], file=run.get("suite_file", "<run>"))
    data = load_data_cached(suite)
    t0 = time.time()
    pairs = []
    for k, rec in enumerate(picked, start=1):
        spec = ArchSpec.from_json(rec.spec)
        trial_seed = int(cfg.get("seed", 0)) * SEED_STRIDE + rec.number  # the seed trial `number` trains with
        got = [float(train_spec(spec, cfg, suite, data, trial_seed + r * REPEAT_SEED_STEP, budget_epochs,
                                budget_steps)[1][METRIC]) for r in range(repeats)]
        pairs.append({"number": rec.number, "inherited": float(rec.metrics[METRIC]), "scratch": got[0]})
        if repeats > 1:
            pairs[-1]["scratch_repeats"] = got
        say(f"  {k}/{n}: trial {rec.number}: inherited {pairs[-1]['inherited']:.4f}, "
            f"from scratch {pairs[-1]['scratch']:.4f}")
    x, y = [p["inherited"] for p in pairs], [p["scratch"] for p in pairs]
    out = {"n": n, "epochs": budget_epochs, "steps": budget_steps, "seed": seed, "metric": METRIC, "pairs": pairs,
           "kendall_tau": kendall_tau(x, y), "spearman_rho": spearman_rho(x, y), "seconds": time.time() - t0}
    if repeats > 1:
        out["noise_ceiling"] = noise_ceiling([p["scratch_repeats"] for p in pairs])
    atomic_write_json(run_dir / CHECK_FILE, out)
    return out


def noise_ceiling(values: list[list[float]]) -> dict:
    """values[i][r]: candidate i's r-th from-scratch training. The mean over pairs of
    repeats (r < s) of Kendall's tau-b / Spearman's rho between trainings r and s (pairs
    where a side is constant left out; None when every pair is)."""
    from itertools import combinations

    reps = len(values[0])
    taus, rhos = [], []
    for r, s in combinations(range(reps), 2):
        a, b = [v[r] for v in values], [v[s] for v in values]
        taus.append(kendall_tau(a, b))
        rhos.append(spearman_rho(a, b))

    def mean(xs):
        xs = [x for x in xs if x is not None]
        return sum(xs) / len(xs) if xs else None

    return {"repeats": reps, "kendall_tau": mean(taus), "spearman_rho": mean(rhos)}


def summary(run_dir: Path, out: dict) -> str:
    """The one line the command prints."""
    def f(v):
        return "undefined" if v is None else f"{v:.3f}"

    budget = f"{out['steps']} steps" if out["steps"] is not None else f"{out['epochs']:g} epochs"
    nc = out.get("noise_ceiling")
    ceiling = (f"; noise ceiling (from scratch vs from scratch, {nc['repeats']} seeds): Kendall tau "
               f"{f(nc['kendall_tau'])}, Spearman rho {f(nc['spearman_rho'])}") if nc else ""
    return (f"oneshot-check {run_dir}: {out['n']} candidates trained from scratch ({budget} each, "
            f"{out['seconds']:.0f} s): Kendall tau {f(out['kendall_tau'])}, Spearman rho {f(out['spearman_rho'])} "
            f"(inherited vs from-scratch validation {out['metric']}){ceiling} -> {run_dir / CHECK_FILE}")
