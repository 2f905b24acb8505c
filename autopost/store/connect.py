"""Opening the SQLite file: private permissions, WAL, FULL sync, busy timeout, error mapping.

Standard library only: the idle run-due path uses this without sqlite-utils.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from autopost.errors import DatabaseMissing, EnvironmentTrouble

MIN_SQLITE = (3, 35, 0)
BUSY_TIMEOUT_S = 30.0


def check_sqlite_version(version: tuple[int, ...] = sqlite3.sqlite_version_info) -> None:
    if tuple(version) < MIN_SQLITE:
        have = ".".join(map(str, version))
        raise EnvironmentTrouble(f"SQLite {have} is too old; autopost needs 3.35 or newer")


# PRAGMA application_id of an autopost database ("APST"): another program's SQLite file
# is recognised before anything is written to it.
APPLICATION_ID = 0x41505354
SQLITE_MAGIC = b"SQLite format 3\x00"
# Tables and columns that only an autopost database has (for files from before the
# application id was set).
_OWN_COLUMNS = {"jobs": {"idempotency_key", "dispatched", "lease_owner"},
                "accounts": {"refresh_owner", "credentials"}, "attempts": {"decision"},
                "runs": {"counts"}}


def open_connection(path: Path, *, create: bool = True, busy_timeout: float | None = None
                    ) -> sqlite3.Connection:
    """An autocommit connection (transactions are explicit), ready for WAL + FULL.

    Refused with EnvironmentTrouble (exit 3), before anything is written: a path that is
    not a regular file, a file that is not SQLite, another application's SQLite file,
    and (with create=False) a database that does not exist yet."""
    check_sqlite_version()
    path = Path(path)
    _inspect(path, create)
    timeout = _busy_timeout() if busy_timeout is None else busy_timeout
    with translate_errors(path):
        conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            _check_ours(conn, path)
            _ensure_wal(conn, timeout)
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            conn.close()
            raise
    _tighten(Path(f"{path}-wal"))
    _tighten(Path(f"{path}-shm"))
    return conn


def _inspect(path: Path, create: bool) -> None:
    """Check what is at `path` without changing it; create it (privately) if allowed."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if not create:
            raise DatabaseMissing(f"database not found: {path} (nothing was created)"
                                  ) from None
        _create_private(path)
        _tighten_folder(path.parent)
        return
    except NotADirectoryError:
        raise EnvironmentTrouble(f"cannot open the database {path}: a part of the path is "
                                 "a file, not a folder") from None
    except OSError as exc:
        raise EnvironmentTrouble(f"cannot open the database {path}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise EnvironmentTrouble(f"cannot open the database {path}: it is a folder")
    if not stat.S_ISREG(st.st_mode):
        raise EnvironmentTrouble(f"cannot open the database {path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise EnvironmentTrouble(f"cannot read the database {path}: permission denied")
    if st.st_size:
        try:
            with open(path, "rb") as fh:
                head = fh.read(len(SQLITE_MAGIC))
        except OSError as exc:
            raise EnvironmentTrouble(f"cannot read the database {path}: {exc.strerror}"
                                     ) from None
        if head != SQLITE_MAGIC[: len(head)] or len(head) < len(SQLITE_MAGIC):
            raise EnvironmentTrouble(f"the database file is unreadable or corrupt ({path}): "
                                     "not an SQLite database")
    _tighten(path, st)
    _tighten_folder(path.parent)


def _check_ours(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse another application's SQLite file; mark a new database as autopost's."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    if app_id == APPLICATION_ID:
        return
    if app_id != 0:
        raise EnvironmentTrouble(f"{path} is another application's SQLite database "
                                 f"(application id {app_id:#x}); autopost left it untouched")
    tables = {name for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
        "AND name NOT LIKE 'sqlite_%'")}
    if not tables:  # a new (or empty) database: autopost's from now on
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        return
    for table, columns in _OWN_COLUMNS.items():
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if not columns <= have:
            raise EnvironmentTrouble(f"{path} is another application's SQLite database "
                                     "(its tables are not autopost's); autopost left it "
                                     "untouched")


def _tighten(path: Path, st: os.stat_result | None = None) -> None:
    """Take group and other permissions off a file autopost keeps (if it is ours)."""
    try:
        st = st or os.stat(path)
        if st.st_mode & 0o077 and st.st_uid == os.geteuid():
            os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)
    except OSError:
        pass


def _tighten_folder(folder: Path) -> None:
    """autopost's own data folder is 0700 even if it was made wider; a folder the
    operator chose for --db is theirs and stays as it is."""
    try:
        st = os.stat(folder)
        if not st.st_mode & 0o077 or st.st_uid != os.geteuid():
            return
        from autopost.config import default_db_path

        if folder.absolute() == default_db_path().parent.absolute():
            os.chmod(folder, stat.S_IMODE(st.st_mode) & 0o700)
    except (OSError, ImportError):
        pass


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
    from autopost.config import busy_timeout_from_env

    value = busy_timeout_from_env()
    return BUSY_TIMEOUT_S if value is None else value


def _create_private(path: Path) -> None:
    """Create missing folders 0700 and an empty file 0600 before SQLite opens it (the
    modes are set explicitly, so a umask of 000 does not widen them)."""
    try:
        missing = []
        folder = path.parent
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for folder in reversed(missing):
            try:
                folder.mkdir(mode=0o700)
                os.chmod(folder, 0o700)
            except FileExistsError:
                pass
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)
        finally:
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
