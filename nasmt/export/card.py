"""MODEL_CARD.md of an export: tasks and their metrics, stages, artifacts, and the
command that reproduces it. User text (suite, task and space names) is escaped."""

from __future__ import annotations

from html import escape
from pathlib import Path

from nasmt.space.spec import ArchSpec

CARD_FILE = "MODEL_CARD.md"


def _md(s) -> str:
    """User text in markdown: HTML escaped, pipes escaped (table cells)."""
    return escape(str(s)).replace("|", "\\|")


def _task_rows(arch: dict, suite, spec: ArchSpec) -> str:
    rows = []
    for t in suite.tasks:
        key, branch = f"{t.ident}.{t.metric}", spec.branch(t.ident)
        rows.append(
            f"| {_md(t.name)} | {t.kind} | {t.metric} | {arch['val_metrics'][key]:.4f} | "
            f"{arch['test_metrics'][key]:.4f} | {arch['cost']['tasks'][t.ident]['path_params']:,} | "
            f"{branch.tap} | {branch.precision} |"
        )
    return "\n".join(rows)


def _inputs(spec: ArchSpec) -> str:
    if len(spec.input_shape) == 3:
        return (f"images {tuple(spec.input_shape)} in [0, 1]; `model.predict(images)` takes raw uint8 images "
                "and `nasmt predict EXPORT --input images.npy --out preds.csv` a .npy file of them")
    return ("vectors of the encoded features listed in arch.json (standardized numerics, one-hot categoricals); "
            "`model.predict(rows)` takes raw records (CSV path, DataFrame, list of dicts) and encodes them with "
            "`preprocessing.json`, as `nasmt predict EXPORT --input new.csv --out preds.csv` does")


def model_card(arch: dict, suite, spec: ArchSpec, command: str, artifacts: dict[str, str]) -> str:
    """The card's markdown; `arch` is the export's arch.json content."""
    objs = ", ".join(f"{o['name']} ({o['direction']})" for o in arch["objectives"])
    stages = "\n".join(
        f"| {i} | {' '.join(str(o) for o in s.ops) or 'identity'} | {s.precision} |" for i, s in enumerate(spec.stages, 1)
    )
    arts = "\n".join(f"- `{k}`: {v}" for k, v in artifacts.items())
    q = arch["quantized"]
    qline = f"\nQuantized artifact: `{q['file']}` ({q['bytes']:,} bytes).\n" if q else ""
    return f"""# Model card: trial {arch['trial']} ({spec.hash})

Suite **{_md(suite.name)}**, search space **{_md(spec.space)}**; chosen from run `{_md(Path(arch['run']).name)}`
searched for {_md(objs)}.

| task | kind | metric | validation | test | path params | taps stage | precision (w/a) |
|---|---|---|---|---|---|---|---|
{_task_rows(arch, suite, spec)}

Whole model: {arch['cost']['params']:,} parameters, {arch['cost']['flops']:,} FLOPs per example.

| stage | ops | precision (w/a) |
|---|---|---|
{stages}
{qline}
Artifacts:
{arts}
- `tasks/<task>/`: the trunk prefix and branch one task needs (model.py + weights + preprocessing.json)
- `arch.json`: the ArchSpec, task names/classes, metrics

Reproduce: `{command}`

Inputs: {_inputs(spec)}.
"""
