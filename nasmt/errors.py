"""nasmt's own error types.

Every mistake a user can make (a grammar, a task suite, a CLI flag, a run directory)
raises a `UserError`. The CLI prints its one-line message and exits with code 2, with no
traceback. Anything else escaping is a bug in nasmt.
"""

from __future__ import annotations


class NasmtError(Exception):
    """Base class of every error nasmt raises on purpose."""


class UserError(NasmtError):
    """Bad input from the user. `str(err)` is one line naming where (file:line:col,
    field, rule or decision) and what is wrong."""

    exit_code = 2


class GrammarError(UserError):
    """A grammar file that does not parse or does not validate."""


class SuiteError(UserError):
    """A task suite file (or the data it points at) that cannot be used."""


class DataError(SuiteError):
    """A dataset that is missing or does not match its suite."""


class RunDirError(UserError):
    """A run directory that is missing, not a nasmt run, or not what the command needs."""


class ResourceError(UserError):
    """A resource request the cluster cannot satisfy (e.g. GPUs where there are none)."""


class TrialError(NasmtError):
    """A trial failed for a reason nasmt detected (NaN loss, timeout, ...)."""
