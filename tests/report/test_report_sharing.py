"""The sharing-family / balancing-method view and the task-affinity heatmap, on a real run
(the session's `tiny_run`, copied; its trial records rewritten through nasmt.run's own
helpers to carry `metrics.sharing` and `metrics.balance`, or given an affinity.json)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import nasmt
from dashboard_helpers import page_payload, table_rows
from nasmt.errors import RunDirError
from nasmt.report import load_runs, make_context, resolve_objectives, write_report
from nasmt.report.affinity import (
    X_TITLE,
    Y_TITLE,
    affinity_figure,
    get_affinity_info,
    write_affinity_html,
)
from nasmt.report.sharing import MISSING, category_order, get_sharing_info, sharing_figure
from nasmt.run import AFFINITY_FILE, RUN_FILE, TrialStatus, read_trials, replace_records

SHARING = ["hard", "mmoe+tree", "ple", "mmoe+tree"]
BALANCE = ["pcgrad", "equal", "pcgrad", "mgda"]
EVIL = "<img src=x onerror=alert(1)>"


def _context(run: Path):
    runs = load_runs([run])
    return make_context(runs, resolve_objectives(runs))


def _label(run: Path, sharing=SHARING, balance=BALANCE) -> dict[int, tuple[str, str]]:
    """Give every trial a sharing family and a balancing method (cycling through the
    lists), rewriting trials.jsonl with nasmt.run.replace_records; {number: (s, b)}."""
    trials = read_trials(run)
    assert sum(t.status == TrialStatus.COMPLETE for t in trials) >= 2, "the fixture run needs complete trials"
    got = {t.number: (sharing[i % len(sharing)], balance[i % len(balance)]) for i, t in enumerate(trials)}
    replace_records(run, [t.with_metrics(sharing=got[t.number][0], balance=got[t.number][1]) for t in trials])
    return got


def _strip(run: Path) -> None:
    """Drop `sharing` / `balance` from every record, as in runs written before they were recorded."""
    replace_records(run, [replace(t, metrics={k: v for k, v in t.metrics.items() if k not in ("sharing", "balance")})
                          for t in read_trials(run)])


def _expected(run: Path, labels: dict[int, tuple[str, str]], which: int) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for t in read_trials(run):
        if t.status == TrialStatus.COMPLETE:
            out.setdefault(labels[t.number][which], set()).add(t.number)
    return out


# ----------------------------------------------------------------------------- sharing / balance


def test_sharing_info_groups_complete_trials_by_category(run_copy):
    labels = _label(run_copy)
    info = get_sharing_info(_context(run_copy))
    assert [c.key for c in info.colorings] == ["sharing", "balance"]
    assert [c.label for c in info.colorings] == ["sharing family", "balancing method"]
    for which, col in enumerate(info.colorings):
        got = {c.value: set(c.number.tolist()) for c in col.categories}
        assert got == _expected(run_copy, labels, which)
        assert len({c.color for c in col.categories}) == len(col.categories), "one colour per category"
    # the legend order: known families first, combinations after them
    names = [c.value for c in info.colorings[0].categories]
    assert names == [v for v in ("hard", "ple", "mmoe+tree") if v in names]
    # the points sit where the Pareto view puts them (first two objectives) and name their table row
    comp = {t.number: t for t in read_trials(run_copy)}
    rows = [t.number for t in read_trials(run_copy)]
    for c in info.colorings[0].categories:
        for g, n, (x, y) in zip(c.g, c.number, c.values):
            assert rows[g] == n
            assert x == pytest.approx(comp[n].metrics["mean_error"], rel=1e-5) and y == comp[n].metrics["params"]


def test_sharing_figure_one_trace_per_category_and_a_dropdown(run_copy):
    _label(run_copy)
    info = get_sharing_info(_context(run_copy))
    fig = sharing_figure(info)
    n_share, n_bal = (len(c.categories) for c in info.colorings)
    assert len(fig.data) == n_share + n_bal
    assert [t.name for t in fig.data] == [c.value for col in info.colorings for c in col.categories]
    assert [t.visible for t in fig.data] == [True] * n_share + [False] * n_bal
    colors = [t.marker.color for t in fig.data[:n_share]]
    assert len(set(colors)) == n_share
    menus = fig.layout.updatemenus
    assert len(menus) == 1 and menus[0].type == "dropdown"
    buttons = menus[0].buttons
    assert [b.label for b in buttons] == ["colour by sharing family", "colour by balancing method"]
    assert buttons[0].args[0]["visible"] == [True] * n_share + [False] * n_bal
    assert buttons[1].args[0]["visible"] == [False] * n_share + [True] * n_bal
    # the Pareto view's axes: objective 1 on x, objective 2 on y, "lower is better" arrows
    assert fig.layout.xaxis.title.text == "mean error ↓" and fig.layout.yaxis.title.text == "parameters ↓"


def test_sharing_figure_escapes_categories_and_counts_missing(run_copy):
    _strip(run_copy)
    comp = [t for t in read_trials(run_copy) if t.status == TrialStatus.COMPLETE]
    # one complete trial with a markup family, the others without the field at all
    replace_records(run_copy, [comp[0].with_metrics(sharing=EVIL, balance="dwa")])
    info = get_sharing_info(_context(run_copy))
    values = {c.value: set(c.number.tolist()) for c in info.colorings[0].categories}
    assert values[EVIL] == {comp[0].number}
    assert values[MISSING] == {t.number for t in comp[1:]}
    fig = json.dumps(sharing_figure(info).to_plotly_json(), default=str)
    assert EVIL not in fig and "&lt;img src=x" in fig
    assert category_order("sharing", ["mmoe+tree", "zzz", MISSING, "tree", "hard", "mmoe+ple"]) == [
        "hard", "tree", "mmoe+ple", "mmoe+tree", "zzz", MISSING]


def test_report_cli_shows_the_view_and_the_table_columns(run_copy):
    labels = _label(run_copy)
    out = run_copy / "r.html"
    nasmt("report", run_copy, "-o", out)
    p = page_payload(out.read_text(encoding="utf-8"))
    assert "sharing" in p["figures"]
    fig = p["figures"]["sharing"]
    # one trace per category, each holding exactly the complete trials of that category
    for which, visible in ((0, True), (1, False)):
        traces = [t for t in fig["data"] if t["visible"] == visible]
        got = {t["name"]: {cd[1] for cd in t["customdata"]} for t in traces}
        assert got == _expected(run_copy, labels, which)
    assert fig["layout"]["updatemenus"][0]["buttons"][1]["label"] == "colour by balancing method"
    keys = [c["key"] for c in p["table"]["columns"]]
    assert "sharing" in keys and "balance" in keys
    for r in table_rows(p):
        assert (r["sharing"], r["balance"]) == labels[r["number"]]


def test_a_run_without_the_fields_has_no_such_view(run_copy, tmp_path):
    # every trial alike (one family, one method): the fields are recorded but a single
    # colour says nothing, so no view either (the table still has the columns)
    _label(run_copy, sharing=["hard"], balance=["equal"])
    info = get_sharing_info(_context(run_copy))
    assert [len(c.categories) for c in info.colorings] == [1, 1] and not info.varies
    assert sharing_figure(info) is None
    _strip(run_copy)
    assert get_sharing_info(_context(run_copy)).colorings == []
    assert sharing_figure(get_sharing_info(_context(run_copy))) is None
    p = page_payload(write_report([run_copy], out=tmp_path / "plain.html").read_text(encoding="utf-8"))
    assert "sharing" not in p["figures"]
    keys = [c["key"] for c in p["table"]["columns"]]
    assert "sharing" not in keys and "balance" not in keys
    assert p["affinity"] == []


# ----------------------------------------------------------------------------- affinity


def _affinity(tasks: list[str]) -> dict:
    k = len(tasks)
    m = [[0.02 if i == j else round(0.01 * (i + 1) - 0.015 * j, 4) for j in range(k)] for i in range(k)]
    return {"suite": "mm-small", "tasks": tasks, "matrix": m, "measurements": 6, "every": 5, "steps": 30,
            "lr": 0.003, "method": "lookahead (Fifty et al. 2021)", "groups": [tasks]}


def _tasks(run: Path) -> list[str]:
    return [t.ident for t in load_runs([run])[0].suite.tasks]


@pytest.mark.parametrize("field, bad", [
    ("matrix[1]", lambda a: a["matrix"][1].pop()),  # not square
    ("matrix", lambda a: a["matrix"].pop()),  # a row short
    ("matrix[0][1]", lambda a: a["matrix"][0].__setitem__(1, float("nan"))),
    ("matrix[1][0]", lambda a: a["matrix"][1].__setitem__(0, "0.5")),
    ("matrix[0][0]", lambda a: a["matrix"][0].__setitem__(0, True)),
    ("tasks", lambda a: a.__setitem__("tasks", ["left"])),
    ("tasks", lambda a: a.__setitem__("tasks", ["left", "left"])),
    ("groups[0]", lambda a: a.__setitem__("groups", [["left", "nope"]])),
    ("measurements", lambda a: a.__setitem__("measurements", -1)),
    ("lr", lambda a: a.__setitem__("lr", "fast")),
])
def test_bad_affinity_names_the_file_and_the_field(field, bad):
    aff = _affinity(["left", "right"])
    bad(aff)
    with pytest.raises(RunDirError) as e:
        get_affinity_info(aff, file="runs/x/affinity.json")
    assert str(e.value).startswith(f"runs/x/affinity.json: {field}: "), str(e.value)


def test_affinity_tasks_must_match_the_run():
    with pytest.raises(RunDirError, match=r"affinity.json: tasks: .*do not match the run's tasks"):
        get_affinity_info(_affinity(["left", "right"]), suite_tasks=["left", "middle"])


def test_affinity_heatmap_is_the_matrix(tmp_path):
    aff = _affinity(["a", "b", "c"])
    info = get_affinity_info(aff, task_names={"a": "Alpha", "b": "Beta", "c": "Gamma"})
    fig = affinity_figure(info)
    (hm,) = fig.data
    assert hm.type == "heatmap"
    assert [list(r) for r in hm.z] == aff["matrix"]
    assert list(hm.x) == list(hm.y) == ["Alpha", "Beta", "Gamma"]
    assert hm.zmid == 0 and hm.zmin == -hm.zmax  # diverging, centred at 0
    assert [list(r) for r in hm.text] == [[f"{v:.3g}" for v in row] for row in aff["matrix"]]
    assert fig.layout.xaxis.title.text == X_TITLE == "task helped (j)"
    assert fig.layout.yaxis.title.text == Y_TITLE == "task stepped (i)"
    assert len(fig.layout.shapes) == 9  # the suggested group {a, b, c}: every cell outlined
    out = write_affinity_html(aff, tmp_path / "aff.html")
    page = out.read_text(encoding="utf-8")
    from plotly.offline import get_plotlyjs

    assert get_plotlyjs() in page
    m = re.search(r'<script type="application/json" id="affinity-figure">(.*?)</script>', page, re.S)
    embedded = json.loads(m.group(1))
    assert embedded["data"][0]["z"] == aff["matrix"] and embedded["data"][0]["x"] == aff["tasks"]
    assert embedded["layout"]["xaxis"]["title"]["text"] == X_TITLE
    with pytest.raises(RunDirError, match=r"aff.json: matrix\[0\]\[0\]"):
        write_affinity_html(aff | {"matrix": [[math.inf, 0, 0], [0, 0, 0], [0, 0, 0]]}, tmp_path / "x.html",
                            file="aff.json")
    assert not (tmp_path / "x.html").exists()


def test_report_of_a_run_with_affinity_shows_the_heatmap(run_copy):
    aff = _affinity(_tasks(run_copy))
    (run_copy / AFFINITY_FILE).write_text(json.dumps(aff), encoding="utf-8")
    run = json.loads((run_copy / RUN_FILE).read_text(encoding="utf-8"))
    for t in run["suite"]["tasks"]:  # display names unlike the idents, so the labels show which
        t["name"] = f"{t['ident']} digit"
    (run_copy / RUN_FILE).write_text(json.dumps(run), encoding="utf-8")
    out = run_copy / "r.html"
    nasmt("report", run_copy, "-o", out)
    (entry,) = page_payload(out.read_text(encoding="utf-8"))["affinity"]
    assert entry["run"] == run_copy.name and "suggested groups" in entry["note"]
    (hm,) = entry["figure"]["data"]
    assert hm["type"] == "heatmap" and hm["z"] == aff["matrix"]
    assert hm["x"] == hm["y"] == [f"{t} digit" for t in aff["tasks"]]
    # a bad file: the report stops with one line naming the file and the field
    aff["matrix"][0] = aff["matrix"][0][:1]
    (run_copy / AFFINITY_FILE).write_text(json.dumps(aff), encoding="utf-8")
    r = nasmt("report", run_copy, "-o", out, check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{AFFINITY_FILE}: matrix[0]: " in r.stderr


def test_affinity_page_escapes_task_names(tmp_path):
    aff = _affinity(["a", "b"]) | {"suite": EVIL}
    info = get_affinity_info(aff, task_names={"a": EVIL, "b": "b"})
    assert list(affinity_figure(info).data[0].x) == ["&lt;img src=x onerror=alert(1)&gt;", "b"]
    page = write_affinity_html(aff, tmp_path / "evil.html", task_names={"a": EVIL, "b": "b"}).read_text(encoding="utf-8")
    assert EVIL not in page and "<img" not in page
    assert page.lower().count("</script>") == len(re.findall(r"<script[\s>]", page, re.I))
