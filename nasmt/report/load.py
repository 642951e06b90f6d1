"""Runs as the report reads them: `RunData` (one run directory: run.json, its suite,
its typed trial records, its baseline references) and `ReportContext` (the runs of one
page, the objectives, each run's Pareto front and the reference rows, computed once per
page and shared by every view).

References (`nasmt.baselines`: RUN/baselines.jsonl, or `--baselines DIR` for the first
run) are never trials: they are on no front and in no hypervolume; the views draw them
as labelled reference points and the table lists them after the trials.

One rule for a trial's numbers on the whole page (`drawn_metrics`, applied once in
`make_context`): a trial finalized by `nasmt finalize` (or `--final-epochs`) is drawn,
ranked and compared at its full-budget metrics, any other trial at its search-budget
metrics. Every view reads the context's records, whose `metrics` are those drawn
metrics; only the table also shows the search-budget values
(`ReportContext.search_metrics`), beside the final ones."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from nasmt.baselines import BaselineRecord, baselines_path, read_baselines
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
    baselines: tuple[BaselineRecord, ...] = ()  # its reference models

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


def _extra_baselines(path: Path, suite: TaskSuite) -> tuple[BaselineRecord, ...]:
    """`--baselines DIR` (or the .jsonl file): records of the first run's suite."""
    recs = read_baselines(path)
    if not recs:
        raise UserError(f"--baselines {path}: no baseline records in {baselines_path(path)} "
                        "(write them with `nasmt baselines --tasks SUITE --out DIR`)")
    other = {r.settings.get("suite") for r in recs} - {suite.name}
    if other:
        raise UserError(f"--baselines {path}: references of suite {sorted(map(str, other))[0]!r}, "
                        f"but the run searched {suite.name!r}")
    return tuple(recs)


def load_runs(runs: list[Path], baselines: Path | None = None) -> list[RunData]:
    """Read run directories (RunDirError with one clear line when one is not a run), each
    with the references in its baselines.jsonl; `baselines` (a directory or .jsonl file)
    replaces the first run's."""
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
        refs = tuple(read_baselines(p))
        if baselines is not None and not out:  # the first run
            refs = _extra_baselines(Path(baselines), suite)
        out.append(RunData(p, name, run, suite, read_trials(p), refs))
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


def drawn_metrics(rec: TrialRecord) -> dict:
    """The metrics the page draws a trial at: its full-budget finish's (validation
    metrics of the retrained network, with the same costs) where it was finalized, else
    its search's. The one place this rule lives (see the module docstring)."""
    return rec.metrics_final_first


def as_drawn(rec: TrialRecord) -> TrialRecord:
    """`rec` with `metrics` replaced by `drawn_metrics(rec)` (unchanged if not finalized)."""
    return replace(rec, metrics=drawn_metrics(rec)) if rec.is_finalized else rec


@dataclass(frozen=True)
class ReportContext:
    """What every view of one page reads: the runs (their trial records carrying the
    drawn metrics, `drawn_metrics`), the objectives, and per run the numbers of its
    Pareto-front trials (complete, within budget, non-dominated)."""

    runs: list[RunData]
    objectives: list[Objective]
    fronts: list[frozenset[int]]
    task_names: dict[str, str]
    # per run: trial number -> search-budget metrics, for the trials drawn at other metrics
    searched: list[dict[int, dict]] = field(default_factory=list)

    def search_metrics(self, ri: int, rec: TrialRecord) -> dict:
        """A trial's search-budget metrics (the table shows them beside the final ones)."""
        return self.searched[ri].get(rec.number, rec.metrics) if ri < len(self.searched) else rec.metrics

    def label(self, name: str) -> str:
        """Human label of an objective / metric key."""
        return objective_label(name, self.task_names)

    def on_front(self, ri: int, rec: TrialRecord) -> bool:
        return rec.number in self.fronts[ri]

    def rows(self) -> list[tuple[int, TrialRecord]]:
        """(run index, record) for every trial of every run: the page's global row order
        (a row's index is its `g`, shared by the table and the plots' customdata).
        Built once per context (views call it often; 100,000 rows): do not modify it."""
        cached = self.__dict__.get("_rows")
        if cached is None:
            cached = [(ri, t) for ri, r in enumerate(self.runs) for t in r.trials]
            object.__setattr__(self, "_rows", cached)
        return cached

    # per-row columns, each built once per context (every view reads them; 10^5 rows)

    def _cached(self, key, make):
        """Column `key`: `make(start)` gives its values for the rows from `start` on; a
        column inherited from the previous context (`make_context(previous=)`) is extended."""
        cache = self.__dict__.setdefault("_columns", {})  # frozen dataclass: its __dict__ holds the cache
        col = cache.get(key)
        n = len(self.rows())
        if col is None:
            col = cache[key] = make(0)
        elif len(col) < n:
            col = cache[key] = col + make(len(col))
        return col

    def values(self, name: str) -> list:
        """Per row (`rows` order): the drawn metric `name` when a finite number, else None."""
        return self._cached(("v", name), lambda s: [t.value(name) for _, t in self.rows()[s:]])

    def rounded_values(self, name: str) -> list:
        """`values(name)` rounded as the page shows numbers (`style.rounded`)."""
        from nasmt.report.style import rounded_many

        return self._cached(("r", name), lambda s: rounded_many(self.values(name)[s:]))

    def front_flags(self) -> list[bool]:
        """Per row: on its run's Pareto front."""
        return self._cached("front", lambda s: [t.number in self.fronts[ri] for ri, t in self.rows()[s:]])

    def hashes(self) -> list[str]:
        """Per row: the architecture's spec hash ("" when none)."""
        return self._cached("hash", lambda s: [t.arch_hash for _, t in self.rows()[s:]])

    def reference_rows(self) -> list[tuple[int, int, BaselineRecord]]:
        """(g, run index, record) of every reference: the table rows after every trial's."""
        g0 = sum(len(r.trials) for r in self.runs)
        refs = [(ri, b) for ri, r in enumerate(self.runs) for b in r.baselines]
        return [(g0 + k, ri, b) for k, (ri, b) in enumerate(refs)]

    def reference_label(self, ri: int, rec: BaselineRecord) -> str:
        """A reference's name, prefixed by its run's when several runs have references."""
        several = sum(bool(r.baselines) for r in self.runs) > 1
        return f"{self.runs[ri].name} · {rec.name}" if several else rec.name


def make_context(runs: list[RunData], objectives: list[Objective], previous: ReportContext | None = None) -> ReportContext:
    """The page's context: every trial record as drawn (`as_drawn`), so that every view,
    the fronts and the knee read the same numbers for the same trial.

    `previous` (the live dashboard's last context): when its rows are the first rows of
    this one (the same record objects: trials were only appended), its per-row metric
    columns and hashes are extended instead of built again."""
    searched = [{t.number: t.metrics for t in r.trials if t.is_finalized} for r in runs]
    drawn = [replace(r, trials=[as_drawn(t) for t in r.trials]) for r in runs]
    fronts = [frozenset(front_numbers(r.trials, objectives)) for r in drawn]
    ctx = ReportContext(drawn, list(objectives), fronts, merged_task_names(runs), searched)
    if previous is not None:
        old, new = previous.rows(), ctx.rows()
        if len(old) <= len(new) and all(a[1] is b[1] and a[0] == b[0] for a, b in zip(old, new)):
            ctx.__dict__["_columns"] = {k: v for k, v in previous.__dict__.get("_columns", {}).items() if k != "front"}
    return ctx
