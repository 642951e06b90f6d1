"""The one cache directory: `$NASMT_CACHE`, else `~/.cache/nasmt`.

It holds what is expensive to rebuild and safe to delete: composed MultiMNIST /
Multi-Fashion arrays (`nasmt.data.images`) and per-device latency tables
(`nasmt.quant.latency`)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("NASMT_CACHE") or Path.home() / ".cache" / "nasmt")
