"""The task-affinity heatmap: the inter-task affinity of a suite's tasks (Fifty, Amid, Zhao,
Yu, Anil & Finn, "Efficiently Identifying Task Groupings for Multi-Task Learning", NeurIPS
2021; computed by `nasmt affinity`, `nasmt.train.affinity`), read from an affinity file
(`nasmt.run.AFFINITY_FILE`, copied into a run directory by `search --affinity`):

    {"suite": name, "tasks": [idents], "matrix": [[Z_ij]], "measurements": n, "every": k,
     "steps": s, "lr": lr, "method": text, "groups": [[idents], ...]}

Row i is the task whose gradient step is taken, column j the task it helps: Z_ij > 0 when
a step along task i's gradient lowers task j's loss, < 0 when it raises it. `groups` is
the suggested grouping. The colour scale diverges at 0 (blue helps, red hurts); the cells
of each suggested group (of two or more tasks) are outlined.

`get_affinity_info` validates the file (`nasmt.run.affinity`: RunDirError naming the file
and the field);
`affinity_figure` draws it; `write_affinity_html` writes the standalone page of
`nasmt affinity`; the report shows the heatmap of every run directory holding the file."""

from __future__ import annotations

import html
from pathlib import Path
from typing import NamedTuple

from nasmt.errors import UserError
from nasmt.report.style import FONT, TEXT_COLOR, esc, style
from nasmt.run import AFFINITY_FILE, atomic_write_text
from nasmt.run.affinity import check_affinity, load_affinity

# diverging at 0: red where a task's step hurts the other, white at 0, blue where it helps
COLORSCALE = [[0.0, "#c92a2a"], [0.25, "#ff8787"], [0.5, "#f8f9fa"], [0.75, "#74c0fc"], [1.0, "#1864ab"]]
X_TITLE = "task helped (j)"
Y_TITLE = "task stepped (i)"
GROUP_LINE = "#212529"
CELL_PX = 64  # heatmap height per task (the standalone page)


class _AffinityInfo(NamedTuple):
    suite: str
    tasks: list[str]  # idents, the matrix's row and column order
    labels: list[str]  # display names (the run's task names where known, else the idents)
    matrix: list[list[float]]  # matrix[i][j]: affinity of a step on task i onto task j
    measurements: int | None
    every: int | None
    steps: int | None
    lr: float | None
    method: str
    groups: list[list[str]]  # suggested grouping (idents); [] when the file has none
    file: str


def read_affinity(run_dir: str | Path) -> dict | None:
    """RUN/affinity.json as a dict, None when the run has none (RunDirError when it is not
    a JSON object)."""
    path = Path(run_dir) / AFFINITY_FILE
    if not path.is_file():
        return None
    return load_affinity(path)


def get_affinity_info(aff: dict, file: str | Path = AFFINITY_FILE, task_names: dict[str, str] | None = None,
                      suite_tasks: list[str] | None = None) -> _AffinityInfo:
    """The validated affinity (`nasmt.run.affinity.check_affinity`: RunDirError "FILE: FIELD:
    what is wrong") with display labels: the run's task names where known, else the idents."""
    a = check_affinity(aff, file, suite_tasks)
    names = task_names or {}
    labels = [str(names.get(t, t)) for t in a.tasks]
    if len(set(labels)) < len(a.tasks):  # two tasks shown alike: fall back to the idents (unique)
        labels = list(a.tasks)
    return _AffinityInfo(a.suite, a.tasks, labels, a.matrix, a.measurements, a.every, a.steps, a.lr, a.method,
                         a.groups, str(file))


def affinity_note(info: _AffinityInfo) -> str:
    """One plain-text sentence about the measurement and the suggested groups (unescaped:
    the page sets it as text)."""
    how = info.method or "lookahead affinity (Fifty et al. 2021)"
    parts = [f"{how}: Z[i][j] > 0 when a step on task i's loss lowers task j's loss"]
    detail = []
    if info.measurements is not None:
        detail.append(f"mean of {info.measurements} measurement{'s' if info.measurements != 1 else ''}")
    if info.every is not None:
        detail.append(f"every {info.every} steps")
    if info.steps is not None:
        detail.append(f"over {info.steps} steps")
    if info.lr is not None:
        detail.append(f"lr {info.lr:g}")
    if detail:
        parts.append(", ".join(detail))
    if info.groups:
        label = dict(zip(info.tasks, info.labels))
        shown = ("{" + ", ".join(label[t] for t in g) + "}" for g in info.groups)
        parts.append("suggested groups: " + " · ".join(shown))
    return "; ".join(parts)


def _cell_text(v: float) -> str:
    return f"{v:.3g}"


