"""The one test for "a finite real number" that records, objectives and schedulers use.

A JSON metric may be missing, a string, a bool (a Python int), NaN or +-inf; only a
finite int or float counts as a value."""

from __future__ import annotations

import math


def is_finite_number(v) -> bool:
    """Whether `v` is a finite int or float (bools are not numbers here)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def finite_or_none(v) -> float | None:
    """`float(v)` when `v` is a finite number, else None."""
    return float(v) if is_finite_number(v) else None
