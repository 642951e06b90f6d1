"""A small real one-shot run built by hand the way the one-shot driver writes it:
run.json (`driver.run_record`), `supernet/` (`bank.write_checkpoint` after a few
sandwich-rule steps on real data), then candidates scored by `evaluate_candidate` (the
function the driver's Ray tasks run) and appended with `append_record`. Cheap enough for
the test suite; `nasmt search --oneshot` itself is tested in tests/search/."""

from __future__ import annotations

from pathlib import Path

import torch

from nasmt.data import load_data_cached
from nasmt.data.suite import load_suite
from nasmt.model.supernet import random_specs
from nasmt.run import RUN_FILE, append_record, atomic_write_json, ensure_dir
from nasmt.run.objectives import parse_objectives
from nasmt.search.config import SearchConfig
from nasmt.search.context import TrialContext
from nasmt.search.driver import run_record
from nasmt.search.oneshot import bank as B
from nasmt.search.oneshot.evaluate import evaluate_candidate
from nasmt.space.grammar import load_grammar
from nasmt.train.loop import TrainConfig
from nasmt.train.supernet import train_supernet

RECAL = B.Recalibration(batches=2, batch_size=64, seed=3)


def oneshot_run(out: Path, suite_file: Path, grammar_file: Path, n_genomes: int, steps: int, sizing: int = 40,
                seed: int = 7) -> Path:
    """`out`: a one-shot run directory after phases 1 and 2 (1 supernet epoch of `steps`
    steps; `n_genomes` seeded-random candidates scored)."""
    ensure_dir(out)
    suite = load_suite(suite_file)
    data = load_data_cached(suite)
    grammar = load_grammar(grammar_file)
    cfg = SearchConfig(space=str(grammar_file), tasks=str(suite_file), out=str(out), oneshot=True, supernet_epochs=1,
                       batch_size=64)
    objectives = parse_objectives(cfg.objectives, suite)
    atomic_write_json(out / RUN_FILE, run_record(cfg, grammar, suite, objectives))
    ctx = TrialContext.from_config(cfg, grammar, suite, objectives)
    settings = B.BankSettings(n_samples=sizing, seed=0)
    torch.manual_seed(0)
    bank = B.new_bank(grammar, suite, data, settings)
    train_supernet(bank, suite, data, TrainConfig(steps=steps, batch_size=64, lr=3e-3, seed=0))
    B.write_checkpoint(out, B.bank_bytes(bank), B.state_record(settings, 1, {"steps": steps}))
    specs = random_specs(grammar, suite.tasks, data.input_shape, data.n_outputs, n_genomes, seed=seed)
    for i, s in enumerate(specs):
        append_record(out, evaluate_candidate(bank, s, ctx, data, i, RECAL, 1))
    return out
