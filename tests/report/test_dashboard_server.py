"""The live dashboard: routes, path traversal, binding, live refresh, and a real headless
Chromium session that clicks a Pareto point (`nasmt dashboard` in a subprocess)."""

from __future__ import annotations

import http.client
import json
import os
import select
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from nasmt.report.dashboard import make_server, serve
from nasmt.errors import RunDirError, UserError
from nasmt.run import read_trials

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def server(tiny_run):
    srv = make_server([tiny_run], port=0)
    th = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    th.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _get(srv, path: str, headers=None):
    host, port = srv.server_address[:2]
    c = http.client.HTTPConnection(host, port, timeout=30)
    c.putrequest("GET", path, skip_accept_encoding=True)  # the raw path, never normalized
    for k, v in (headers or {}).items():
        c.putheader(k, v)
    c.endheaders()
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, dict(r.getheaders()), body


def test_binds_localhost_by_default(tiny_run):
    import inspect

    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    srv = make_server([tiny_run], port=0)
    try:
        assert srv.server_address[0] == "127.0.0.1"
        assert srv.server_address[1] > 0
    finally:
        srv.server_close()


def test_routes_and_path_traversal(server, tiny_run):
    st, h, body = _get(server, "/")
    assert st == 200 and h["Content-Type"].startswith("text/html")
    page = body.decode()
    assert '<script src="/static/plotly.min.js"></script>' in page
    assert 'id="nasmt-data"' in page and '"mode":"live"' in page
    st, h, body = _get(server, "/static/plotly.min.js")
    assert st == 200 and b"plotly" in body[:300].lower()
    st, h, body = _get(server, "/api/data")
    assert st == 200 and h["Content-Type"].startswith("application/json")
    data = json.loads(body)
    assert len(data["table"]["rows"]) == len(read_trials(tiny_run))
    st, _, body = _get(server, "/api/data?v=" + data["version"])
    assert st == 204 and body == b""
    for bad in ["/../../etc/passwd", "/static/../../run.json", "/static/..%2f..%2frun.json", "/%2e%2e/run.json",
                "/run.json", "/trials.jsonl", "/static/", "/static/dashboard.js", "//etc/passwd",
                "/api/data/../../run.json", "/index.html/..", "/static/plotly.min.js/../../../run.json"]:
        st, _, body = _get(server, bad)
        assert st == 404, bad
        assert b"nasmt_run" not in body and b"root:" not in body


def test_gzip_when_accepted(server):
    import gzip

    st, h, body = _get(server, "/api/data", {"Accept-Encoding": "gzip"})
    assert st == 200 and h.get("Content-Encoding") == "gzip"
    assert json.loads(gzip.decompress(body))["mode"] == "live"


def test_bad_input_is_a_user_error(tmp_path, tiny_run):
    with pytest.raises(RunDirError):
        make_server([tmp_path], port=0)
    with pytest.raises(UserError, match="unknown objective"):
        make_server([tiny_run], port=0, objectives="params,nope")


