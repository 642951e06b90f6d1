"""Phase 2 of the one-shot search (nasmt.search.oneshot.evaluate) and the export of an
inherited candidate, on real data: tasks/people.toml with mtl.grammar and MultiMNIST
(tests/data/mm_small.toml) with conv.grammar.

Each suite gets a run directory built by hand the way the one-shot driver writes it:
run.json (`driver.run_record`), `supernet/` (`bank.write_checkpoint` after a few
sandwich-rule steps), then the candidates' records appended with `append_record` after
`evaluate_batch` ran as real Ray tasks on the bank put in the object store once."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, SMALL_SUITE, nasmt
from nasmt import quant as Q
from nasmt.data import load_data_cached
from nasmt.data.suite import load_suite
from nasmt.model.build import build
from nasmt.model.cost import cost
from nasmt.model.supernet import random_specs
from nasmt.run import RUN_FILE, TrialRecord, TrialStatus, append_record, atomic_write_json, ensure_dir, read_trials, trials_frame
from nasmt.run.objectives import parse_objectives
from nasmt.search.config import SearchConfig
from nasmt.search.context import TrialContext
from nasmt.search.driver import run_record
from nasmt.search.oneshot import bank as B
from nasmt.search.oneshot.evaluate import NOT_FITTING, evaluate_batch, put_bank, remote_evaluate_batch
from nasmt.search.trial import deployed_metrics
from nasmt.space.derive import replay
from nasmt.space.grammar import load_grammar
from nasmt.space.spec import ArchSpec
from nasmt.train.loop import TrainConfig
from nasmt.train.supernet import train_supernet

torch.set_num_threads(1)
SIZING = 60  # random derivations sizing the test banks (the library default is 300)
STEPS = 12  # sandwich-rule steps: a bank that has learned something, cheaply
N_GENOMES = 20
RECAL = B.Recalibration(batches=4, batch_size=64, seed=3)
SUITES = {"people": (ROOT / "tasks" / "people.toml", ROOT / "search_spaces" / "mtl.grammar"),
          "mm": (SMALL_SUITE, ROOT / "search_spaces" / "conv.grammar"),
          "tabular": (ROOT / "tasks" / "people.toml", ROOT / "search_spaces" / "tabular.grammar")}


def _int8(genome: dict) -> dict:
    """The genome with every stage and branch at int8 weights and activations."""
    return {k: ("int8" if k.startswith("quant.") else v) for k, v in genome.items()}


class OneShotRun:
    """A run directory as the one-shot driver leaves it after phase 1, plus its genomes."""

    def __init__(self, root: Path, name: str):
        suite_file, grammar_file = SUITES[name]
        self.dir = root / name
        self.suite = load_suite(suite_file)
        self.data = load_data_cached(self.suite)
        self.grammar = load_grammar(grammar_file)
        cfg = SearchConfig(space=str(grammar_file), tasks=str(suite_file), out=str(self.dir), oneshot=True,
                           supernet_epochs=1, batch_size=64, qat_steps=20)  # QAT asked: inherited ones skip it
        objectives = parse_objectives(cfg.objectives, self.suite)
        ensure_dir(self.dir)
        atomic_write_json(self.dir / RUN_FILE, run_record(cfg, self.grammar, self.suite, objectives))
        self.ctx = TrialContext.from_config(cfg, self.grammar, self.suite, objectives)
        self.settings = B.BankSettings(n_samples=SIZING, seed=0)
        torch.manual_seed(0)
        bank = B.new_bank(self.grammar, self.suite, self.data, self.settings)
        train_supernet(bank, self.suite, self.data, TrainConfig(steps=STEPS, batch_size=64, lr=3e-3, seed=0))
        B.write_checkpoint(self.dir, B.bank_bytes(bank), B.state_record(self.settings, 1, {"steps": STEPS}))
        n = N_GENOMES // 2 if name == "tabular" else N_GENOMES  # (tabular: a larger bank, slower candidates)
        specs = random_specs(self.grammar, self.suite.tasks, self.data.input_shape, self.data.n_outputs, n,
                             seed=7, columns=self.data.columns)
        self.genomes = [s.genome_dict for s in specs]
        # that genome, every policy set to int8 (tabular: one whose stem embeds the numeric columns)
        self.int8 = next(i for i, s in enumerate(specs) if bank.fits(s) and (
            name != "tabular" or any(o.op in ("periodic", "plenc") for o in s.stages[0].ops)))
        self.genomes[self.int8] = _int8(self.genomes[self.int8])
        self.genomes.append({"trunk.layer.n": "not a decision value"})  # does not replay: a FAILED record


@pytest.fixture(scope="module")
def ray_local(ray_connected):
    """This process drives the session's shared Ray cluster (conftest.ray_connected)."""
    return ray_connected


