"""Does inheritance rank one-shot candidates as training them does? Kendall tau of supernet
variants, and the noise ceiling of the from-scratch side (issue 16's tau >= 0.6 goal).

    python benchmarks/bench_oneshot_tau.py [--cells people,fair,multimnist] [--n 30]
                                           [--variants base,e24,e24-d1,...] [--scratch own,own2,held,held2]
    python benchmarks/bench_oneshot_tau.py --table   # the table of reports/bench_oneshot_tau.json
    python benchmarks/bench_oneshot_tau.py --pipeline RUN [RUN ...]   # record whole one-shot runs' checks

Per cell (suite + grammar, as bench_oneshot.py), on bench_oneshot's seed-0 one-shot run
(runs/bench-oneshot/<cell>/oneshot-s0; made with bench_oneshot's settings when missing):

* the candidates: the n that `nasmt oneshot-check RUN --n N` draws (seed 0) among its
  inherited-weight records;
* from-scratch sides, each a real training of every candidate at the run's per-trial budget
  (`--epochs` of the run, batch size, lr), validation mean_error as deployed (quantization
  policy simulated), the very function `oneshot-check` uses (`finalize.train_spec`):
  `own`: the check's side (the trial's seed, the grammar's train rule: lr / wd / balancing);
  `own2`: the same with another seed; `held`: the train rule held at what the supernet
  trains with (the run's lr, weight decay 1e-4, equal balancing), the trial's seed;
  `held2`: held with another seed. own vs own2 (held vs held2) is the NOISE CEILING: the
  tau two from-scratch trainings of the same candidates reach at that budget. A side
  `<side>@E` trains E epochs instead of the run's budget (the ceiling at a longer budget);
* inherited sides: `run` (the records' own inherited mean_error, i.e. the search's) and one
  per supernet variant, each a supernet trained here with the real per-worker training
  function (`oneshot.train.run_epochs`, one worker, simulated quantization on, the run's
  batch size / lr / seed / --supernet-random) and the candidates scored as the search scores
  them (`bank.inherited_model`: slices + BatchNorm recalibration, then
  `trial.deployed_metrics`). Variant names: `base` (the run's settings: a reproduction),
  `e<E>` (E supernet epochs), `-d<a>` (in-place distillation weight a, `d05` = 0.5),
  `-r<B>` (B recalibration batches instead of 8), `-n<k>` (k random candidates per step),
  `-q0` (the supernet trained without simulated quantization: fp32 weights, as a
  from-scratch trial trains before its policy is simulated), `-s1` (a split bank: group and
  branch ops keyed by the features they read, `nasmt.model.supernet.plan_sources`).

`--pipeline RUN ...` records, under "pipeline", one-shot runs made with the CLI (`nasmt search
--oneshot ...` then `nasmt oneshot-check RUN --n 30 --repeats 2`): their settings, candidates
that did not fit the bank, the check's tau / rho and noise ceiling (the whole pipeline, e.g.
with --supernet-split, rather than a variant scored on another run's candidates).

Results are cached under runs/bench-oneshot-tau/<cell>/ (scratch values per side, a bank per
variant) and rewritten to reports/bench_oneshot_tau.json after every piece. Single process,
one thread (the machine is shared); no Ray.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

torch.set_num_threads(1)

SEED_B = 7919  # offset of the second from-scratch seed
HELD_WD = 1e-4  # weight decay the supernet trains with (driver.run_oneshot; TrainConfig's default)
SIDES = ("own", "own2", "held", "held2")


def _tau(x, y):
    from nasmt.search.oneshot.check import kendall_tau

    return kendall_tau(x, y)


def _rho(x, y):
    from nasmt.search.oneshot.check import spearman_rho

    return spearman_rho(x, y)


def parse_variant(name: str, run_cfg: dict) -> dict:
    """`base` or e<E>[-d<a>][-r<B>][-n<k>] -> settings."""
    v = {"epochs": int(run_cfg["supernet_epochs"]), "distill": 0.0, "recal": 8,
         "n_random": int(run_cfg.get("supernet_random", 2)), "quantize": True, "split": False}
    if name == "base":
        return v
    for part in name.split("-"):
        m = re.fullmatch(r"([ednrqs])(\d+)", part)
        if not m:
            raise SystemExit(f"variant {name!r}: cannot read {part!r}")
        k, val = m.group(1), m.group(2)
        if k == "e":
            v["epochs"] = int(val)
        elif k == "d":
            v["distill"] = float("0." + val[1:]) if val.startswith("0") and len(val) > 1 else float(val)
        elif k == "r":
            v["recal"] = int(val)
        elif k == "q":
            v["quantize"] = bool(int(val))
        elif k == "s":
            v["split"] = bool(int(val))
        else:
            v["n_random"] = int(val)
    return v


class Cell:
    def __init__(self, name: str, n: int, work: Path):
        import bench_oneshot as BO

        from nasmt.data import load_data_cached
        from nasmt.data.suite import suite_from_json
        from nasmt.run import load_run
        from nasmt.search.oneshot.check import candidates
        from nasmt.space.grammar import parse_grammar

        self.name = name
        self.run = ROOT / "runs" / "bench-oneshot" / name / "oneshot-s0"
        if not BO.finished(self.run):
            suite, space = BO.CELLS[name]
            BO.search(self.run, suite, space, 0, BO.BUDGETS[name], True)
        run = load_run(self.run)
        self.cfg = run["config"]
        self.grammar = parse_grammar(run["grammar"]["text"], run["grammar"]["file"], run["grammar"].get("name"))
        self.suite = suite_from_json(run["suite"], file=run.get("suite_file", "<run>"))
        self.data = load_data_cached(self.suite)
        pool = candidates(self.run)
        self.picked = sorted(random.Random(0).sample(pool, n), key=lambda r: r.number)  # oneshot-check's draw
        self.work = work / name
        self.work.mkdir(parents=True, exist_ok=True)

    # -- from scratch ------------------------------------------------------------------------

    def scratch(self, side: str, say) -> dict:
        """{trial number: validation mean_error} of the side (cached per candidate)."""
        from nasmt.search.context import SEED_STRIDE
        from nasmt.search.finalize import train_spec
        from nasmt.space.spec import ArchSpec

        f = self.work / f"scratch-{side}.json"
        got = {int(k): v for k, v in json.loads(f.read_text()).items()} if f.exists() else {}
        epochs = float(self.cfg.get("epochs", 1.0))
        steps = None if self.cfg.get("steps") is None else int(self.cfg["steps"])
        if "@" in side:
            epochs, steps = float(side.split("@")[1]), None
        kind = side.split("@")[0]
        for rec in self.picked:
            if rec.number in got:
                continue
            spec = ArchSpec.from_json(rec.spec)
            seed = int(self.cfg.get("seed", 0)) * SEED_STRIDE + rec.number + (SEED_B if kind.endswith("2") else 0)
            if kind.startswith("held"):  # the train rule held at the supernet's settings
                spec = held_spec(spec)
            t0 = time.time()
            _, val, _, _ = train_spec(spec, self.cfg, self.suite, self.data, seed, epochs, steps)
            got[rec.number] = float(val["mean_error"])
            f.write_text(json.dumps(got))
            say(f"  {self.name} scratch {side} trial {rec.number}: {got[rec.number]:.4f} ({time.time() - t0:.1f} s)")
        return got

    # -- inherited ---------------------------------------------------------------------------

    def train_bank(self, variant: str, v: dict, say) -> tuple[bytes, dict]:
        from nasmt.search.oneshot.bank import read_state
        from nasmt.search.oneshot.train import run_epochs

        d = self.work / (re.sub(r"-r\d+", "", variant).replace("base-", "") or "base")  # recalibration: same bank
        bf, sf = d / "bank.safetensors", d / "state.json"
        if bf.exists() and sf.exists():
            return bf.read_bytes(), json.loads(sf.read_text())
        d.mkdir(parents=True, exist_ok=True)
        st = read_state(self.run)
        s = {"batch_size": int(self.cfg["batch_size"]), "lr": float(self.cfg["lr"]), "weight_decay": HELD_WD,
             "seed": int(self.cfg["seed"]), "n_random": v["n_random"], "quantize": v["quantize"],
             "distill": v["distill"]}
        cfg = {"settings": s, "bank": {**st["bank"], "split": v["split"]}, "grammar": (self.grammar.text, self.grammar.file, self.grammar.name),
               "suite": self.suite, "epochs": v["epochs"], "start": 0, "history": [], "gpu": False, "threads": 1}
        last = {}

        def write(blob, state, extra):
            last["blob"], last["state"] = blob, state
            h = state["train"]["history"][-1]
            say(f"  {self.name} {variant}: epoch {h['epoch']}/{v['epochs']} loss {h['loss']:.3f} "
                f"({h['train_time_s']:.1f} s)")

        run_epochs(cfg, 0, 1, torch.device("cpu"), None, None, write)
        bf.write_bytes(last["blob"])
        sf.write_text(json.dumps(last["state"]))
        return last["blob"], last["state"]

    def inherited(self, variant: str, say) -> tuple[dict, dict]:
        """({trial number: inherited validation mean_error}, info) of a supernet variant."""
        from nasmt.search.oneshot.bank import Recalibration, inherited_model, load_bank_bytes, new_bank, settings_of
        from nasmt.search.trial import deployed_metrics
        from nasmt.space.spec import ArchSpec

        f = self.work / f"inherited-{variant}.json"
        if f.exists():
            d = json.loads(f.read_text())
            return {int(k): x for k, x in d["values"].items()}, d["info"]
        v = parse_variant(variant, self.cfg)
        t0 = time.time()
        blob, state = self.train_bank(variant, v, say)
        train_s = sum(h["train_time_s"] for h in state["train"]["history"])
        bank = new_bank(self.grammar, self.suite, self.data, settings_of(state))
        load_bank_bytes(bank, blob)
        bank.eval()
        ctx = self._ctx()
        recal = Recalibration(batches=v["recal"], batch_size=128, seed=int(self.cfg["seed"]))
        out = {}
        t1 = time.time()
        misfits = []
        for rec in self.picked:
            spec = ArchSpec.from_json(rec.spec)
            if not bank.fits(spec):  # a split bank may lack a tensor the run's bank had (left out of its tau)
                misfits.append(rec.number)
                continue
            model = inherited_model(bank, spec, self.data, recal)
            out[rec.number] = float(deployed_metrics(model, spec, ctx, self.data)["mean_error"])
        info = {**v, "misfits": misfits, "supernet_train_s": train_s, "score_s": time.time() - t1, "wall_s": time.time() - t0,
                "final_loss": state["train"]["history"][-1]["loss"]}
        f.write_text(json.dumps({"values": out, "info": info}))
        return out, info

    def _ctx(self):
        from nasmt.run.objectives import parse_objectives
        from nasmt.search.config import SearchConfig
        from nasmt.search.context import TrialContext

        sc = SearchConfig(space=self.grammar.file, tasks="<run>", out=str(self.run))
        return TrialContext.from_config(sc, self.grammar, self.suite, parse_objectives("mean_error,params", self.suite))


def held_spec(spec):
    """`spec` without its train rule: train_spec then uses the run's lr, TrainConfig's weight
    decay (1e-4, as the supernet) and equal balancing, what the supernet trains with."""
    from dataclasses import replace

    return replace(spec, train=None)


def corr(a: dict, b: dict) -> dict:
    keys = sorted(set(a) & set(b))
    x, y = [a[k] for k in keys], [b[k] for k in keys]
    return {"n": len(keys), "kendall_tau": _tau(x, y), "spearman_rho": _rho(x, y)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", default="people,fair,multimnist")
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--variants", default="base")
    ap.add_argument("--scratch", default="own,own2,held,held2")
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench-oneshot-tau"))
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench_oneshot_tau.json"))
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--pipeline", nargs="+", default=None, metavar="RUN")
    a = ap.parse_args()
    outp = Path(a.out)
    if a.table:
        print(table(json.loads(outp.read_text())))
        return
    res = json.loads(outp.read_text()) if outp.exists() else {"benchmark": "bench_oneshot_tau", "cells": {}}
    if a.pipeline:
        for run in map(Path, a.pipeline):
            res.setdefault("pipeline", {})[run.name] = pipeline_record(run)
        tmp = outp.with_suffix(".tmp")
        tmp.write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
        tmp.replace(outp)
        print(json.dumps(res["pipeline"], indent=1))
        return

    def say(m):
        print(m, flush=True)

    def save():
        tmp = outp.with_suffix(".tmp")
        tmp.write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
        tmp.replace(outp)

    for name in a.cells.split(","):
        cell = Cell(name, a.n, Path(a.work))
        c = res["cells"].setdefault(name, {})
        c.update({"run": str(cell.run.relative_to(ROOT)), "n": a.n, "per_trial_epochs": cell.cfg.get("epochs"),
                  "per_trial_steps": cell.cfg.get("steps"), "candidates": [r.number for r in cell.picked]})
        sides = {"run": {r.number: float(r.metrics["mean_error"]) for r in cell.picked}}
        scratch = {}
        for side in a.scratch.split(","):
            if side.startswith("held") and not any(r.spec.get("train") for r in cell.picked):
                continue  # no train rule in this grammar: held == own
            scratch[side] = cell.scratch(side, say)
        c.setdefault("scratch", {}).update(scratch)
        scratch = c["scratch"] = {k: {int(i): x for i, x in v.items()} for k, v in c["scratch"].items()}
        pairs = [(p, q) for p in scratch for q in scratch
                 if p < q and p.split("@")[1:] == q.split("@")[1:]]  # same budget
        c["noise_ceiling"] = {f"{p}_vs_{q}": corr(scratch[p], scratch[q]) for p, q in pairs}
        save()
        for variant in a.variants.split(","):
            vals, info = cell.inherited(variant, say)
            sides[variant] = vals
            c.setdefault("variants", {})[variant] = {"info": info, "values": vals}
            save()
        c["inherited_run"] = {"values": sides["run"]}
        if "base" in c.get("variants", {}):  # the variant `base` reproduces the run's supernet and scores
            base = {int(k): x for k, x in c["variants"]["base"]["values"].items()}
            c["base_vs_run_max_abs_diff"] = max(abs(base[k] - sides["run"][k]) for k in base)
        c["tau"] = {inh: {sc: corr({int(k): x for k, x in (sides.get(inh) or c["variants"][inh]["values"]).items()},
                                   scratch[sc]) for sc in scratch}
                    for inh in ["run", *c.get("variants", {})]}
        save()
        print(table({"cells": {name: c}}), flush=True)


def pipeline_record(run: Path) -> dict:
    """A CLI one-shot run and its `oneshot-check` (module docstring)."""
    from nasmt.run import TrialStatus, load_run, read_trials

    cfg = load_run(run)["config"]
    chk = json.loads((run / "oneshot_check.json").read_text())
    recs = read_trials(run)
    keys = ("tasks", "space", "epochs", "seed", "trials", "supernet_epochs", "supernet_random", "supernet_distill",
            "supernet_split", "candidate_batch", "final_epochs")
    return {"run": str(run.relative_to(ROOT)) if run.is_absolute() else str(run),
            "config": {k: cfg.get(k) for k in keys},
            "complete": sum(r.status == TrialStatus.COMPLETE for r in recs),
            "did_not_fit": sum(r.error_type == "DoesNotFit" for r in recs),
            "check": {k: chk.get(k) for k in ("n", "epochs", "kendall_tau", "spearman_rho", "noise_ceiling", "seconds")}}


def table(res: dict) -> str:
    out = []
    for name, c in res["cells"].items():
        scs = list(c.get("scratch", {}))
        out.append(f"{name} (n={c['n']}, per-trial {c['per_trial_epochs']} epochs): noise ceiling "
                   + ", ".join(f"{k} {_f(v['kendall_tau'])}" for k, v in c.get("noise_ceiling", {}).items()))
        out.append("| inherited | " + " | ".join(f"tau vs {s}" for s in scs) + " | supernet s |")
        out.append("|---" * (len(scs) + 2) + "|")
        for inh, row in c.get("tau", {}).items():
            info = (c.get("variants", {}).get(inh) or {}).get("info", {})
            out.append(f"| {inh} | " + " | ".join(_f(row[s]["kendall_tau"]) + (f" (n={row[s]['n']})" if row[s]["n"] != c["n"] else "")
                                               for s in scs)
                       + f" | {_f(info.get('supernet_train_s'), '.0f')} |")
        out.append("")
    for name, p in res.get("pipeline", {}).items():
        c, k = p["config"], p["check"]
        out.append(f"pipeline {name}: {Path(c['space']).name}, {c['supernet_epochs']} supernet epochs, split "
                   f"{c['supernet_split']}, distill {c['supernet_distill']}: {p['complete']} candidates "
                   f"({p['did_not_fit']} did not fit); tau {_f(k['kendall_tau'])} (n={k['n']}), noise ceiling "
                   f"{_f((k['noise_ceiling'] or {}).get('kendall_tau'))}")
    return "\n".join(out)


def _f(v, spec=".2f"):
    return "n/a" if v is None else format(v, spec)


if __name__ == "__main__":
    main()
