"""The typed trial record and the documented readers (no Ray)."""

from __future__ import annotations

import json

import pytest

from nasmt.errors import RunDirError
from nasmt.run import (
    TRIALS_FILE,
    TrialRecord,
    TrialStatus,
    append_record,
    front_candidates,
    read_jsonl,
    read_trials,
    replace_records,
    trial_dir,
    trials_frame,
)


def _rec(n, status=TrialStatus.COMPLETE, **metrics):
    return TrialRecord(number=n, status=status, metrics=metrics, spec={"hash": f"h{n}", "genome": {"a": n}})


def test_record_json_round_trip_keeps_unknown_fields():
    d = {"number": 3, "status": "failed", "error": "boom", "interrupted": True, "spec": None,
         "metrics": {}, "timings": {"total_s": 1.5}, "future_field": [1, 2]}
    r = TrialRecord.from_json(d)
    assert r.status is TrialStatus.FAILED and r.interrupted and not r.counts_as_failure
    assert r.extra == {"future_field": [1, 2]}
    assert TrialRecord.from_json(json.loads(json.dumps(r.to_json()))) == r
    assert r.to_json()["status"] == "failed" and "recovered" not in r.to_json()


@pytest.mark.parametrize("bad", [{"status": "complete"}, {"number": 1, "status": "done"}, [1], {"number": 1, "status": "complete", "spec": 3}])
def test_bad_record_is_a_run_dir_error(bad):
    with pytest.raises(RunDirError):
        TrialRecord.from_json(bad, where="x.jsonl")


def test_front_candidates_are_complete_and_within_budget():
    recs = [_rec(0), _rec(1, feasible=False), _rec(2, TrialStatus.STOPPED), _rec(3, TrialStatus.FAILED), _rec(4, feasible=True)]
    assert [r.number for r in front_candidates(recs)] == [0, 4]


def test_trials_frame_has_one_row_per_trial(tmp_path):
    append_record(tmp_path, _rec(0, mean_error=0.5))
    append_record(tmp_path, _rec(1, TrialStatus.FAILED))
    append_record(tmp_path, _rec(0, mean_error=0.4))  # an older writer's superseding line
    df = trials_frame(tmp_path)
    assert list(df["number"]) == [0, 1]
    assert df.loc[0, "metrics.mean_error"] == 0.4 and df.loc[1, "status"] == "failed"


def test_replace_records_keeps_one_line_per_trial(tmp_path):
    for n in range(3):
        append_record(tmp_path, _rec(n, mean_error=0.1 * n))
    replace_records(tmp_path, [read_trials(tmp_path)[1].with_metrics(latency_ms=2.0)])
    lines = read_jsonl(tmp_path / TRIALS_FILE)
    assert [x["number"] for x in lines] == [0, 1, 2]
    assert lines[1]["metrics"] == {"mean_error": 0.1, "latency_ms": 2.0}
    with pytest.raises(ValueError):
        replace_records(tmp_path, [_rec(7)])


def test_torn_last_line_warns_and_corrupt_middle_line_names_file_and_line(tmp_path):
    f = tmp_path / TRIALS_FILE
    good = json.dumps(_rec(0).to_json())
    f.write_text(good + "\n" + '{"number": 1, "sta')
    with pytest.warns(UserWarning, match="torn last record"):
        assert [r.number for r in read_trials(tmp_path)] == [0]
    f.write_text(good + "\n{oops\n" + good + "\n")
    with pytest.raises(RunDirError, match=rf"{TRIALS_FILE}:2: corrupt record"):
        read_trials(tmp_path)


def test_trial_dir_is_the_one_place_for_trial_paths(tmp_path):
    assert trial_dir(tmp_path, 7) == tmp_path / "trials" / "00007"


def test_tiny_run_reads_one_row_per_trial_number(tiny_run):
    df = trials_frame(tiny_run)
    lines = read_jsonl(tiny_run / TRIALS_FILE)
    assert len(df) == len({x["number"] for x in lines}) == len(lines) >= 4
    assert set(df["status"]) <= {s.value for s in TrialStatus}


def test_crash_safe_writes_fsync_the_directory(tmp_path, monkeypatch):
    """Each atomic rename and each new directory is followed by an fsync of its parent
    directory (the promise covers power loss, not only process crashes)."""
    import os

    from nasmt.run import files

    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(files.os, "fsync", spy)
    files.ensure_dir(tmp_path / "a" / "b")
    assert str(tmp_path) in synced and str(tmp_path / "a") in synced
    synced.clear()
    files.atomic_write_text(tmp_path / "a" / "x.json", "{}")
    assert synced[-1] == str(tmp_path / "a"), synced
    synced.clear()
    files.append_jsonl(tmp_path / "a" / "new.jsonl", {"n": 1})  # a new file: its directory too
    assert str(tmp_path / "a") in synced
