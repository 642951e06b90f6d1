"""A Python that sees torch, numpy, safetensors and pandas but cannot import nasmt: where
the export tests run a generated model.py."""

from __future__ import annotations

import os
import subprocess
import sysconfig
import venv
from pathlib import Path


def venv_without_nasmt(path: Path) -> Path:
    """A venv that sees our site-packages (via a .pth) but not nasmt; returns its python."""
    venv.EnvBuilder(with_pip=False).create(path)
    site = next(path.glob("lib/python*/site-packages"))
    ours = sysconfig.get_paths()["purelib"]
    (site / "deps.pth").write_text(ours + "\n")  # a plain path: nested .pth (nasmt's editable hook) are not run
    return path / "bin" / "python"


def run_without_nasmt(python: Path, script: str, cwd: Path) -> subprocess.CompletedProcess:
    """`script` run by `python` in `cwd`; it fails (exit 3) if nasmt is importable."""
    guard = "import sys\ntry:\n    import nasmt\n    print('NASMT_IMPORTABLE'); sys.exit(3)\nexcept ImportError:\n    pass\n"
    return subprocess.run([str(python), "-c", guard + script], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")})
