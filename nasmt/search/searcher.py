"""`NasmtSearcher`: a Ray Tune `Searcher` (public API only) over a `StudyAdapter`.

Call order (Tune): `suggest(trial_id)` for each new trial -> the trial runs ->
`on_trial_complete(trial_id, result, error)` once. It stops proposing once `target`
trials are complete; failed trials are replaced until `max_failures` of them failed;
trials an early-stopping scheduler stopped count as neither and are told to Optuna as
PRUNED, never as complete. Testable without Tune: feed it suggest/complete calls."""

from __future__ import annotations

import json

from ray.tune.search import Searcher

from nasmt.run.values import is_finite_number
from nasmt.search.config import FAILED_KEY, NUMBER_KEY
from nasmt.search.study import StudyAdapter

# costs the sampler's budget constraints read (stored on the Optuna trial before `tell`)
CONSTRAINED_COSTS = ("size_bytes", "latency_ms", "predicted_latency_ms")


class NasmtSearcher(Searcher):
    def __init__(self, adapter: StudyAdapter, target: int, max_failures: int, done: int = 0, failed: int = 0):
        super().__init__(metric=[o.name for o in adapter.objectives], mode=[o.direction for o in adapter.objectives])
        self.adapter = adapter
        self.target, self.max_failures = target, max_failures
        self.n_complete, self.n_failed = done, failed
        self.numbers: dict[str, int] = {}  # Tune trial id -> Optuna trial number, while in flight

    def suggest(self, trial_id: str):
        if self.n_complete >= self.target or self.n_failed >= self.max_failures:
            return Searcher.FINISHED  # final: Tune asks no more
        if self.n_complete + len(self.numbers) >= self.target:
            return None  # not now: a trial in flight may still fail or be stopped early
        number, genome = self.adapter.ask()
        self.numbers[trial_id] = number
        return {**genome, NUMBER_KEY: number}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        from nasmt.quant import COSTS_ATTR

        number = self.numbers.pop(trial_id, None)
        if number is None:
            return
        final = bool(result and result.get("final"))
        if error or (result and result.get(FAILED_KEY)):  # Tune's error, or the trial's own code failed
            self.n_failed += 1  # the record callback may take it back (uncount_failure)
            self.adapter.tell_failed(number)
        elif not result:  # never reported: the search stopped before it ran
            self.adapter.tell_failed(number)
        elif not final:
            self.adapter.tell_stopped(number)
        elif not all(is_finite_number(result.get(o.name)) for o in self.adapter.objectives):
            self.n_failed += 1  # cannot happen for a complete trial; never tell Optuna NaN
            self.adapter.tell_failed(number)
        else:
            self.n_complete += 1
            self.adapter.tell_complete(number, result, COSTS_ATTR, CONSTRAINED_COSTS)

    def uncount_failure(self) -> None:
        """The last failure was not the architecture's (its node died): Tune tells the
        searcher before the callbacks, so the record callback takes it back here."""
        self.n_failed = max(0, self.n_failed - 1)

    def save(self, checkpoint_path: str) -> None:
        """The sampler's memory is the Optuna journal; Tune's checkpoint only notes counts."""
        with open(checkpoint_path, "w", encoding="utf-8") as f:
            json.dump({"n_complete": self.n_complete, "n_failed": self.n_failed}, f)

    def restore(self, checkpoint_path: str) -> None:  # resume rebuilds state from the run directory
        pass


