"""The page: every view gathered into one JSON payload (`build_payload`), embedded with
plotly.js (from the installed plotly package) and the page's CSS and JS (`static/`)
into one HTML file that works with no network (`render_html`, `write_report`).

Safety: user strings reach the page only as JSON inside `<script type="application/json">`
with `<`, `>`, `&` escaped (`payload_json`); the page's JS puts them in the DOM with
`textContent`, and the figures HTML-escape what Plotly renders (`style.esc`)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import html
import shlex
from pathlib import Path

from nasmt.baselines import BASELINES_FILE
from nasmt.errors import UserError
from nasmt.report.affinity import affinity_payload
from nasmt.report.arch import get_arch_info
from nasmt.report.genome import genome_figure, genome_note, get_genome_info
from nasmt.report.hypervolume import (NOTE as HV_NOTE, final_hypervolume, final_hypervolumes, get_hypervolume_info,
                                     hypervolume_figure)
from nasmt.report.importance import get_importance_info, importance_figure
from nasmt.report.load import ReportContext, RunData, load_runs, make_context, resolve_objectives
from nasmt.report.oneshot import CHECK_FILE as ONESHOT_CHECK_FILE, oneshot_check_figure
from nasmt.report.controllable import controllable_figure
from nasmt.report.pareto import MAX_PARETO_DIMS, get_pareto_info, pareto_figure
from nasmt.report.references import reference_notes
from nasmt.report.sharing import get_sharing_info, sharing_figure
from nasmt.report.style import run_color, run_symbol
from nasmt.report.table import get_table_info, table_data
from nasmt.report.tasks import get_task_matrix_info, task_matrix_figure
from nasmt.run import (AFFINITY_FILE, RUN_FILE, TRIALS_FILE, Objective, TrialStatus, atomic_write_text, count_status,
                       knee_point)
from nasmt.run.files import no_gc

STATIC = Path(__file__).resolve().parent / "static"
REPORT_FILE = "report.html"  # default output, inside the first run directory
# run.json config entries shown on the page: scalars only (nested settings are noise there)
SCALAR = (str, int, float, bool, type(None))
# distinct architectures drawn in one page: past this many, the Pareto front's only (`_archs`)
MAX_EMBEDDED_ARCHS = 5000


# ----------------------------------------------------------------------------- export command


def export_parts(run: RunData) -> tuple[str, str]:
    """(a, b): the page shows `a + N + b + N` as the command exporting trial N,
    `nasmt export <run dir> --trial N --out exported/<run name>-tN` (shell-quoted)."""
    out = shlex.quote(f"exported/{run.name}-t")
    return f"nasmt export {shlex.quote(str(run.path))} --trial ", f" --out {out}"


# ----------------------------------------------------------------------------- payload


def default_selection(ctx: ReportContext) -> int | None:
    """Global row index of the first run's knee point (else its last trial)."""
    rows = ctx.rows()
    if not rows:
        return None
    r0 = ctx.runs[0]
    front = [t for t in r0.trials if ctx.on_front(0, t)]
    if front:
        pick = knee_point(front, ctx.objectives)
        return next(g for g, (ri, t) in enumerate(rows) if ri == 0 and t is pick)
    return len(r0.trials) - 1 if r0.trials else 0


def _run_meta(ctx: ReportContext, ri: int, hypervolume: float) -> dict:
    r = ctx.runs[ri]
    counts = count_status(r.trials)
    g = r.grammar
    return {
        "name": r.name, "path": str(r.path), "color": run_color(ri), "symbol": run_symbol(ri),
        "n_trials": len(r.trials), "n_complete": counts[TrialStatus.COMPLETE], "n_failed": counts[TrialStatus.FAILED],
        "n_stopped": counts[TrialStatus.STOPPED], "front": sorted(ctx.fronts[ri]), "hypervolume": hypervolume,
        "suite": r.suite.name,
        "tasks": [{"ident": t.ident, "name": t.name, "kind": t.kind, "metric": t.metric} for t in r.suite.tasks],
        "grammar_name": str(g.get("name", "")), "grammar_file": str(g.get("file", "")), "grammar": str(g.get("text", "")),
        "config": {k: v for k, v in r.config.items() if isinstance(v, SCALAR)},
        "export": list(export_parts(r)),
    }


