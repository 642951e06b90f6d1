"""Issue 19's faster readers and Pareto walks give what the plain ones gave: records and
frames as the standard library's json and row dicts make them, and the blocked
hypervolume history as the row-by-row walk."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nasmt.run import TRIALS_FILE, TrialRecord, hypervolume, read_trials, trials_frame
from nasmt.run.pareto import HV_BLOCK, hypervolume_history

# lines orjson refuses (NaN, a lone surrogate) and ones it reads: the standard library decides
LINES = [
    '{"number": 3, "status": "complete", "metrics": {"mean_error": NaN, "params": 10, "feasible": true, "x": null},'
    ' "timings": {"total_s": 1.5}, "spec": {"hash": "ab"}}',
    '{"number": 1, "status": "failed", "error": "boom \\ud800", "metrics": {}, "timings": {}}',
    '{"number": 2, "status": "stopped", "metrics": {"mean_error": 0.5, "feasible": false, "flops": 1e30}, "recovered": true}',
    '{"number": 1, "status": "complete", "metrics": {"mean_error": 0.25, "params": 12.5, "s": "hard", "inf": Infinity},'
    ' "interrupted": true, "zzz": [1]}',
    '{"number": 4, "status": "complete", "metrics": {"mean_error": 0.125, "params": 9007199254740993}, "final": null}',
]


def _plain_records(path) -> list[TrialRecord]:
    by = {}
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.strip():
            r = TrialRecord.from_json(json.loads(line))
            by[r.number] = r
    return [by[k] for k in sorted(by)]


def test_read_trials_and_trials_frame_match_the_standard_library_and_row_dicts(tmp_path):
    (tmp_path / TRIALS_FILE).write_text("\n".join(LINES) + "\n", encoding="utf-8")
    recs = read_trials(tmp_path)
    want = _plain_records(tmp_path / TRIALS_FILE)
    assert repr(recs) == repr(want)  # NaN != NaN: compare the reprs
    assert [r.number for r in recs] == [1, 2, 3, 4] and recs[0].interrupted and recs[0].extra == {"zzz": [1]}
    assert recs[3].metrics["params"] == 9007199254740993 and isinstance(recs[3].metrics["params"], int)
    rows = []
    for r in want:
        row = {"number": r.number, "status": r.status.value, "error": r.error, "interrupted": r.interrupted,
               "recovered": r.recovered, "finished_at": r.finished_at, "total_s": r.timings.get("total_s"),
               "arch_hash": r.arch_hash}
        rows.append(row | {f"metrics.{k}": v for k, v in r.metrics.items()})
    pd.testing.assert_frame_equal(trials_frame(tmp_path), pd.DataFrame(rows).set_index("number", drop=False))


def _walk(P, ref):
    """The row-by-row hypervolume history (before the blocks)."""
    out, front, hv = np.zeros(len(P)), np.zeros((0, len(ref))), 0.0
    for i, p in enumerate(P):
        if np.isfinite(p).all() and np.all(p < ref) and not (len(front) and np.any(np.all(front <= p, axis=1))):
            keep = ~np.all(p <= front, axis=1) if len(front) else np.zeros(0, bool)
            front = np.vstack([front[keep], p[None, :]])
            hv = hypervolume(front, ref)
        out[i] = hv
    return out


@pytest.mark.parametrize("k", [2, 3])
def test_hypervolume_history_in_blocks_equals_the_row_by_row_walk(k):
    rng = np.random.default_rng(k)
    P = rng.random((3 * HV_BLOCK + 17, k)) ** 0.3  # fronts keep improving across blocks
    P[::97] = np.nan
    P[3::101] = 1.5  # outside the reference box
    P[5::89] = P[4::89][: len(P[5::89])]  # duplicates of the row before
    ref = np.full(k, 1.1)
    assert hypervolume_history(P, ref).tolist() == _walk(P, ref).tolist()
