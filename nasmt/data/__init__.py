"""Loading a task suite's data into arrays ready for training.

``load_data(suite)`` returns a :class:`PreparedData` with train / val / test splits:

* image sources (``multimnist``, ``multifashion``; see :mod:`nasmt.data.images`):
  ``x[split]`` is float32 (N, 1, 28, 28) in [0, 1]; targets ``left`` and ``right`` are
  10-class multiclass labels.
* tabular sources (``csv``, ``parquet``, ``npz``; see :mod:`nasmt.data.tabular`):
  ``x[split]`` is float32 (N, D): standardized numeric columns and one-hot categoricals,
  named in ``feature_names``.

``PreparedData.preprocessing`` is what was fitted on the train split (feature order,
means and standard deviations, vocabularies, class labels, regression target scaling;
for images the pixel scale): plain data, JSON round-trippable, and the one encoder of
raw inputs (:mod:`nasmt.data.encoding`), which an export copies into its ``model.py``.

The splits depend only on the suite (its data file and ``split_seed`` option), never on
the ``seed`` argument, so every trial of a run sees the same examples, byte for byte.
Problems with the data raise :class:`nasmt.errors.DataError` with a one-line message
naming the suite file and the field. Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import numpy as np

from nasmt.data.encoding import encode_images
from nasmt.data.prepared import PreparedData
from nasmt.data.preprocessing import IMAGE, Preprocessing, TaskCoding
from nasmt.data.splits import SPLITS
from nasmt.data.suite import TaskSuite
from nasmt.errors import DataError

__all__ = [
    "PreparedData",
    "Preprocessing",
    "load_data",
    "load_data_cached",
    "data_fingerprint",
    "clear_cache",
    "SPLITS",
]


def load_data(suite: TaskSuite, seed: int = 0) -> PreparedData:
    """Arrays for `suite`. `seed` is accepted for symmetry with training code; the data
    and splits depend only on the suite (its `split_seed` option)."""
    del seed
    if suite.is_image:
        return _load_images(suite)
    from nasmt.data.tabular import load_tabular

    return load_tabular(suite)


def _load_images(suite: TaskSuite) -> PreparedData:
    from nasmt.data import images as im

    f, src = suite.file, suite.data.source
    for i, t in enumerate(suite.tasks):
        if t.target not in im.TARGETS:
            raise DataError(
                f"{f}: tasks[{i}].target: source {src!r} has targets left, right (got {t.target!r})"
            )
        if t.kind != "multiclass":
            raise DataError(
                f"{f}: tasks[{i}].kind: target {t.target!r} of {src!r} is a 10-class label; use kind = \"multiclass\""
            )
    opts = suite.data.options
    split_seed = int(opts.get("split_seed", 0))
    val_fraction = float(opts.get("val_fraction", 0.1))
    arrs = im.load_composites(src, split_seed, val_fraction, where=f"{f}: data.source: {src}")
    names = {"left": im.DIGITS, "right": im.DIGITS if src == "multimnist" else im.FASHION}
    pre = Preprocessing(
        IMAGE, (1, im.SIZE, im.SIZE), tuple(TaskCoding(t.ident, t.kind, tuple(names[t.target])) for t in suite.tasks),
        pixel_scale=im.PIXEL_SCALE,
    )
    x, y, idx = {}, {}, {}
    for s in SPLITS:
        n = len(arrs[f"{s}_left"])
        cap = opts.get(f"n_{s}")
        if cap is not None:
            n = min(n, int(cap))
        x[s] = encode_images(pre.to_json(), arrs[f"{s}_x"][:n])  # the one encoder (also the export's)
        y[s] = {t.ident: np.ascontiguousarray(arrs[f"{s}_{t.target}"][:n]) for t in suite.tasks}
        idx[s] = {
            k: np.ascontiguousarray(arrs[f"{s}_{k}_idx"][:n]) for k in ("left", "right") if f"{s}_{k}_idx" in arrs
        }
    return PreparedData(x=x, y=y, preprocessing=pre, meta={"source": src, "source_index": idx})


def data_fingerprint(suite: TaskSuite) -> str:
    """Stable key for the data `suite` loads: the parts of `suite.to_dict()` that shape
    the arrays (data table; each task's ident, kind, target, positive) plus the data
    file's size and modification time (so an edited file is not served stale). Suite
    name, metrics and weights do not change the key."""
    full = suite.to_dict()
    d = {
        "data": full["data"],
        "tasks": [{k: t[k] for k in ("ident", "kind", "target", "positive")} for t in full["tasks"]],
    }
    stamp = None
    if suite.data.path is not None:
        p = Path(suite.data.path)
        try:
            st = p.stat()
            stamp = [st.st_size, st.st_mtime_ns]
        except OSError:
            stamp = "missing"
    blob = json.dumps({"suite": d, "file": stamp}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


_CACHE: dict[tuple[str, int], PreparedData] = {}
_CACHE_MAX = 4
_LOCK = threading.Lock()


def load_data_cached(suite: TaskSuite, seed: int = 0) -> PreparedData:
    """`load_data` memoized in this process (keyed by `data_fingerprint` + seed). The
    returned arrays are shared: do not modify them in place."""
    key = (data_fingerprint(suite), int(seed))
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            return hit
        data = load_data(suite, seed)
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = data
        return data


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()