def _archs(ctx: ReportContext, selected: int | None = None) -> tuple[dict[str, dict], str | None]:
    """Drawing data of every distinct recorded architecture, by spec hash; past
    `MAX_EMBEDDED_ARCHS` of them (one-shot scale), those of the Pareto-front trials and
    of the selected row only, and a note saying so (None when every one is there)."""
    hashes, rows = ctx.hashes(), ctx.rows()
    distinct = set(hashes) - {""}
    every = len(distinct) <= MAX_EMBEDDED_ARCHS
    keep = range(len(rows)) if every else sorted({g for g, f in enumerate(ctx.front_flags()) if f} | {selected} - {None})
    out = {}
    for g in keep:
        h = hashes[g]
        if h and h not in out:
            ri, t = rows[g]
            out[h] = get_arch_info(t.spec, ctx.runs[ri].task_names).to_json()
    note = None if every else (f"{len(distinct):,} architectures: this page draws those of the Pareto front "
                               f"only ({len(out):,}); `nasmt export RUN --trial N` writes any trial's")
    return out, note


def slow_views(ctx: ReportContext) -> dict:
    """The views the live dashboard refreshes in the background (`live.LiveData`): their
    figures as Plotly JSON and their notes. The per-task, decisions, importance, sharing,
    one-shot check and controllable views: seconds at 10^4 trials, none of them a trial's
    position on the front."""
    hinfo = get_hypervolume_info(ctx)
    iinfo = get_importance_info(ctx)
    ginfo = get_genome_info(ctx, ranking=iinfo.params or None)
    figures = {
        "hypervolume": hypervolume_figure(hinfo),
        "tasks": task_matrix_figure(get_task_matrix_info(ctx)),
        "genome": genome_figure(ginfo),
        "importance": importance_figure(iinfo),
    }
    sharing = sharing_figure(get_sharing_info(ctx))  # None for runs that record no sharing family / balancing method
    if sharing is not None:
        figures["sharing"] = sharing
    oneshot = oneshot_check_figure(ctx)  # None unless a run holds oneshot_check.json (`nasmt oneshot-check`)
    if oneshot is not None:
        figures["oneshot"] = oneshot
    controllable = controllable_figure(ctx)  # None unless a run is one-shot (`nasmt export --controllable`)
    if controllable is not None:
        figures["controllable"] = controllable
    return {"figures": {k: f.to_plotly_json() for k, f in figures.items()},
            "hypervolumes": [final_hypervolume(h) for h in hinfo.runs],
            "notes": {"importance": iinfo.message, "importance_evaluator": iinfo.evaluator,
                      "genome": genome_note(ginfo, ranked=bool(iinfo.params))}}


def build_payload(runs: list[RunData], objectives: list[Objective], mode: str = "report", version: str | None = None,
                  slow: dict | None = None, context: ReportContext | None = None) -> dict:
    """Everything the page shows, as JSON-ready data (figures as Plotly JSON).

    `version` identifies the files the runs were read from (see `run_version`; pass the
    value taken *before* reading so that a record appended meanwhile is noticed later).
    The live dashboard passes `slow` (the `slow_views` to show instead of computing them)
    and `context` (the runs' context, made with `make_context(..., previous=)`)."""
    ctx = make_context(runs, objectives) if context is None else context
    if slow is None:
        slow = slow_views(ctx)
        hypervolumes = slow["hypervolumes"]  # the hypervolume curve's last values
    else:  # the slow views are older than these records: the current values, without the history
        hypervolumes = final_hypervolumes(ctx)
    figures = {"pareto": pareto_figure(get_pareto_info(ctx)).to_plotly_json(), **slow["figures"]}
    selected = default_selection(ctx)
    archs, archs_note = _archs(ctx, selected)
    return {
        "mode": mode,
        "generated_at": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S"),
        "objectives": [o.to_json() | {"label": ctx.label(o.name)} for o in ctx.objectives],
        "pareto_dims": min(len(ctx.objectives), MAX_PARETO_DIMS),
        "runs": [_run_meta(ctx, ri, hv) for ri, hv in enumerate(hypervolumes)],
        "table": table_data(get_table_info(ctx)),
        "archs": archs,
        "selected": selected,
        "notes": {
            **slow["notes"],
            "hypervolume": HV_NOTE,
            "references": reference_notes(ctx),
            "archs": archs_note,
        },
        "figures": figures,
        "affinity": _affinities(runs),
        "version": version or run_version([r.path for r in runs]),
    }


