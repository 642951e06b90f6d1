"""Runs as the report reads them: `RunData` (one run directory: run.json, its suite,
its typed trial records) and `ReportContext` (the runs of one page, the objectives,
and each run's Pareto front, computed once per page and shared by every view)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nasmt.data.suite import TaskSuite, suite_from_json
from nasmt.errors import RunDirError, UserError
from nasmt.run import RUN_FILE, Objective, TrialRecord, front_numbers, load_run, objective_label, parse_objectives, read_trials

# objectives of a run.json that records none (runs written before objectives were stored)
DEFAULT_OBJECTIVES = "mean_error:min,params:min"


class ObjectiveError(UserError):
    """Objectives that cannot be plotted for these runs."""


@dataclass(frozen=True)
class RunData:
    path: Path
    name: str  # unique among the runs of one page (shown in legends and export paths)
    run: dict  # run.json
    suite: TaskSuite
    trials: list[TrialRecord]

    @property
    def task_names(self) -> dict[str, str]:
        return {t.ident: t.name for t in self.suite.tasks}

    @property
    def config(self) -> dict:
        return self.run.get("config") or {}

    @property
    def grammar(self) -> dict:
        """run.json's grammar entry: name, file, text."""
        return self.run.get("grammar") or {}


def load_runs(runs: list[Path]) -> list[RunData]:
    """Read run directories (RunDirError with one clear line when one is not a run)."""
    if not runs:
        raise RunDirError("give at least one run directory")
    out, names = [], set()
    for p in runs:
        p = Path(p)
        run = load_run(p)
        try:
            suite = suite_from_json(run["suite"], file=str(p / RUN_FILE))
        except (KeyError, TypeError, ValueError) as e:
            raise RunDirError(f"{p / RUN_FILE}: no usable task suite ({e})") from None
        name = p.resolve().name or str(p)
        base, i = name, 2
        while name in names:
            name, i = f"{base}-{i}", i + 1
        names.add(name)
        out.append(RunData(p, name, run, suite, read_trials(p)))
    return out


def resolve_objectives(runs: list[RunData], objectives: str | None = None) -> list[Objective]:
    """`objectives` text (e.g. "mean_error,params") checked against every run's suite,
    or the first run's own objectives."""
    if objectives is None:
        field = f"{runs[0].path / RUN_FILE}: objectives"
        objs = runs[0].run.get("objectives")
        try:
            text = ",".join(f"{o['name']}:{o['direction']}" for o in objs) if objs else DEFAULT_OBJECTIVES
        except (KeyError, TypeError):
            raise RunDirError(f"{runs[0].path / RUN_FILE}: malformed objectives") from None
    else:
        text, field = objectives, "--objectives"
    parsed = None
    for r in runs:
        try:
            got = parse_objectives(text, r.suite, field=field)
        except UserError as e:
            raise ObjectiveError(str(e) if len(runs) == 1 else f"{e} [run {r.path}]") from None
        parsed = parsed or got
    return parsed


def merged_task_names(runs: list[RunData]) -> dict[str, str]:
    """Task ident -> name over all runs (a later run's name wins for a shared ident)."""
    out: dict[str, str] = {}
    for r in runs:
        out.update(r.task_names)
    return out


@dataclass(frozen=True)
class ReportContext:
    """What every view of one page reads: the runs, the objectives, and per run the
    numbers of its Pareto-front trials (complete, within budget, non-dominated)."""

    runs: list[RunData]
    objectives: list[Objective]
    fronts: list[frozenset[int]]
    task_names: dict[str, str]

    def label(self, name: str) -> str:
        """Human label of an objective / metric key."""
        return objective_label(name, self.task_names)

    def on_front(self, ri: int, rec: TrialRecord) -> bool:
        return rec.number in self.fronts[ri]

    def rows(self) -> list[tuple[int, TrialRecord]]:
        """(run index, record) for every trial of every run: the page's global row order
        (a row's index is its `g`, shared by the table and the plots' customdata)."""
        return [(ri, t) for ri, r in enumerate(self.runs) for t in r.trials]


def make_context(runs: list[RunData], objectives: list[Objective]) -> ReportContext:
    fronts = [frozenset(front_numbers(r.trials, objectives)) for r in runs]
    return ReportContext(list(runs), list(objectives), fronts, merged_task_names(runs))