_RUNS: dict = {}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, ray_local):
    """name -> OneShotRun whose candidates were evaluated by Ray tasks and recorded."""
    import ray

    root = tmp_path_factory.mktemp("oneshot")

    def get(name):
        if name not in _RUNS:
            r = OneShotRun(root, name)
            handle = put_bank((B.supernet_dir(r.dir) / B.BANK_FILE).read_bytes())  # once, as the driver does
            state = B.read_state(r.dir)
            task = remote_evaluate_batch(num_cpus=1)
            items = list(enumerate(r.genomes))
            half = len(items) // 2  # two batches (one per worker, or the second finds the bank loaded in its worker)
            out = ray.get([task.remote(handle, state, r.ctx, items[:half], RECAL, 1),
                           task.remote(handle, state, r.ctx, items[half:], RECAL, 1)])
            for batch in out:
                for d in batch:
                    append_record(r.dir, TrialRecord.from_json(d))
            _RUNS[name] = r
        return _RUNS[name]

    yield get
    _RUNS.clear()


@pytest.mark.parametrize("name", ["people", "mm", "tabular"])
def test_ray_batches_record_what_a_direct_evaluation_measures(runs, name):
    """Every candidate is a record: COMPLETE with the deployed metrics of its extracted
    network (recalibrated with the recorded settings, no QAT though the run asks for it)
    and the exact costs of build(spec); FAILED with one line when it does not fit the bank
    or its genome does not replay. Read back with read_trials and trials_frame."""
    r = runs(name)
    recs = read_trials(r.dir)
    assert [x.number for x in recs] == list(range(len(r.genomes)))
    bank, suite, data = B.load_bank(r.dir)  # rebuilt from the run directory alone, independently of the workers
    n_fit = n_not = 0
    for rec, genome in zip(recs, r.genomes):
        if rec.number == len(r.genomes) - 1:  # the broken genome
            assert rec.status == TrialStatus.FAILED and rec.spec is None
            assert rec.error.startswith("genome does not replay: ") and "\n" not in rec.error
            continue
        spec = replay(r.grammar, genome, suite.tasks, data.input_shape, data.n_outputs, data.columns)
        assert rec.spec == spec.to_json()
        if not bank.fits(spec):
            n_not += 1
            assert rec.status == TrialStatus.FAILED and rec.error == NOT_FITTING, rec.error
            continue
        n_fit += 1
        assert rec.status == TrialStatus.COMPLETE, rec.error
        assert B.is_inherited(rec) and B.recalibration_of(rec) == RECAL
        assert rec.train[B.INHERITED] == {"supernet_epochs": 1, "batches": RECAL.batches,
                                          "batch_size": RECAL.batch_size, "seed": RECAL.seed}
        assert rec.train["balance"] == spec.balance
        assert {"eval_s", "recalibrate_s", "total_s"} <= set(rec.timings) and rec.finished_at
        model = B.inherited_model(bank, spec, data, RECAL)
        want = deployed_metrics(model, spec, r.ctx, data)
        assert {k: rec.metrics[k] for k in want} == want, spec.describe()
        assert "qat_steps" not in rec.metrics  # no QAT for inherited candidates
        ref = build(spec)
        c = cost(ref, spec.input_shape)
        assert (rec.metrics["params"], rec.metrics["flops"]) == (c["params"], c["flops"])
        assert rec.metrics["size_bytes"] == Q.size_bytes(ref, spec)
        for t, tc in c["tasks"].items():
            assert rec.metrics[f"{t}.path_params"] == tc["path_params"]
        assert rec.metrics["quant_policy"] == Q.policy_summary(spec)
        assert rec.metrics["sharing"] == spec.sharing and rec.metrics["feasible"] is True
    assert n_fit >= len(r.genomes) // 2 and n_not >= 1, (n_fit, n_not)
    df = trials_frame(r.dir)
    assert len(df) == len(r.genomes)
    done = df[df.status == "complete"]
    assert len(done) == n_fit and done["metrics.mean_error"].notna().all()
    assert (df[df.status == "failed"]["error"].str.count("\n") == 0).all()


