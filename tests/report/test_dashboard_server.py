"""The live dashboard over HTTP: routes, path traversal, binding, gzip, live refresh, and
user strings served escaped. (A real browser: test_dashboard_browser.py.)"""

from __future__ import annotations

import gzip
import inspect
import json
import re
from dataclasses import replace

import pytest

from dashboard_helpers import (EVIL_ERROR, EVIL_GRAMMAR, EVIL_NUMBER, EVIL_TASK, EVIL_TASK2, free_port, get, make_evil,
                               page_payload, serving, start_dashboard, stop)
from nasmt.errors import RunDirError, UserError
from nasmt.report import plotly_js
from nasmt.report.dashboard import is_loopback, make_server, serve
from nasmt.run import TrialStatus, append_record, read_trials


def _rows(p: dict) -> list[dict]:
    keys = [c["key"] for c in p["table"]["columns"]]
    return [dict(zip(keys, row)) for row in p["table"]["rows"]]


@pytest.fixture
def server(tiny_run):
    with serving(tiny_run) as srv:
        yield srv


def test_binds_localhost_by_default(tiny_run):
    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    srv = make_server([tiny_run], port=0)
    try:
        assert srv.server_address[0] == "127.0.0.1"
        assert srv.server_address[1] > 0
    finally:
        srv.server_close()


WARNING = "is not a loopback address"


@pytest.mark.parametrize("host, loopback", [
    ("localhost", True), ("LOCALHOST.", True), ("127.0.0.1", True), ("127.8.0.3", True), ("::1", True),
    ("[::1]", True), ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("example.org", False),
])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def _page_from(addr) -> dict:
    st, _, body = get(addr, "/")
    assert st == 200
    return page_payload(body.decode("utf-8"))


def test_cli_warns_once_when_serving_beyond_loopback(tiny_run):
    port = free_port()
    p = start_dashboard(tiny_run, port, host="0.0.0.0")
    try:
        assert _page_from(("127.0.0.1", port))["mode"] == "live"  # 0.0.0.0 includes loopback
    finally:
        err = stop(p)
    lines = [ln for ln in err.splitlines() if WARNING in ln]
    assert len(lines) == 1, f"want one warning line on stderr, got: {err!r}"
    line = lines[0]
    assert line.startswith("nasmt dashboard: warning: --host 0.0.0.0 ") and f"port {port}" in line
    assert "Traceback" not in err


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2"])
def test_cli_binds_where_asked_and_stays_quiet_on_loopback(tiny_run, host):
    port = free_port()
    p = start_dashboard(tiny_run, port, host=host)
    try:
        page = _page_from((host, port))
        assert [r["number"] for r in _rows(page)] == [t.number for t in read_trials(tiny_run)]
        if host != "127.0.0.1":  # bound to that address only: not reachable on another one
            with pytest.raises(ConnectionRefusedError):
                get(("127.0.0.1", port), "/")
    finally:
        err = stop(p)
    assert WARNING not in err and "warning" not in err.lower()


def test_routes_and_path_traversal(server, tiny_run):
    st, h, body = get(server, "/")
    assert st == 200 and h["Content-Type"].startswith("text/html")
    page = body.decode()
    assert '<script src="/static/plotly.min.js"></script>' in page
    embedded = page_payload(page)
    assert embedded["mode"] == "live"
    assert [r["number"] for r in _rows(embedded)] == [t.number for t in read_trials(tiny_run)]
    st, h, body = get(server, "/static/plotly.min.js")
    assert st == 200 and body.decode("utf-8") == plotly_js()
    st, h, body = get(server, "/api/data")
    assert st == 200 and h["Content-Type"].startswith("application/json")
    data = json.loads(body)
    assert [r["number"] for r in _rows(data)] == [t.number for t in read_trials(tiny_run)]
    st, _, body = get(server, "/api/data?v=" + data["version"])
    assert st == 204 and body == b""
    for bad in ["/../../etc/passwd", "/static/../../run.json", "/static/..%2f..%2frun.json", "/%2e%2e/run.json",
                "/run.json", "/trials.jsonl", "/static/", "/static/dashboard.js", "//etc/passwd",
                "/api/data/../../run.json", "/index.html/..", "/static/plotly.min.js/../../../run.json"]:
        st, _, body = get(server, bad)
        assert st == 404, bad
        assert b"nasmt_run" not in body and b"root:" not in body


def test_gzip_when_accepted(server):
    st, h, body = get(server, "/api/data", {"Accept-Encoding": "gzip"})
    assert st == 200 and h.get("Content-Encoding") == "gzip"
    assert json.loads(gzip.decompress(body))["mode"] == "live"


def test_bad_input_is_a_user_error(tmp_path, tiny_run):
    with pytest.raises(RunDirError):
        make_server([tmp_path], port=0)
    with pytest.raises(UserError, match="unknown objective"):
        make_server([tiny_run], port=0, objectives="params,nope")


def test_api_data_picks_up_new_trials(run_copy):
    with serving(run_copy) as srv:
        st, _, body = get(srv, "/api/data")
        first = json.loads(body)
        n = len(first["table"]["rows"])
        base = next(t for t in read_trials(run_copy) if t.status == TrialStatus.COMPLETE)
        append_record(run_copy, replace(base, number=77).with_metrics(mean_error=0.01, params=10))  # dominates all
        st, _, body = get(srv, "/api/data?v=" + first["version"])
        assert st == 200
        data = json.loads(body)
        assert data["version"] != first["version"]
        assert len(data["table"]["rows"]) == n + 1
        row = next(r for r in _rows(data) if r["number"] == 77)
        assert row["front"] == 1, "the new trial is on the front"
        assert data["runs"][0]["front"] == [77]
        st, _, _ = get(srv, "/api/data?v=" + data["version"])
        assert st == 204


def test_live_dashboard_serves_user_strings_escaped(run_copy):
    make_evil(run_copy)
    evil = [EVIL_TASK, EVIL_TASK2, EVIL_GRAMMAR, EVIL_ERROR]
    with serving(run_copy) as srv:
        _, _, page = get(srv, "/")
        _, _, body = get(srv, "/api/data")
    page, body = page.decode(), body.decode()
    for s in evil + ["<img", "<svg", "</script><b>", "window.__pwned=2</script>"]:
        assert s not in body, s
    # the page: only our own script tags, and the strings only inside the escaped JSON
    assert page.lower().count("</script>") == len(re.findall(r"<script[\s>]", page, re.I)) == 3
    assert "<img" not in page and "<svg" not in page
    data = json.loads(body)  # the data still carries the exact strings
    assert [t["name"] for t in data["runs"][0]["tasks"]] == [EVIL_TASK, EVIL_TASK2]
    assert data["runs"][0]["grammar_name"] == EVIL_GRAMMAR
    assert [r["error"] for r in _rows(data) if r["number"] == EVIL_NUMBER] == [EVIL_ERROR]
    figs = json.dumps(data["figures"])  # what Plotly renders is HTML-escaped
    assert EVIL_TASK not in figs and "&lt;img src=x" in figs
