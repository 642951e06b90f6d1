"""The fitted `Preprocessing`: plain data that round-trips through JSON, and the one
encoder of raw rows (the loader's arrays are its output; raw records, DataFrames and
CSV files read with or without pandas encode to the very same bytes)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nasmt.data import load_data
from nasmt.data.encoding import InputError, read_csv, records_to_columns
from nasmt.data.preprocessing import Preprocessing
from nasmt.data.suite import load_suite

REPO = Path(__file__).resolve().parents[2]
PEOPLE = REPO / "tasks" / "people.toml"
BAD_CSV = REPO / "tests" / "bad_inputs" / "data.csv"


@pytest.fixture(scope="module")
def people():
    return load_data(load_suite(PEOPLE))


def _raw_rows(data, split: str) -> pd.DataFrame:
    """The people.csv rows of a split, as read from the file (nothing is dropped there)."""
    df = pd.read_csv(REPO / "tasks" / "people.csv")
    assert data.meta["n_rows"] == len(df)
    return df.iloc[data.meta["rows"][split]].reset_index(drop=True)


def test_preprocessing_round_trips_through_json(people):
    pre = people.preprocessing
    back = Preprocessing.from_json(json.loads(json.dumps(pre.to_json())))
    assert back == pre
    assert back.feature_names == people.feature_names and len(people.feature_names) == people.input_shape[0]
    assert back.class_labels == {"income": ["<=50K", ">50K"], "marital": people.class_labels["marital"]}
    assert back.target_stats == people.target_stats and set(back.target_stats) == {"tenure"}
    assert back.n_outputs == {"income": 1, "marital": 4, "tenure": 1}
    kinds = {c.name: c.kind for c in pre.columns}
    assert kinds == {"age": "numeric", "education": "categorical", "hours_per_week": "numeric",
                     "occupation": "categorical", "capital_gain": "numeric"}
    assert pre.for_task("tenure").to_json()["tasks"] == [{"ident": "tenure", "kind": "regression",
                                                          "mean": people.target_stats["tenure"][0],
                                                          "std": people.target_stats["tenure"][1]}]


@pytest.mark.parametrize("split", ["train", "test"])
def test_raw_rows_encode_to_the_loaders_bytes(people, split):
    raw = _raw_rows(people, split)
    want = people.x[split].tobytes()
    x, unseen = people.preprocessing.encode(raw)
    assert x.tobytes() == want and not unseen
    x, _ = people.preprocessing.encode(records_to_columns(raw.to_dict("records")))
    assert x.tobytes() == want


def test_csv_without_pandas_encodes_the_same(people, tmp_path, monkeypatch):
    raw = _raw_rows(people, "test")
    raw.to_csv(tmp_path / "rows.csv", index=False)
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now fails: the csv-module path
    columns = read_csv(tmp_path / "rows.csv")
    assert isinstance(columns["age"], list) and isinstance(columns["age"][0], str)
    x, _ = people.preprocessing.encode(columns)
    assert x.tobytes() == people.x["test"].tobytes()


def test_unseen_category_is_zeros_and_counted_missing_values_are_not(people):
    pre = people.preprocessing
    raw = _raw_rows(people, "test").head(4)
    rows = raw.to_dict("records")
    rows[0]["education"] = "Astronaut"  # unseen: all zeros, counted
    rows[1]["occupation"] = None  # missing: all zeros, not counted
    rows[2]["age"] = None  # missing number: the train mean, i.e. 0
    rows[3]["occupation"] = "Pilot"
    x, unseen = pre.encode(records_to_columns(rows))
    assert unseen == {"education": 1, "occupation": 1}
    names = people.feature_names
    edu = [j for j, n in enumerate(names) if n.startswith("education=")]
    occ = [j for j, n in enumerate(names) if n.startswith("occupation=")]
    assert x[0, edu].sum() == 0 and x[1, occ].sum() == 0 and x[3, occ].sum() == 0
    assert x[2, names.index("age")] == 0.0
    want, _ = pre.encode(raw)
    assert np.array_equal(np.delete(x[0], edu), np.delete(want[0], edu))  # the rest of the row is untouched
    assert np.array_equal(x[2, edu], want[2, edu])


def test_missing_column_and_text_in_numeric_column_are_one_line_errors(people):
    rows = _raw_rows(people, "test").head(2).to_dict("records")
    del rows[0]["hours_per_week"], rows[1]["hours_per_week"]
    with pytest.raises(InputError, match=r"^new\.csv: missing column 'hours_per_week' \(the model needs age, ") as e:
        people.preprocessing.encode(records_to_columns(rows), where="new.csv")
    assert "\n" not in str(e.value)
    rows = _raw_rows(people, "test").head(2).to_dict("records")
    rows[1]["age"] = "forty"
    with pytest.raises(InputError, match=r"column 'age': 'forty' is not a number"):
        people.preprocessing.encode(records_to_columns(rows))


def test_partial_categorical_list_infers_text_columns(tmp_path):
    """data.categorical = ["b"] makes the integer column b categorical; the text column
    c, not listed, is inferred categorical instead of being an error."""
    (tmp_path / "s.toml").write_text(
        f'[data]\nsource = "csv"\npath = "{BAD_CSV}"\nfeatures = ["a", "b", "c"]\ncategorical = ["b"]\n'
        '[[tasks]]\nname = "y"\nkind = "regression"\ntarget = "y"\n'
    )
    d = load_data(load_suite(tmp_path / "s.toml"))
    kinds = {c.name: c.kind for c in d.preprocessing.columns}
    assert kinds == {"a": "numeric", "b": "categorical", "c": "categorical"}
    df = pd.read_csv(BAD_CSV)
    train = df.iloc[d.meta["rows"]["train"]]
    assert [n for n in d.feature_names if n.startswith("c=")] == [f"c={v}" for v in sorted(train["c"].unique())]
    assert [n for n in d.feature_names if n.startswith("b=")] == [f"b={v}" for v in sorted(train["b"].unique())]
