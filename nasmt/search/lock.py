"""One driver per run directory: an exclusive `flock` on `RUN/.nasmt.lock`, held for the
driver's lifetime and dropped by the kernel when the process dies (no stale locks)."""

from __future__ import annotations

import os
from pathlib import Path

from nasmt.errors import RunDirError
from nasmt.run import LOCK_FILE

_HELD: dict[str, int] = {}  # run dir -> fd of the flock this process holds

LOCKED_MESSAGE = "another nasmt process is running this search (wait for it or stop it first)"


def hold_run_lock(run_dir: Path) -> None:
    """Take the run directory's driver lock for the rest of this process's life
    (idempotent within a process). Raises RunDirError if another process holds it."""
    import fcntl

    key = str(Path(run_dir).resolve())
    if key in _HELD:
        return
    fd = os.open(os.path.join(key, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise RunDirError(f"{run_dir}: {LOCKED_MESSAGE}") from None
    os.set_inheritable(fd, False)
    _HELD[key] = fd
