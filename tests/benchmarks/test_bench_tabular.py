"""The committed reports/bench_tabular.json has the structure benchmarks/bench_tabular.py writes,
its figures are consistent with each other (Δm recomputed from the recorded test metrics, the
goal verdict from the recorded Δm, LightGBM's chosen grid point per task), and its --table
renders. No search is run here (the script's reduced run takes about 25 minutes); without the
report the test fails, it does not skip."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "reports" / "bench_tabular.json"
METHODS = {"single-task", "hard-shared", "mmoe", "ple", "lightgbm", "mtl_search", "mtl_final", "tabular_search",
           "tabular_final", "tabular_oneshot", "tabular_oneshot_final"}


def _report() -> dict:
    assert REPORT.exists(), "reports/bench_tabular.json is committed: run benchmarks/bench_tabular.py"
    return json.loads(REPORT.read_text())


def test_report_structure():
    from nasmt.baselines.record import delta_m
    from nasmt.data.suite import load_suite

    r = _report()
    assert r["benchmark"] == "bench_tabular" and "LightGBM" in r["goal"]
    assert set(r["suites"]) == {"fair", "diamonds", "loans"}
    assert {"seeds", "trials", "epochs", "diamonds_n_train"} <= set(r["size"]) and r["full_size_command"]
    assert r["gbdt_grid"]["num_leaves"] and r["gbdt_grid"]["learning_rate"]
    for name, s in r["suites"].items():
        suite = load_suite(ROOT / s["suite"])
        keys = {f"{t.ident}.{t.metric}" for t in suite.tasks}
        assert [t["name"] for t in s["tasks"]] == [t.name for t in suite.tasks]
        assert len(s["seeds"]) == r["size"]["seeds"]
        for seed in s["seeds"].values():
            assert METHODS <= set(seed), (name, set(seed))
            single = seed["single-task"]["test_metrics"]
            for m, row in seed.items():
                if m.startswith("_") or "error" in row:
                    continue
                assert set(row["test_metrics"]) == keys, (name, m)
                assert row["test_delta_m"] == pytest.approx(delta_m(row["test_metrics"], single, suite)), (name, m)
                assert row["latency_s_per_row_batched"] > 0 and row["latency_s_one_row"] > 0
                assert (row.get("params") or row.get("leaves") or 0) > 0
            gb = seed["lightgbm"]
            assert set(gb["chosen"]) == {t.ident for t in suite.tasks}
            for c in gb["chosen"].values():
                assert c["num_leaves"] in r["gbdt_grid"]["num_leaves"]
                assert c["learning_rate"] in r["gbdt_grid"]["learning_rate"]
            for m in ("mtl_search", "tabular_search", "tabular_oneshot"):
                if m in seed and "error" not in seed[m]:
                    assert seed[m]["trials_complete"] >= 1 and seed[m]["spec"]["space"]
            assert seed["tabular_oneshot"]["trials_complete"] == r["size"]["oneshot_candidates"]
            one, fin = seed["tabular_oneshot"], seed["tabular_oneshot_final"]  # the one-shot pick, fine-tuned
            assert fin["trial"] == one["trial"] and fin["spec"]["hash"] == one["spec"]["hash"]
            assert fin["search_val_mean_error"] == one["val_mean_error"]
            assert 0 < fin["epochs_trained"] <= r["size"]["final_epochs"] == fin["final_epochs"]
            for m, searched in (("mtl_final", "mtl_search"), ("tabular_final", "tabular_search")):
                fin = seed[m]  # the search's pick (same trial, same architecture) or the enqueued recipe, finalized
                assert 0 < fin["epochs_trained"] <= r["size"]["final_epochs"] == fin["final_epochs"]
                if "finalists" not in fin:
                    assert fin["trial"] == seed[searched]["trial"] and fin["spec"]["hash"] == seed[searched]["spec"]["hash"]
                    assert fin["search_val_mean_error"] == seed[searched]["val_mean_error"]
                    continue
                # several finalists: the search's pick among them, the shipped one the lowest final validation error
                ok = [f for f in fin["finalists"] if f["val_mean_error"] is not None and not f["error"]]
                assert seed[searched]["trial"] in [f["trial"] for f in fin["finalists"]]
                assert {f["trial"] for f in fin["finalists"]} <= {seed[searched]["trial"], *seed[searched].get("recipe_trials", [])}
                assert fin["val_mean_error"] == min(f["val_mean_error"] for f in ok)
                chosen = next(f for f in ok if f["trial"] == fin["trial"])
                assert chosen["test_delta_m"] == pytest.approx(fin["test_delta_m"])
                if fin["trial"] == seed[searched]["trial"]:
                    assert fin["spec"]["hash"] == seed[searched]["spec"]["hash"]
        sm = s["summary"]
        assert set(sm["shipped_method"].values()) == {"tabular_final"}  # the finalized pick: chosen on validation only
        shipped = [sd["tabular_final"]["test_delta_m"] for sd in s["seeds"].values()]
        assert sm["shipped_tabular_test_delta_m"] == pytest.approx(sum(shipped) / len(shipped))
        assert sm["goal_met"] == (sm["shipped_tabular_test_delta_m"] >= sm["lightgbm_test_delta_m"])


def test_table_renders():
    r = _report()
    out = subprocess.run([sys.executable, "benchmarks/bench_tabular.py", "--table"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    assert "| suite | method |" in out
    for name in r["suites"]:
        assert f"| {name} | lightgbm |" in out and f"- {name}: goal " in out


def _bench():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_tabular_under_test", ROOT / "benchmarks" / "bench_tabular.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("suite_name", ["fair", "loans"])
def test_recipe_is_the_documented_derivation_of_tabular_grammar(tmp_path, suite_name):
    """RECIPE's genome (what the bench enqueues first) is exactly a derivation of tabular.grammar
    for the suite, and builds the TabM-mini-style network docs/tabular.md describes."""
    from nasmt.data import load_data_cached
    from nasmt.data.suite import load_suite
    from nasmt.space.derive import check_genome
    from nasmt.space.grammar import load_grammar

    bench = _bench()
    suite_path = ROOT / "tasks" / f"{suite_name}.toml"
    out = bench.recipe_genome(ROOT / "search_spaces" / "tabular.grammar", suite_path, tmp_path / "recipe.json")
    suite = load_suite(suite_path)
    data = load_data_cached(suite)
    spec = check_genome(load_grammar(ROOT / "search_spaces" / "tabular.grammar"), json.loads(out.read_text()),
                        suite.tasks, tuple(data.input_shape), data.n_outputs, data.columns).to_json()
    stages = [[{k: v for k, v in op.items()} for op in st["ops"]] for st in spec["stages"]]
    assert stages[0] == [{"op": "identity"}, {"op": "catembed", "d": 8}, {"op": "ensemble", "k": 8, "h": 256}]
    assert stages[1] == stages[2] == [{"op": "fc", "h": 256, "act": "relu"}, {"op": "identity"}]  # no dropout
    assert stages[3] == [{"op": "identity"}] and len(stages) == 4  # no expert mixture
    for b in spec["branches"]:
        assert b["tap"] == len(stages) and b["layers"] == [] and b["head"] == [{"op": "dropout", "p": 0.0}], b
        assert b["precision"] == {"w": "fp32", "a": "fp32"}
    assert spec["train"] == {"balance": "uncertainty", "lr": 0.003, "wd": 0.001, "schedule": "onecycle", "warmup": 0.05,
                             "patience": 16, "batch_size": 128, "reg_loss": "match"}


def test_recipe_refuses_an_incomplete_or_foreign_recipe(tmp_path):
    bench = _bench()
    grammar, fair = ROOT / "search_spaces" / "tabular.grammar", ROOT / "tasks" / "fair.toml"
    partial = {k: v for k, v in bench.RECIPE.items() if k != "train.batch.size"}
    with pytest.raises(ValueError, match="no value for decision train.batch.size"):
        bench.recipe_genome(grammar, fair, tmp_path / "a.json", partial)
    with pytest.raises(ValueError, match="trunk.stem.ens.ensemble.k: 5 is not in its domain"):
        bench.recipe_genome(grammar, fair, tmp_path / "b.json", {**bench.RECIPE, "trunk.stem.ens.ensemble.k": 5})
    bad = subprocess.run([sys.executable, "benchmarks/bench_tabular.py", "--recipe-genome", "tasks/nope.toml",
                          "--recipe-out", str(tmp_path / "c.json")], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().count("\n") == 0 and "--recipe-genome tasks/nope.toml" in bad.stderr
