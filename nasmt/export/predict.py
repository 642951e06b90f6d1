"""`nasmt predict EXPORT --input rows.csv --out preds.csv`: an export's predictions for
raw inputs, written as CSV (one column per task's label or value, then its class
probabilities `<task>.p[<class>]`; binary tasks: the positive class's only).

nasmt does not execute the folder's `model.py`: it rebuilds the same network from
arch.json's ArchSpec with the export's weights and runs the very code `model.py` copies
(`nasmt.data.encoding.predict_rows`) with the export's preprocessing.json, so the rows
come out exactly as `model.predict` gives them.
"""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path

from safetensors.torch import load_file

from nasmt.data.encoding import PREPROCESSING_FILE, InputError, UnseenCategoryWarning, prediction_table, predict_rows
from nasmt.errors import UserError
from nasmt.export.write import ARCH_FILE, is_export
from nasmt.model import ops as O
from nasmt.model.build import build
from nasmt.run import WEIGHTS_FILE, atomic_write_text, read_json
from nasmt.space.spec import ArchSpec


def load_export(folder: Path) -> tuple[O.MultiTaskNet, dict]:
    """(the export's network in eval mode, its preprocessing.json)."""
    if not folder.is_dir() or not is_export(folder):
        raise UserError(f"{folder}: not an export folder (no {ARCH_FILE} written by `nasmt export`)")
    pre = read_json(folder / PREPROCESSING_FILE)
    if not isinstance(pre, dict):
        raise UserError(f"{folder}: no readable {PREPROCESSING_FILE} (an export by an older nasmt?): export the trial again")
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise UserError(f"{weights}: the export's weights are missing")
    net = build(ArchSpec.from_json(read_json(folder / ARCH_FILE)["spec"]))
    net.load_state_dict(load_file(str(weights)))
    return net.eval(), pre


def predict_file(export: Path, rows: Path, out: Path, force: bool = False) -> list[str]:
    """Write the predictions for the raw inputs in `rows` to the CSV `out` (refused when
    it exists, unless `force`); returns the warnings (unseen categories per column)."""
    if out.is_dir():
        raise UserError(f"--out {out}: is a directory")
    if out.exists() and not force:
        raise UserError(f"--out {out}: exists; pass --force to overwrite it")
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: folder {out.parent} does not exist")
    net, pre = load_export(export)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnseenCategoryWarning)
        try:
            preds = predict_rows(net, pre, rows)
        except InputError as e:
            raise UserError(str(e)) from None
    unseen = [str(w.message) for w in caught if issubclass(w.category, UnseenCategoryWarning)]
    for w in caught:  # anything else is passed on
        if not issubclass(w.category, UnseenCategoryWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    write_predictions(out, preds)
    return unseen


def write_predictions(out: Path, preds: dict) -> None:
    """Per-task predictions as one CSV (`prediction_table`'s columns), written atomically."""
    header, table = prediction_table(preds)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(table)
    atomic_write_text(out, buf.getvalue())
