"""The search's samplers (Optuna's home for them is `optuna/samplers/`): `make_sampler`
turns `--sampler` into an Optuna sampler with the run's budgets as constraints;
`evolution` is nasmt's own grammar-aware evolution sampler, `elite` the incremental
elite it breeds from, `bounded` TPE and NSGA-II seeing a bounded part of the history
(benchmarks/bench_samplers.py measures both against the unbounded ones)."""

from __future__ import annotations

import functools
import warnings

from nasmt.errors import UserError
from nasmt.search.config import SAMPLERS

STARTUP_FRACTION = 3  # TPE / NSGA-II / evolution: a third of the trials (4..10 / 4..50) explores at random first


def population_size(trials: int) -> int:
    """The random initial population of the genetic samplers (NSGA-II, evolution)."""
    return max(4, min(50, trials // STARTUP_FRACTION))


def make_sampler(name: str, seed: int, trials: int, max_bytes=None, max_latency_ms=None, bounded: bool = True):
    """`name`: a concrete sampler (resolve `auto` first: `SearchConfig.sampler_name`).
    `bounded=False`: Optuna's TPE / NSGA-II on the whole history (for benchmarks)."""
    import optuna

    from nasmt.quant import constraints_func
    from nasmt.search.samplers.bounded import BoundedNSGAIISampler, BoundedTPESampler

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    cons = None
    if max_bytes is not None or max_latency_ms is not None:
        cons = functools.partial(constraints_func, max_bytes=max_bytes, max_latency_ms=max_latency_ms)
        # Optuna 5 deprecates constraints_func (in favour of Trial.set_constraint) but still honours it
        warnings.filterwarnings("ignore", message=".*constraints_func.*", category=FutureWarning)
    if name == "tpe":
        return (BoundedTPESampler if bounded else optuna.samplers.TPESampler)(
            seed=seed, multivariate=True, group=True, constant_liar=True,
            n_startup_trials=max(4, min(10, trials // STARTUP_FRACTION)), constraints_func=cons,
        )
    if name == "nsga2":
        return (BoundedNSGAIISampler if bounded else optuna.samplers.NSGAIISampler)(
            seed=seed, population_size=population_size(trials), constraints_func=cons)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "evolution":
        from nasmt.search.samplers.evolution import EvolutionSampler

        return EvolutionSampler(population_size=population_size(trials), seed=seed, constraints_func=cons)
    raise UserError(f"--sampler: unknown sampler {name!r} (choose {', '.join(SAMPLERS)})")