def test_a_worker_rebuilds_nothing_for_a_bank_it_holds(runs):
    """In one process, a second batch on the same bank id reuses the structure and the
    loaded weights (the content behind the id is not fetched again: here a bank of zeros
    under the same id does not reach the network), while a new id loads its content."""
    import ray
    from safetensors.torch import save

    from nasmt.search.oneshot import evaluate as E

    r = runs("people")
    state = B.read_state(r.dir)
    blob = (B.supernet_dir(r.dir) / B.BANK_FILE).read_bytes()
    items = [(r.int8, r.genomes[r.int8])]
    first = evaluate_batch(E.BankHandle("bank-a", ray.put(blob)), state, r.ctx, items, RECAL, 1)
    assert first[0]["metrics"] == read_trials(r.dir)[r.int8].metrics  # this process scores as the Ray worker did
    (bank,) = E._STRUCTURES.values()
    zeros = save({k: torch.zeros_like(v) for k, v in bank.state_dict().items()})
    again = evaluate_batch(E.BankHandle("bank-a", ray.put(zeros)), state, r.ctx, items, RECAL, 1)
    (same,) = E._STRUCTURES.values()
    assert same is bank and again[0]["metrics"] == first[0]["metrics"]
    other = evaluate_batch(E.BankHandle("bank-b", ray.put(zeros)), state, r.ctx, items, RECAL, 1)
    assert other[0]["metrics"] != first[0]["metrics"]  # a new id: the zero bank is loaded
    assert next(iter(E._STRUCTURES.values())) is bank  # into the same structure


# -- export of an inherited candidate ---------------------------------------------------------


def _import(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", ["people", "mm", "tabular"])
def test_export_of_an_inherited_candidate_is_the_evaluated_network(runs, tmp_path, name):
    """`nasmt export RUN --trial N` of an inherited int8 candidate: model.py with the
    exported weights computes the evaluated candidate's outputs (max abs diff reported;
    conv.grammar's BatchNorm statistics are the recorded recalibration's), its simulated
    metrics are the record's, the quantized artifact's validation metrics are within 1.5
    points of the inherited simulated ones, and `nasmt predict` runs on it (people: raw CSV rows)."""
    r = runs(name)
    rec = read_trials(r.dir)[r.int8]
    assert rec.status == TrialStatus.COMPLETE and B.is_inherited(rec)
    spec = ArchSpec.from_json(rec.spec)
    assert "w8a8" in Q.policy_summary(spec) and "w32" not in Q.policy_summary(spec)
    out = tmp_path / "exp"
    nasmt("export", r.dir, "--trial", rec.number, "--out", out)
    arch = json.loads((out / "arch.json").read_text())
    assert arch["trial"] == rec.number and arch["search_metrics"] == rec.metrics

    bank, suite, data = B.load_bank(r.dir)
    want_model = B.inherited_model(bank, spec, data, B.recalibration_of(rec))
    has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in want_model.modules())
    assert has_bn == (name == "mm")  # conv.grammar's recalibrated statistics travel with the export
    got_model = _import(out / "model.py", f"oneshot_export_model_{name}").load()
    x = torch.from_numpy(np.ascontiguousarray(data.x["val"]))
    with torch.no_grad():
        want, got = want_model(x), got_model(x)
    diff = max(float((got[t] - want[t]).abs().max()) for t in want)
    print(f"{name}: exported inherited candidate vs evaluated: max abs diff {diff:.3g} on {len(x)} validation rows")
    assert diff <= 1e-6
    with Q.simulate(got_model, spec, Q.calib_batch(data)):
        from nasmt.train import evaluate

        sim = evaluate(got_model, suite, data, "val")
    assert {k: rec.metrics[k] for k in sim} == sim  # the export's network scores what the candidate scored

    q = arch["quantized"]
    assert q is not None and (out / q["file"]).exists()
    for t in suite.tasks:
        rec_metric = rec.metrics[f"{t.ident}.{t.metric}"]
        print(f"{t.ident}.{t.metric}: artifact {q['accuracy'][t.ident]:.4f} inherited simulated {rec_metric:.4f}")
        if t.kind != "regression":  # points of a fraction (accuracy, AUC); an MAE has no points
            assert abs(q["accuracy"][t.ident] - rec_metric) <= Q.ACC_TOLERANCE, t.ident
        else:  # within 1.5 % of the value
            assert abs(q["accuracy"][t.ident] - rec_metric) <= Q.ACC_TOLERANCE * abs(rec_metric), t.ident

    if name == "mm":
        return
    rows = _raw_rows(data, "val", tmp_path / "raw.csv")
    nasmt("predict", out, "--input", rows, "--out", tmp_path / "preds.csv")
    with open(tmp_path / "preds.csv", newline="") as f:
        preds = list(csv.DictReader(f))
    labels = data.class_labels["marital"]
    assert [p["marital"] for p in preds] == [labels[i] for i in want["marital"].argmax(1).tolist()]


def _raw_rows(data, split: str, path: Path) -> Path:
    """The split's rows as the very text lines of people.csv."""
    lines = (ROOT / "tasks" / "people.csv").read_text().splitlines()
    path.write_text("\n".join([lines[0]] + [lines[1 + i] for i in data.meta["rows"][split]]) + "\n")
    return path
