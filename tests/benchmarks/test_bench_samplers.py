"""The committed reports/bench_samplers.json has the structure benchmarks/bench_samplers.py
writes, its numbers hang together, `--sampler auto`'s rule agrees with it, and its --table
renders (the measurement itself takes ~25 minutes: not run here)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "reports" / "bench_samplers.json"


def test_report_structure_numbers_and_table():
    assert REPORT.exists(), "reports/bench_samplers.json is committed: run benchmarks/bench_samplers.py"
    r = json.loads(REPORT.read_text())
    assert r["benchmark"] == "bench_samplers" and r["table"]["cells"] == 15625
    sizes, best = r["sizes"], r["table"]["best_possible_hv"]
    assert {"random", "tpe", "tpe-unbounded", "nsga2", "nsga2-unbounded", "evolution"} <= set(sizes["variants"])
    assert {str(c) for c in sizes["counts"]} == set(r["efficiency"]) and sizes["seeds"] >= 2
    for count, e in r["efficiency"].items():
        assert e["random_target_hv"] > 0
        for v, s in e["samplers"].items():
            assert len(s["hv"]) == s["seeds"] == len(s["trials_to_random_hv"]) and 0 < s["hv_mean"] <= best + 1e-9
            assert all(t is None or 1 <= t for t in s["trials_to_random_hv"])
        assert e["samplers"]["random"]["seeds"] == sizes["seeds"]
    for c in r["curves"].values():
        assert all(a <= b + 1e-12 for a, b in zip(c["hv"], c["hv"][1:]))  # a hypervolume curve never falls
        assert c["points"] == sorted(c["points"])
    for key, c in r["ask_cost"].items():
        assert key == f"{c['variant']}@{c['history']}" and c["ask_ms_median"] > 0
        if c["variant"] in ("tpe", "nsga2") and c["history"] > 1000:  # bounded: the model saw at most the bound
            b = r["bounded_history"][c["variant"]]
            assert c["model_saw"] <= b["elite"] + b["window"] + 1
    # the default rule is the measurement's: from AUTO_MODEL_FROM trials on, AUTO_MODEL needs the
    # fewest trials (median over seeds) to reach random search's hypervolume and beats random's
    from nasmt.search.config import AUTO_MODEL, AUTO_MODEL_FROM

    for count, e in r["efficiency"].items():
        if int(count) >= AUTO_MODEL_FROM:
            s = e["samplers"]
            fewest = min(v["trials_to_random_hv_median"] for v in s.values() if v["reached"])
            assert s[AUTO_MODEL]["reached"] == s[AUTO_MODEL]["seeds"] and s[AUTO_MODEL]["trials_to_random_hv_median"] == fewest
            assert s[AUTO_MODEL]["hv_mean"] > s["random"]["hv_mean"]
    out = subprocess.run([sys.executable, "benchmarks/bench_samplers.py", "--table"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    for v in sizes["variants"]:
        assert f"| {v} |" in out
