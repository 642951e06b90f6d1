"""The package's shape: imports point down the data path and never form a cycle, and
modules stay small enough to read in one sitting."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "nasmt"
# The data path, bottom to top: a module may import its own layer or a lower one.
LAYERS = ["errors", "cache", "space", "model", "data", "train", "quant", "run", "search", "baselines", "report",
          "export", "cli"]
MAX_MODULE_LINES = 400  # the figure the README states ("No Python module is over 400 lines")


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(path: Path, name: str, modules: dict) -> set[str]:
    """nasmt modules imported anywhere in the file (function-level imports included)."""
    is_pkg = path.name == "__init__.py"
    here = name if is_pkg else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            for a in node.names:  # `from pkg import submodule` imports the submodule
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def _graph():
    mods = _modules()
    return {n: _imports(p, n, mods) for n, p in mods.items()}


def _layer(mod: str) -> str:
    return mod.split(".")[1] if mod.count(".") else "nasmt"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph, or None (iterative DFS, colouring)."""
    colour = {n: 0 for n in graph}
    for root in graph:
        if colour[root]:
            continue
        stack = [(root, iter(sorted(graph[root])))]
        path = [root]
        colour[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour.get(nxt, 2) == 1:
                return path[path.index(nxt):] + [nxt]
            elif colour.get(nxt) == 0:
                colour[nxt] = 1
                stack.append((nxt, iter(sorted(graph[nxt]))))
                path.append(nxt)
    return None


def test_no_import_cycle_between_modules():
    assert _cycle(_graph()) is None, f"import cycle: {' -> '.join(_cycle(_graph()))}"


def test_no_import_cycle_between_packages():
    pk: dict[str, set[str]] = {}
    for mod, deps in _graph().items():
        pk.setdefault(_layer(mod), set()).update(_layer(d) for d in deps if _layer(d) != _layer(mod))
    assert _cycle(pk) is None, f"package cycle: {' -> '.join(_cycle(pk))}"


def test_imports_point_down_the_data_path():
    bad = []
    for mod, deps in _graph().items():
        lm = _layer(mod)
        if lm == "nasmt":
            continue
        for d in deps:
            ld = _layer(d)
            if ld != "nasmt" and LAYERS.index(ld) > LAYERS.index(lm):
                bad.append(f"{mod} imports {d}")
    assert not bad, "imports pointing up the data path: " + "; ".join(sorted(bad))


def test_cycle_detector_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_modules_stay_small():
    big = {n: len(p.read_text().splitlines()) for n, p in _modules().items()}
    over = {n: k for n, k in big.items() if k > MAX_MODULE_LINES}
    assert not over, f"modules over {MAX_MODULE_LINES} lines: {over}"


def test_the_trial_sink_worker_imports_neither_torch_nor_ray_tune():
    """Every search starts a TrialSink actor in a Ray worker of its own, which imports the
    sink's module: through the `nasmt.search` package it pulled in the driver, torch and Ray
    Tune (6.3 instead of 1.2 CPU seconds per search). The package loads its names lazily;
    its public names still import."""
    import subprocess
    import sys

    code = ("import sys, nasmt.search.sink\n"
            "heavy = sorted(m for m in ('torch', 'ray.tune', 'optuna', 'lark') if m in sys.modules)\n"
            "assert not heavy, heavy\n"
            "from nasmt.search import SAMPLERS, SearchConfig, prepare, run_search, STUDY_NAME\n"
            "assert 'torch' in sys.modules and callable(run_search) and callable(prepare)\n"
            "try:\n"
            "    from nasmt.search import nothing_here\n"
            "except ImportError:\n"
            "    pass\n"
            "else:\n"
            "    raise AssertionError('a missing name imported')\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PKG.parent)
    assert p.returncode == 0, p.stderr