def test_api_data_picks_up_new_trials(run_copy):
    srv = make_server([run_copy], port=0)
    th = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    th.start()
    try:
        st, _, body = _get(srv, "/api/data")
        first = json.loads(body)
        n = len(first["table"]["rows"])
        recs = read_trials(run_copy)
        new = dict(next(r for r in recs if r["status"] == "complete"))
        new["number"] = 77
        new["metrics"] = dict(new["metrics"], mean_error=0.01, params=10)  # dominates everything
        with open(run_copy / "trials.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(new) + "\n")
        st, _, body = _get(srv, "/api/data?v=" + first["version"])
        assert st == 200
        data = json.loads(body)
        assert data["version"] != first["version"]
        assert len(data["table"]["rows"]) == n + 1
        row = next(r for r in data["table"]["rows"] if r[1] == 77)
        assert row[3] == 1, "the new trial is on the front"
        assert data["runs"][0]["front"] == [77]
        st, _, _ = _get(srv, "/api/data?v=" + data["version"])
        assert st == 204
    finally:
        srv.shutdown()
        srv.server_close()


# ----------------------------------------------------------------------------- real browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chrome(tmp_path):
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


def _wait(driver, js: str, timeout: float = 60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = driver.execute_script(js)
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {js}")


def _start_dashboard(run: Path, port: int) -> subprocess.Popen:
    p = subprocess.Popen(
        [sys.executable, "-m", "nasmt.cli", "dashboard", str(run), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    end = time.monotonic() + 60
    while time.monotonic() < end:
        r, _, _ = select.select([p.stdout], [], [], 0.5)
        if r:
            line = p.stdout.readline()
            if f"http://127.0.0.1:{port}/" in line:
                return p
        if p.poll() is not None:
            raise AssertionError(f"dashboard exited {p.returncode}: {p.stderr.read()}")
    p.kill()
    raise AssertionError("dashboard did not print its URL")


def test_browser_click_pareto_point_selects_trial(tiny_run, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    port = _free_port()
    proc = _start_dashboard(tiny_run, port)
    driver = None
    try:
        driver = _chrome(tmp_path)
        driver.get(f"http://127.0.0.1:{port}/")
        _wait(driver, "return document.body.dataset.ready === '1'")
        before = driver.execute_script("return document.body.dataset.selectedTrial")
        # an SVG point of the Pareto plot whose trial is not the selected one
        target = driver.execute_script("""
            const gd = document.getElementById('plot-pareto');
            const pts = gd.querySelectorAll('.scatterlayer .trace .points path.point');
            for (const el of pts) {
              const d = el.__data__, tr = el.closest('.trace').__data__[0].trace;
              const cd = tr.customdata[d.i];
              if (String(cd[1]) !== arguments[0]) {
                el.setAttribute('data-test-target', '1');
                return cd[1];
              }
            }
            return null;""", before)
        assert target is not None, "no other point to click"
        el = driver.find_element(By.CSS_SELECTOR, "#plot-pareto path.point[data-test-target='1']")
        ActionChains(driver).move_to_element(el).pause(0.3).click().perform()
        try:
            _wait(driver, f"return document.body.dataset.selectedTrial === '{target}'", timeout=10)
            print("selected by a real mouse click on the SVG point")
        except AssertionError:  # a real click missed (e.g. an overlapping point): Plotly's own event
            driver.execute_script("""
                const gd = document.getElementById('plot-pareto');
                const el = gd.querySelector("path.point[data-test-target='1']");
                const tr = el.closest('.trace').__data__[0].trace;
                gd.emit('plotly_click', {points: [{customdata: tr.customdata[el.__data__.i], pointNumber: el.__data__.i}]});""")
            _wait(driver, f"return document.body.dataset.selectedTrial === '{target}'", timeout=10)

        rec = next(t for t in read_trials(tiny_run) if t["number"] == target)
        cmd = driver.find_element(By.ID, "export-cmd").text
        assert cmd == f"nasmt export {shlex.quote(str(tiny_run))} --trial {target} --out exported/tiny-t{target}"
        assert driver.find_element(By.ID, "sel-title").text.startswith(f"Trial {target}")
        assert driver.find_element(By.ID, "arch-hash").text == f"[{rec['spec']['hash']}]"
        arch_text = driver.find_element(By.ID, "plot-arch").text
        assert "stage 1" in arch_text
        for b in rec["spec"]["branches"]:
            assert b["task"] in arch_text  # task names (= idents here) on the branch outputs
        assert f"linear → {rec['spec']['branches'][0]['out']}" in arch_text
        n_sel = driver.execute_script(
            "return Array.from(document.querySelectorAll('#trial-table tbody tr.sel')).map(r => r.dataset.trial)")
        assert n_sel == [str(target)]
        # the highlight ring sits on the clicked point
        ring = driver.execute_script("""
            const gd = document.getElementById('plot-pareto');
            const t = gd.data.find(t => t.name === 'selected'); return [t.x[0], t.y[0]];""")
        assert ring[0] == pytest.approx(rec["metrics"]["mean_error"], rel=1e-4) and ring[1] == rec["metrics"]["params"]
        # a table click selects too
        other = driver.execute_script("""
            const r = Array.from(document.querySelectorAll('#trial-table tbody tr')).find(r => r.dataset.trial !== arguments[0]);
            r.scrollIntoView(); return r.dataset.trial;""", str(target))
        driver.find_element(By.CSS_SELECTOR, f"#trial-table tbody tr[data-trial='{other}']").click()
        _wait(driver, f"return document.body.dataset.selectedTrial === '{other}'", timeout=10)

        shot = tmp_path / "dashboard.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, severe
    finally:
        if driver is not None:
            driver.quit()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
