"""The affinity file (`AFFINITY_FILE`, written by `nasmt affinity`, copied into a run by
`search --affinity`): reading and validating it, once, for the search's prior and the
report's heatmap.

    {"suite": name, "tasks": [idents], "matrix": [[Z_ij]], "measurements": n, "every": k,
     "steps": s, "lr": lr, "method": text, "groups": [[idents], ...]}

Row i is the task whose gradient step is taken, column j the task it helps
(`nasmt.train.affinity`)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from nasmt.errors import RunDirError
from nasmt.run.files import AFFINITY_FILE
from nasmt.run.values import is_finite_number


class Affinity(NamedTuple):
    """A validated affinity file."""

    suite: str
    tasks: list[str]  # idents, the matrix's row and column order
    matrix: list[list[float]]  # matrix[i][j]: affinity of a step on task i onto task j
    measurements: int | None
    every: int | None
    steps: int | None
    lr: float | None
    method: str
    groups: list[list[str]]  # suggested grouping (idents); [] when the file has none


def _bad(file, field: str, msg: str) -> RunDirError:
    return RunDirError(f"{file}: {field}: {msg}")


def load_affinity(path: str | Path) -> dict:
    """An affinity file's JSON object (RunDirError naming the file when it is not one)."""
    import json

    path = Path(path)
    try:
        aff = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise RunDirError(f"{path}: cannot read the affinity file ({e.strerror or e})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunDirError(f"{path}: not a JSON affinity file ({e})") from None
    if not isinstance(aff, dict):
        raise RunDirError(f"{path}: not a JSON affinity file (expected an object)")
    return aff


def check_affinity(aff: dict, file: str | Path = AFFINITY_FILE, suite_tasks: list[str] | None = None) -> Affinity:
    """The validated affinity: `tasks` distinct non-empty strings (at least two; the same
    set as `suite_tasks`, the run's task idents, when given), `matrix` a square
    len(tasks) x len(tasks) list of finite numbers, `groups` (optional) lists of those
    tasks; `measurements` / `every` / `steps` non-negative integers and `lr` a finite
    number when present. A bad value raises RunDirError "FILE: FIELD: what is wrong"."""
    if not isinstance(aff, dict):
        raise RunDirError(f"{file}: not an affinity object (expected a JSON object)")
    tasks = aff.get("tasks")
    if not isinstance(tasks, list) or not all(isinstance(t, str) and t for t in tasks):
        raise _bad(file, "tasks", "must be a list of task names (non-empty strings)")
    if len(tasks) < 2:
        raise _bad(file, "tasks", f"affinity needs at least two tasks (got {len(tasks)})")
    dup = next((t for i, t in enumerate(tasks) if t in tasks[:i]), None)
    if dup is not None:
        raise _bad(file, "tasks", f"task {dup!r} is listed twice")
    if suite_tasks is not None and set(tasks) != set(suite_tasks):
        raise _bad(file, "tasks", f"{', '.join(tasks)} do not match the run's tasks ({', '.join(suite_tasks)})")
    k = len(tasks)
    m = aff.get("matrix")
    if not isinstance(m, list) or len(m) != k:
        got = f"{len(m)} rows" if isinstance(m, list) else type(m).__name__
        raise _bad(file, "matrix", f"must be a {k} x {k} list of rows, one per task (got {got})")
    matrix = []
    for i, row in enumerate(m):
        if not isinstance(row, list) or len(row) != k:
            got = f"{len(row)} values" if isinstance(row, list) else type(row).__name__
            raise _bad(file, f"matrix[{i}]",
                       f"must be a row of {k} numbers, one per task (got {got}): the matrix must be square")
        for j, v in enumerate(row):
            if not is_finite_number(v):
                raise _bad(file, f"matrix[{i}][{j}]", f"must be a finite number (got {v!r})")
        matrix.append([float(v) for v in row])
    ints = {}
    for key in ("measurements", "every", "steps"):
        v = aff.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            raise _bad(file, key, f"must be a non-negative integer (got {v!r})")
        ints[key] = v
    lr = aff.get("lr")
    if lr is not None and not is_finite_number(lr):
        raise _bad(file, "lr", f"must be a finite number (got {lr!r})")
    method = aff.get("method", "")
    if not isinstance(method, str):
        raise _bad(file, "method", f"must be a string (got {method!r})")
    suite = aff.get("suite", "")
    if not isinstance(suite, str):
        raise _bad(file, "suite", f"must be a string (got {suite!r})")
    groups = aff.get("groups") or []
    if not isinstance(groups, list):
        raise _bad(file, "groups", "must be a list of groups (lists of task names)")
    seen: set[str] = set()
    for gi, grp in enumerate(groups):
        if not isinstance(grp, list) or not grp:
            raise _bad(file, f"groups[{gi}]", "must be a non-empty list of task names")
        for t in grp:
            if t not in tasks:
                raise _bad(file, f"groups[{gi}]", f"{t!r} is not one of the tasks ({', '.join(tasks)})")
            if t in seen:
                raise _bad(file, f"groups[{gi}]", f"task {t!r} is in two groups")
            seen.add(t)
    return Affinity(suite, list(tasks), matrix, ints["measurements"], ints["every"], ints["steps"],
                    None if lr is None else float(lr), method, [list(g) for g in groups])
