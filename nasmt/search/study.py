"""The Optuna side of a search, behind one small adapter: the journal-backed study, the
sampler, define-by-run asks and the three ways a trial ends (complete, failed,
stopped). Only public Optuna API (`create_study`, `set_metric_names`, `ask`, `tell`,
user attrs)."""

from __future__ import annotations

import warnings
from pathlib import Path

from nasmt.run import JOURNAL_FILE, Objective
from nasmt.search.config import STUDY_NAME


def journal_storage(run_dir: Path):
    import optuna

    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(Path(run_dir) / JOURNAL_FILE)))


def name_metrics(study, objectives: list[Objective]) -> None:
    """Name the study's objective dimensions after the search's objectives, so that
    optuna-dashboard and Optuna's plots say `mean_error`, not `Objective 0`. Only a study
    without names gets them: a resumed study keeps what its first session set."""
    import optuna

    if study.metric_names is not None:
        return
    with warnings.catch_warnings():  # set_metric_names is experimental since Optuna 3.2
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([o.name for o in objectives])


class StudyAdapter:
    """Asks Optuna for genomes (define-by-run over the grammar) and tells it outcomes.

    `seed(completed, genomes)` once (warm start); then per trial `ask()` -> (number,
    genome) and exactly one of `tell_complete(number, metrics, costs_attr, cost_keys)`,
    `tell_failed(number)`, `tell_stopped(number)`."""

    def __init__(self, run_dir: Path, objectives: list[Objective], sampler, space):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.objectives = objectives
        self.space = space
        self.study = optuna.create_study(
            study_name=STUDY_NAME, storage=journal_storage(run_dir), sampler=sampler, load_if_exists=True,
            directions=["minimize" if o.direction == "min" else "maximize" for o in objectives],
        )
        name_metrics(self.study, objectives)
        self._open: dict[int, object] = {}  # number -> optuna Trial not told yet

    def seed(self, completed: list, genomes: list[dict]) -> None:
        """Warm start (nasmt.search.warm): completed trials from earlier runs, then
        genomes to evaluate first (asked before anything the sampler proposes)."""
        if completed:
            self.study.add_trials(completed)
        for g in genomes:
            self.study.enqueue_trial(g, skip_if_exists=False)

    def ask(self) -> tuple[int, dict]:
        t = self.study.ask()
        self.space(t)
        self._open[t.number] = t
        return t.number, dict(t.params)

    def tell_complete(self, number: int, metrics: dict, costs_attr: str, cost_keys) -> None:
        t = self._open.pop(number)
        t.set_user_attr(costs_attr, {k: metrics[k] for k in cost_keys if k in metrics})
        self.study.tell(t, [float(metrics[o.name]) for o in self.objectives])

    def tell_failed(self, number: int) -> None:
        from optuna.trial import TrialState

        self.study.tell(self._open.pop(number), None, state=TrialState.FAIL)

    def tell_stopped(self, number: int) -> None:
        from optuna.trial import TrialState

        self.study.tell(self._open.pop(number), None, state=TrialState.PRUNED)

    def is_open(self, number: int) -> bool:
        return number in self._open
