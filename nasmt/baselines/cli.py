"""`nasmt baselines --tasks SUITE --out DIR`: train the references of a suite and write
DIR/baselines.jsonl. With `--out RUN` (a run directory) and no `--tasks`, the run's own
suite and budget (run.json) are used, so the references match the search; flags given
explicitly override the run's values.

nasmt/cli.py registers the command with `add_parser(sub)`; imports stay lazy so that
`nasmt --help` does not load torch."""

from __future__ import annotations

import argparse
from pathlib import Path



def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "baselines", help="train the standard multi-task references (single-task, hard-shared, MMoE, PLE, LeNet, LightGBM)",
        description="Train the multi-task reference models of a task suite with the search's budget, split, optimizer "
        "and seed, and write DIR/baselines.jsonl; `nasmt report` draws them as labelled reference points.",
    )
    p.add_argument("--tasks", default=None, help="task suite file (default: the suite of --out when it is a run directory)")
    p.add_argument("--out", required=True, help="directory for baselines.jsonl (a run directory: its report shows them)")
    p.add_argument("--epochs", type=float, default=None, help="training budget in epochs (default: the run's, else 1)")
    p.add_argument("--steps", type=int, default=None, help="training budget in optimizer steps (overrides --epochs)")
    p.add_argument("--batch-size", type=int, default=None, help="training batch size (default: the run's, else 128)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the run's, else 0.003)")
    p.add_argument("--seed", type=int, default=None, help="seed of every reference (default: the run's, else 0)")
    p.add_argument("--device", default="cpu", help="torch device for the networks: cpu, cuda (default %(default)s)")
    p.add_argument("--gbdt-leaves", default=None, metavar="N,N,...",
                   help="LightGBM's grid of num_leaves, searched per task with --gbdt-lr (default 15,63,255)")
    p.add_argument("--gbdt-lr", default=None, metavar="R,R,...",
                   help="LightGBM's grid of learning rates (default 0.03,0.1); the point with the lowest validation "
                   "error is kept")
    p.add_argument("--quiet", action="store_true", help="print nothing but the path of baselines.jsonl")
    p.set_defaults(fn=cmd_baselines)
    return p


def _settings(a, run_config: dict) -> dict:
    """The run's settings (if any), overridden by the flags given; --epochs alone drops the run's --steps."""
    from nasmt.baselines.record import SHARED_SETTINGS
    from nasmt.train import TrainConfig

    out = {k: getattr(TrainConfig, k) for k in SHARED_SETTINGS}
    out.update({k: run_config[k] for k in SHARED_SETTINGS if k in run_config})
    given = {k: getattr(a, k) for k in SHARED_SETTINGS if getattr(a, k) is not None}
    if "epochs" in given and "steps" not in given:
        out["steps"] = None
    return out | given


def cmd_baselines(a) -> None:
    from nasmt.baselines.runner import run_baselines, suite_of_run
    from nasmt.errors import UserError
    from nasmt.run import is_run_dir, load_run

    out = Path(a.out)
    run_dir = is_run_dir(out)
    if a.tasks is None and not run_dir:
        raise UserError(f"--tasks: required (or give --out a run directory, whose suite is then used; {out} is not one)")
    suite = a.tasks if a.tasks is not None else suite_of_run(out)
    s = _settings(a, (load_run(out).get("config") or {}) if run_dir else {})
    path = run_baselines(suite, out, quiet=a.quiet, device=a.device, gbdt_grid=gbdt_grid(a), **s)
    print(path)


def _numbers(text: str | None, flag: str, kind: type, default: tuple) -> tuple:
    from nasmt.errors import UserError

    if text is None:
        return default
    try:
        return tuple(kind(v) for v in text.split(","))
    except ValueError:
        what = "integers" if kind is int else "numbers"
        raise UserError(f"{flag}: expected comma-separated {what}, e.g. {','.join(map(str, default))} (got {text!r})") from None


def gbdt_grid(a) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """(num_leaves values, learning rates) from --gbdt-leaves / --gbdt-lr, checked."""
    from nasmt.baselines.gbdt import GRID, check_grid

    return check_grid(_numbers(a.gbdt_leaves, "--gbdt-leaves", int, GRID[0]), _numbers(a.gbdt_lr, "--gbdt-lr", float, GRID[1]))
