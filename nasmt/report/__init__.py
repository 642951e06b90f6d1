"""The Pareto report: one self-contained HTML page over one or more run directories.

Every view is split like optuna.visualization: a pure `*_info()` function turns trial
records into plain data (tested), and a `_*_figure(info)` function draws it with Plotly.
`build_payload()` gathers every view into one JSON document; `render_html()` embeds it
(plus plotly.js from the installed plotly package, the page's CSS and JS from
`nasmt/static/`) in one HTML file that works with no network. The live dashboard
(`nasmt.dashboard`) serves the same page and the same payload at `/api/data`.

Views: Pareto front (2 or 3 objectives; dominated points faded, budget regions shaded,
predicted vs measured latency), hypervolume over trials, per-task trade-off matrix,
parallel coordinates of grammar decisions, decision importances (Optuna), the selected
architecture, a sortable / filterable trial table, and the export command of the
selected trial. Several runs are overlaid with one marker symbol per run.

Safety: user strings (task names, labels, grammar text, error messages) reach the page
only as JSON inside `<script type="application/json">` with `<`, `>`, `&` escaped, are
put in the DOM with `textContent`, and are HTML-escaped where Plotly renders text.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import html
import json
import math
import shlex
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nasmt.errors import RunDirError, UserError
from nasmt.run import (
    Objective,
    hypervolume_history,
    knee_point,
    load_run,
    read_trials,
    objective_matrix,
    pareto_mask,
    parse_objectives,
)

STATIC = Path(__file__).resolve().parent / "static"
GL_THRESHOLD = 1500  # above this many points, scatter plots use WebGL (scattergl)
MAX_GENOME_DIMS = 10  # decisions shown in the parallel-coordinates view
MAX_GENOME_LINES = 3000  # parallel-coordinates lines: every front trial + a fixed random sample
MAX_IMPORTANCE_TRIALS = 1000  # most recent complete trials given to the importance evaluator
MIN_IMPORTANCE_TRIALS = 5
RUN_COLORS = ["#3b5bdb", "#e8590c", "#2b8a3e", "#ae3ec9", "#1098ad", "#f08c00", "#c2255c", "#5c940d"]
RUN_SYMBOLS = ["circle", "diamond", "square", "triangle-up", "star", "hexagon", "pentagon", "cross"]
BUDGETS = {"size_bytes": "max_bytes", "latency_ms": "max_latency_ms", "predicted_latency_ms": "max_latency_ms"}
COUNTERPART = {"latency_ms": "predicted_latency_ms", "predicted_latency_ms": "latency_ms"}
FONT = "Inter, -apple-system, BlinkMacSystemFont, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"


class ObjectiveError(UserError):
    """Objectives that cannot be plotted for these runs."""


# ----------------------------------------------------------------------------- loading


@dataclass
class RunData:
    path: Path
    name: str
    run: dict
    suite: object  # nasmt.tasks.TaskSuite
    trials: list[dict]

    @property
    def task_names(self) -> dict[str, str]:
        return {t.ident: t.name for t in self.suite.tasks}


def load_runs(runs: list[Path]) -> list[RunData]:
    """Read run directories (RunDirError with one clear line when one is not a run)."""
    from nasmt.data.suite import suite_from_json

    if not runs:
        raise RunDirError("give at least one run directory")
    out, names = [], set()
    for p in runs:
        p = Path(p)
        run = load_run(p)
        try:
            suite = suite_from_json(run["suite"], file=str(p / "run.json"))
        except (KeyError, TypeError, ValueError) as e:
            raise RunDirError(f"{p / 'run.json'}: no usable task suite ({e})") from None
        try:
            trials = read_trials(p)
        except (KeyError, TypeError, ValueError) as e:
            raise RunDirError(f"{p / 'trials.jsonl'}: unreadable trial record ({e})") from None
        name = p.resolve().name or str(p)
        base, i = name, 2
        while name in names:
            name, i = f"{base}-{i}", i + 1
        names.add(name)
        out.append(RunData(p, name, run, suite, trials))
    return out


def resolve_objectives(runs: list[RunData], objectives: str | None = None) -> list[Objective]:
    """`objectives` text (e.g. "mean_error,params") checked against every run's suite,
    or the first run's own objectives."""
    if objectives is None:
        objs = runs[0].run.get("objectives") or [{"name": "mean_error", "direction": "min"}, {"name": "params", "direction": "min"}]
        try:
            text = ",".join(f"{o['name']}:{o['direction']}" for o in objs)
        except (KeyError, TypeError):
            raise RunDirError(f"{runs[0].path / 'run.json'}: malformed objectives") from None
        field = f"{runs[0].path / 'run.json'}: objectives"
    else:
        text, field = objectives, "--objectives"
    parsed = None
    for r in runs:
        try:
            got = parse_objectives(text, r.suite, field=field)
        except UserError as e:
            msg = str(e) if len(runs) == 1 else f"{e} [run {r.path}]"
            raise ObjectiveError(msg) from None
        parsed = parsed or got
    return parsed


# ----------------------------------------------------------------------------- labels


def objective_label(name: str, task_names: dict[str, str]) -> str:
    """Human label of an objective / metric key (task idents shown by task name)."""
    fixed = {
        "mean_error": "mean error", "params": "parameters", "flops": "FLOPs", "size_bytes": "size (bytes)",
        "latency_ms": "latency (ms)", "predicted_latency_ms": "predicted latency (ms)",
    }
    if name in fixed:
        return fixed[name]
    ident, _, metric = name.partition(".")
    if metric and ident in task_names:
        return f"{task_names[ident]} {metric.replace('_', ' ')}"
    return name


def _h(s) -> str:
    """Escape text that Plotly renders (it understands a few HTML tags and entities)."""
    return html.escape(str(s), quote=True)


