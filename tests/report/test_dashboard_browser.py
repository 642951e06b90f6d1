"""The live dashboard in a real headless Chromium (`nasmt dashboard` in a subprocess):
a real mouse click on a Pareto point selects its trial, a table click selects too, and
markup in user strings never becomes DOM elements."""

from __future__ import annotations

import json
import re
import shlex
import time

import pytest

from dashboard_helpers import EVIL_ERROR, EVIL_NUMBER, EVIL_TASK, chrome, free_port, make_evil, start_dashboard, stop, wait_js
from nasmt.report import render_html, write_report
from nasmt.run import TrialStatus, read_trials

# Plotly picks the point nearest the mouse within `hoverdistance` (20 px by default):
# a target with no other point this close is hit by a click at its centre, and only it.
CLEAR_PX = 45

# Every drawn Pareto marker (SVG) with its trial number and its centre on the screen.
POINTS_JS = """
const gd = document.getElementById('plot-pareto'), out = [];
for (const el of gd.querySelectorAll('.scatterlayer .trace .points path.point')) {
  const tr = el.closest('.trace').__data__[0].trace, cd = tr.customdata && tr.customdata[el.__data__.i];
  if (!cd) continue;
  const r = el.getBoundingClientRect();
  out.push({number: cd[1], x: r.left + r.width / 2, y: r.top + r.height / 2});
}
return out;"""


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    d = chrome(tmp_path_factory.mktemp("chrome"))
    yield d
    d.quit()


@pytest.fixture
def dashboard(request):
    """`nasmt dashboard` of a run on a free port: yields its URL."""
    procs = []

    def start(run):
        port = free_port()
        procs.append(start_dashboard(run, port))
        return f"http://127.0.0.1:{port}/"

    yield start
    for p in procs:
        stop(p)


def _open(driver, url):
    driver.get(url)
    wait_js(driver, "return document.body.dataset.ready === '1'")


def _clear_target(points, selected: str):
    """A point that is not the selected trial and has no other point within CLEAR_PX."""
    def gap(p):
        return min(((p["x"] - q["x"]) ** 2 + (p["y"] - q["y"]) ** 2) ** 0.5 for q in points if q is not p)
    cands = [p for p in points if str(p["number"]) != selected and gap(p) > CLEAR_PX]
    return max(cands, key=gap) if cands else None


def _real_click(driver, x: float, y: float):
    from selenium.webdriver.common.action_chains import ActionChains

    actions = ActionChains(driver)
    actions.w3c_actions.pointer_action.move_to_location(round(x), round(y))
    actions.w3c_actions.pointer_action.pause(0.3)  # let Plotly compute the hover under the mouse
    actions.w3c_actions.pointer_action.click()
    actions.perform()


def test_browser_click_pareto_point_selects_trial(driver, dashboard, tiny_run):
    from selenium.webdriver.common.by import By

    _open(driver, dashboard(tiny_run))
    driver.get_log("browser")  # start the console check from here
    before = driver.execute_script("return document.body.dataset.selectedTrial")
    points = driver.execute_script(POINTS_JS)
    assert len(points) >= 2, points
    target = _clear_target(points, before)
    assert target is not None, f"no isolated point to click: {points}"
    n = target["number"]
    _real_click(driver, target["x"], target["y"])
    wait_js(driver, f"return document.body.dataset.selectedTrial === '{n}'", timeout=10)

    rec = next(t for t in read_trials(tiny_run) if t.number == n)
    cmd = driver.find_element(By.ID, "export-cmd").text
    assert cmd == f"nasmt export {shlex.quote(str(tiny_run))} --trial {n} --out exported/tiny-t{n}"
    assert driver.find_element(By.ID, "sel-title").text.startswith(f"Trial {n}")
    assert driver.find_element(By.ID, "arch-hash").text == f"[{rec.arch_hash}]"
    arch_text = driver.find_element(By.ID, "plot-arch").text
    assert "stage 1" in arch_text
    for b in rec.spec["branches"]:
        assert b["task"] in arch_text  # task names (= idents here) on the branch outputs
    assert f"linear → {rec.spec['branches'][0]['out']}" in arch_text
    n_sel = driver.execute_script(
        "return Array.from(document.querySelectorAll('#trial-table tbody tr.sel')).map(r => r.dataset.trial)")
    assert n_sel == [str(n)]
    # the highlight ring sits on the clicked point
    ring = driver.execute_script("""
        const gd = document.getElementById('plot-pareto');
        const t = gd.data.find(t => t.name === 'selected'); return [t.x[0], t.y[0]];""")
    assert ring[0] == pytest.approx(rec.metrics["mean_error"], rel=1e-4) and ring[1] == rec.metrics["params"]
    # a table click selects too
    other = driver.execute_script("""
        const r = Array.from(document.querySelectorAll('#trial-table tbody tr')).find(r => r.dataset.trial !== arguments[0]);
        r.scrollIntoView(); return r.dataset.trial;""", str(n))
    driver.find_element(By.CSS_SELECTOR, f"#trial-table tbody tr[data-trial='{other}']").click()
    wait_js(driver, f"return document.body.dataset.selectedTrial === '{other}'", timeout=10)
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe


