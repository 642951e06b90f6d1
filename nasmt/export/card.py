"""MODEL_CARD.md of an export: tasks and their metrics, stages, artifacts, the run's
reference models (`nasmt baselines`) next to this one on the test split, and the
command that reproduces it. User text (suite, task and space names) is escaped."""

from __future__ import annotations

from html import escape
from pathlib import Path

from nasmt.baselines import LIGHTGBM, SINGLE_TASK, delta_m, read_baselines
from nasmt.baselines.record import SHARED_SETTINGS
from nasmt.baselines.compare import verdict, versus
from nasmt.run import RUN_FILE, read_json
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
            f"{branch.tap}{f' (group {branch.group})' if branch.group is not None else ''} | {branch.precision} |"
        )
    return "\n".join(rows)


def _inputs(spec: ArchSpec) -> str:
    if len(spec.input_shape) == 3:
        return (f"images {tuple(spec.input_shape)} in [0, 1]; `model.predict(images)` takes raw uint8 images "
                "and `nasmt predict EXPORT --input images.npy --out preds.csv` a .npy file of them")
    return ("vectors of the encoded features listed in arch.json (standardized numerics, one-hot categoricals); "
            "`model.predict(rows)` takes raw records (CSV path, DataFrame, list of dicts) and encodes them with "
            "`preprocessing.json`, as `nasmt predict EXPORT --input new.csv --out preds.csv` does")


def _cell(v, digits: int = 4) -> str:
    if v is None:
        return "–"
    return f"{v:,}" if isinstance(v, int) else f"{v:.{digits}f}"


def _budget_note(arch: dict, st: dict) -> str:
    """How the references were trained, and whether that is this model's budget."""
    budget = f"{st.get('steps')} steps" if st.get("steps") is not None else f"{st.get('epochs')} epochs"
    text = (f"The references were trained by `nasmt baselines` with {budget}, batch size {st.get('batch_size')}, "
            f"lr {st.get('lr')}, seed {st.get('seed')}")
    config = (read_json(Path(arch["run"]) / RUN_FILE) or {}).get("config") or {}
    if any(config.get(k) != st.get(k) for k in SHARED_SETTINGS):
        return text + ", not the search's settings: compare with care."
    if arch.get("retrain") or arch.get("final"):
        return text + ", the search's; this model's weights come from a retrain or a full-budget finish: compare with care."
    return text + ", the search's."


def references(arch: dict, suite) -> str:
    """The card's section on the run's reference models (RUN/baselines.jsonl): this model
    and each reference on the test split, Δm against the single-task networks, and
    whether this model beats LightGBM on each task."""
    refs = read_baselines(arch["run"])
    if not refs:
        return (f"No reference models in the run: `nasmt baselines --out {_md(arch['run'])}` trains them "
                "(single-task networks, hard-shared / MMoE / PLE or LeNet, LightGBM) for a comparison here.\n")
    keys = [f"{t.ident}.{t.metric}" for t in suite.tasks]
    single = next((r for r in refs if r.name == SINGLE_TASK), None)
    mine = arch["test_metrics"]
    rows = [(f"this model (trial {arch['trial']})", mine, arch["cost"]["params"],
             delta_m(mine, single.test_metrics, suite) if single else None)]
    rows += [(r.label, r.test_metrics, r.test_metrics.get("params"), r.delta_m_test) for r in refs]
    head = " | ".join(_md(f"{t.name} {t.metric}") for t in suite.tasks)
    lines = [f"| model | {head} | mean error | params | Δm vs single-task (%) |", "|---" * (len(keys) + 4) + "|"]
    lines += [f"| {_md(name)} | {' | '.join(_cell(m.get(k)) for k in keys)} | {_cell(m.get('mean_error'))} | "
              f"{_cell(p)} | {_cell(dm, 2)} |" for name, m, p, dm in rows]
    text = f"Test split. {_budget_note(arch, refs[0].settings)}"
    gb = next((r for r in refs if r.name == LIGHTGBM), None)
    if gb is not None:
        text += " " + verdict("On the test split, this model", *versus(mine, gb.test_metrics, suite), "LightGBM")
    return "\n".join(lines) + "\n\n" + text


def model_card(arch: dict, suite, spec: ArchSpec, command: str, artifacts: dict[str, str]) -> str:
    """The card's markdown; `arch` is the export's arch.json content."""
    objs = ", ".join(f"{o['name']} ({o['direction']})" for o in arch["objectives"])
    stages = "\n".join(
        f"| {i} | {' '.join(str(o) for o in s.ops) or 'identity'} | {s.precision} |" for i, s in enumerate(spec.stages, 1)
    )
    stages += "".join(f"\n| group {g.name} (stage {g.tap}) | {' '.join(str(o) for o in g.layers)} | {g.precision} |"
                      for g in spec.groups)
    sharing = (f"Sharing: **{spec.sharing}**; loss balancing: **{spec.balance}**"
               + (f" (AdamW lr {spec.train.lr:g}, weight decay {spec.train.wd:g})." if spec.train and spec.train.lr else ".")
               + "\n")
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
{sharing}
## Reference models

{references(arch, suite)}

| stage | ops | precision (w/a) |
|---|---|---|
{stages}
{qline}
Artifacts:
{arts}
- `tasks/<task>/`: the trunk prefix, task group and branch one task needs (model.py + weights + preprocessing.json)
- `arch.json`: the ArchSpec, task names/classes, metrics

Reproduce: `{command}`

Inputs: {_inputs(spec)}.
"""
