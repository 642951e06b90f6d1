"""tasks/fair.toml: real data (Fair 1978, statsmodels' copy) with five tasks of three kinds.

tasks/fair.csv is checked without statsmodels: its checksum is pinned (the file
tasks/make_fair.py writes from statsmodels' fair.csv, sha256 fd5f3f09...), its columns,
value sets and summary statistics are those published for Fair's data (statsmodels'
dataset notes; `describe()` of statsmodels' copy), and tasks/make_fair.py turns a
statsmodels-format table of the same survey back into tasks/fair.csv byte for byte."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import re
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
# sha256 of tasks/fair.csv: `python tasks/make_fair.py` run on statsmodels' fair.csv (the
# copy whose sha256 make_fair.SOURCE_SHA256 names) writes exactly this file
CSV_SHA256 = "cf1a16eba2af33c87655fed83d61e3ac23945831bec034d80d1c05f37137a590"
# the first rows of statsmodels' fair.csv, verbatim (rate_marriage, age, yrs_married,
# children, religious, educ, occupation, occupation_husb, affairs) and as fair.csv has them
SOURCE_HEAD = [
    ("3,32,9,3,3,17,2,5,0.1111111", "32,17,occ2,occ5,yes,3,3,9,3"),
    ("3,27,13,3,1,14,3,4,3.2307692", "27,14,occ3,occ4,yes,3,1,13,3"),
]
# statsmodels' dataset notes (statsmodels/datasets/fair/data.py) and make_fair's docstring:
# every value a column can take
VALUES = {
    "age": {"17.5", "22", "27", "32", "37", "42"},
    "educ": {"9", "12", "14", "16", "17", "20"},  # grade school ... advanced degree
    "occupation": {f"occ{k}" for k in range(1, 7)},
    "occupation_husb": {f"occ{k}" for k in range(1, 7)},
    "affair": {"yes", "no"},
    "rate_marriage": {"1", "2", "3", "4", "5"},  # very poor ... very good
    "religious": {"1", "2", "3", "4"},  # not ... strongly
    "yrs_married": {"0.5", "2.5", "6", "9", "13", "16.5", "23"},  # interval midpoints
    "children": {"0", "1", "2", "3", "4", "5.5"},  # 5.5: the top interval
}
# the published summary of statsmodels' copy (pandas `describe().round(2)`: mean, std,
# min, 25%, 50%, 75%, max); "affair" is (affairs > 0), the binary target
DESCRIBE = {
    "affair": (0.32, 0.47, 0.0, 0.0, 0.0, 1.0, 1.0),
    "age": (29.08, 6.85, 17.5, 22.0, 27.0, 32.0, 42.0),
    "yrs_married": (9.01, 7.28, 0.5, 2.5, 6.0, 16.5, 23.0),
    "religious": (2.43, 0.88, 1.0, 2.0, 2.0, 3.0, 4.0),
    "rate_marriage": (4.11, 0.96, 1.0, 4.0, 4.0, 5.0, 5.0),
}


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


def test_csv_is_the_published_fair_data():
    """Checksum, columns, every column's value set and the published summary statistics."""
    assert hashlib.sha256(CSV.read_bytes()).hexdigest() == CSV_SHA256
    maker = _maker()
    with open(CSV, newline="", encoding="utf-8") as f:
        assert next(csv.reader(f)) == maker.COLUMNS
    rows = _csv_rows()
    assert len(rows) == N_ROWS == maker.N_ROWS
    for col, allowed in VALUES.items():
        assert {r[col] for r in rows} == allowed, col  # each documented value occurs, nothing else
    for col, (mean, std, lo, q1, med, q3, hi) in DESCRIBE.items():
        v = np.array([(r[col] == "yes") if col == "affair" else float(r[col]) for r in rows], dtype=float)
        assert round(v.mean(), 2) == mean, col
        assert round(v.std(ddof=1), 2) == std, col
        assert [v.min(), *np.percentile(v, [25, 50, 75]), v.max()] == [lo, q1, med, q3, hi], col
    assert sum(r["affair"] == "yes" for r in rows) == 2053
    assert [",".join(r[c] for c in maker.COLUMNS) for r in rows[: len(SOURCE_HEAD)]] == [c for _, c in SOURCE_HEAD]


def _as_source(rows: list[dict]) -> str:
    """tasks/fair.csv written back in statsmodels' layout (its quoted header, its column
    order, numbers as floats); `affairs` is a positive time for "yes", 0 for "no" (the
    source's own values are not in fair.csv). The first rows are statsmodels' own."""
    maker = _maker()
    lines = [",".join(f'"{c}"' for c in maker.SOURCE_COLUMNS)]
    lines += [src for src, _ in SOURCE_HEAD]
    for i, r in enumerate(rows[len(SOURCE_HEAD):]):
        vals = {
            "rate_marriage": r["rate_marriage"], "age": r["age"], "yrs_married": r["yrs_married"],
            "children": r["children"], "religious": r["religious"], "educ": r["educ"],
            "occupation": r["occupation"].removeprefix("occ"), "occupation_husb": r["occupation_husb"].removeprefix("occ"),
            "affairs": f"{0.05 + (i % 7) * 0.7:.7f}" if r["affair"] == "yes" else "0",
        }
        lines.append(",".join(str(float(vals[c])) if c != "affairs" else vals[c] for c in maker.SOURCE_COLUMNS))
    return "\n".join(lines) + "\n"


def test_make_fair_turns_a_statsmodels_table_into_the_csv(tmp_path, capsys):
    """make_fair's conversion (column order, occ labels, affairs > 0, integral numbers
    without a decimal point) applied to a statsmodels-format table of the survey gives
    tasks/fair.csv byte for byte; a copy other than statsmodels' is noted on stderr."""
    src = tmp_path / "fair.csv"
    src.write_text(_as_source(_csv_rows()), encoding="utf-8")
    out = _maker().main(src, tmp_path / "out.csv")
    assert out.read_bytes() == CSV.read_bytes()
    assert "differs from the copy fair.csv was made from" in capsys.readouterr().err
    # a folder holding the unpacked statsmodels package works too
    pkg = tmp_path / "wheel" / "statsmodels" / "datasets" / "fair"
    pkg.mkdir(parents=True)
    (pkg / "fair.csv").write_bytes(src.read_bytes())
    again = _maker().main(tmp_path / "wheel", tmp_path / "again.csv")
    assert again.read_bytes() == CSV.read_bytes()


@pytest.mark.parametrize("edit,why", [
    (lambda lines: [lines[0].replace('"age"', '"AGE"')] + lines[1:], "unexpected columns"),
    (lambda lines: lines[:-1], "rows (expected 6366)"),
])
def test_make_fair_refuses_another_table(tmp_path, edit, why):
    src = tmp_path / "fair.csv"
    src.write_text("\n".join(edit(_as_source(_csv_rows()).splitlines())) + "\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=re.escape(why)):
        _maker().main(src, tmp_path / "out.csv")