def test_browser_never_runs_markup_from_user_strings(driver, dashboard, run_copy):
    from selenium.webdriver.common.by import By

    make_evil(run_copy)
    _open(driver, dashboard(run_copy))
    driver.execute_script("window.nasmt.drawAll()")  # every lazy view, so every label is in the DOM
    wait_js(driver, "return document.body.dataset.allDrawn === document.body.dataset.version")
    # select the failed trial (its reason is markup) with a real click on its table row
    row = driver.find_element(By.CSS_SELECTOR, f"#trial-table tbody tr[data-trial='{EVIL_NUMBER}']")
    driver.execute_script("arguments[0].scrollIntoView()", row)
    row.click()
    wait_js(driver, f"return document.body.dataset.selectedTrial === '{EVIL_NUMBER}'", timeout=10)
    assert driver.find_element(By.ID, "sel-error").text == EVIL_ERROR  # shown as text
    # then a trial with an architecture (branch boxes carry the task names)
    driver.execute_script("window.nasmt.select(0, false)")
    wait_js(driver, "return document.getElementById('plot-arch').textContent.length > 0", timeout=10)
    found = driver.execute_script("""
        return {
          pwned: window.__pwned === undefined ? null : window.__pwned,
          injected: document.querySelectorAll('img, [onerror], [onload], #plot-arch script, #trial-table script').length,
          scripts: document.scripts.length,
          header: document.getElementById('trial-table').tHead.textContent,
          info: document.getElementById('run-info').textContent,
        };""")
    assert found["pwned"] is None, "user markup ran"
    assert found["injected"] == 0 and found["scripts"] == 3  # plotly.js, the data, the page's JS
    assert EVIL_TASK in found["header"] and EVIL_TASK in found["info"]  # the names are shown, as text


def test_page_reads_table_columns_by_key(driver, tiny_run, tmp_path):
    """Columns reordered and a new one inserted first: the page still shows every value
    under the right name (it never reads a row by position)."""
    html = write_report([tiny_run], out=tmp_path / "r.html").read_text(encoding="utf-8")
    p = json.loads(re.search(r'<script type="application/json" id="nasmt-data">(.*?)</script>', html, re.S).group(1))
    tab = p["table"]
    tab["columns"] = [{"key": "extra", "label": "extra", "type": "text", "objective": False}] + tab["columns"][::-1]
    tab["rows"] = [["x"] + row[::-1] for row in tab["rows"]]
    page = tmp_path / "shuffled.html"
    page.write_text(render_html(p), encoding="utf-8")
    driver.get(page.as_uri())
    wait_js(driver, "return document.body.dataset.ready === '1'")
    keys = [c["key"] for c in tab["columns"]]
    rows = [dict(zip(keys, r)) for r in tab["rows"]]
    sel = rows[p["selected"]]
    n = sel["number"]
    assert driver.execute_script("return document.body.dataset.selectedTrial") == str(n)
    assert driver.execute_script("return document.getElementById('export-cmd').textContent") == \
        f"nasmt export {shlex.quote(str(tiny_run))} --trial {n} --out exported/tiny-t{n}"
    status = driver.execute_script("return document.getElementById('sel-status').textContent")
    assert status == ("Pareto front" if sel["front"] else sel["status"])
    shown = driver.execute_script(
        "return Array.from(document.querySelectorAll('#trial-table tbody tr')).map(r => r.dataset.trial)")
    assert sorted(shown, key=int) == [str(r["number"]) for r in rows]
    best = min(t.metrics["mean_error"] for t in read_trials(tiny_run) if t.status == TrialStatus.COMPLETE)
    cards = driver.execute_script("return document.getElementById('cards').textContent")
    assert f"{best:#.4g}best mean error" in cards  # the page: toPrecision(4), trailing zeros kept


def _dom_order(driver) -> list[str]:
    """The trial numbers of the table's rows, in the order the DOM holds them."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#trial-table tbody tr')).map(r => r.dataset.trial)")


def _click_header_until(driver, title: str, want: list[str], timeout: float = 10) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f"#trial-table thead th[title='{title}']").click()
    end = time.monotonic() + timeout
    while (got := _dom_order(driver)) != want and time.monotonic() < end:
        time.sleep(0.1)
    assert got == want, f"after clicking {title!r}: rows {got}, want {want}"


def test_browser_header_click_sorts_the_table_by_that_column(driver, dashboard, tiny_run):
    """A real click on the "parameters" header puts the rows in ascending parameter order,
    a second click in descending order (trial number breaks ties; the data decides)."""
    _open(driver, dashboard(tiny_run))
    trials = read_trials(tiny_run)
    by_number = [str(t.number) for t in trials]
    assert _dom_order(driver) == by_number  # the page opens sorted by trial number
    rows = [t for t in trials if t.metrics.get("params") is not None]
    missing = [str(t.number) for t in trials if t.metrics.get("params") is None]  # last either way
    ascending = [str(t.number) for t in sorted(rows, key=lambda t: (t.metrics["params"], t.number))] + missing
    descending = [str(t.number) for t in sorted(rows, key=lambda t: (-t.metrics["params"], t.number))] + missing
    assert ascending != by_number, "the run's parameter order must differ from its trial order"
    _click_header_until(driver, "sort by parameters", ascending)
    _click_header_until(driver, "sort by parameters", descending)
