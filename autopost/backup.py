"""`autopost backup PATH`: a consistent copy of the live SQLite database.

SQLite's online backup copies the database page by page inside one read transaction,
so runs may keep writing meanwhile and the copy is the database as of one moment. The
copy goes to a private temporary file beside PATH and is renamed into place only once
complete and checked, so PATH is never a half-written database.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path

from autopost.errors import EnvironmentTrouble, UsageError


def backup(source: Path, target: Path, *, overwrite: bool = False) -> int:
    """Copy `source` to `target`; returns the copy's size in bytes."""
    target = target.expanduser()
    if target.is_dir():
        raise UsageError(f"{target} is a folder; give a file name for the copy")
    if target.exists() and not overwrite:
        raise UsageError(f"{target} exists (use --force to replace it)")
    if target.resolve() == source.resolve():
        raise UsageError("the backup cannot be the database itself")
    folder = target.parent
    if not folder.is_dir():
        raise UsageError(f"no such folder: {folder}")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    os.close(fd)  # mkstemp made it 0600; sqlite writes into it
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
        try:
            dst = sqlite3.connect(tmp)
            try:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode = DELETE")  # a single self-contained file
                ok = dst.execute("PRAGMA quick_check").fetchone()[0]
                if ok != "ok":
                    raise EnvironmentTrouble(f"the copy did not check out: {ok}")
            finally:
                dst.close()
        finally:
            src.close()
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except sqlite3.Error as exc:
        raise EnvironmentTrouble(f"backup failed: {exc}") from None
    except OSError as exc:
        raise EnvironmentTrouble(f"backup failed: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return target.stat().st_size
