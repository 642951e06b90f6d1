"""The one cache directory: `$NASMT_CACHE`, else `~/.cache/nasmt`.

It holds what is expensive to rebuild and safe to delete: composed MultiMNIST /
Multi-Fashion arrays (`nasmt.data.images`) and per-device latency tables
(`nasmt.quant.latency`)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("NASMT_CACHE") or Path.home() / ".cache" / "nasmt")


def write_cache_file(path: Path, write) -> None:
    """`write(binary file)` into a temporary file beside `path`, then rename it over
    `path`: a reader (another process too) sees the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
