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
           "tabular_final"}


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
            for m in ("mtl_search", "tabular_search"):
                if m in seed and "error" not in seed[m]:
                    assert seed[m]["trials_complete"] >= 1 and seed[m]["spec"]["space"]
            for m, searched in (("mtl_final", "mtl_search"), ("tabular_final", "tabular_search")):
                fin = seed[m]  # the search's pick (same trial, same architecture), finalized
                assert fin["trial"] == seed[searched]["trial"] and fin["spec"]["hash"] == seed[searched]["spec"]["hash"]
                assert fin["search_val_mean_error"] == seed[searched]["val_mean_error"]
                assert 0 < fin["epochs_trained"] <= r["size"]["final_epochs"] == fin["final_epochs"]
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
