"""Search: Ray Tune runs the trials, Optuna proposes them (define-by-run over the grammar).

config (SearchConfig, validation) -> context (TrialContext shipped to workers) ->
space (the define-by-run hook) -> trial (the trainable) -> study (the Optuna adapter)
-> searcher (the Tune Searcher) -> callback (records) -> driver (run_search); resume
and lock make a killed search continuable; faults are test-only fault injection;
measure re-measures the Pareto set's latency after a search.
"""

from nasmt.search.config import SAMPLERS, STUDY_NAME, SearchConfig
from nasmt.search.driver import prepare, run_search

__all__ = ["SAMPLERS", "STUDY_NAME", "SearchConfig", "prepare", "run_search"]
