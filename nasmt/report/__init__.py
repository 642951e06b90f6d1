"""The Pareto report: one self-contained HTML page over one or more run directories,
and the live dashboard that serves the same page as trials land.

Layout (each view split like `optuna.visualization`: a pure `get_*_info()` turns the
typed trial records into a typed NamedTuple, a small `*_figure(info)` draws it with
Plotly, imported in the figure functions only):

    load.py         RunData, load_runs, resolve_objectives, ReportContext (the runs,
                    the objectives, each run's Pareto front and the reference models
                    of nasmt.baselines, computed once per page)
    style.py        colours, symbols, fonts, the common figure style, escaping
    pareto.py       Pareto front (2 or 3 objectives; budgets, predicted vs measured latency,
                    reference models as labelled points)
    references.py   Δm of trials against the single-task networks; "does the search beat LightGBM?"
    hypervolume.py  hypervolume over trials
    tasks.py        per-task trade-off matrix
    sharing.py      trials coloured by sharing family / loss balancing method (dropdown)
    affinity.py     the task-affinity heatmap (affinity.json; also `nasmt affinity`'s page)
    genome.py       parallel coordinates of grammar decisions
    importance.py   decision importances (Optuna)
    arch.py         the selected architecture (drawn by static/dashboard.js)
    table.py        the sortable / filterable trial table
    page.py         payload, plotly.js embedding, render_html, write_report, run_version
    dashboard.py    the live HTTP server
"""

from nasmt.report.affinity import write_affinity_html
from nasmt.report.load import ObjectiveError, ReportContext, RunData, load_runs, make_context, resolve_objectives
from nasmt.report.page import build_payload, export_parts, payload_json, plotly_js, render_html, run_version, write_report

__all__ = [
    "ObjectiveError", "ReportContext", "RunData", "build_payload", "export_parts", "load_runs", "make_context",
    "payload_json", "plotly_js", "render_html", "resolve_objectives", "run_version", "write_affinity_html", "write_report",
]
