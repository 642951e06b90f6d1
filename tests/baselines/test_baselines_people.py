"""`run_baselines` on tasks/people.toml (a vector suite, tiny budget): every reference is
recorded with the trials' metric keys on validation and test, Δm against the
single-task networks, LightGBM included; the report of a run plus these references draws
them as labelled reference points, lists them in the table and says whether the best
searched network beats LightGBM."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from nasmt.baselines import delta_m, read_baselines, run_baselines
from nasmt.baselines.nets import hard_shared
from nasmt.data import load_data_cached
from nasmt.data.suite import load_suite
from nasmt.errors import UserError
from nasmt.export.card import references
from nasmt.report import build_payload, load_runs, resolve_objectives, write_report
from nasmt.run import RUN_FILE, TRIALS_FILE, TrialRecord, TrialStatus, atomic_write_json, write_jsonl

ROOT = Path(__file__).resolve().parents[2]
PEOPLE = ROOT / "tasks" / "people.toml"
STEPS = 10
NETS = ["single-task", "hard-shared", "mmoe", "ple"]
SETTINGS = {"epochs": 1.0, "steps": STEPS, "batch_size": 128, "lr": 3e-3, "seed": 3}  # the fake run's search


@pytest.fixture(scope="module")
def people_baselines(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("people") / "baselines"
    run_baselines(PEOPLE, out, quiet=True, gbdt_grid=((15,), (0.1,)), **SETTINGS)  # one grid point: fast
    return out


def test_people_records(people_baselines):
    suite = load_suite(PEOPLE)
    recs = read_baselines(people_baselines)
    assert [r.name for r in recs] == [*NETS, "lightgbm"]
    keys = {"mean_error", *(f"{t.ident}.{k}" for t in suite.tasks for k in (t.metric, "error"))}
    single = recs[0]
    for r in recs:
        assert keys <= set(r.metrics) and keys <= set(r.test_metrics), r.name
        assert r.settings == {"suite": "people", **SETTINGS, "device": "cpu"}
        assert r.delta_m_test == pytest.approx(delta_m(r.test_metrics, single.test_metrics, suite))
        assert r.delta_m_val == pytest.approx(delta_m(r.metrics, single.metrics, suite))
    assert single.delta_m_test == 0.0
    data = load_data_cached(suite)  # one single-task network per task: the hard-shared body with one tower
    one = [hard_shared(data.input_shape[0], {t.ident: data.n_outputs[t.ident]}) for t in suite.tasks]
    assert single.metrics["params"] == sum(p.numel() for net in one for p in net.parameters())
    assert single.train.keys() == {t.ident for t in suite.tasks}  # one network per task, each on the full budget
    assert all(tr["steps"] == STEPS for tr in single.train.values())
    for r in recs[1:4]:
        assert r.kind == "network" and r.train["steps"] == STEPS and r.metrics["params"] > 0 and r.metrics["flops"] > 0
        assert r.metrics["size_bytes"] == 4 * r.metrics["params"]
    gb = recs[-1]
    assert gb.kind == "gbdt" and "params" not in gb.metrics
    assert set(gb.detail) == {t.ident for t in suite.tasks} and all(d["best_iteration"] >= 1 for d in gb.detail.values())


def _people_run(tmp_path: Path, trials: list[dict]) -> Path:
    """A run directory of the people suite holding the given trial metrics (no search needed)."""
    run = tmp_path / "run"
    run.mkdir()
    atomic_write_json(run / RUN_FILE, {
        "suite": load_suite(PEOPLE).to_dict(), "config": SETTINGS,
        "objectives": [{"name": "mean_error", "direction": "min"}, {"name": "params", "direction": "min"}],
    })
    recs = [TrialRecord(number=i, status=TrialStatus.COMPLETE, metrics=m).to_json() for i, m in enumerate(trials)]
    write_jsonl(run / TRIALS_FILE, recs)
    return run


def _payload(run: Path, baselines: Path | None = None, objectives: str | None = None) -> dict:
    rd = load_runs([run], baselines=baselines)
    return build_payload(rd, resolve_objectives(rd, objectives))


def test_report_draws_labelled_references(people_baselines, tmp_path):
    gb = read_baselines(people_baselines)[-1].metrics
    best = {"mean_error": 0.01, "params": 5000, "income.auc": gb["income.auc"] + 0.01,
            "marital.accuracy": gb["marital.accuracy"] - 0.01, "tenure.mae": gb["tenure.mae"] - 0.5}
    run = _people_run(tmp_path, [best, {"mean_error": 0.9, "params": 100}])
    p = _payload(run, baselines=people_baselines)
    data = p["figures"]["pareto"]["data"]
    stars = [tr for tr in data if tr.get("name") == "references"]
    assert len(stars) == 1 and list(stars[0]["text"]) == NETS and "text" in stars[0]["mode"]
    # LightGBM has no parameter count: a labelled line at its mean error
    lines = [tr for tr in data if "lightgbm" in list(tr.get("text") or [])]
    assert len(lines) == 1 and list(lines[0]["x"]) == [pytest.approx(gb["mean_error"], rel=1e-5)] * 2
    # not trials: fronts and hypervolume are the trials' own
    assert p["runs"][0]["front"] == [0, 1]
    cols = [c["key"] for c in p["table"]["columns"]]
    refs = [row for row in p["table"]["rows"] if row[cols.index("status")] == "reference"]
    assert [row[cols.index("reference")] for row in refs] == [*NETS, "lightgbm"]
    assert [row[cols.index("number")] for row in refs] == [None] * 5
    (note,) = p["notes"]["references"]
    assert "validation split" in note and "trial 0" in note
    assert note.index("beats LightGBM on income auc") < note.index("tenure mae") < note.index("but not on marital accuracy")


def test_report_reads_run_baselines_and_checks_the_suite(people_baselines, tmp_path):
    run = _people_run(tmp_path, [{"mean_error": 0.3, "params": 100}])
    assert _payload(run)["notes"]["references"] == []
    (run / "baselines.jsonl").write_bytes((people_baselines / "baselines.jsonl").read_bytes())
    one = _payload(run, objectives="mean_error")  # one objective: every reference is a labelled line
    texts = [t for tr in one["figures"]["pareto"]["data"] for t in (tr.get("text") or []) if t]
    assert sorted(texts) == sorted([*NETS, "lightgbm"])
    other = tmp_path / "other"
    run_baselines_file = other / "baselines.jsonl"
    other.mkdir()
    run_baselines_file.write_text((people_baselines / "baselines.jsonl").read_text().replace('"suite": "people"', '"suite": "mm"'))
    with pytest.raises(UserError, match="suite 'mm'"):
        load_runs([run], baselines=other)
    with pytest.raises(UserError, match="no baseline records"):
        load_runs([run], baselines=tmp_path / "empty")


def test_model_card_compares_with_the_references(people_baselines, tmp_path):
    suite = load_suite(PEOPLE)
    run = _people_run(tmp_path, [{"mean_error": 0.3, "params": 100}])
    (run / "baselines.jsonl").write_bytes((people_baselines / "baselines.jsonl").read_bytes())
    recs = read_baselines(run)
    gb = recs[-1].test_metrics
    mine = {"income.auc": gb["income.auc"] - 0.01, "marital.accuracy": gb["marital.accuracy"] + 0.01,
            "tenure.mae": gb["tenure.mae"] + 1.0, "mean_error": 0.3}
    arch = {"run": str(run), "trial": 7, "test_metrics": mine, "cost": {"params": 1234}, "retrain": None, "final": None}
    text = references(arch, suite)
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0] for row in rows] == ["| this model (trial 7)", *(f"| {r.label}" for r in recs)]
    assert rows[0].endswith(f"| 1,234 | {delta_m(mine, recs[0].test_metrics, suite):.2f} |")
    assert "Test split" in text and "seed 3, the search's." in text
    wins, _, losses = text.partition("this model beats LightGBM on ")[2].partition(", but not on ")
    assert wins.startswith("marital accuracy") and losses.startswith("income auc") and "tenure mae" in losses
    assert "not the search's settings" in references({**arch, "run": str(people_baselines)}, suite)  # no run.json there
    assert "No reference models" in references({**arch, "run": str(tmp_path)}, suite)


def test_page_shows_references_in_a_browser(people_baselines, tmp_path):
    """The page's JS: the LightGBM sentence, a reference row selected (no export command
    for it), the 'reference' status filter; a trial selected afterwards gets its export back."""
    sys.path.insert(0, str(ROOT / "tests" / "report"))
    from dashboard_helpers import chrome, wait_js
    from selenium.webdriver.support.ui import Select

    run = _people_run(tmp_path, [{"mean_error": 0.3, "params": 100, "income.auc": 0.99}])
    page = write_report([run], baselines=people_baselines)
    d = chrome(tmp_path)
    try:
        d.get(page.as_uri())
        wait_js(d, "return document.body.dataset.ready === '1'")
        note = d.execute_script("return Array.from(document.querySelectorAll('#reference-notes p'), p => p.textContent)")
        assert len(note) == 1 and note[0].startswith("On the validation split, the best searched network (trial 0")
        d.execute_script("window.nasmt.select(4, false)")  # rows: trial 0, then single-task, hard-shared, mmoe, ple, lightgbm
        assert d.execute_script("return document.getElementById('sel-title').textContent") == "Reference · ple"
        assert d.execute_script("return document.querySelector('#selection .export').hidden") is True
        Select(d.find_element("id", "status-filter")).select_by_visible_text("reference")
        shown = d.execute_script("return Array.from(document.querySelectorAll('#trial-table tbody tr'), r => r.dataset.g)")
        assert shown == ["1", "2", "3", "4", "5"]
        d.execute_script("window.nasmt.select(0, false)")
        assert d.execute_script("return document.getElementById('sel-title').textContent") == "Trial 0"
        assert d.execute_script("return document.querySelector('#selection .export').hidden") is False
        assert not [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        d.quit()
