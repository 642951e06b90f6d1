"""Raw records -> model inputs -> per-task predictions, driven by the JSON form of a
suite's fitted `Preprocessing` (see `nasmt.data.preprocessing`).

`encode` is the one code path that turns raw columns into the float32 feature matrix:
the tabular loader encodes the training data through it, and everything in this file
after this docstring is copied verbatim into every exported `model.py` (by
`nasmt.export.codegen`), so an export encodes new rows exactly as training did. Hence
the rules for this file: the standard library and numpy only (torch is imported inside
`predict_rows`), no `from __future__` import, no import of this package, and the
package's name never appears below this docstring.
"""

import csv
import math
import warnings
from pathlib import Path

import numpy as np

PREPROCESSING_FILE = "preprocessing.json"
# rows per forward pass in `predict_rows`: the evaluation batch size, so that predictions
# are computed on exactly the same batches as the metrics of the evaluation path
PREDICT_BATCH = 256


class InputError(ValueError):
    """Raw inputs that cannot be encoded (a missing column, text in a numeric column,
    images of the wrong shape); the message is one line naming the input."""


class UnseenCategoryWarning(UserWarning):
    """Categorical values the training split never had; they encode as all zeros."""


# ---------------------------------------------------------------------------- cells


def category_key(v):
    """The text a categorical value is matched (and named) by: 3, 3.0 and "3" are all
    "3", True is "True"; None for a missing value (None or NaN)."""
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return None
        return str(int(v)) if v.is_integer() else repr(v)
    return str(v)


def cells(values) -> list:
    """A column as a list of Python values, missing cells (NaN, None, pandas NA) as None."""
    if hasattr(values, "notna"):  # a pandas Series
        return values.astype(object).where(values.notna(), None).tolist()
    return [None if isinstance(v, float) and math.isnan(v) else v for v in np.asarray(values, dtype=object).tolist()]


def numbers(values, where: str) -> np.ndarray:
    """A column as float64, missing and non-finite cells as NaN; text must be a number."""
    kind = getattr(getattr(values, "dtype", None), "kind", None)
    if kind in ("i", "u", "f"):  # numeric numpy arrays and Series (nullable ones too)
        if hasattr(values, "to_numpy"):
            v = values.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            v = np.asarray(values, dtype=np.float64)
    else:
        v = np.asarray([_number(c, where) for c in cells(values)], dtype=np.float64)
    return np.where(np.isfinite(v), v, np.nan)


def _number(c, where: str) -> float:
    if c is None:
        return math.nan
    if isinstance(c, str):
        c = c.strip()
        if not c:
            return math.nan
    try:
        return float(c)
    except (TypeError, ValueError):
        raise InputError(f"{where}: {c!r} is not a number") from None


# ---------------------------------------------------------------------------- encode


def standardize(v: np.ndarray, mean: float, std: float) -> np.ndarray:
    """(v - mean) / std as float32; a missing value becomes the mean, i.e. 0."""
    return ((np.where(np.isnan(v), mean, v) - mean) / std).astype(np.float32)


def one_hot(keys: list, values: list) -> tuple[np.ndarray, int]:
    """(one-hot float32 rows over the vocabulary `values`, count of unseen keys); a
    missing (None) or unseen key is a row of zeros."""
    pos = {k: j for j, k in enumerate(values)}
    codes = np.asarray([pos.get(k, -1) for k in keys], dtype=np.int64)
    out = np.zeros((len(keys), len(values)), dtype=np.float32)
    ok = codes >= 0
    out[np.flatnonzero(ok), codes[ok]] = 1.0
    return out, sum(1 for k in keys if k is not None and k not in pos)


def encode(pre: dict, columns, where: str = "input") -> tuple[np.ndarray, dict]:
    """(features float32 (N, D), {column: number of unseen categories}) for `columns`
    (a pandas DataFrame or a dict of column name -> values), as `pre` describes them:
    numeric columns standardized, categoricals one-hot, in the training feature order."""
    parts, unseen = [], {}
    for col in pre["input"]["columns"]:
        name = col["name"]
        if name not in columns:
            need = ", ".join(c["name"] for c in pre["input"]["columns"])
            raise InputError(f"{where}: missing column {name!r} (the model needs {need})")
        if col["kind"] == "numeric":
            parts.append(standardize(numbers(columns[name], f"{where}: column {name!r}"), col["mean"], col["std"])[:, None])
        else:
            block, n = one_hot([category_key(c) for c in cells(columns[name])], col["values"])
            parts.append(block)
            if n:
                unseen[name] = n
    return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32), unseen


def encode_images(pre: dict, images, where: str = "input") -> np.ndarray:
    """float32 (N, C, H, W) in [0, 1] from uint8 images (divided by the pixel scale) or
    float images already in [0, 1]; one-channel models also take (N, H, W) and (H, W)."""
    shape = tuple(pre["input"]["shape"])
    a = np.asarray(images)
    if a.ndim == len(shape):  # (N, H, W)
        a = a[:, None]
    elif a.ndim == len(shape) - 1:  # (H, W): one image
        a = a[None, None]
    if a.shape[1:] != shape:
        raise InputError(f"{where}: images of shape {a.shape[1:]}, expected {shape} (or {shape[1:]})")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(pre["input"]["scale"])
    if a.dtype.kind != "f":
        raise InputError(f"{where}: images must be uint8 or float in [0, 1] (got {a.dtype})")
    if a.size and not (np.isfinite(a).all() and a.min() >= 0.0 and a.max() <= 1.0):
        raise InputError(f"{where}: float images must lie in [0, 1]")
    return np.ascontiguousarray(a, dtype=np.float32)


