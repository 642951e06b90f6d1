"""`.ci/run` fails when pytest ran no test (pytest's exit 5), and passes pytest's own
exit code through otherwise: the function it uses, run by bash as CI runs it."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _status(rc: int) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f". .ci/pytest_status.sh; ci_status {rc}"], cwd=ROOT,
                          capture_output=True, text=True, check=True)


def test_no_test_collected_fails_ci():
    p = _status(5)
    assert p.stdout.strip() == "5"
    assert "collected no tests" in p.stderr


def test_pytest_exit_codes_pass_through():
    for rc in (0, 1, 2):
        p = _status(rc)
        assert p.stdout.strip() == str(rc) and p.stderr == ""


def test_ci_run_uses_that_status_after_the_readme_test_command():
    run = (ROOT / ".ci" / "run").read_text().splitlines()
    readme = (ROOT / "README.md").read_text()
    cmd = ". .venv/bin/activate && python -m pytest -q"
    assert cmd in readme and cmd in run
    after = run[run.index(cmd):]
    assert any("ci_status" in line and line.startswith("exit") for line in after)


def test_an_empty_pytest_run_exits_5_and_ci_turns_it_into_a_failure(tmp_path):
    (tmp_path / "empty").mkdir()
    p = subprocess.run(["bash", "-c", f"cd {tmp_path}/empty && python -m pytest -q -p no:cacheprovider; "
                        f"rc=$?; . {ROOT}/.ci/pytest_status.sh; exit $(ci_status $rc)"],
                       capture_output=True, text=True)
    assert p.returncode == 5, p.stdout + p.stderr
