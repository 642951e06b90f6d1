"""The committed reports/bench_oneshot.json has the structure benchmarks/bench_oneshot.py writes,
and its --table renders (no search is run here: the script's smallest real run takes minutes)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "reports" / "bench_oneshot.json"


def test_report_structure_and_table():
    assert REPORT.exists(), "reports/bench_oneshot.json is committed: run benchmarks/bench_oneshot.py"
    r = json.loads(REPORT.read_text())
    assert r["benchmark"] == "bench_oneshot"
    assert {"speedup", "equal_compute", "kendall_tau"} <= set(r["goals"])
    assert r["budget"]["cells"] and r["cells"]
    for name, c in r["cells"].items():
        assert name in r["budget"]["cells"]
        assert {"lo", "hi", "reference_point"} <= set(c["normalization"])
        for s in c["seeds"].values():
            for side in ("oneshot", "scratch"):
                assert s[side]["compute_s"] > 0 and 0 <= s[side]["hypervolume"]
                assert s[side]["best_by_val"]["test_mean_error"] is not None
            assert s["oneshot"]["candidates"] > 0
            assert isinstance(s["goal_3x_met"], bool)
        assert "compute_ratio_mean" in c["summary"]
    out = subprocess.run([sys.executable, "benchmarks/bench_oneshot.py", "--table"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    assert "| cell |" in out
    for name in r["cells"]:
        assert f"| {name} " in out
