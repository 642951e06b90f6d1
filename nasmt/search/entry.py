"""`run_search`: the one entry of `nasmt search`. It checks the run directory (or prepares
a resume from run.json), then runs the search the run asks for: trials trained on their
own (`driver.run_trials`) or a one-shot search (`oneshot.driver.run_oneshot`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from nasmt.search.config import SearchConfig
from nasmt.search.driver import check_out_dir, run_trials


def run_search(cfg: SearchConfig, resume: bool = False) -> Path:
    """Run (or continue) a search; returns the run directory."""
    out = Path(cfg.out).resolve()
    if resume:
        from nasmt.search.resume import prepare_resume

        cfg, done, failed = prepare_resume(out, quiet=cfg.quiet, address=cfg.address)
    else:
        check_out_dir(out)
        done, failed = 0, 0
    cfg = replace(cfg, out=str(out), sampler_used=cfg.sampler_name)  # auto resolved once, into run.json
    if cfg.oneshot:  # one supernet, inherited-weight candidates
        from nasmt.search.oneshot.driver import run_oneshot

        return run_oneshot(cfg, resume, done, failed)
    return run_trials(cfg, resume, done, failed)
