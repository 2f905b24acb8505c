"""Opening the SQLite file: private permissions, WAL, FULL sync, busy timeout, error mapping.

Standard library only: the idle run-due path uses this without sqlite-utils.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from autopost.errors import EnvironmentTrouble

MIN_SQLITE = (3, 35, 0)
BUSY_TIMEOUT_S = 30.0


def check_sqlite_version(version: tuple[int, ...] = sqlite3.sqlite_version_info) -> None:
    if tuple(version) < MIN_SQLITE:
        have = ".".join(map(str, version))
        raise EnvironmentTrouble(f"SQLite {have} is too old; autopost needs 3.35 or newer")


def open_connection(path: Path, *, create: bool = True, busy_timeout: float | None = None
                    ) -> sqlite3.Connection:
    """An autocommit connection (transactions are explicit), ready for WAL + FULL."""
    check_sqlite_version()
    path = Path(path)
    if not path.exists():
        if not create:
            raise EnvironmentTrouble(f"database not found: {path}")
        _create_private(path)
    elif not os.access(path, os.R_OK):
        raise EnvironmentTrouble(f"cannot read the database {path}: permission denied")
    timeout = _busy_timeout() if busy_timeout is None else busy_timeout
    with translate_errors(path):
        conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            _ensure_wal(conn, timeout)
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            conn.close()
            raise
    return conn


def _ensure_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Switch a new database to WAL. The switch needs the database to itself and SQLite
    does not wait for that (no busy handler), so two processes creating the database at
    once would see "database is locked" at once: retry until the busy timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if mode.lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc).lower() or time.monotonic() > deadline:
                raise
        time.sleep(0.01)


def _busy_timeout() -> float:
    """How long to wait for another process's write lock (AUTOPOST_BUSY_TIMEOUT, seconds)."""
    raw = os.environ.get("AUTOPOST_BUSY_TIMEOUT")
    if raw is None:
        return BUSY_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value < 0:
        from autopost.errors import ConfigError

        raise ConfigError(f"AUTOPOST_BUSY_TIMEOUT: expected seconds, got {raw!r}")
    return value


def _create_private(path: Path) -> None:
    """Create the folder 0700 and an empty file 0600 before SQLite opens it."""
    try:
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
    except FileExistsError:
        pass
    except OSError as exc:
        raise EnvironmentTrouble(f"cannot create the database {path}: {exc.strerror}") from None


@contextlib.contextmanager
def translate_errors(path: Path | str | None = None) -> Iterator[None]:
    """Turn SQLite's environment failures into one-line EnvironmentTrouble (exit 3)."""
    where = f" ({path})" if path else ""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        text = str(exc)
        low = text.lower()
        if "locked" in low or "busy" in low:
            msg = f"the database is locked by another process past the timeout{where}"
        elif "not a database" in low or "malformed" in low or "corrupt" in low:
            msg = f"the database file is unreadable or corrupt{where}: {text}"
        elif "readonly" in low or "read-only" in low:
            msg = f"the database is read-only{where}: {text}"
        elif "full" in low:
            msg = f"the disk is full{where}: {text}"
        elif "unable to open" in low or "disk i/o" in low:
            msg = f"cannot open the database{where}: {text}"
        else:
            raise
        raise EnvironmentTrouble(msg) from None
