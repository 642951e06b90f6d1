"""The committed reports/bench_controllable.json has the structure benchmarks/bench_controllable.py
writes, and its figures agree with the rows they summarize (no search is run here: the
benchmark's real one-shot searches take many minutes)."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "reports" / "bench_controllable.json"


def test_report_structure_and_figures():
    assert REPORT.exists(), "reports/bench_controllable.json is committed: run benchmarks/bench_controllable.py"
    r = json.loads(REPORT.read_text())
    assert r["benchmark"] == "bench_controllable" and r["budget"]["quick"] is False
    assert {"bytes", "controllability", "budgets", "switch"} <= set(r["goals"])
    assert {"fair", "multimnist"} <= set(r["cells"])
    for name, c in r["cells"].items():
        assert c["candidates"] >= 2 and c["size"]["trials"] > 0 and c["wall_s"] > 0
        b = c["bytes"]
        assert b["ratio_to_largest_single"] == b["controllable_torch"] / b["largest_single"]
        assert b["largest_single"] <= b["separate_sum"] and b["goal_met"] == (b["ratio_to_largest_single"] <= 1.5)
        assert b["stored_elements"] >= b["union_elements"] > 0
        for sweep in c["controllability"].values():
            assert set(sweep["per_task"]) == set(c["tasks"])
            judged = [v["axis_rho_val"] for v in sweep["per_task"].values()
                      if v["tradeoff"] and v["axis_rho_val"] is not None]
            assert sweep["min_axis_rho_val_where_tradeoff"] == (min(judged) if judged else None)
            for v in sweep["per_task"].values():
                assert len(v["axis_choices"]) == sweep["axis_steps"]
        for cost in ("latency_ms", "params"):
            rows = c["budgets"][cost]["budgets"]
            assert rows and c["budgets"][cost]["fraction_met"] == sum(x["met"] for x in rows) / len(rows)
            assert all(x["met"] == (x["measured"] <= x["budget"]) for x in rows)
        assert c["budgets"]["params"]["fraction_met"] == 1.0  # params are exact: a chosen one always fits
        s = c["switch"]
        assert s["switch_ms_median"] > 0 and s["parameters_not_views"] == s["ple_gate_parameters_assembled_at_load"]
        assert 0 < c["task_latency"]["mean_ratio"] <= 1.5
        assert c["max_abs_diff_vs_extracted"] <= 1e-6 and c["onnx_max_abs_diff"] <= 1e-4
