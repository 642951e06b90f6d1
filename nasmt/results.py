"""Trial records in a run directory, objectives, Pareto sets and hypervolume.

A run directory holds:
    run.json            the search configuration (grammar text, suite, objectives, ...)
    trials.jsonl        one JSON record per finished trial (complete, failed or stopped)
    study.journal       Optuna's journal storage (the sampler's memory)
    trials/NNNNN/       per trial: weights.safetensors, spec.json (and error.json)

Records are appended with one write + flush + fsync; rewrites go through a temporary
file and a rename. A torn last line (a crash mid-append) is skipped on read and
reported as a warning. Nothing here uses pickle.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import RunDirError

RUN_FILE = "run.json"
TRIALS_FILE = "trials.jsonl"
JOURNAL_FILE = "study.journal"

# Objectives besides per-task metrics: name -> default direction
COST_OBJECTIVES = {
    "mean_error": "min",
    "params": "min",
    "flops": "min",
    "size_bytes": "min",
    "latency_ms": "min",
    "predicted_latency_ms": "min",
}


# ----------------------------------------------------------------------------- files


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def append_jsonl(path: Path, rec: dict) -> None:
    line = json.dumps(rec, sort_keys=True, default=_json_default, allow_nan=True) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSONL file; a torn (unparseable) last line is skipped with a warning."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if i >= len(lines) - 2:  # the last line (possibly followed by "")
                warnings.warn(f"{path}:{i + 1}: torn last record skipped (the writer was killed mid-append)")
                continue
            raise RunDirError(f"{path}:{i + 1}: corrupt record (not JSON)") from None
    return out


# ----------------------------------------------------------------------------- run dirs


def is_run_dir(path: Path) -> bool:
    return (Path(path) / RUN_FILE).is_file()


def load_run(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise RunDirError(f"{path}: run directory not found")
    if not path.is_dir():
        raise RunDirError(f"{path}: not a directory")
    if not is_run_dir(path):
        raise RunDirError(f"{path}: not a nasmt run directory (no {RUN_FILE}; create one with `nasmt search --out {path}`)")
    try:
        return json.loads((path / RUN_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunDirError(f"{path / RUN_FILE}: unreadable run configuration ({e})") from None


def load_trials(path: str | Path) -> list[dict]:
    """All trial records, one per trial number (the last record wins)."""
    recs = read_jsonl(Path(path) / TRIALS_FILE)
    by_num: dict[int, dict] = {}
    for r in recs:
        by_num[int(r["number"])] = r
    return [by_num[k] for k in sorted(by_num)]


# ----------------------------------------------------------------------------- objectives


@dataclass(frozen=True)
class Objective:
    name: str  # a metric key in the trial record
    direction: str  # "min" | "max"

    @property
    def sign(self) -> float:
        return 1.0 if self.direction == "min" else -1.0

    def to_json(self) -> dict:
        return {"name": self.name, "direction": self.direction}


def objective_names(suite) -> dict[str, str]:
    """Every objective a suite allows -> its default direction."""
    from .tasks import HIGHER_IS_BETTER

    out = dict(COST_OBJECTIVES)
    for t in suite.tasks:
        out[f"{t.ident}.{t.metric}"] = "max" if HIGHER_IS_BETTER[t.metric] else "min"
        out[f"{t.ident}.error"] = "min"
    return out


def parse_objectives(text: str, suite, field: str = "--objectives") -> list[Objective]:
    """`mean_error,params` or `left.accuracy:max,flops`; task names may be used for idents."""
    from .errors import UserError

    allowed = objective_names(suite)
    alias = {}
    for t in suite.tasks:
        alias[f"{t.name}.{t.metric}"] = f"{t.ident}.{t.metric}"
        alias[f"{t.name}.error"] = f"{t.ident}.error"
    objs: list[Objective] = []
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(not p for p in parts):
        raise UserError(f"{field}: give a comma-separated list of objectives (e.g. mean_error,params)")
    for p in parts:
        name, _, direction = p.partition(":")
        name = alias.get(name, name)
        if name not in allowed:
            raise UserError(f"{field}: unknown objective {name!r} (choose from {', '.join(allowed)})")
        direction = direction or allowed[name]
        if direction not in ("min", "max"):
            raise UserError(f"{field}: direction of {name!r} must be min or max (got {direction!r})")
        if any(o.name == name for o in objs):
            raise UserError(f"{field}: objective {name!r} listed twice")
        objs.append(Objective(name, direction))
    return objs


def objective_matrix(trials: list[dict], objectives: list[Objective]) -> np.ndarray:
    """(n, k) values to minimize (max objectives negated); NaN where missing."""
    m = np.full((len(trials), len(objectives)), np.nan)
    for i, t in enumerate(trials):
        met = t.get("metrics") or {}
        for j, o in enumerate(objectives):
            v = met.get(o.name)
            if isinstance(v, (int, float)) and v is not None and math.isfinite(v):
                m[i, j] = o.sign * v
    return m


# ----------------------------------------------------------------------------- Pareto


def pareto_mask(points: np.ndarray) -> np.ndarray:
    """Non-dominated rows of a (n, k) minimization matrix (rows with NaN never are).

    Two objectives: sort + sweep, O(n log n). More: pairwise, vectorized per row.
    Duplicate points are all kept.
    """
    pts = np.asarray(points, dtype=float)
    n = len(pts)
    mask = np.zeros(n, dtype=bool)
    ok = ~np.isnan(pts).any(axis=1) if n else np.zeros(0, bool)
    idx = np.flatnonzero(ok)
    if len(idx) == 0:
        return mask
    P = pts[idx]
    if P.shape[1] == 1:
        mask[idx[P[:, 0] == P[:, 0].min()]] = True
        return mask
    if P.shape[1] == 2:
        order = np.lexsort((P[:, 1], P[:, 0]))  # by x, then y
        best_y = math.inf
        prev = None
        for o in order:
            x, y = P[o]
            if y < best_y:
                mask[idx[o]] = True
                best_y = y
                prev = (x, y)
            elif prev is not None and x == prev[0] and y == prev[1]:
                mask[idx[o]] = True  # exact duplicate of a front point
        return mask
    for i in range(len(P)):
        dom = np.all(P <= P[i], axis=1) & np.any(P < P[i], axis=1)
        mask[idx[i]] = not dom.any()
    return mask


def complete_trials(trials: list[dict]) -> list[dict]:
    return [t for t in trials if t.get("status") == "complete"]


def front_candidates(trials: list[dict]) -> list[dict]:
    """Trials that may be on a Pareto front: complete and within the run's hard budgets
    (`metrics.feasible` is False for a trial over --max-bytes / --max-latency-ms)."""
    return [t for t in complete_trials(trials) if (t.get("metrics") or {}).get("feasible", True) is not False]


def pareto_trials(trials: list[dict], objectives: list[Objective]) -> list[dict]:
    """The Pareto front: complete trials within budget only (failed, stopped and
    over-budget trials never are)."""
    comp = front_candidates(trials)
    mask = pareto_mask(objective_matrix(comp, objectives))
    front = [t for t, m in zip(comp, mask) if m]
    return sorted(front, key=lambda t: [o.sign * t["metrics"][o.name] for o in objectives])


def hypervolume_2d(points: np.ndarray, ref: np.ndarray) -> float:
    """Dominated area of minimization points (n, 2) w.r.t. reference point `ref`."""
    P = np.asarray(points, float)
    P = P[np.all(P < ref, axis=1)] if len(P) else P
    if len(P) == 0:
        return 0.0
    P = P[pareto_mask(P)]
    P = P[np.argsort(P[:, 0])]
    hv, prev_y = 0.0, ref[1]
    for x, y in P:
        hv += (ref[0] - x) * (prev_y - y)
        prev_y = y
    return float(hv)


def knee_point(front: list[dict], objectives: list[Objective]) -> dict:
    """The front point closest to the ideal point after min-max normalization."""
    M = objective_matrix(front, objectives)
    lo, hi = M.min(axis=0), M.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    d = np.linalg.norm((M - lo) / span, axis=1)
    return front[int(np.argmin(d))]


# ----------------------------------------------------------------------------- hypervolume (any k)


def hypervolume(points: np.ndarray, ref: np.ndarray) -> float:
    """Exact dominated hypervolume of minimization points (n, k) w.r.t. `ref`.

    k = 1: a length; k = 2: `hypervolume_2d`; k >= 3: slicing along the last objective
    (exact, meant for fronts of up to a few hundred points). Rows with NaN are ignored.
    """
    P = np.asarray(points, float)
    ref = np.asarray(ref, float)
    if P.ndim != 2 or P.shape[1] != len(ref):
        raise ValueError(f"points must be (n, {len(ref)}), got {P.shape}")
    P = P[~np.isnan(P).any(axis=1)]
    P = P[np.all(P < ref, axis=1)]
    if len(P) == 0:
        return 0.0
    k = P.shape[1]
    if k == 1:
        return float(ref[0] - P[:, 0].min())
    P = P[pareto_mask(P)]
    if k == 2:
        return hypervolume_2d(P, ref)
    # slices between consecutive distinct values of the last objective
    zs = np.unique(P[:, -1])
    hv = 0.0
    for i, z in enumerate(zs):
        top = zs[i + 1] if i + 1 < len(zs) else ref[-1]
        below = P[P[:, -1] <= z][:, :-1]
        hv += (top - z) * hypervolume(below, ref[:-1])
    return float(hv)


def hypervolume_history(points: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Hypervolume of the first i+1 rows for every i (rows in the order trials finished).

    Incremental: only a point that no front point weakly dominates changes the front,
    and only then is the (small) front's hypervolume recomputed. NaN rows and rows not
    strictly better than `ref` in every objective leave the value unchanged.
    """
    P = np.asarray(points, float)
    ref = np.asarray(ref, float)
    out = np.zeros(len(P))
    front = np.zeros((0, len(ref)))
    hv = 0.0
    for i, p in enumerate(P):
        if not (np.isnan(p).any() or np.any(p >= ref)):
            if not (len(front) and np.any(np.all(front <= p, axis=1))):
                keep = ~np.all(p <= front, axis=1) if len(front) else np.zeros(0, bool)
                front = np.vstack([front[keep], p[None, :]])
                hv = hypervolume(front, ref)
        out[i] = hv
    return out


def pareto_mask_naive(points: np.ndarray) -> np.ndarray:
    """O(n^2) reference for `pareto_mask`: every row against every row (numpy per row).

    For tests and benchmarks only."""
    P = np.asarray(points, float)
    n = len(P)
    mask = np.zeros(n, dtype=bool)
    ok = ~np.isnan(P).any(axis=1) if n else np.zeros(0, bool)
    Q = P[ok]
    for i in np.flatnonzero(ok):
        dom = np.all(Q <= P[i], axis=1) & np.any(Q < P[i], axis=1)
        mask[i] = not dom.any()
    return mask
