"""Task-suite files the benchmarks write: MultiMNIST with a chosen number of composites."""

from __future__ import annotations


def multimnist_suite(name: str, **sizes: int) -> str:
    """TOML of a two-task MultiMNIST suite; `sizes`: n_train / n_val / n_test (all if absent)."""
    lines = [f'name = "{name}"', "[data]", 'source = "multimnist"', *(f"{k} = {v}" for k, v in sizes.items())]
    for task in ("left", "right"):
        lines += ["[[tasks]]", f'name = "{task}"', 'kind = "multiclass"', f'target = "{task}"']
    return "\n".join(lines) + "\n"
