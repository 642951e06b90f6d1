"""pyproject.toml's dependency ranges are true of the environment the tests run in: every
requirement (the project's and every extra's) names a lower bound, and the installed
distribution satisfies its range, including what an extra like `ray[tune]` pulls in."""

from __future__ import annotations

import importlib.metadata as md
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
LOWER = (">=", ">", "==", "~=", "===")  # operators that bound a range from below


def _requirements() -> list[tuple[str, Requirement]]:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    out = [("dependencies", Requirement(r)) for r in project["dependencies"]]
    for extra, reqs in project.get("optional-dependencies", {}).items():
        out += [(f"[{extra}]", Requirement(r)) for r in reqs]
    return out


REQUIREMENTS = _requirements()


def _problems(where: str, req: Requirement) -> list[str]:
    """What is wrong with one declared requirement in this environment ([]: nothing)."""
    if req.marker is not None and not req.marker.evaluate():
        return []  # not for this platform / Python
    out = []
    if not any(s.operator in LOWER for s in req.specifier):
        out.append(f"{where}: {req} has no lower bound")
    try:
        installed = Version(md.version(req.name))
    except md.PackageNotFoundError:
        return out + [f"{where}: {req} is not installed"]
    if not req.specifier.contains(installed, prereleases=True):
        out.append(f"{where}: {req} but {req.name} {installed} is installed")
    for extra in sorted(req.extras):  # what the extra pulls in must be installed in its range too
        for line in md.requires(req.name) or []:
            dep = Requirement(line)
            if dep.marker is None or not dep.marker.evaluate({"extra": extra}):
                continue  # a base requirement (pip checked it) or another extra's
            try:
                version = Version(md.version(dep.name))
            except md.PackageNotFoundError:
                out.append(f"{where}: {req.name}[{extra}] needs {dep.name}, not installed")
                continue
            if not dep.specifier.contains(version, prereleases=True):
                out.append(f"{where}: {req.name}[{extra}] needs {dep}, {version} is installed")
    return out


def test_pyproject_declares_the_project_and_dev_requirements():
    names = {req.name for _, req in REQUIREMENTS}
    assert {"torch", "optuna", "ray", "pandas", "pytest"} <= names, names
    assert len(REQUIREMENTS) >= 15


@pytest.mark.parametrize("where,req", REQUIREMENTS, ids=[f"{w}{r.name}" for w, r in REQUIREMENTS])
def test_installed_version_is_in_the_declared_range(where, req):
    assert _problems(where, req) == []


def test_a_range_the_environment_breaks_is_reported():
    """The checker itself: an unbounded range, a lower bound above what is installed, a
    missing distribution and an extra whose requirements are absent are each caught."""
    optuna = Version(md.version("optuna"))
    assert _problems("x", Requirement("optuna")) == ["x: optuna has no lower bound"]
    assert _problems("x", Requirement("optuna<99")) == ["x: optuna<99 has no lower bound"]
    too_new = Requirement(f"optuna>={optuna.major + 1}.0")
    assert _problems("x", too_new) == [f"x: {too_new} but optuna {optuna} is installed"]
    assert _problems("x", Requirement("nasmt-no-such-dist>=1.0")) == ["x: nasmt-no-such-dist>=1.0 is not installed"]
    assert _problems("x", Requirement("optuna>=0.1; python_version < '3'")) == []  # not for this Python
    # an extra's own requirements are checked: Optuna's documentation extra (Sphinx, ase,
    # fvcore, ...) is not part of nasmt's environment; a made-up extra pulls in nothing
    docs = _problems("x", Requirement(f"optuna[document]>={optuna.major}.0"))
    assert docs and all(p.startswith("x: optuna[document] needs ") for p in docs), docs
    assert _problems("x", Requirement(f"optuna[nasmt-none]>={optuna.major}.0")) == []
