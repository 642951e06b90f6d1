"""Model-based samplers that see a bounded part of the history.

Optuna's TPE fits its Parzen estimators to every finished trial at every ask, and
NSGA-II scans the whole history for its generations: the cost per ask grows with the
history (TPE 1.4 s per ask at 10^4 trials in issue 19). At one-shot scale (thousands to
10^5 candidates) the sampler, not the candidate, would be the cost.

`BoundedHistory` hands the wrapped sampler a `HistoryView` of the study instead of the
study: while the study holds at most `elite + window` trials the view is the study
itself (the sampler behaves exactly as unbounded); beyond that it holds

* the `elite` best complete trials in the evolution sampler's order (feasible first,
  non-dominated rank, crowding distance: `EliteArchive`, kept up to date per completed
  trial, never re-ranked), which is what TPE's "below" model is built from (its gamma
  takes the best 10 %, at most a few dozen trials) and where NSGA-II's parents come from;
* the most recent trials back to the `window`-th most recent finished one (so running
  ones too: TPE's constant liar; NSGA-II's current and previous generations),

in trial-number order. Everything else (storage, directions, system attrs) is the
study's own. How many trials the model saw last is `seen`.

The classes subclass Optuna's own (`BoundedTPESampler` is a `TPESampler`), so what Optuna
does with them (constraints after a trial, reseeding) is unchanged."""

from __future__ import annotations

import copy
import threading

from optuna.samplers import NSGAIISampler, TPESampler
from optuna.study import Study
from optuna.trial import FrozenTrial

from nasmt.search.samplers.elite import EliteArchive

# (elite, window) per sampler, chosen with benchmarks/bench_samplers.py: TPE's below set is a
# tenth of what it sees, and past a few dozen below-set trials its hypervolume tie-break
# (HSSP, 4 objectives) dominates the ask; NSGA-II needs its last two generations (2 x 50).
TPE_HISTORY = (10, 90)
NSGA2_HISTORY = (25, 225)


class HistoryView:
    """A study whose trials are `trials` (number order); any other attribute is the study's."""

    def __init__(self, study: Study, trials: list[FrozenTrial]):
        self.study = study
        self._trials = trials

    def __getattr__(self, name):
        return getattr(self.study, name)

    def _get_trials(self, deepcopy: bool = True, states=None, use_cache: bool = False) -> list[FrozenTrial]:
        trials = self._trials if states is None else [t for t in self._trials if t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def get_trials(self, deepcopy: bool = True, states=None) -> list[FrozenTrial]:
        return self._get_trials(deepcopy=deepcopy, states=states)

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()


class BoundedHistory:
    """Mixin before an Optuna sampler class: every sampler hook gets the bounded view
    (built once per trial in `before_trial`)."""

    def _bound(self, elite: int, window: int, constraints_func=None) -> None:
        if elite < 1 or window < 1:
            raise ValueError(f"elite and window must be at least 1 (got {elite}, {window})")
        self.history_elite, self.history_window = elite, window
        self._bound_constraints = constraints_func
        self._archive: EliteArchive | None = None
        self._views: dict[int, Study | HistoryView] = {}  # trial id -> its view, from before_trial to after_trial
        self.seen = 0  # trials in the last view

    def history_view(self, study: Study) -> Study | HistoryView:
        trials = study.get_trials(deepcopy=False)
        if len(trials) <= self.history_elite + self.history_window:
            self.seen = len(trials)
            return study
        if self._archive is None:
            self._archive = EliteArchive(self.history_elite, study.directions, self._bound_constraints)
        recent, finished = [], 0
        for t in reversed(trials):  # back to the window-th finished trial, running ones included
            recent.append(t)
            finished += t.state.is_finished()
            if finished >= self.history_window:
                break
        recent.reverse()
        first = recent[0].number
        old = sorted((t for t in self._archive.elite(trials) if t.number < first), key=lambda t: t.number)
        self.seen = len(old) + len(recent)
        return HistoryView(study, old + recent)

    def _view(self, study: Study, trial: FrozenTrial):
        return self._views.get(trial._trial_id, study)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        view = self._views[trial._trial_id] = self.history_view(study)
        super().before_trial(view, trial)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial):
        return super().infer_relative_search_space(self._view(study, trial), trial)

    def sample_relative(self, study: Study, trial: FrozenTrial, search_space):
        return super().sample_relative(self._view(study, trial), trial, search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name, param_distribution):
        return super().sample_independent(self._view(study, trial), trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state, values) -> None:
        self._views.pop(trial._trial_id, None)
        super().after_trial(study, trial, state, values)


class BoundedTPESampler(BoundedHistory, TPESampler):
    def __init__(self, *args, history_elite: int = TPE_HISTORY[0], history_window: int = TPE_HISTORY[1], **kwargs):
        super().__init__(*args, **kwargs)
        self._bound(history_elite, history_window, kwargs.get("constraints_func"))


class BoundedNSGAIISampler(BoundedHistory, NSGAIISampler):
    def __init__(self, *args, history_elite: int = NSGA2_HISTORY[0], history_window: int = NSGA2_HISTORY[1],
                 **kwargs):
        super().__init__(*args, **kwargs)
        self._bound(history_elite, history_window, kwargs.get("constraints_func"))

    def get_parent_population(self, study: Study, generation: int) -> list[FrozenTrial]:
        """Parents are cached by trial id in the study and may be older than the window:
        looked up in the whole study (a scan, no model fit)."""
        return super().get_parent_population(getattr(study, "study", study), generation)

    def _sync_generation_cache(self, study):
        """Optuna >= 5.1 keeps the generations in an incremental cache that indexes the
        study's trials by number: it reads the whole study (no model fit: the bounded view
        is for the selection's cost, and this cache is already incremental)."""
        return super()._sync_generation_cache(getattr(study, "study", study))

    def __getstate__(self) -> dict:
        # Optuna >= 5.1's GA samplers hold a threading.Lock, which cannot be pickled (Ray
        # pickles the searcher that holds this sampler): left out, a new one on unpickling
        state = self.__dict__.copy()
        if state.pop("_thread_lock", None) is not None:
            state["_had_thread_lock"] = True
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        if state.pop("_had_thread_lock", False):
            state["_thread_lock"] = threading.Lock()
        self.__dict__.update(state)


# Optuna names a GA sampler's trial / study attrs after its class: keep NSGA-II's own, so a
# study NSGAIISampler started (an older run, resumed) keeps its generations and parents
BoundedNSGAIISampler._GENERATION_KEY = NSGAIISampler._get_generation_key()
BoundedNSGAIISampler._PARENT_CACHE_KEY_PREFIX = NSGAIISampler._get_parent_cache_key_prefix()
