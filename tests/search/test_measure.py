"""After a latency-aware search the driver measures the Pareto set's real artifact
latency and updates those trials' records in place: trials.jsonl keeps exactly one
line per trial, read the documented way."""

from __future__ import annotations

import json

from nasmt.run import LATENCY_FILE, TRIALS_FILE, Objective, pareto_trials, read_jsonl, read_trials, trials_frame
from nasmt.search.measure import measure_front

OBJ = [Objective("mean_error", "min"), Objective("params", "min")]


def test_measure_front_updates_records_in_place(run_copy):
    before = read_trials(run_copy)
    front = {t.number for t in pareto_trials(before, OBJ)}
    lines = []
    res = measure_front(run_copy, OBJ, say=lines.append)
    assert {r["number"] for r in res["trials"]} == front and len(lines) == len(front)
    raw = read_jsonl(run_copy / TRIALS_FILE)
    assert len(raw) == len(before) == len({x["number"] for x in raw}), "a trial got a second line"
    after = {t.number: t for t in read_trials(run_copy)}
    for t in before:
        if t.number in front:
            assert after[t.number].metrics["latency_ms"] > 0
            assert after[t.number].metrics["latency_source"] == "measured"
            assert {k: v for k, v in after[t.number].metrics.items() if k not in ("latency_ms", "latency_source")} \
                == {**t.metrics, "feasible": True}
        else:
            assert after[t.number] == t
    df = trials_frame(run_copy)
    assert len(df) == len(before) and df["metrics.latency_ms"].notna().sum() == len(front)
    assert json.loads((run_copy / LATENCY_FILE).read_text())["batch"] == 1