def _affinities(runs: list[RunData]) -> list[dict]:
    """The task-affinity heatmap of every run directory holding an affinity.json (a bad
    file raises RunDirError naming it and the field)."""
    out = []
    for r in runs:
        a = affinity_payload(r.path, r.name, r.task_names)
        if a is not None:
            out.append(a)
    return out


def run_version(paths: list[Path]) -> str:
    """Changes whenever a run's run.json, trials.jsonl, baselines.jsonl, affinity.json or
    oneshot_check.json changes (mtime, size)."""
    h = hashlib.sha256()
    for path in paths:
        for f in (RUN_FILE, TRIALS_FILE, BASELINES_FILE, AFFINITY_FILE, ONESHOT_CHECK_FILE):
            p = Path(path) / f
            try:
                st = p.stat()
                h.update(f"{p}:{st.st_mtime_ns}:{st.st_size};".encode())
            except OSError:
                h.update(f"{p}:-;".encode())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- HTML


def payload_json(payload: dict) -> str:
    """JSON safe to embed in <script type="application/json"> (no `<`, `>`, `&`).

    Plotly's encoder (needed for the figures' numpy arrays) already writes `<` and `>`
    as escapes; they are replaced here too so that the page never depends on that."""
    import plotly.io as pio

    text = pio.json.to_json_plotly(payload)
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def render_html(payload: dict, plotly_src: str | None = None) -> str:
    """The page. `plotly_src=None` embeds plotly.js inline (self-contained report);
    otherwise it is loaded from that same-origin path (the live dashboard)."""
    css = (STATIC / "dashboard.css").read_text(encoding="utf-8")
    js = (STATIC / "dashboard.js").read_text(encoding="utf-8")
    tpl = (STATIC / "dashboard.html").read_text(encoding="utf-8")
    if plotly_src is None:
        pj = plotly_js()
        if "</script" in pj.lower():  # never expected; keep the page well-formed regardless
            pj = pj.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT")
        plotly_tag = f"<script>{pj}</script>"
    else:
        plotly_tag = f'<script src="{html.escape(plotly_src, quote=True)}"></script>'
    names = ", ".join(r["name"] for r in payload["runs"])
    return (tpl.replace("{{TITLE}}", html.escape(f"nasmt · {names}"))
            .replace("{{CSS}}", css)
            .replace("{{PLOTLY}}", plotly_tag)
            .replace("{{DATA}}", payload_json(payload))
            .replace("{{JS}}", js))


def write_report(runs: list[Path], out: Path | None = None, objectives: str | None = None,
                 baselines: Path | None = None) -> Path:
    """Write the self-contained HTML report of `runs` (default `runs[0]/report.html`);
    `baselines` (a directory holding baselines.jsonl) gives the first run's references."""
    with no_gc():  # 10^5 records: millions of live objects, which every collector pass would walk
        rd = load_runs([Path(r) for r in runs], baselines=baselines)
        payload = build_payload(rd, resolve_objectives(rd, objectives), mode="report")
    out = Path(out) if out is not None else rd[0].path / REPORT_FILE
    if out.exists() and out.is_dir():
        raise UserError(f"{out}: is a directory (give an .html file name)")
    if not out.parent.exists():
        raise UserError(f"{out.parent}: output folder does not exist")
    with no_gc():
        atomic_write_text(out, render_html(payload))
    return out