def affinity_figure(info: _AffinityInfo):
    """Plotly heatmap: rows = task stepped (i, top to bottom), columns = task helped (j),
    the diverging colour scale centred at 0, each cell's value written in it, the cells
    within each suggested group of two or more tasks outlined."""
    import plotly.graph_objects as go

    labels = [esc(lab) for lab in info.labels]
    z = [list(row) for row in info.matrix]
    span = max((abs(v) for row in z for v in row), default=0.0) or 1.0
    fig = go.Figure(go.Heatmap(
        z=z, x=labels, y=labels, colorscale=COLORSCALE, zmid=0.0, zmin=-span, zmax=span,
        text=[[_cell_text(v) for v in row] for row in z], texttemplate="%{text}", textfont=dict(size=12),
        hovertemplate="step on <b>%{y}</b> → <b>%{x}</b>: %{z:.4g}<extra></extra>", xgap=1, ygap=1,
        colorbar=dict(title=dict(text="Z (i → j)"), thickness=14),
    ))
    pos = {t: n for n, t in enumerate(info.tasks)}
    shapes = []
    for grp in info.groups:
        if len(grp) < 2:
            continue
        for a in grp:
            for b in grp:
                i, j = pos[a], pos[b]
                shapes.append(dict(type="rect", xref="x", yref="y", x0=j - 0.5, x1=j + 0.5, y0=i - 0.5, y1=i + 0.5,
                                   line=dict(color=GROUP_LINE, width=2), fillcolor="rgba(0,0,0,0)"))
    fig.update_layout(
        margin=dict(l=110, r=20, t=20, b=90), shapes=shapes, uirevision="affinity",
        xaxis=dict(title=dict(text=X_TITLE), type="category", side="bottom", showgrid=False),
        yaxis=dict(title=dict(text=Y_TITLE), type="category", autorange="reversed", showgrid=False),
    )
    return style(fig)


def affinity_payload(run_dir: str | Path, run_name: str, task_names: dict[str, str]) -> dict | None:
    """What the report page shows for a run's affinity.json (None when it has none):
    {"run", "note", "height", "figure" (Plotly JSON)}."""
    aff = read_affinity(run_dir)
    if aff is None:
        return None
    info = get_affinity_info(aff, file=Path(run_dir) / AFFINITY_FILE, task_names=task_names,
                             suite_tasks=list(task_names) if task_names else None)
    return {"run": run_name, "note": affinity_note(info), "height": _height(info),
            "figure": affinity_figure(info).to_plotly_json()}


def _height(info: _AffinityInfo) -> int:
    return max(320, 120 + CELL_PX * len(info.tasks))


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: {font}; color: {color}; margin: 24px auto; max-width: 980px; padding: 0 16px; }}
h1 {{ font-size: 20px; margin: 0 0 6px; }}
p.note {{ color: #868e96; font-size: 13px; margin: 0 0 12px; }}
</style>
{plotly}
</head>
<body>
<h1>{heading}</h1>
<p class="note">{note}</p>
<div id="affinity" style="height: {height}px"></div>
<script type="application/json" id="affinity-figure">{data}</script>
<script>
(function () {{
  var f = JSON.parse(document.getElementById('affinity-figure').textContent);
  Plotly.newPlot('affinity', f.data, f.layout, {{ responsive: true, displaylogo: false }});
}})();
</script>
</body>
</html>
"""


def _script_json(text: str) -> str:
    """JSON text safe inside <script type="application/json"> (as the report's
    `page.payload_json` writes it: no `<`, `>`, `&`, and no raw U+2028 / U+2029)."""
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def write_affinity_html(aff: dict, out_path: str | Path, file: str | Path = AFFINITY_FILE,
                        task_names: dict[str, str] | None = None) -> Path:
    """A standalone HTML page (plotly.js inlined, works offline) with the heatmap of `aff`
    (validated as `get_affinity_info`; `file` names it in errors). Written atomically."""
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    info = get_affinity_info(aff, file=file, task_names=task_names)
    out = Path(out_path)
    if out.exists() and out.is_dir():
        raise UserError(f"{out}: is a directory (give an .html file name)")
    if not out.parent.exists():
        raise UserError(f"{out.parent}: output folder does not exist")
    pj = get_plotlyjs()
    if "</script" in pj.lower():  # never expected; keep the page well-formed regardless
        pj = pj.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT")
    title = f"nasmt · task affinity · {info.suite}" if info.suite else "nasmt · task affinity"
    page = PAGE.format(
        title=html.escape(title), font=FONT, color=TEXT_COLOR, plotly=f"<script>{pj}</script>",
        heading=html.escape(f"Task affinity{' · ' + info.suite if info.suite else ''}"),
        note=html.escape(affinity_note(info)), height=_height(info),
        data=_script_json(pio.json.to_json_plotly(affinity_figure(info).to_plotly_json())),
    )
    atomic_write_text(out, page)
    return out
