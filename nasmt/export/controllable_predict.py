"""`nasmt predict DIR --budget ... --preference ... [--tasks ...]` on a controllable export:
the candidate chosen as `net.select` chooses it in model.py (the same runtime code),
then its predictions for raw rows written as CSV, as `nasmt predict` writes them."""

from __future__ import annotations

import warnings
from pathlib import Path

from nasmt.data.encoding import InputError, UnseenCategoryWarning
from nasmt.errors import UserError
from nasmt.export.predict import write_predictions
from nasmt.run.controllable import SelectionError

FLAGS = {"budget": "--budget", "preference": "--preference", "tasks": "--tasks", "candidate": "--budget"}


def parse_pairs(text: str | None, flag: str) -> dict | None:
    """`a=1,b=2.5` -> {"a": 1.0, "b": 2.5}; None when not given."""
    if text is None:
        return None
    out = {}
    for part in text.split(","):
        k, eq, v = part.strip().partition("=")
        if not eq or not k.strip():
            raise UserError(f"{flag}: expected NAME=NUMBER[,NAME=NUMBER...] (got {part.strip()!r})")
        try:
            out[k.strip()] = float(v)
        except ValueError:
            raise UserError(f"{flag}: {k.strip()!r} needs a number (got {v.strip()!r})") from None
    return out


def select_for_cli(net, budget: dict | None, preference: dict | None, tasks: list | None) -> dict:
    try:
        return net.select(budget=budget, preference=preference, tasks=tasks)
    except SelectionError as e:
        raise UserError(f"{FLAGS.get(e.field, '--' + e.field)}: {str(e).split(': ', 1)[1]}") from None


def predict_controllable(folder: Path, rows: Path, out: Path, budget: dict | None, preference: dict | None,
                         tasks: list | None) -> tuple[dict, list[str]]:
    """(what was chosen, warnings); writes the chosen candidate's predictions to `out`."""
    from nasmt.export.controllable import load_controllable

    try:
        net = load_controllable(folder)
    except (OSError, KeyError, ValueError) as e:
        raise UserError(f"{folder}: unreadable controllable export ({type(e).__name__}: {e}); export it again") from None
    chosen = select_for_cli(net, budget, preference, tasks)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnseenCategoryWarning)
        try:
            preds = net.predict(rows)
        except InputError as e:
            raise UserError(str(e)) from None
    unseen = [str(w.message) for w in caught if issubclass(w.category, UnseenCategoryWarning)]
    write_predictions(out, preds)
    return chosen, unseen


def describe(chosen: dict) -> str:
    costs = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v:,}" for k, v in chosen["costs"].items()
                      if v is not None)
    return f"candidate {chosen['id']} (trial {chosen['trial']}; tasks {', '.join(chosen['tasks'])}; {costs})"
