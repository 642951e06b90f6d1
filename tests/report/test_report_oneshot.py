"""The report of a one-shot run: the inheritance check's scatter (drawn only once
`nasmt oneshot-check` wrote RUN/oneshot_check.json, with exactly its pairs and its tau / rho),
and inherited, trained and finalized trials told apart in the Pareto view (open markers for
inherited ones, the kind in each point's customdata) and the table (`weights` column).

The run is the hand-built people/mtl one-shot run of tests/search/test_oneshot_check.py
(6 inherited candidates, a trained trial, a failed one); it is reported, then finalized
(`nasmt finalize`: the front fine-tuned from its inherited weights) and checked
(`nasmt oneshot-check --n 4`), then reported again, all through the real CLI."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from conftest import ROOT, nasmt
from dashboard_helpers import chrome, figure_points, page_payload, table_rows, values, wait_js
from nasmt.report import oneshot as O
from nasmt.report.style import rounded
from nasmt.run import TRIALS_FILE, read_trials

sys.path.append(str(ROOT / "tests" / "search"))  # the one-shot run builder (tests/ has no packages)
from test_oneshot_check import N_INHERITED, build_oneshot_run  # noqa: E402

TRAINED, FAILED = N_INHERITED, N_INHERITED + 1  # the builder's ordinary and failed records


def _page(run) -> dict:
    nasmt("report", run)
    return page_payload((run / "report.html").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """(run, page before finalize and check, page after both, the check's content)."""
    run = build_oneshot_run(tmp_path_factory.mktemp("oneshot-report") / "run")
    before = _page(run)
    nasmt("finalize", run, "--epochs", 0.05)
    nasmt("oneshot-check", run, "--n", 4, "--seed", 1)
    check = json.loads((run / O.CHECK_FILE).read_text(encoding="utf-8"))
    return run, before, _page(run), check


def _expected_kinds(run) -> dict[int, str]:
    out = {}
    for r in read_trials(run):
        if r.number == FAILED:
            out[r.number] = ""
        elif r.is_finalized:
            out[r.number] = "finalized"
        else:
            out[r.number] = "trained" if r.number == TRAINED else "inherited"
    return out


def _pareto_kinds(page: dict) -> dict[int, tuple[str, str]]:
    """Trial number -> (weights kind, marker symbol) of every Pareto point."""
    out = {}
    for t in page["figures"]["pareto"]["data"]:
        cd = t.get("customdata")
        if not cd or not isinstance(cd[0], list) or not isinstance(cd[0][1], int):
            continue
        sym = t["marker"]["symbol"]
        syms = values(sym) if isinstance(sym, (list, dict)) else [sym] * len(cd)
        for row, s in zip(cd, syms):
            assert len(row) == 3, row
            out[row[1]] = (row[2], s)
    return out


def test_constants_match_the_search_side():
    """The report writes the file name and the record marker itself (it never loads Ray)."""
    from nasmt.search.oneshot.bank import INHERITED
    from nasmt.search.oneshot.check import CHECK_FILE

    assert O.CHECK_FILE == CHECK_FILE and O.INHERITED_KEY == INHERITED


def test_no_scatter_before_the_check_and_inherited_points_apart(pages):
    run, before, _, _ = pages
    assert "oneshot" not in before["figures"]
    kinds = {n: ("trained" if n == TRAINED else "inherited") for n in range(N_INHERITED + 1)}
    rows = {r["number"]: r["weights"] for r in table_rows(before)}
    assert rows == kinds | {FAILED: ""}
    drawn = _pareto_kinds(before)
    assert {n: k for n, (k, _) in drawn.items()} == kinds
    for n, (k, s) in drawn.items():
        assert s.endswith("-open") == (k == "inherited"), (n, k, s)


def test_scatter_draws_exactly_the_checked_pairs(pages):
    run, _, after, check = pages
    assert len(check["pairs"]) == 4
    fig = after["figures"]["oneshot"]
    # the pairs as the page writes every number (rounded to style.SIG_DIGITS significant digits)
    assert figure_points(fig) == {p["number"]: [(rounded(p["inherited"]), rounded(p["scratch"]))] for p in check["pairs"]}
    rows = {r["number"]: g for g, r in enumerate(table_rows(after))}
    for t in fig["data"]:  # each point carries its table row, like the Pareto view's
        assert all(row[0] == rows[row[1]] for row in t["customdata"])
    title = fig["layout"]["title"]["text"]
    for k in ("kendall_tau", "spearman_rho"):
        assert check[k] is not None and f"{check[k]:.3f}" in title


def test_finalized_points_apart_from_inherited_and_trained(pages):
    run, _, after, _ = pages
    kinds = _expected_kinds(run)
    assert "finalized" in kinds.values() and "inherited" in kinds.values()
    assert {r["number"]: r["weights"] for r in table_rows(after)} == kinds
    drawn = _pareto_kinds(after)
    assert {n: k for n, (k, _) in drawn.items()} == {n: k for n, k in kinds.items() if k}
    for n, (k, s) in drawn.items():
        assert s.endswith("-open") == (k == "inherited"), (n, k, s)


def test_a_run_without_inherited_candidates_is_drawn_as_before(pages, tmp_path):
    """No weights column and two-entry customdata when no record is inherited."""
    run = pages[0]
    plain = tmp_path / "plain"
    shutil.copytree(run, plain)
    (plain / O.CHECK_FILE).unlink()
    lines = (plain / TRIALS_FILE).read_text().splitlines(keepends=True)
    (plain / TRIALS_FILE).write_text("".join(ln for ln in lines if f'"{O.INHERITED_KEY}"' not in ln))
    page = _page(plain)
    assert "weights" not in [c["key"] for c in page["table"]["columns"]] and "oneshot" not in page["figures"]
    pts = [row for t in page["figures"]["pareto"]["data"] for row in (t.get("customdata") or [])
           if isinstance(row, list) and isinstance(row[1], int)]
    assert pts and all(len(row) == 2 for row in pts)


def test_page_draws_the_scatter_in_chromium(pages, tmp_path):
    """The page shows the check's card and Plotly draws its points (one per pair)."""
    run, _, _, check = pages
    driver = chrome(tmp_path)
    try:
        driver.get((run / "report.html").as_uri())
        wait_js(driver, "return document.body.dataset.ready === '1'")
        driver.execute_script("document.getElementById('oneshot-card').scrollIntoView()")
        wait_js(driver, "return document.getElementById('plot-oneshot').dataset.drawn")
        hidden, n = driver.execute_script("""
            var d = document.getElementById('plot-oneshot');
            return [document.getElementById('oneshot-card').hidden, d.querySelectorAll('.scatterlayer .point').length];""")
        assert not hidden and n == len(check["pairs"])
    finally:
        driver.quit()