# ---------------------------------------------------------------------------- read


def read_csv(path) -> dict:
    """A CSV file's columns. With pandas importable, `pandas.read_csv` reads it (exactly
    as the training data was read); otherwise the csv module does (values stay text,
    empty cells are missing)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        import pandas as pd
    except ImportError:
        pd = None
    try:
        if pd is not None:
            frame = pd.read_csv(path)
            return {str(c): frame[c] for c in frame.columns}
        with open(path, newline="", encoding="utf-8") as f:
            records = list(csv.DictReader(f))
    except Exception as e:  # noqa: BLE001 - any parse failure is a bad file
        msg = " ".join(str(e).split()) or type(e).__name__
        raise InputError(f"{path}: cannot read as CSV: {msg}") from None
    return records_to_columns([{k: (v if v != "" else None) for k, v in r.items()} for r in records])


def records_to_columns(records) -> dict:
    """A list of dicts as columns; a key a record lacks is a missing value there."""
    names = list(dict.fromkeys(k for r in records for k in r))
    return {k: [r.get(k) for r in records] for k in names}


def model_inputs(pre: dict, rows) -> tuple[np.ndarray, dict, str]:
    """(model input, unseen categories per column, the input's name for messages) for
    raw `rows`: a CSV path, a pandas DataFrame or a list of dicts (tabular models); an
    image array or a .npy path (image models)."""
    where = str(rows) if isinstance(rows, (str, Path)) else "input"
    if pre["input"]["kind"] == "image":
        if isinstance(rows, (str, Path)):
            if not Path(rows).is_file():
                raise InputError(f"{where}: file not found")
            rows = np.load(rows, allow_pickle=False)
        return encode_images(pre, rows, where), {}, where
    if isinstance(rows, (str, Path)):
        columns = read_csv(rows)
    elif hasattr(rows, "columns"):  # a pandas DataFrame
        columns = rows
    elif isinstance(rows, (list, tuple)) and all(isinstance(r, dict) for r in rows):
        columns = records_to_columns(rows)
    else:
        raise InputError(f"{where}: expected a CSV path, a pandas DataFrame or a list of dicts (got {type(rows).__name__})")
    x, unseen = encode(pre, columns, where)
    return x, unseen, where


# ---------------------------------------------------------------------------- predict


def decode(pre: dict, outputs: dict) -> dict:
    """Per-task predictions from the network's outputs (task -> float32 array):
    multiclass {"label", "probabilities" (N, K), "classes"}; binary {"label",
    "probability" (of the positive class), "positive"}; regression {"value"} in the
    target's own units."""
    res = {}
    for t in pre["tasks"]:
        o = np.asarray(outputs[t["ident"]], dtype=np.float32)
        labels = list(t.get("labels") or [])
        if t["kind"] == "multiclass":
            e = np.exp(o - o.max(axis=1, keepdims=True))
            res[t["ident"]] = {"label": [labels[i] for i in o.argmax(axis=1)],
                               "probabilities": e / e.sum(axis=1, keepdims=True), "classes": labels}
        elif t["kind"] == "binary":
            s = o[:, 0]
            res[t["ident"]] = {"label": [labels[1] if v > 0 else labels[0] for v in s],
                               "probability": 1.0 / (1.0 + np.exp(-s)), "positive": labels[1]}
        else:
            res[t["ident"]] = {"value": o[:, 0] * t["std"] + t["mean"]}
    return res


def predict_rows(net, pre: dict, rows, batch_size: int = PREDICT_BATCH) -> dict:
    """`decode` of `net` on `model_inputs(pre, rows)`, run in batches of `batch_size`.
    Unseen categories encode as all zeros and are counted in one UnseenCategoryWarning."""
    import torch

    x, unseen, where = model_inputs(pre, rows)
    if len(x) == 0:
        raise InputError(f"{where}: no rows")
    if unseen:
        counts = ", ".join(f"{k}: {n}" for k, n in unseen.items())
        warnings.warn(f"{where}: unseen categories encoded as all zeros ({counts})", UnseenCategoryWarning, stacklevel=2)
    device = next(net.parameters()).device
    outs = {}
    net.eval()
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            for k, v in net(torch.from_numpy(x[i : i + batch_size]).to(device)).items():
                outs.setdefault(k, []).append(v.float().cpu().numpy())
    return decode(pre, {k: np.concatenate(v) for k, v in outs.items()})


def prediction_table(preds: dict) -> tuple[list, list]:
    """(header, rows) of `preds` as a table: per task its label (or value) column, then
    for classification one probability column per class ("<task>.p[<class>]"; binary:
    only the positive class). Numbers are exact Python floats."""
    header, cols = [], []
    for task, p in preds.items():
        if "value" in p:
            header.append(task)
            cols.append([float(v) for v in p["value"]])
            continue
        header.append(task)
        cols.append(p["label"])
        if "classes" in p:
            for j, c in enumerate(p["classes"]):
                header.append(f"{task}.p[{c}]")
                cols.append([float(v) for v in p["probabilities"][:, j]])
        else:
            header.append(f"{task}.p[{p['positive']}]")
            cols.append([float(v) for v in p["probability"]])
    return header, [list(r) for r in zip(*cols)]
