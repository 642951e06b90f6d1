"""Search: Ray Tune runs the trials, Optuna proposes them (define-by-run over the grammar).

config (SearchConfig, validation) -> context (TrialContext shipped to workers) ->
space (the define-by-run hook) -> trial (the trainable; its files reach the run
directory through sink) -> study (the Optuna adapter; evolution is our own sampler,
warm seeds it) -> searcher (the Tune Searcher; mo_asha the scheduler) -> callback
(records) -> driver (run_trials) and oneshot/ (the one-shot search) -> entry
(run_search: either); resume and lock make a killed search continuable;
measure re-measures the Pareto set's latency and finalize retrains it at the full budget
after a search; faults are test-only fault injection.
"""

import importlib

# The names below load on first use (PEP 562), not when the package is imported: a Ray
# worker that only unpickles a small piece of it (the TrialSink actor, one process per
# search) then imports ray and nasmt.run alone, not torch and Ray Tune through the
# driver (measured: 1.2 instead of 6.3 CPU seconds per sink on a 2-core machine).
_HOME = {"SAMPLERS": "config", "STUDY_NAME": "config", "SearchConfig": "config",
         "prepare": "driver", "run_search": "entry", "resume_config": "resume"}
__all__ = list(_HOME)


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module 'nasmt.search' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"nasmt.search.{_HOME[name]}"), name)
    globals()[name] = value
    return value
