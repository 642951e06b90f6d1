"""Warm starts: begin a search from what is already known.

* `--enqueue FILE...`: architectures evaluated first. A FILE is an exported `arch.json`,
  a trial's `spec.json`, or a genome (a JSON object of decisions). Each must be exactly
  a derivation of this search's grammar for this suite (`check_genome`), else the
  search is refused with one line naming the file and the decision.
* `--warm-start RUN...`: an earlier run's complete trials seed the new study. When the
  grammar text and the suite are the same, they enter as completed Optuna trials (their
  values recomputed for this search's objectives, their budget constraints for this
  search's budgets), marked with the user attr `nasmt_warm_start` (they are not trials
  of this run: no record, no trial folder; resume leaves them alone). Otherwise each
  genome that is a derivation of the new grammar is enqueued (evaluated again).
"""

from __future__ import annotations

import json
from pathlib import Path

from nasmt.errors import UserError
from nasmt.run import TrialStatus, load_run, read_trials
from nasmt.space.derive import check_genome

WARM_ATTR = "nasmt_warm_start"  # user attr of a trial copied from an earlier run


def genome_from_file(path: str | Path) -> tuple[dict, str | None]:
    """(genome, the architecture hash the file promises, if any)."""
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"--enqueue {path}: not a readable JSON file ({e})") from None
    if isinstance(d, dict) and isinstance(d.get("spec"), dict) and isinstance(d["spec"].get("genome"), dict):
        return d["spec"]["genome"], d["spec"].get("hash")  # an export's arch.json
    if isinstance(d, dict) and isinstance(d.get("genome"), dict):
        return d["genome"], d.get("hash")  # a trial's spec.json
    if isinstance(d, dict) and d and all(isinstance(v, (str, int, float)) for v in d.values()):
        return d, None  # a bare genome
    raise UserError(f"--enqueue {path}: expected an arch.json, a spec.json or a genome (a JSON object of decisions)")


def enqueued_genomes(paths, grammar, suite, data) -> list[dict]:
    """The genomes of `paths`, each checked against this grammar and suite."""
    out = []
    for p in paths:
        genome, promised = genome_from_file(p)
        try:
            spec = check_genome(grammar, genome, suite.tasks, data.input_shape, data.n_outputs, data.columns)
        except ValueError as e:
            raise UserError(f"--enqueue {p}: does not fit {grammar.file} for {suite.file}: {e}") from None
        if promised and spec.hash != promised:
            raise UserError(f"--enqueue {p}: builds a different architecture here (hash {spec.hash}, file says {promised})")
        out.append(spec.genome_dict)
    return out


def warm_trials(runs, grammar, suite, data, objectives, budgets: dict) -> tuple[list, list[dict]]:
    """(completed Optuna trials to add, genomes to enqueue) from earlier runs."""
    import optuna

    from nasmt.quant import COSTS_ATTR, constraint_values
    from nasmt.search.config import STUDY_NAME
    from nasmt.search.study import journal_storage

    add, enqueue = [], []
    for r in runs:
        run = load_run(r)  # RunDirError (one line) when it is not a run
        same = run.get("grammar", {}).get("text") == grammar.text and run.get("suite") == suite.to_dict()
        old = {}
        if same:
            study = optuna.load_study(study_name=STUDY_NAME, storage=journal_storage(Path(r)))
            old = {t.number: t for t in study.get_trials(deepcopy=False)}
        for rec in read_trials(r):
            if rec.status != TrialStatus.COMPLETE or rec.spec is None:
                continue
            vals = [rec.value(o.name) for o in objectives]
            if same and rec.number in old and None not in vals:
                ft = old[rec.number]
                cons = constraint_values(rec.metrics, budgets.get("max_bytes"), budgets.get("max_latency_ms"))
                add.append(optuna.trial.create_trial(
                    params=ft.params, distributions=ft.distributions, values=vals,
                    user_attrs={WARM_ATTR: f"{Path(r).resolve()}#{rec.number}",
                                COSTS_ATTR: ft.user_attrs.get(COSTS_ATTR, {})},
                    system_attrs={"constraints": cons} if cons else {},
                ))
                continue
            try:
                enqueue.append(check_genome(grammar, rec.genome, suite.tasks, data.input_shape, data.n_outputs, data.columns).genome_dict)
            except ValueError:
                continue  # not a derivation of the new grammar: nothing to reuse
    return add, enqueue
