"""The decision-importance view: which grammar decisions matter for each objective,
from Optuna's importance evaluators on an in-memory study rebuilt from the first run."""

from __future__ import annotations

import json
import warnings
from typing import NamedTuple

import numpy as np

from nasmt.report.genome import genome_columns, run_grammar
from nasmt.report.load import ReportContext
from nasmt.report.style import empty_figure, esc, run_color, short, style
from nasmt.run import TrialRecord, TrialStatus, objective_matrix

# most recent complete trials given to the evaluator (fANOVA's forests grow with them)
MAX_IMPORTANCE_TRIALS = 1000
MIN_IMPORTANCE_TRIALS = 5  # fewer trials say nothing about importance
TOP_DECISIONS = 15  # bars shown


class _ImportanceInfo(NamedTuple):
    run: str  # the run the study was rebuilt from
    evaluator: str | None  # "fANOVA" | "PED-ANOVA"
    importances: dict[str, dict[str, float]]  # objective name -> decision -> importance (sums to 1)
    message: str | None  # why there are none
    n_trials: int
    params: list[str]  # decisions, most important (mean over objectives) first
    labels: dict[str, str]  # objective name -> label


def _distributions(cols: dict[str, list]) -> dict:
    """Optuna distributions inferred from the values (strings / bools -> categorical,
    ints -> IntDistribution, floats -> FloatDistribution; constant decisions dropped).
    Decisions of mixed types are compared as strings (`cols` is changed in place)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    dists = {}
    for n, vals in cols.items():
        present = [v for v in vals if v is not None]
        if len({json.dumps(v) for v in present}) < 2:
            continue
        if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
            dists[n] = IntDistribution(min(present), max(present))
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
            dists[n] = FloatDistribution(float(min(present)), float(max(present)))
        elif all(isinstance(v, (str, bool)) for v in present):
            dists[n] = CategoricalDistribution(sorted(set(present), key=lambda v: (str(type(v)), str(v))))
        else:
            dists[n] = CategoricalDistribution(sorted({str(v) for v in present}))
            cols[n] = [None if v is None else str(v) for v in vals]
    return dists


def _study(ctx: ReportContext, comp: list[TrialRecord], cols: dict[str, list], dists: dict):
    import optuna

    directions = ["minimize" if o.direction == "min" else "maximize" for o in ctx.objectives]
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(directions=directions, storage=optuna.storages.InMemoryStorage())
    finally:
        optuna.logging.set_verbosity(verbosity)
    made = []
    for i, t in enumerate(comp):
        params = {n: cols[n][i] for n in dists if cols[n][i] is not None}
        made.append(optuna.trial.create_trial(
            params=params, distributions={n: dists[n] for n in params},
            values=[float(t.metrics[o.name]) for o in ctx.objectives],
        ))
    study.add_trials(made)
    return study


def _evaluator():
    """fANOVA when scikit-learn is installed, else PED-ANOVA (no extra dependency)."""
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator

    try:
        return FanovaImportanceEvaluator(seed=0), "fANOVA"
    except ImportError:  # the evaluator checks for scikit-learn when constructed
        return PedAnovaImportanceEvaluator(), "PED-ANOVA"


def _importances(ctx: ReportContext, study) -> tuple[str, dict[str, dict[str, float]], str | None]:
    import optuna

    evaluator, name = _evaluator()
    out = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for j, o in enumerate(ctx.objectives):
                imp = optuna.importance.get_param_importances(
                    study, evaluator=evaluator, target=lambda ft, j=j: ft.values[j], normalize=True,
                )
                out[o.name] = {k: float(v) for k, v in imp.items()}
    except (ValueError, RuntimeError, ZeroDivisionError) as e:
        return name, {}, f"importances unavailable: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    return name, out, None


def get_importance_info(ctx: ReportContext, max_trials: int = MAX_IMPORTANCE_TRIALS) -> _ImportanceInfo:
    """Importances per objective over the first run's most recent `max_trials` complete
    trials with every objective value; with too few trials (or no varying decision),
    `message` says why and `importances` is empty."""
    r = ctx.runs[0]
    comp = []  # the most recent first, then back in order (a 10^5-trial run: only these are read)
    for t in reversed(r.trials):
        if len(comp) >= max_trials:
            break
        if t.status == TrialStatus.COMPLETE and not np.isnan(objective_matrix([t], ctx.objectives)).any():
            comp.append(t)
    comp.reverse()
    labels = {o.name: ctx.label(o.name) for o in ctx.objectives}

    def info(evaluator=None, importances=None, message=None):
        importances = importances or {}
        mean: dict[str, float] = {}
        for imp in importances.values():
            for k, v in imp.items():
                mean[k] = mean.get(k, 0.0) + v / len(importances)
        if importances and not any(importances.values()):
            message = "no decision is present in every trial (importances need shared decisions)"
        return _ImportanceInfo(r.name, evaluator, importances, message, len(comp),
                               sorted(mean, key=lambda k: -mean[k]), labels)

    if len(comp) < MIN_IMPORTANCE_TRIALS:
        return info(message=f"decision importances need at least {MIN_IMPORTANCE_TRIALS} complete trials "
                            f"({len(comp)} so far)")
    cols = genome_columns(comp, run_grammar(r))
    dists = _distributions(cols)
    if not dists:
        return info(message="no decision took more than one value")
    return info(*_importances(ctx, _study(ctx, comp, cols, dists)))


def importance_figure(info: _ImportanceInfo, top: int = TOP_DECISIONS):
    import plotly.graph_objects as go

    if info.message or not info.params:
        return empty_figure(info.message or "no importances")
    fig = go.Figure()
    params = info.params[:top][::-1]
    for j, (oname, imp) in enumerate(info.importances.items()):
        label = esc(info.labels.get(oname, oname))
        fig.add_trace(go.Bar(
            y=[esc(short(p)) for p in params], x=[imp.get(p, 0.0) for p in params], orientation="h",
            name=label, marker=dict(color=run_color(j)), hovertemplate="%{y}: %{x:.3f}<extra>" + label + "</extra>",
        ))
    fig.update_layout(
        barmode="group", margin=dict(l=200, r=20, t=30, b=50), legend=dict(orientation="h", y=1.08, x=0),
        xaxis=dict(title=dict(text=f"importance ({info.evaluator}, {info.n_trials} trials)")),
        uirevision="imp", bargap=0.25,
    )
    return style(fig)
