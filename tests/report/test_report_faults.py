"""A damaged trials.jsonl through the real CLI: `report`, `dashboard` and `export`.
A torn last line (a writer killed mid-append) is skipped with a warning and the command
works; a corrupt line before it is one error line naming `file:line`, exit code 2, no
traceback."""

from __future__ import annotations

import json

from conftest import nasmt
from dashboard_helpers import corrupt_line, free_port, get, page_payload, start_dashboard, stop, table_rows, tear_last_line
from nasmt.run import TRIALS_FILE, TrialStatus, read_trials

TORN = "torn last record skipped"


def _one_error_line(r, run) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert f"{run / TRIALS_FILE}:2:" in lines[0] and "corrupt record" in lines[0]


def _complete_number(run) -> int:
    return next(t.number for t in read_trials(run) if t.status == TrialStatus.COMPLETE)


def test_report_torn_last_line(run_copy, tmp_path):
    numbers = [t.number for t in read_trials(run_copy)]
    tear_last_line(run_copy)
    r = nasmt("report", run_copy, "-o", tmp_path / "r.html")
    assert TORN in r.stderr and "Traceback" not in r.stderr
    p = page_payload((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert p["runs"][0]["n_trials"] == len(numbers)
    assert [r["number"] for r in table_rows(p)] == numbers


def test_report_corrupt_middle_line(run_copy, tmp_path):
    corrupt_line(run_copy)
    _one_error_line(nasmt("report", run_copy, "-o", tmp_path / "r.html", check=False), run_copy)
    assert not (tmp_path / "r.html").exists()


def test_dashboard_torn_last_line(run_copy):
    n = len(read_trials(run_copy))
    tear_last_line(run_copy)
    port = free_port()
    p = start_dashboard(run_copy, port)
    try:
        st, _, body = get(("127.0.0.1", port), "/api/data")
        assert st == 200 and len(json.loads(body)["table"]["rows"]) == n
    finally:
        err = stop(p)
    assert TORN in err and "Traceback" not in err


def test_dashboard_corrupt_middle_line(run_copy):
    corrupt_line(run_copy)
    _one_error_line(nasmt("dashboard", run_copy, "--port", free_port(), check=False, timeout=120), run_copy)


def test_export_torn_last_line(run_copy, tmp_path):
    number = _complete_number(run_copy)
    tear_last_line(run_copy)
    out = tmp_path / "exp"
    r = nasmt("export", run_copy, "--trial", number, "--out", out, "--no-quantized")
    assert TORN in r.stderr and "Traceback" not in r.stderr
    assert out.is_dir() and any(out.iterdir())


def test_export_corrupt_middle_line(run_copy, tmp_path):
    number = _complete_number(run_copy)
    corrupt_line(run_copy)
    _one_error_line(nasmt("export", run_copy, "--trial", number, "--out", tmp_path / "exp", check=False), run_copy)
    assert not (tmp_path / "exp").exists()