def export_parts(run: RunData) -> tuple[str, str]:
    """The export command is `a + N + b + N` (the page builds it the same way)."""
    out = shlex.quote(f"exported/{run.name}-t")
    return f"nasmt export {shlex.quote(str(run.path))} --trial ", f" --out {out}"


def export_command(run: RunData, number: int) -> str:
    """`nasmt export <run dir> --trial N --out exported/<run name>-tN`."""
    a, b = export_parts(run)
    out = shlex.quote(f"exported/{run.name}-t{int(number)}")
    return f"{a}{int(number)} --out {out}"


def _num(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    if isinstance(v, float):
        if not math.isfinite(v):
            return None
        return float(f"{v:.6g}")
    return int(v)


# ----------------------------------------------------------------------------- rows


def trial_rows(runs: list[RunData]) -> list[tuple[int, dict]]:
    """(run index, record) for every trial of every run: the page's global row order."""
    return [(i, t) for i, r in enumerate(runs) for t in r.trials]


def _candidates(trials: list[dict]) -> list[dict]:
    """Trials that may be on a front: complete and not over a hard budget
    (`metrics.feasible` False), as `nasmt.results.pareto_trials` decides."""
    return [t for t in trials if t.get("status") == "complete"
            and (t.get("metrics") or {}).get("feasible", True) is not False]


def _fronts(runs: list[RunData], objectives: list[Objective]) -> list[set[int]]:
    """Per run: trial numbers on its Pareto front (complete, within-budget trials only)."""
    out = []
    for r in runs:
        comp = _candidates(r.trials)
        mask = pareto_mask(objective_matrix(comp, objectives)) if comp else np.zeros(0, bool)
        out.append({int(t["number"]) for t, m in zip(comp, mask) if m})
    return out


# ----------------------------------------------------------------------------- Pareto view


def pareto_info(runs: list[RunData], objectives: list[Objective]) -> dict:
    """Data of the Pareto view.

    Per run: `g` (global row index), `number`, `values` (n, k) raw metric values,
    `front` (bool), `status`, for every complete or stopped trial with all objective
    values. Plus axis labels, budget lines from run.json config (max_bytes /
    max_latency_ms) and predicted -> measured latency pairs.
    """
    fronts = _fronts(runs, objectives)
    g = 0
    out_runs = []
    for ri, r in enumerate(runs):
        gs, nums, vals, front, status = [], [], [], [], []
        preds = []
        for t in r.trials:
            gi = g
            g += 1
            st = t.get("status")
            if st not in ("complete", "stopped"):
                continue
            met = t.get("metrics") or {}
            v = [_num(met.get(o.name)) for o in objectives]
            if any(x is None for x in v):
                continue
            gs.append(gi)
            nums.append(int(t["number"]))
            vals.append(v)
            front.append(st == "complete" and int(t["number"]) in fronts[ri])
            status.append(st)
            pair = {}
            for j, o in enumerate(objectives):
                other = COUNTERPART.get(o.name)
                ov = _num(met.get(other)) if other else None
                if other and ov is not None:
                    pair[j] = ov
            if pair:
                preds.append((len(vals) - 1, pair))
        out_runs.append({
            "name": r.name,
            "g": np.array(gs, dtype=np.int64),
            "number": np.array(nums, dtype=np.int64),
            "values": np.array(vals, dtype=float).reshape(len(vals), len(objectives)),
            "front": np.array(front, dtype=bool),
            "status": status,
            "counterparts": preds,  # (point index, {objective index: counterpart value})
        })
    budgets = []
    for j, o in enumerate(objectives):
        key = BUDGETS.get(o.name)
        if not key:
            continue
        for r in runs:
            val = _num((r.run.get("config") or {}).get(key))
            if val is not None and val > 0:
                budgets.append({"axis": j, "value": float(val), "key": key, "run": r.name})
                break
    task_names = {}
    for r in runs:
        task_names.update(r.task_names)
    return {
        "objectives": [o.to_json() | {"label": objective_label(o.name, task_names)} for o in objectives],
        "runs": out_runs,
        "budgets": budgets,
    }


def front_staircase(values: np.ndarray, objectives: list[Objective]) -> np.ndarray:
    """Corner points of the 2-D attainment staircase through front points (raw values)."""
    if len(values) == 0:
        return np.zeros((0, 2))
    sign = np.array([o.sign for o in objectives[:2]])
    mins = values[:, :2] * sign
    order = np.lexsort((mins[:, 1], mins[:, 0]))
    pts = values[order, :2]
    out = [pts[0]]
    for p in pts[1:]:
        out.append(np.array([p[0], out[-1][1]]))
        out.append(p)
    return np.array(out)


def _log_axis(a: np.ndarray) -> bool:
    a = a[np.isfinite(a)]
    return len(a) > 1 and a.min() > 0 and a.max() / a.min() > 50


def _pareto_figure(info: dict):
    import plotly.graph_objects as go

    objs = [Objective(o["name"], o["direction"]) for o in info["objectives"]]
    labels = [_h(o["label"]) for o in info["objectives"]]
    k = len(objs)
    dims = min(k, 3)
    total = sum(len(r["number"]) for r in info["runs"])
    single = len(info["runs"]) == 1
    fig = go.Figure()
    all_vals = np.vstack([r["values"] for r in info["runs"]]) if total else np.zeros((0, k))

    def hover(extra=""):
        parts = [f"<b>trial %{{customdata[1]}}</b>{extra}"]
        axes = ["x", "y", "z"] if dims > 1 else ["y"]
        for ax, lab in zip(axes, labels if dims > 1 else labels[:1]):
            parts.append(f"{lab}: %{{{ax}}}")
        return "<br>".join(parts)

    for ri, r in enumerate(info["runs"]):
        color = RUN_COLORS[ri % len(RUN_COLORS)]
        symbol = RUN_SYMBOLS[ri % len(RUN_SYMBOLS)]
        rname = _h(r["name"])
        V, F = r["values"], r["front"]
        st = np.array(r["status"], dtype=object)
        groups = [
            ("front", F, dict(size=11, opacity=1.0, line=dict(width=1.2, color="white"))),
            ("dominated", (~F) & (st == "complete"), dict(size=7, opacity=0.28, line=dict(width=0))),
            ("stopped", st == "stopped", dict(size=7, opacity=0.35, line=dict(width=1, color="#868e96"))),
        ]
        for gname, m, mk in groups:
            if not m.any():
                continue
            cd = np.stack([r["g"][m], r["number"][m]], axis=1).tolist()
            col = color if gname != "stopped" else "#adb5bd"
            sym = symbol if gname != "stopped" else "x"
            name = f"{gname}" if single else f"{rname} · {gname}"
            marker = dict(color=col, symbol=sym, **mk)
            ht = hover() + f"<extra>{rname}</extra>"
            if dims >= 3:
                marker["size"] = max(3, marker["size"] - 4)
                fig.add_trace(go.Scatter3d(
                    x=V[m, 0], y=V[m, 1], z=V[m, 2], mode="markers", name=name, marker=marker,
                    customdata=cd, hovertemplate=ht, legendgroup=rname,
                ))
            else:
                x = V[m, 0] if dims == 2 else r["number"][m]
                y = V[m, 1] if dims == 2 else V[m, 0]
                cls = go.Scattergl if total > GL_THRESHOLD else go.Scatter
                fig.add_trace(cls(
                    x=x, y=y, mode="markers", name=name, marker=marker, customdata=cd,
                    hovertemplate=ht, legendgroup=rname,
                ))
        if dims == 2 and F.any():
            stair = front_staircase(V[F], objs)
            fig.add_trace(go.Scatter(
                x=stair[:, 0], y=stair[:, 1], mode="lines", line=dict(color=color, width=1.5, dash="dot"),
                hoverinfo="skip", showlegend=False, legendgroup=rname,
            ))
        # predicted vs measured latency: open marker at the prediction, joined to the measurement
        if dims == 2 and r["counterparts"]:
            xs, ys, px, py = [], [], [], []
            for pi, pair in r["counterparts"]:
                x0, y0 = V[pi, 0], V[pi, 1]
                x1, y1 = pair.get(0, x0), pair.get(1, y0)
                xs += [x0, x1, None]
                ys += [y0, y1, None]
                px.append(x1)
                py.append(y1)
            fig.add_trace(go.Scatter(
                x=xs, y=ys, mode="lines", line=dict(color="#868e96", width=1), hoverinfo="skip",
                showlegend=False, legendgroup=rname,
            ))
            fig.add_trace(go.Scatter(
                x=px, y=py, mode="markers", name="predicted cost" if single else f"{rname} · predicted",
                marker=dict(symbol="circle-open", size=8, color="#495057"),
                hovertemplate="predicted<br>%{x}, %{y}<extra></extra>", legendgroup=rname,
            ))
    # the selected trial (the page moves this marker)
    sel = dict(mode="markers", name="selected", showlegend=False, hoverinfo="skip",
               marker=dict(size=20, color="rgba(0,0,0,0)", line=dict(width=3, color="#f03e3e"), symbol="circle"))
    if dims >= 3:
        sel["marker"]["size"] = 10
        fig.add_trace(go.Scatter3d(x=[], y=[], z=[], **sel))
    else:
        fig.add_trace(go.Scatter(x=[], y=[], **sel))

    layout = dict(
        margin=dict(l=70, r=20, t=30, b=60), hovermode="closest", legend=dict(orientation="h", y=1.08, x=0),
        uirevision="pareto",
    )
    if dims >= 3:
        layout["scene"] = dict(
            xaxis=dict(title=dict(text=labels[0]), type="log" if _log_axis(all_vals[:, 0]) else "linear"),
            yaxis=dict(title=dict(text=labels[1]), type="log" if _log_axis(all_vals[:, 1]) else "linear"),
            zaxis=dict(title=dict(text=labels[2]), type="log" if _log_axis(all_vals[:, 2]) else "linear"),
        )
    elif dims == 2:
        layout["xaxis"] = dict(title=dict(text=f"{labels[0]} {_arrow(objs[0])}"), type="log" if _log_axis(all_vals[:, 0]) else "linear")
        layout["yaxis"] = dict(title=dict(text=f"{labels[1]} {_arrow(objs[1])}"), type="log" if _log_axis(all_vals[:, 1]) else "linear")
    else:
        layout["xaxis"] = dict(title=dict(text="trial"))
        layout["yaxis"] = dict(title=dict(text=f"{labels[0]} {_arrow(objs[0])}"))
    shapes = []
    if dims == 2:
        for b in info["budgets"]:
            ax = "x" if b["axis"] == 0 else "y" if b["axis"] == 1 else None
            if ax is None:
                continue
            col = all_vals[:, b["axis"]] if len(all_vals) else np.array([b["value"]])
            far = max(float(np.nanmax(col)) if len(col) else b["value"], b["value"]) * 1.15
            rect = dict(type="rect", line=dict(width=0), fillcolor="rgba(240,62,62,0.08)", layer="below")
            line = dict(type="line", line=dict(color="#f03e3e", width=1.5, dash="dash"),
                        label=dict(text=_h(f"budget {b['key']} = {b['value']:g}"), font=dict(size=11, color="#c92a2a"),
                                   textposition="end"))
            if ax == "x":
                shapes.append(rect | dict(xref="x", yref="paper", x0=b["value"], x1=far, y0=0, y1=1))
                shapes.append(line | dict(xref="x", yref="paper", x0=b["value"], x1=b["value"], y0=0, y1=1))
            else:
                shapes.append(rect | dict(xref="paper", yref="y", y0=b["value"], y1=far, x0=0, x1=1))
                shapes.append(line | dict(xref="paper", yref="y", y0=b["value"], y1=b["value"], x0=0, x1=1))
    if shapes:
        layout["shapes"] = shapes
    if total == 0:
        layout["annotations"] = [_empty_note("no complete trial with every objective yet")]
    if k > 3:
        layout["title"] = dict(text=f"first 3 of {k} objectives shown", font=dict(size=12))
    fig.update_layout(**layout)
    return _style(fig)


def _arrow(o: Objective) -> str:
    return "↓" if o.direction == "min" else "↑"


def _empty_note(text: str) -> dict:
    return dict(text=_h(text), xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False,
                font=dict(size=14, color="#868e96"))


def _style(fig):
    fig.update_layout(
        template="plotly_white", font=dict(family=FONT, size=12, color="#343a40"),
        paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="#ffffff",
        hoverlabel=dict(font=dict(family=FONT, size=12)),
    )
    return fig


# ----------------------------------------------------------------------------- hypervolume view


def hypervolume_info(runs: list[RunData], objectives: list[Objective]) -> dict:
    """Hypervolume after every trial (in finishing order = trial number), per run.

    Objectives are min-max normalized over the complete trials of all runs together
    (so runs compare), the reference point is 1.1 (10% past the worst value seen) in
    each objective; the hypervolume is of the normalized points.
    """
    mats = []
    for r in runs:
        comp = sorted(_candidates(r.trials), key=lambda t: int(t["number"]))
        mats.append((comp, objective_matrix(comp, objectives)))
    allm = np.vstack([m for _, m in mats]) if mats else np.zeros((0, len(objectives)))
    ok = allm[~np.isnan(allm).any(axis=1)] if len(allm) else allm
    k = len(objectives)
    if len(ok):
        lo, hi = ok.min(axis=0), ok.max(axis=0)
    else:
        lo, hi = np.zeros(k), np.ones(k)
    span = np.where(hi > lo, hi - lo, 1.0)
    ref = np.full(k, 1.1)
    out = []
    for r, (comp, m) in zip(runs, mats):
        norm = (m - lo) / span
        hv = hypervolume_history(norm, ref) if len(norm) else np.zeros(0)
        out.append({"name": r.name, "number": np.array([int(t["number"]) for t in comp], dtype=np.int64), "hv": hv})
    worst = np.where(np.array([o.sign for o in objectives]) > 0, hi, -hi) if len(ok) else None
    return {
        "runs": out, "ref": ref, "lo": lo, "hi": hi,
        "worst": None if worst is None else worst.tolist(), "max": float(np.prod(ref)),
        "objectives": [o.name for o in objectives],
    }


def _hypervolume_figure(info: dict):
    import plotly.graph_objects as go

    fig = go.Figure()
    single = len(info["runs"]) == 1
    for ri, r in enumerate(info["runs"]):
        color = RUN_COLORS[ri % len(RUN_COLORS)]
        if len(r["hv"]) == 0:
            continue
        x, y = r["number"], r["hv"]
        imp = np.r_[True, np.diff(y) > 1e-12] & (y > 0)
        fig.add_trace(go.Scatter(
            x=x, y=y, mode="lines", line=dict(shape="hv", color=color, width=2.2), name=_h(r["name"]),
            hovertemplate="after trial %{x}: %{y:.4f}<extra></extra>", showlegend=not single,
        ))
        fig.add_trace(go.Scatter(
            x=x[imp], y=y[imp], mode="markers", marker=dict(size=7, color=color, symbol=RUN_SYMBOLS[ri % len(RUN_SYMBOLS)]),
            name="improved", showlegend=False, hovertemplate="trial %{x} improved the front: %{y:.4f}<extra></extra>",
        ))
    fig.update_layout(
        margin=dict(l=60, r=20, t=20, b=50), xaxis=dict(title=dict(text="trial")),
        yaxis=dict(title=dict(text="hypervolume (normalized)"), rangemode="tozero"),
        legend=dict(orientation="h", y=1.1, x=0), uirevision="hv",
    )
    if not any(len(r["hv"]) for r in info["runs"]):
        fig.update_layout(annotations=[_empty_note("no complete trial yet")])
    return _style(fig)


# ----------------------------------------------------------------------------- per-task view


def task_matrix_info(runs: list[RunData], objectives: list[Objective]) -> dict:
    """Per-task errors (`<task>.error`) of every complete trial, for the scatter matrix."""
    tasks: dict[str, str] = {}
    for r in runs:
        for t in r.suite.tasks:
            tasks.setdefault(t.ident, t.name)
    idents = list(tasks)
    fronts = _fronts(runs, objectives)
    g = 0
    out = []
    for ri, r in enumerate(runs):
        gs, nums, errs, front = [], [], [], []
        for t in r.trials:
            gi = g
            g += 1
            if t.get("status") != "complete":
                continue
            met = t.get("metrics") or {}
            e = [_num(met.get(f"{i}.error")) for i in idents]
            if all(x is None for x in e):
                continue
            gs.append(gi)
            nums.append(int(t["number"]))
            errs.append([np.nan if x is None else x for x in e])
            front.append(int(t["number"]) in fronts[ri])
        out.append({
            "name": r.name, "g": np.array(gs, dtype=np.int64), "number": np.array(nums, dtype=np.int64),
            "errors": np.array(errs, dtype=float).reshape(len(errs), len(idents)), "front": np.array(front, dtype=bool),
        })
    return {"tasks": [{"ident": i, "name": tasks[i]} for i in idents], "runs": out}


def _task_matrix_figure(info: dict):
    import plotly.graph_objects as go

    tasks = info["tasks"]
    fig = go.Figure()
    if len(tasks) < 2:
        fig.update_layout(annotations=[_empty_note("one task: no per-task trade-off to show")],
                          xaxis=dict(visible=False), yaxis=dict(visible=False))
        return _style(fig)
    single = len(info["runs"]) == 1
    for ri, r in enumerate(info["runs"]):
        color = RUN_COLORS[ri % len(RUN_COLORS)]
        for gname, m in (("front", r["front"]), ("other", ~r["front"])):
            if not m.any():
                continue
            cd = np.stack([r["g"][m], r["number"][m]], axis=1).tolist()
            marker = dict(color=color, symbol=RUN_SYMBOLS[ri % len(RUN_SYMBOLS)],
                          size=9 if gname == "front" else 6, opacity=1.0 if gname == "front" else 0.3,
                          line=dict(width=0.5, color="white"))
            name = gname if single else f"{_h(r['name'])} · {gname}"
            if len(tasks) == 2:  # one panel: a plain scatter (splom of 2 with half hidden is empty)
                cls = go.Scattergl if len(r["g"]) > GL_THRESHOLD else go.Scatter
                fig.add_trace(cls(
                    x=r["errors"][m, 0], y=r["errors"][m, 1], mode="markers", customdata=cd, name=name,
                    marker=marker, hovertemplate="<b>trial %{customdata[1]}</b><br>%{x:.4f}, %{y:.4f}<extra></extra>",
                ))
                continue
            dims = [dict(label=_h(f"{t['name']} error"), values=r["errors"][m, j]) for j, t in enumerate(tasks)]
            fig.add_trace(go.Splom(
                dimensions=dims, customdata=cd, showupperhalf=False, diagonal=dict(visible=False),
                name=name, marker=marker, hovertemplate="<b>trial %{customdata[1]}</b><extra></extra>",
            ))
    layout = dict(margin=dict(l=60, r=20, t=20, b=50), legend=dict(orientation="h", y=1.1, x=0), uirevision="tasks",
                  hovermode="closest")
    if len(tasks) == 2:
        layout["xaxis"] = dict(title=dict(text=_h(f"{tasks[0]['name']} error ↓")))
        layout["yaxis"] = dict(title=dict(text=_h(f"{tasks[1]['name']} error ↓")))
    fig.update_layout(**layout)
    return _style(fig)


# ----------------------------------------------------------------------------- decisions


def genome_columns(trials: list[dict], grammar=None) -> dict[str, list]:
    """decision name -> value per trial (None where the trial did not make it).

    With the run's `grammar`, the float `<path>.alt` decisions of weighted rules are
    shown as the alternative they picked (as derivation does)."""
    names: dict[str, None] = {}
    for t in trials:
        for k in ((t.get("spec") or {}).get("genome") or {}):
            names.setdefault(k, None)
    cols = {n: [((t.get("spec") or {}).get("genome") or {}).get(n) for t in trials] for n in names}
    if grammar is not None:
        for n, vals in cols.items():
            rule = _alt_rule(n, grammar)
            if rule is not None:
                cols[n] = [_pick_alt(rule, v) for v in vals]
    return cols


def _alt_rule(name: str, grammar):
    """The weighted rule a `<path>.alt` decision chooses in (None if not one)."""
    if not name.endswith(".alt"):
        return None
    for part in reversed(name.split(".")[:-1]):
        if part.isdigit():
            continue
        r = grammar.rules.get(part)
        return r if r is not None and r.weighted and len(r.alts) > 1 else None
    return None


def _pick_alt(rule, u):
    if not isinstance(u, (int, float)) or isinstance(u, bool):
        return u
    return rule.pick(u).label


def run_grammar(run: "RunData"):
    """The run's grammar parsed from run.json (None when absent or unparseable)."""
    from nasmt.space.grammar import parse_grammar

    g = run.run.get("grammar") or {}
    text = g.get("text")
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        return parse_grammar(text, file=str(g.get("file") or "<run>"), name=g.get("name"))
    except Exception:  # a grammar this version cannot read: show raw decision values
        return None


def encode_decision(values: list) -> dict:
    """Integer codes (categorical, with tick labels) or floats (numeric) for one decision.

    Numbers with at most 16 distinct values and everything else (strings, bools, mixed)
    are categorical: codes 0..m-1 in sorted order, `—` (code -1) where absent.
    Many distinct numbers are numeric; absent values are NaN.
    """
    present = [v for v in values if v is not None]
    numeric = present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
    distinct = sorted(set(present), key=lambda v: (str(type(v)), v) if numeric else (0, str(v)))
    if numeric and len(distinct) > 16:
        return {"kind": "numeric", "values": np.array([np.nan if v is None else float(v) for v in values])}
    index = {v: i for i, v in enumerate(distinct)}
    codes = np.array([-1 if v is None else index[v] for v in values], dtype=float)
    ticks = [str(v) for v in distinct]
    tickvals = list(range(len(distinct)))
    if (codes < 0).any():
        ticks, tickvals = ["—"] + ticks, [-1] + tickvals
    return {"kind": "categorical", "values": codes, "tickvals": tickvals, "ticktext": ticks}


def genome_info(runs: list[RunData], objectives: list[Objective], ranking: list[str] | None = None,
                max_dims: int = MAX_GENOME_DIMS, max_lines: int = MAX_GENOME_LINES) -> dict:
    """Parallel-coordinates data: the objectives and up to `max_dims` decisions of the
    complete trials, decisions ordered by `ranking` (importance) when given, else by
    how many trials made them and how many values they took."""
    rows = [(ri, t) for ri, r in enumerate(runs) for t in r.trials if t.get("status") == "complete"]
    n_all = len(rows)
    if len(rows) > max_lines:  # keep every front trial, sample the rest (seeded: stable across refreshes)
        fronts = _fronts(runs, objectives)
        on = [i for i, (ri, t) in enumerate(rows) if int(t["number"]) in fronts[ri]]
        off = [i for i, (ri, t) in enumerate(rows) if int(t["number"]) not in fronts[ri]]
        rng = np.random.default_rng(0)
        k = max(0, max_lines - len(on))
        pick = sorted(on[:max_lines] + list(rng.choice(off, size=min(k, len(off)), replace=False)))
        rows = [rows[i] for i in pick]
    trials = [t for _, t in rows]
    cols: dict[str, list] = {}
    done = 0
    for ri, r in enumerate(runs):  # per run: each run's own grammar decodes its decisions
        part = [t for rj, t in rows if rj == ri]
        for n, v in genome_columns(part, run_grammar(r)).items():
            cols.setdefault(n, [None] * done).extend(v)
        done += len(part)
        for v in cols.values():
            v.extend([None] * (done - len(v)))
    usable = {n: v for n, v in cols.items() if len({str(x) for x in v if x is not None}) > 1}
    if ranking:
        order = [n for n in ranking if n in usable] + [n for n in usable if n not in ranking]
    else:
        order = sorted(usable, key=lambda n: (-sum(x is not None for x in usable[n]), -len({str(x) for x in usable[n]}), n))
    chosen = order[:max_dims]
    M = np.array([[_num((t.get("metrics") or {}).get(o.name)) for o in objectives] for t in trials], dtype=float)
    M = M.reshape(len(trials), len(objectives))
    task_names = {}
    for r in runs:
        task_names.update(r.task_names)
    return {
        "n": len(trials),
        "n_all": n_all,
        "run": np.array([ri for ri, _ in rows], dtype=float),
        "runs": [r.name for r in runs],
        "objectives": [{"name": o.name, "label": objective_label(o.name, task_names), "values": M[:, j]}
                       for j, o in enumerate(objectives)],
        "decisions": [{"name": n, **encode_decision(usable[n])} for n in chosen],
        "n_decisions": len(usable),
    }


def _genome_figure(info: dict):
    import plotly.graph_objects as go

    fig = go.Figure()
    if info["n"] < 2 or not info["decisions"]:
        fig.update_layout(annotations=[_empty_note("needs at least 2 complete trials with varying decisions")],
                          xaxis=dict(visible=False), yaxis=dict(visible=False))
        return _style(fig)
    dims = []
    if len(info["runs"]) > 1:
        dims.append(dict(label="run", values=info["run"], tickvals=list(range(len(info["runs"]))),
                         ticktext=[_h(n) for n in info["runs"]]))
    for d in info["decisions"]:
        dim = dict(label=_h(_short(d["name"])), values=d["values"], tickformat=".3~g")
        if d["kind"] == "categorical":
            dim["tickvals"] = d["tickvals"]
            dim["ticktext"] = [_h(t) for t in d["ticktext"]]
        dims.append(dim)
    for o in info["objectives"]:
        v = o["values"]
        big = np.isfinite(v).any() and np.nanmax(np.abs(v)) >= 1000
        dims.append(dict(label=_h(o["label"]), tickformat=".3~s" if big else ".3~g", values=np.where(np.isnan(v), np.nanmin(v) if np.isfinite(v).any() else 0, v)))
    color = info["objectives"][0]["values"]
    fig.add_trace(go.Parcoords(
        dimensions=dims, labelangle=-18, labelside="top",
        line=dict(color=np.nan_to_num(color, nan=float(np.nanmax(color)) if np.isfinite(color).any() else 0.0),
                  colorscale="Viridis", reversescale=True, showscale=True,
                  colorbar=dict(title=dict(text=_h(info["objectives"][0]["label"])), thickness=12)),
        labelfont=dict(size=11), tickfont=dict(size=10),
    ))
    fig.update_layout(margin=dict(l=70, r=40, t=90, b=30), uirevision="genome")
    return _style(fig)


def _short(name: str) -> str:
    return name if len(name) <= 28 else "…" + name[-27:]


def importance_info(runs: list[RunData], objectives: list[Objective], max_trials: int = MAX_IMPORTANCE_TRIALS) -> dict:
    """Which decisions matter, per objective, from Optuna's importance evaluators.

    An in-memory study is rebuilt from the first run's complete trials (the most recent
    `max_trials`): distributions inferred from the values (strings / bools -> categorical,
    ints -> IntDistribution, floats -> FloatDistribution; constant decisions dropped).
    fANOVA when scikit-learn is installed, else PED-ANOVA (Optuna's default, no extra
    dependency). With too few trials, `message` says so and `importances` is empty.
    """
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    r = runs[0]
    comp = [t for t in r.trials if t.get("status") == "complete"]
    M = objective_matrix(comp, objectives)
    keep = ~np.isnan(M).any(axis=1) if len(M) else np.zeros(0, bool)
    comp = [t for t, k in zip(comp, keep) if k][-max_trials:]
    out = {"run": r.name, "evaluator": None, "importances": {}, "message": None, "n_trials": len(comp), "params": []}
    if len(comp) < MIN_IMPORTANCE_TRIALS:
        out["message"] = (f"decision importances need at least {MIN_IMPORTANCE_TRIALS} complete trials "
                          f"({len(comp)} so far)")
        return out
    cols = genome_columns(comp, run_grammar(r))
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
        else:  # mixed: compare as strings
            dists[n] = CategoricalDistribution(sorted({str(v) for v in present}))
            cols[n] = [None if v is None else str(v) for v in vals]
    if not dists:
        out["message"] = "no decision took more than one value"
        return out
    directions = ["minimize" if o.direction == "min" else "maximize" for o in objectives]
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(directions=directions, storage=optuna.storages.InMemoryStorage())
    finally:
        optuna.logging.set_verbosity(verbosity)
    made = []
    for i, t in enumerate(comp):
        params = {n: cols[n][i] for n in dists if cols[n][i] is not None}
        values = [float(t["metrics"][o.name]) for o in objectives]
        made.append(optuna.trial.create_trial(
            params=params, distributions={n: dists[n] for n in params}, values=values,
        ))
    study.add_trials(made)
    try:
        from optuna.importance import FanovaImportanceEvaluator

        FanovaImportanceEvaluator(seed=0)
        evaluator, ename = FanovaImportanceEvaluator(seed=0), "fANOVA"
    except ImportError:
        from optuna.importance import PedAnovaImportanceEvaluator

        evaluator, ename = PedAnovaImportanceEvaluator(), "PED-ANOVA"
    out["evaluator"] = ename
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for j, o in enumerate(objectives):
                imp = optuna.importance.get_param_importances(
                    study, evaluator=evaluator, target=lambda ft, j=j: ft.values[j], normalize=True,
                )
                out["importances"][o.name] = {k: float(v) for k, v in imp.items()}
    except (ValueError, RuntimeError, ZeroDivisionError) as e:
        out["importances"] = {}
        out["message"] = f"importances unavailable: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        return out
    if not any(out["importances"].values()):
        out["message"] = "no decision is present in every trial (importances need shared decisions)"
    params = {}
    for imp in out["importances"].values():
        for k, v in imp.items():
            params[k] = params.get(k, 0.0) + v / max(1, len(out["importances"]))
    out["params"] = sorted(params, key=lambda k: -params[k])
    return out


def _importance_figure(info: dict, objectives_labels: dict[str, str], top: int = 15):
    import plotly.graph_objects as go

    fig = go.Figure()
    if info["message"] or not info["params"]:
        fig.update_layout(annotations=[_empty_note(info["message"] or "no importances")],
                          xaxis=dict(visible=False), yaxis=dict(visible=False))
        return _style(fig)
    params = info["params"][:top][::-1]
    for j, (oname, imp) in enumerate(info["importances"].items()):
        fig.add_trace(go.Bar(
            y=[_h(_short(p)) for p in params], x=[imp.get(p, 0.0) for p in params], orientation="h",
            name=_h(objectives_labels.get(oname, oname)), marker=dict(color=RUN_COLORS[(j + 0) % len(RUN_COLORS)]),
            hovertemplate="%{y}: %{x:.3f}<extra>" + _h(objectives_labels.get(oname, oname)) + "</extra>",
        ))
    fig.update_layout(
        barmode="group", margin=dict(l=200, r=20, t=30, b=50), legend=dict(orientation="h", y=1.08, x=0),
        xaxis=dict(title=dict(text=f"importance ({info['evaluator']}, {info['n_trials']} trials)")),
        uirevision="imp", bargap=0.25,
    )
    return _style(fig)


# ----------------------------------------------------------------------------- architecture


def _op_label(op: dict) -> str:
    name = str(op.get("op", "?"))
    rest = " ".join(f"{k}={v}" for k, v in sorted(op.items()) if k != "op")
    return f"{name} {rest}".strip()


def _prec(p: dict | None) -> dict:
    p = p or {}
    return {"w": str(p.get("w", "fp32")), "a": str(p.get("a", "fp32"))}


def arch_info(spec: dict | None, task_names: dict[str, str] | None = None) -> dict | None:
    """Compact drawing data of an ArchSpec JSON: trunk stages (ops, precision) and, per
    task, the stage it taps, its own layers, head and output size."""
    if not spec:
        return None
    task_names = task_names or {}
    stages = [{"ops": [_op_label(o) for o in s.get("ops", [])], "prec": _prec(s.get("precision"))}
              for s in spec.get("stages", [])]
    branches = []
    for b in spec.get("branches", []):
        ident = str(b.get("task", "?"))
        branches.append({
            "task": task_names.get(ident, ident), "tap": int(b.get("tap", 1)),
            "layers": [_op_label(o) for o in b.get("layers", [])], "head": [_op_label(o) for o in b.get("head", [])],
            "out": b.get("out"), "prec": _prec(b.get("precision")),
        })
    return {
        "space": str(spec.get("space", "")), "input": list(spec.get("input_shape", [])),
        "stages": stages, "branches": branches, "hash": str(spec.get("hash", "")),
    }


# ----------------------------------------------------------------------------- table


BASE_METRICS = ["mean_error", "params", "flops", "size_bytes", "latency_ms", "predicted_latency_ms"]


def table_info(runs: list[RunData], objectives: list[Objective]) -> dict:
    """Column-oriented trial table: every trial of every run (failed and stopped too)."""
    fronts = _fronts(runs, objectives)
    task_names = {}
    for r in runs:
        task_names.update(r.task_names)
    present = set()
    for r in runs:
        for t in r.trials:
            present.update((t.get("metrics") or {}).keys())
    metric_cols = [o.name for o in objectives]
    for m in BASE_METRICS:
        if m in present and m not in metric_cols:
            metric_cols.append(m)
    for r in runs:
        for t in r.suite.tasks:
            for m in (f"{t.ident}.{t.metric}", f"{t.ident}.error"):
                if m in present and m not in metric_cols:
                    metric_cols.append(m)
    cols = [
        {"key": "run", "label": "run", "type": "run"},
        {"key": "number", "label": "trial", "type": "int"},
        {"key": "status", "label": "status", "type": "text"},
        {"key": "front", "label": "Pareto", "type": "bool"},
    ]
    for m in metric_cols:
        cols.append({"key": m, "label": objective_label(m, task_names), "type": "num",
                     "objective": any(o.name == m for o in objectives)})
    budgeted = any("feasible" in (t.get("metrics") or {}) for r in runs for t in r.trials)
    cols += [
        {"key": "time_s", "label": "time (s)", "type": "num"},
        *([{"key": "feasible", "label": "budget", "type": "text"}] if budgeted else []),
        {"key": "hash", "label": "architecture", "type": "text"},
        {"key": "error", "label": "reason", "type": "text"},
    ]
    rows = []
    for ri, r in enumerate(runs):
        for t in r.trials:
            met = t.get("metrics") or {}
            num = int(t["number"])
            spec = t.get("spec") or {}
            err = t.get("error")
            rows.append(
                [ri, num, str(t.get("status", "?")), 1 if num in fronts[ri] and t.get("status") == "complete" else 0]
                + [_num(met.get(m)) for m in metric_cols]
                + [_num((t.get("timings") or {}).get("total_s"))]
                + ([{True: "ok", False: "over"}.get(met.get("feasible"), "")] if budgeted else [])
                + [str(spec.get("hash") or ""),
                   "" if err is None else str(err)[:2000]]
            )
    return {"columns": cols, "rows": rows, "obj_cols": [4 + j for j in range(len(objectives))]}


# ----------------------------------------------------------------------------- payload


def default_selection(runs: list[RunData], objectives: list[Objective]) -> int | None:
    """Global row index of the first run's knee point (else its last trial)."""
    rows = trial_rows(runs)
    if not rows:
        return None
    r0 = runs[0]
    comp = _candidates(r0.trials)
    M = objective_matrix(comp, objectives)
    ok = [t for t, m in zip(comp, M) if not np.isnan(m).any()]
    if ok:
        front = [t for t, m in zip(ok, pareto_mask(objective_matrix(ok, objectives))) if m]
        pick = knee_point(front, objectives)
        for g, (ri, t) in enumerate(rows):
            if ri == 0 and t is pick:
                return g
    return len(r0.trials) - 1 if r0.trials else 0


def build_payload(runs: list[RunData], objectives: list[Objective], mode: str = "report", version: str | None = None) -> dict:
    """Everything the page shows, as JSON-ready data (figures as Plotly JSON).

    `version` identifies the files the runs were read from (see `run_version`; pass the
    value taken *before* reading so that a record appended meanwhile is noticed later)."""
    task_names = {}
    for r in runs:
        task_names.update(r.task_names)
    labels = {o.name: objective_label(o.name, task_names) for o in objectives}
    pinfo = pareto_info(runs, objectives)
    hinfo = hypervolume_info(runs, objectives)
    tinfo = task_matrix_info(runs, objectives)
    iinfo = importance_info(runs, objectives)
    ginfo = genome_info(runs, objectives, ranking=iinfo["params"] or None)
    table = table_info(runs, objectives)
    archs = {}
    for r in runs:
        for t in r.trials:
            spec = t.get("spec")
            if spec and spec.get("hash") and spec["hash"] not in archs:
                archs[spec["hash"]] = arch_info(spec, r.task_names)
    fronts = _fronts(runs, objectives)
    run_meta = []
    for ri, r in enumerate(runs):
        st = [t.get("status") for t in r.trials]
        cfg = r.run.get("config") or {}
        hv = hinfo["runs"][ri]["hv"]
        a, b = export_parts(r)
        run_meta.append({
            "name": r.name, "path": str(r.path), "color": RUN_COLORS[ri % len(RUN_COLORS)],
            "symbol": RUN_SYMBOLS[ri % len(RUN_SYMBOLS)],
            "n_trials": len(st), "n_complete": st.count("complete"), "n_failed": st.count("failed"),
            "n_stopped": st.count("stopped"), "front": sorted(fronts[ri]),
            "hypervolume": float(hv[-1]) if len(hv) else 0.0,
            "suite": r.suite.name, "tasks": [{"ident": t.ident, "name": t.name, "kind": t.kind, "metric": t.metric}
                                             for t in r.suite.tasks],
            "grammar_name": str((r.run.get("grammar") or {}).get("name", "")),
            "grammar_file": str((r.run.get("grammar") or {}).get("file", "")),
            "grammar": str((r.run.get("grammar") or {}).get("text", "")),
            "config": {k: v for k, v in cfg.items() if isinstance(v, (str, int, float, bool)) or v is None},
            "export": [a, b],
        })
    figures = {
        "pareto": _pareto_figure(pinfo),
        "hypervolume": _hypervolume_figure(hinfo),
        "tasks": _task_matrix_figure(tinfo),
        "genome": _genome_figure(ginfo),
        "importance": _importance_figure(iinfo, labels),
    }
    payload = {
        "mode": mode,
        "generated_at": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S"),
        "objectives": [o.to_json() | {"label": labels[o.name]} for o in objectives],
        "pareto_dims": min(len(objectives), 3),
        "runs": run_meta,
        "table": table,
        "archs": archs,
        "selected": default_selection(runs, objectives),
        "notes": {
            "importance": iinfo["message"],
            "importance_evaluator": iinfo["evaluator"],
            "hypervolume": "objectives min-max normalized over complete within-budget trials; reference point 1.1 in each",
            "genome": f"{len(ginfo['decisions'])} of {ginfo['n_decisions']} varying decisions"
                      + (" (most important first)" if iinfo["params"] else "")
                      + (f"; {ginfo['n']:,} of {ginfo['n_all']:,} trials (every front trial + a random sample)"
                         if ginfo["n"] < ginfo["n_all"] else ""),
        },
        "figures": {k: f.to_plotly_json() for k, f in figures.items()},
    }
    payload["version"] = version or run_version([r.path for r in runs])
    return payload


def run_version(paths: list[Path]) -> str:
    """Changes whenever a run's run.json or trials.jsonl changes (mtime, size)."""
    h = hashlib.sha256()
    for path in paths:
        for f in ("run.json", "trials.jsonl"):
            p = Path(path) / f
            try:
                st = p.stat()
                h.update(f"{p}:{st.st_mtime_ns}:{st.st_size};".encode())
            except OSError:
                h.update(f"{p}:-;".encode())
    return h.hexdigest()[:16]


def payload_json(payload: dict) -> str:
    """JSON safe to embed in <script type="application/json"> (no `<`, `>`, `&`)."""
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


def write_report(runs: list[Path], out: Path | None = None, objectives: str | None = None) -> Path:
    """Write the self-contained HTML report of `runs` (default `runs[0]/report.html`)."""
    rd = load_runs([Path(r) for r in runs])
    objs = resolve_objectives(rd, objectives)
    payload = build_payload(rd, objs, mode="report")
    out = Path(out) if out is not None else rd[0].path / "report.html"
    if out.exists() and out.is_dir():
        raise UserError(f"{out}: is a directory (give an .html file name)")
    if not out.parent.exists():
        raise UserError(f"{out.parent}: output folder does not exist")
    from nasmt.run import atomic_write_text

    atomic_write_text(out, render_html(payload))
    return out
