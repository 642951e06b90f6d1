"""benchmarks/bench_gpu.py as the CI smoke test: `--device cpu --smoke` runs every part
(a real 2-trial search included) and writes a JSON with every section, finite positive
figures, ratios that agree with the figures they come from, and the issue's goals each
with a `met` flag that agrees with its figure. Never asserts a timing."""

from __future__ import annotations

import json
import math
import operator
import os
import subprocess
import sys
from pathlib import Path

from conftest import SMALL_SUITE

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = ROOT / "benchmarks" / "bench_gpu.py"
GOALS = {"throughput_ratio", "search_vs_plain_ratio", "tasks_8_vs_1_step_ratio", "total_wall_s"}
COMPARE = {">=": operator.ge, "<=": operator.le}


def positive(section: dict, *keys: str) -> None:
    for k in keys:
        v = section[k]
        assert isinstance(v, (int, float)) and math.isfinite(v) and v > 0, f"{k}: {v!r}"


def ratio_of(ratio: float, num: float, den: float) -> bool:
    return math.isclose(ratio, num / den, rel_tol=1e-2)  # the JSON rounds to 4 decimals


def test_bench_gpu_cpu_smoke(tmp_path, shared_ray):
    out = tmp_path / "bench.json"
    # the small MultiMNIST suite and the session's Ray cluster: every part runs, at toy cost
    p = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--smoke", "--out", str(out),
                        "--suite", str(SMALL_SUITE), *shared_ray],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False,
                       env=dict(os.environ))  # with the session's Ray auth variables (conftest)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["benchmark"] == "bench_gpu" and res["finished"] is True and res["smoke"] is True and res["timestamp"]
    assert res["machine"]["device"] == "cpu" and res["machine"]["torch"]
    positive(res["sizes"], "steps", "batch_size", "trials")

    tp = res["throughput"]
    positive(tp, "nasmt_samples_per_s", "plain_samples_per_s", "throughput_ratio", "params")
    assert ratio_of(tp["throughput_ratio"], tp["nasmt_samples_per_s"], tp["plain_samples_per_s"])
    assert "stage 1" in tp["arch"] and "task left" in tp["arch"] and "task right" in tp["arch"]

    bf = res["bf16"]
    positive(bf, "on_samples_per_s", "off_samples_per_s", "speedup_on_vs_off")
    assert ratio_of(bf["speedup_on_vs_off"], bf["on_samples_per_s"], bf["off_samples_per_s"])
    assert bf["autocast_seen"] == {"on": False, "off": False}  # CPU: TrainConfig.bf16 never autocasts
    assert "CPU" in bf["note"]

    tk = res["tasks"]
    positive(tk, "tasks_1_step_ms", "tasks_8_step_ms", "tasks_8_vs_1_step_ratio")
    assert ratio_of(tk["tasks_8_vs_1_step_ratio"], tk["tasks_8_step_ms"], tk["tasks_1_step_ms"])
    assert tk["params"]["8"] > tk["params"]["1"] > 0  # eight branches, one trunk

    se = res["search"]
    positive(se, "wall_s", "plain_loop_s", "search_vs_plain_ratio")
    assert ratio_of(se["search_vs_plain_ratio"], se["wall_s"], se["plain_loop_s"])
    assert se["complete"] == res["sizes"]["trials"] == len(se["arch_hashes"])
    assert "--cpus-per-trial 1" in se["flags"] and "--gpus-per-trial" not in se["flags"]
    assert "no GPU" in res["gpu_shares"]["skipped"]

    positive(res, "total_wall_s")
    assert set(res["goals"]) == GOALS
    for name, g in res["goals"].items():
        op, bound = g["goal"].split()
        assert isinstance(g["met"], bool) and g["met"] == COMPARE[op](g["figure"], float(bound)), name
    assert res["goals"]["throughput_ratio"]["figure"] == tp["throughput_ratio"]
    assert res["goals_note"]
