"""tasks/fair.toml: real data (Fair 1978, statsmodels' copy) with five tasks of three kinds,
and tasks/fair.csv is exactly what tasks/make_fair.py makes of statsmodels' file."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from nasmt.data import SPLITS, load_data
from nasmt.data.suite import load_suite

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "tasks" / "fair.toml"
CSV = ROOT / "tasks" / "fair.csv"
MAKER = ROOT / "tasks" / "make_fair.py"
N_ROWS = 6366
# statsmodels' fair.csv as unpacked from `pip download statsmodels` (present on some machines only)
STATSMODELS_COPY = Path("/tmp/sm/statsmodels/datasets/fair/fair.csv")


@pytest.fixture(scope="module")
def suite():
    return load_suite(SUITE)


@pytest.fixture(scope="module")
def data(suite):
    return load_data(suite)


def _csv_rows() -> list[dict]:
    with open(CSV, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_suite_has_five_tasks_of_three_kinds(suite, data):
    assert suite.name == "fair"
    assert [(t.ident, t.kind, t.metric) for t in suite.tasks] == [
        ("affair", "binary", "auc"),
        ("marriage", "multiclass", "accuracy"),
        ("religious", "multiclass", "accuracy"),
        ("years_married", "regression", "mae"),
        ("n_children", "regression", "mae"),
    ]
    assert {t.kind for t in suite.tasks} == {"binary", "multiclass", "regression"}
    assert data.class_labels["marriage"] == ["1", "2", "3", "4", "5"]
    assert data.class_labels["religious"] == ["1", "2", "3", "4"]
    assert data.n_outputs == {"affair": 1, "marriage": 5, "religious": 4, "years_married": 1, "n_children": 1}
    # age, educ numeric; both occupations one-hot over occ1..occ6
    names = data.feature_names
    assert names[:2] == ["age", "educ"]
    for col in ("occupation", "occupation_husb"):
        assert [n for n in names if n.startswith(col + "=")] == [f"{col}=occ{k}" for k in range(1, 7)]
    assert data.input_shape == (14,)


def test_splits_cover_every_row_once(data):
    sizes = {s: data.n(s) for s in SPLITS}
    assert sum(sizes.values()) == N_ROWS
    assert all(n > 0 for n in sizes.values())
    rows = np.concatenate([data.meta["rows"][s] for s in SPLITS])
    assert sorted(rows.tolist()) == list(range(N_ROWS))
    for s in SPLITS:
        assert all(len(y) == sizes[s] for y in data.y[s].values())


def test_binary_positive_rate_is_the_csvs(data):
    rows = _csv_rows()
    assert len(rows) == N_ROWS
    csv_rate = sum(r["affair"] == "yes" for r in rows) / N_ROWS
    y = np.concatenate([data.y[s]["affair"] for s in SPLITS])
    assert y.mean() == pytest.approx(csv_rate, abs=1e-12)
    assert 0.3 < csv_rate < 0.35  # Fair's data: about a third report some time in affairs
    # the regression targets are the CSV's own numbers, row for row
    order = np.concatenate([data.meta["rows"][s] for s in SPLITS])
    ym = np.concatenate([data.y[s]["years_married"] for s in SPLITS])
    want = np.array([float(rows[i]["yrs_married"]) for i in order], dtype=np.float32)
    np.testing.assert_array_equal(ym, want)


def _maker():
    spec = importlib.util.spec_from_file_location("make_fair", MAKER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(not STATSMODELS_COPY.is_file(),
                    reason=f"statsmodels' fair.csv not unpacked at {STATSMODELS_COPY} (pip download statsmodels)")
def test_csv_is_what_make_fair_produces(tmp_path):
    out = _maker().main(STATSMODELS_COPY, tmp_path / "fair.csv")
    assert out.read_bytes() == CSV.read_bytes()
    # a folder holding the unpacked package works too
    again = _maker().main(STATSMODELS_COPY.parents[3], tmp_path / "again.csv")
    assert again.read_bytes() == CSV.read_bytes()
