"""Helpers shared by the report, dashboard and run-fault tests: raw HTTP GETs, the real
`nasmt dashboard` CLI in a subprocess, headless Chromium, run-directory edits, and the
page's embedded data."""

from __future__ import annotations

import base64
import http.client
import json
import re
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from nasmt.report.dashboard import make_server
from nasmt.run import RUN_FILE, TRIALS_FILE, TrialRecord, TrialStatus, append_record

ROOT = Path(__file__).resolve().parents[2]
# user strings that would run script if they reached the DOM as markup
EVIL_TASK = '<img src=x onerror="window.__pwned=1">'
EVIL_TASK2 = "<script>window.__pwned=2</script>"
EVIL_GRAMMAR = '<svg onload="window.__pwned=3">'
EVIL_ERROR = '<img src=y onerror="window.__pwned=4"> & </script><b>'
EVIL_NUMBER = 999  # the failed trial whose reason is EVIL_ERROR


def get(srv_or_addr, path: str, headers=None):
    """(status, headers, body) of a GET with the raw path (never normalized)."""
    host, port = getattr(srv_or_addr, "server_address", srv_or_addr)[:2]
    c = http.client.HTTPConnection(host, port, timeout=30)
    c.putrequest("GET", path, skip_accept_encoding=True)
    for k, v in (headers or {}).items():
        c.putheader(k, v)
    c.endheaders()
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, dict(r.getheaders()), body


@contextmanager
def serving(run: Path, **kw):
    """The dashboard server of `run` on a free port, in a thread."""
    srv = make_server([run], port=0, **kw)
    th = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    th.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_dashboard(run: Path, port: int, host: str | None = None) -> subprocess.Popen:
    """`nasmt dashboard RUN --port PORT [--host HOST]` in a subprocess, once it has
    printed its URL (on HOST, default 127.0.0.1)."""
    p = subprocess.Popen(
        [sys.executable, "-m", "nasmt.cli", "dashboard", str(run), "--port", str(port),
         *(["--host", host] if host is not None else [])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    end = time.monotonic() + 60
    while time.monotonic() < end:
        r, _, _ = select.select([p.stdout], [], [], 0.5)
        if r:
            line = p.stdout.readline()
            if f"http://{host or '127.0.0.1'}:{port}/" in line:
                return p
        if p.poll() is not None:
            raise AssertionError(f"dashboard exited {p.returncode}: {p.stderr.read()}")
    p.kill()
    raise AssertionError("dashboard did not print its URL")


def stop(p: subprocess.Popen) -> str:
    """Stop a dashboard subprocess; its stderr."""
    p.terminate()
    try:
        _, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
    return err


def chrome(tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
              "--enable-unsafe-swiftshader", "--window-size=1400,1800",
              f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path, prefix='chrome-')}"]:
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=opts, service=Service("/usr/bin/chromedriver"))


def wait_js(driver, js: str, timeout: float = 60, *args):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = driver.execute_script(js, *args)
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {js}")


def make_evil(run: Path) -> None:
    """Task names, grammar name and a failure reason that are markup."""
    cfg = json.loads((run / RUN_FILE).read_text(encoding="utf-8"))
    cfg["suite"]["tasks"][0]["name"] = EVIL_TASK
    cfg["suite"]["tasks"][1]["name"] = EVIL_TASK2
    cfg["grammar"]["name"] = EVIL_GRAMMAR
    (run / RUN_FILE).write_text(json.dumps(cfg), encoding="utf-8")
    append_record(run, TrialRecord(EVIL_NUMBER, TrialStatus.FAILED, error=EVIL_ERROR))


def tear_last_line(run: Path) -> None:
    """A crash mid-append: half a record, no newline."""
    with open(run / TRIALS_FILE, "a", encoding="utf-8") as f:
        f.write('{"number": 98, "status": "compl')


def corrupt_line(run: Path, lineno: int = 2) -> None:
    """A line that is not JSON before the last one."""
    lines = (run / TRIALS_FILE).read_text(encoding="utf-8").splitlines(keepends=True)
    assert len(lines) > lineno, "needs a line after the corrupt one"
    lines[lineno - 1] = "{this is not json\n"
    (run / TRIALS_FILE).write_text("".join(lines), encoding="utf-8")


def page_payload(html: str) -> dict:
    """The data a report page embeds (its `nasmt-data` script)."""
    m = re.search(r'<script type="application/json" id="nasmt-data">(.*?)</script>', html, re.S)
    assert m, "no embedded data"
    return json.loads(m.group(1))


def table_rows(p: dict) -> list[dict]:
    """The payload's table rows as {column key: value}."""
    keys = [c["key"] for c in p["table"]["columns"]]
    return [dict(zip(keys, row)) for row in p["table"]["rows"]]


def values(v) -> list:
    """A figure array from the payload as a list: Plotly writes numpy arrays as typed
    arrays ({"dtype", "bdata"[, "shape"]}), plain lists stay lists."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        return a.reshape(v["shape"]).tolist() if "shape" in v else a.tolist()
    return list(v)


def figure_points(fig: dict) -> dict[int, list[tuple]]:
    """Trial number -> the (x, y) of every marker a figure draws for it (traces whose
    customdata rows are [table row, trial number, ...])."""
    out: dict[int, list[tuple]] = {}
    for t in fig["data"]:
        cd = t.get("customdata")
        if not cd or "x" not in t or not isinstance(cd[0], list) or not isinstance(cd[0][1], int):
            continue
        for row, x, y in zip(cd, values(t["x"]), values(t["y"])):
            out.setdefault(row[1], []).append((x, y))
    return out
