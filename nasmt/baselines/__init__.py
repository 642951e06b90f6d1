"""Baselines: the standard multi-task references a search is compared with, trained with
the search's budget, split, optimizer and seed (`nasmt baselines`, `nasmt search --baselines`).

    nets.py     the reference networks (single-task, hard-shared bottom, MMoE, PLE, LeNet)
    gbdt.py     LightGBM, one model per task, early-stopped on validation (vector suites)
    record.py   BaselineRecord, DIR/baselines.jsonl, the multi-task gain Δm
    runner.py   run_baselines: train and score every reference of a suite
    cli.py      the `nasmt baselines` command

The report (`nasmt.report`) draws the records as labelled reference points. Importing
the package stays light (no torch): `run_baselines` loads the runner on first use, so
registering the CLI command costs nothing.
"""

from nasmt.baselines.record import (BASELINES_FILE, LIGHTGBM, SINGLE_TASK, BaselineRecord, baselines_path,
                                    delta_m, read_baselines, write_baselines)

__all__ = [
    "BASELINES_FILE", "LIGHTGBM", "SINGLE_TASK", "BaselineRecord", "baselines_path", "delta_m", "read_baselines",
    "run_baselines", "write_baselines",
]


def __getattr__(name: str):
    if name == "run_baselines":
        from nasmt.baselines.runner import run_baselines

        return run_baselines
    raise AttributeError(f"module 'nasmt.baselines' has no attribute {name!r}")
