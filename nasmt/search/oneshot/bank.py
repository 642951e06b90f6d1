"""The supernet's files in a run directory, and the one way to an inherited candidate.

`RUN/supernet/bank.safetensors` holds the bank's tensors after the last finished epoch and
`RUN/supernet/state.json` how the bank was sized (so the same `SuperNet` is rebuilt from
`run.json` alone: the grammar text and the suite are there), how many epochs are done and
the training settings. Both are written through a temporary file and rename (the bank
first), so a killed run finds the last finished epoch's pair.

An inherited candidate is `bank.recalibrate(spec, ...)` (BatchNorm statistics re-estimated
on training batches with a recorded seed) then `bank.extract(spec)`: an ordinary
MultiTaskNet. Its record carries `train["inherited"]` (the supernet epochs and the
recalibration settings), so export, finish and check rebuild exactly the evaluated network.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from nasmt.run import atomic_write_bytes, atomic_write_json, ensure_dir, load_run

SUPERNET_DIR = "supernet"
BANK_FILE = "bank.safetensors"
STATE_FILE = "state.json"
INHERITED = "inherited"  # TrialRecord.train key of an inherited-weight candidate


@dataclass(frozen=True)
class BankSettings:
    """How the bank is sized and keyed (see nasmt.model.supernet.SuperNet; `split`: tensors
    keyed by the features they read too, `plan_sources`). A state.json without `split` is a
    bank keyed by position only (runs from before it existed)."""

    n_samples: int = 300
    seed: int = 0
    split: bool = False


@dataclass(frozen=True)
class Recalibration:
    """How an inherited candidate's BatchNorm statistics are re-estimated."""

    batches: int = 8
    batch_size: int = 128
    seed: int = 0


def supernet_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / SUPERNET_DIR


def new_bank(grammar, suite, data, settings: BankSettings):
    from nasmt.model.supernet import SuperNet

    return SuperNet.for_suite(grammar, suite, data, n_samples=settings.n_samples, seed=settings.seed,
                              split=settings.split)


def bank_bytes(bank) -> bytes:
    """The bank's tensors as safetensors bytes (CPU, contiguous)."""
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous() for k, v in bank.state_dict().items()})


def load_bank_bytes(bank, blob: bytes) -> None:
    """Load safetensors bytes into `bank` (every key must match)."""
    from safetensors.torch import load

    bank.load_state_dict(load(blob), strict=True)


def read_state(run_dir: str | Path) -> dict | None:
    """state.json of the run's supernet, or None before the first finished epoch."""
    p = supernet_dir(run_dir) / STATE_FILE
    if not p.exists() or not (supernet_dir(run_dir) / BANK_FILE).exists():
        return None
    return json.loads(p.read_text(encoding="utf-8"))


def write_checkpoint(run_dir: str | Path, blob: bytes, state: dict) -> None:
    """The bank after an epoch, then its state (bank first: a state never names a bank
    that is not there)."""
    d = ensure_dir(supernet_dir(run_dir))
    atomic_write_bytes(d / BANK_FILE, blob)
    atomic_write_json(d / STATE_FILE, state)


def settings_of(state: dict) -> BankSettings:
    return BankSettings(**state["bank"])


def state_record(settings: BankSettings, epochs_done: int, train: dict) -> dict:
    return {"bank": asdict(settings), "epochs_done": int(epochs_done), "train": train}


def load_bank(run_dir: str | Path, data=None):
    """(SuperNet with the run's last checkpoint loaded, suite, data) from the run directory
    alone. `data` may be passed when the caller has it loaded already."""
    from nasmt.data import load_data_cached
    from nasmt.data.suite import suite_from_json
    from nasmt.errors import RunDirError
    from nasmt.space.grammar import parse_grammar

    run = load_run(run_dir)
    state = read_state(run_dir)
    if state is None:
        raise RunDirError(f"{run_dir}: no trained supernet ({SUPERNET_DIR}/{BANK_FILE}); not a one-shot run, "
                          f"or its supernet training has not finished an epoch")
    grammar = parse_grammar(run["grammar"]["text"], run["grammar"]["file"], run["grammar"].get("name"))
    suite = suite_from_json(run["suite"], file=run.get("suite_file", "<run>"))
    data = data if data is not None else load_data_cached(suite)  # the split every trial uses (seed 0)
    bank = new_bank(grammar, suite, data, settings_of(state))
    load_bank_bytes(bank, (supernet_dir(run_dir) / BANK_FILE).read_bytes())
    return bank.eval(), suite, data


def inherited_model(bank, spec, data, recal: Recalibration):
    """The standalone network of candidate `spec`: bank slices copied out, BatchNorm
    statistics recalibrated on training batches (deterministic for a given `recal`)."""
    bank.recalibrate(spec, data, recal.batches, recal.batch_size, recal.seed)
    return bank.extract(spec).eval()


def inherited_info(rec) -> dict | None:
    """The record's inheritance settings, or None for a network trained on its own."""
    return (rec.train or {}).get(INHERITED)


def is_inherited(rec) -> bool:
    return inherited_info(rec) is not None


def recalibration_of(rec) -> Recalibration:
    info = inherited_info(rec) or {}
    return Recalibration(**{k: info[k] for k in ("batches", "batch_size", "seed") if k in info})
