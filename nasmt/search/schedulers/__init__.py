"""The search's early-stopping schedulers (Ray Tune's home for them is
`tune/schedulers/`): `make_scheduler` turns `--scheduler` into a Tune scheduler;
`mo_asha` is nasmt's multi-objective ASHA."""

from __future__ import annotations

import math

from nasmt.search.config import SearchConfig


def make_scheduler(cfg: SearchConfig, objectives):
    """The Tune scheduler for `--scheduler` (None for fifo, or when there are no epochs to
    stop between): asha is Ray's ASHA on validation mean_error; mo-asha ranks over all the
    objectives (`mo_asha`)."""
    kind = cfg.early_scheduler
    if kind is None or cfg.steps is not None or cfg.epochs < 2:
        return None
    if kind == "mo-asha":
        from nasmt.search.schedulers.mo_asha import MOASHAScheduler

        return MOASHAScheduler(objectives, max_epochs=int(math.ceil(cfg.epochs)), min_epochs=cfg.min_epochs,
                               reduction_factor=cfg.reduction_factor)
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(metric="mean_error", mode="min", time_attr="training_iteration",
                         max_t=int(math.ceil(cfg.epochs)), grace_period=cfg.min_epochs,
                         reduction_factor=cfg.reduction_factor)
