"""The run directory on disk: file names, trial directories and crash-safe I/O.

A run directory holds:
    run.json            the search configuration (grammar text, suite, objectives, ...)
    trials.jsonl        one JSON record per finished trial (see `nasmt.run.record`)
    study.journal       Optuna's journal storage (the sampler's memory)
    latency.json        measured vs predicted latency of the Pareto set (when asked for)
    trials/NNNNN/       per trial: spec.json, weights.safetensors, result.json / error.json
    .nasmt.lock         the driver's flock (held while a search runs)

Every name is defined here once. Writes are crash safe: a new file is written to a
temporary name, flushed, fsynced and renamed over the target, and the directory is
fsynced after the rename (so the rename itself survives a power loss); an appended
JSONL record is one write + flush + fsync. A torn last line (a crash mid-append) is
skipped on read with a warning and cut off before the next append. Nothing here uses
pickle.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

from nasmt.errors import RunDirError

RUN_FILE = "run.json"
TRIALS_FILE = "trials.jsonl"
JOURNAL_FILE = "study.journal"
LATENCY_FILE = "latency.json"
LOCK_FILE = ".nasmt.lock"
AFFINITY_FILE = "affinity.json"  # inter-task affinity (`nasmt affinity`), copied in by `search --affinity`
TRIALS_DIR = "trials"
# per-trial files
SPEC_FILE = "spec.json"
WEIGHTS_FILE = "weights.safetensors"
RESULT_FILE = "result.json"
ERROR_FILE = "error.json"


def trial_dir(run_dir: str | Path, number: int) -> Path:
    """`RUN/trials/NNNNN`: the one place a trial's files live."""
    return Path(run_dir) / TRIALS_DIR / f"{int(number):05d}"


def trial_numbers_on_disk(run_dir: str | Path) -> dict[int, Path]:
    """Trial number -> directory for every `trials/NNNNN` folder present."""
    base = Path(run_dir) / TRIALS_DIR
    if not base.is_dir():
        return {}
    return {int(d.name): d for d in base.iterdir() if d.is_dir() and d.name.isdigit()}


# ----------------------------------------------------------------------------- atomic I/O


def fsync_dir(path: str | Path) -> None:
    """fsync a directory, so that a rename or a new entry in it survives a power loss."""
    try:
        fd = os.open(str(path), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def ensure_dir(path: str | Path) -> Path:
    """mkdir -p, fsyncing the parent of every directory it creates (a new directory's
    entry survives a power loss like a renamed file's)."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
        fsync_dir(d.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write, flush, fsync, rename over `path`, fsync the directory."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=json_default) + "\n")


def read_json(path: str | Path):
    """A JSON file's content, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def append_jsonl(path: str | Path, rec: dict) -> None:
    path = Path(path)
    new = not path.exists()
    line = json.dumps(rec, sort_keys=True, default=json_default, allow_nan=True) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
    if new:
        fsync_dir(path.parent)


def write_jsonl(path: str | Path, recs: list[dict]) -> None:
    """Replace a JSONL file atomically (temporary file + rename)."""
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True, default=json_default, allow_nan=True) + "\n" for r in recs))


def _json_loader():
    """`loads(bytes)`: orjson where installed (about 2x faster), with the standard library
    parsing whatever orjson refuses (NaN / Infinity literals, lone surrogates, invalid
    UTF-8): the same values as `json.loads` of the text, except an integer literal beyond
    64 bits (|n| >= 2**64), which orjson reads as a float (no record nasmt writes holds one)."""
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is a dependency
        return lambda b: json.loads(b.decode("utf-8", errors="replace"))

    def loads(b: bytes):
        try:
            return orjson.loads(b)
        except orjson.JSONDecodeError:
            return json.loads(b.decode("utf-8", errors="replace"))
    return loads


class no_gc:
    """Pause the cyclic garbage collector while parsing many small acyclic objects (a
    100,000-line JSONL file: the collector's passes otherwise cost more than parsing)."""

    def __enter__(self):
        import gc

        self._was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        import gc

        if self._was:
            gc.enable()


def parse_jsonl(data: bytes, path: str | Path, first_line: int = 1, torn_ok: bool = True) -> list[dict]:
    """Records of JSONL bytes (`first_line`: the file line number of the first line, for
    messages). An unparseable last line is skipped with a warning when `torn_ok`, any
    other corrupt line raises RunDirError naming `file:line`."""
    lines = data.split(b"\n")
    loads = _json_loader()
    out = []
    with no_gc():
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                rec = loads(line)
            except json.JSONDecodeError:
                if torn_ok and i >= len(lines) - 2:  # the last line (possibly followed by "")
                    warnings.warn(f"{path}:{first_line + i}: torn last record skipped (the writer was killed mid-append)")
                    continue
                raise RunDirError(f"{path}:{first_line + i}: corrupt record (not JSON)") from None
            if not isinstance(rec, dict):
                raise RunDirError(f"{path}:{first_line + i}: corrupt record (not a JSON object)")
            out.append(rec)
    return out


def read_jsonl(path: str | Path) -> list[dict]:
    """Records of a JSONL file; a torn (unparseable) last line is skipped with a warning,
    a corrupt line before it raises RunDirError naming `file:line`."""
    path = Path(path)
    if not path.exists():
        return []
    return parse_jsonl(path.read_bytes(), path)


def repair_jsonl_tail(path: str | Path) -> bool:
    """Cut a torn last line (no trailing newline) off an append-only JSONL file, so the
    next append does not glue onto it. Returns True if something was cut."""
    path = Path(path)
    if not path.exists():
        return False
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return False
    keep = data[: data.rfind(b"\n") + 1]
    atomic_write_text(path, keep.decode("utf-8", errors="replace"))
    return True


# ----------------------------------------------------------------------------- run dirs


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / RUN_FILE).is_file()


def load_run(path: str | Path) -> dict:
    """run.json of a run directory (RunDirError with one line when it is not one)."""
    path = Path(path)
    if not path.exists():
        raise RunDirError(f"{path}: run directory not found")
    if not path.is_dir():
        raise RunDirError(f"{path}: not a directory")
    if not is_run_dir(path):
        raise RunDirError(f"{path}: not a nasmt run directory (no {RUN_FILE}; create one with `nasmt search --out {path}`)")
    try:
        run = json.loads((path / RUN_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunDirError(f"{path / RUN_FILE}: unreadable run configuration ({e})") from None
    if not isinstance(run, dict):
        raise RunDirError(f"{path / RUN_FILE}: unreadable run configuration (not a JSON object)")
    return run
