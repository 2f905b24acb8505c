"""User-facing errors. The CLI prints `str(error)` as one line and exits with `exit_code`.

    AutopostError                 exit 1
    ├── UsageError                exit 2   bad input: a date, a flag, a file, text too long
    │   ├── NotFound              exit 2   unknown job or account
    │   └── ConfigError           exit 2   a malformed config value (names the key)
    ├── EnvironmentTrouble        exit 3   database unreadable, locked, disk full
    │   └── DatabaseMissing       exit 3   no database there (only a few commands create one)
    ├── NeedsAttention            exit 1   the command ran, but something needs a human
    └── Interrupted               exit 130 Ctrl-C

Platform failures during a run are not exceptions of this tree: adapters raise
`autopost.platforms.base.PlatformError`, which the engine records as data.
"""

from __future__ import annotations


class AutopostError(Exception):
    exit_code = 1


class UsageError(AutopostError):
    exit_code = 2


class NotFound(UsageError):
    pass


class ConfigError(UsageError):
    pass


class EnvironmentTrouble(AutopostError):
    exit_code = 3


class DatabaseMissing(EnvironmentTrouble):
    """The database file does not exist (and the command does not create one)."""


class NeedsAttention(AutopostError):
    exit_code = 1


class RunCrashed(AutopostError):
    """An internal error stopped a run's main thread; the message says what became of the
    jobs it had claimed."""

    exit_code = 1


class Interrupted(AutopostError):
    """Ctrl-C: one line and exit 130, like any program stopped by SIGINT."""

    exit_code = 130

    def __init__(self, message: str = "interrupted"):
        super().__init__(message)


def interrupted_by(exc: BaseException | None) -> bool:
    """Whether Ctrl-C is behind this exception: a KeyboardInterrupt, or one wrapped on its
    way out (Python 3.11 turns a KeyboardInterrupt raised in a __set_name__ while a class
    is made, during an import, into a RuntimeError caused by it)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False
