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

from nasmt.search.config import SAMPLERS, STUDY_NAME, SearchConfig
from nasmt.search.driver import prepare
from nasmt.search.entry import run_search

__all__ = ["SAMPLERS", "STUDY_NAME", "SearchConfig", "prepare", "run_search"]
