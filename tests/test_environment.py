"""Environment trouble: a database locked past the timeout is exit 3, one line, no change."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys

from autopost.models import Account
from autopost.store.sqlite import SqliteStore


def test_locked_past_the_timeout_is_exit_3_and_changes_nothing(tmp_path):
    db = tmp_path / "autopost.db"
    (tmp_path / "config.toml").write_text("")
    from datetime import UTC, datetime

    store = SqliteStore(db)
    store.add_account(Account(name="o", platform="outbox",
                              credentials={"path": str(tmp_path / "out")}), now=datetime.now(UTC))
    store.close()
    # Hash before locking: closing any descriptor of the file would drop this process's
    # POSIX locks, the holder's included.
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the database
    try:
        env = {**os.environ, "AUTOPOST_DB": str(db), "AUTOPOST_BUSY_TIMEOUT": "0.3",
               "AUTOPOST_CONFIG": str(tmp_path / "config.toml")}
        for args in (["add", "hi", "--account", "o", "--at", "now"], ["run-due"]):
            done = subprocess.run([sys.executable, "-m", "autopost", *args], env=env,
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 3, (args, done.stderr)
            assert len(done.stderr.strip().splitlines()) == 1 and "locked" in done.stderr
            assert "Traceback" not in done.stderr
        # Readers are never blocked by a writer (WAL): listing still works.
        done = subprocess.run([sys.executable, "-m", "autopost", "list"], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_a_malformed_busy_timeout_names_the_variable(tmp_path):
    env = {**os.environ, "AUTOPOST_DB": str(tmp_path / "a.db"), "AUTOPOST_BUSY_TIMEOUT": "soon",
           "AUTOPOST_CONFIG": str(tmp_path / "none.toml")}
    (tmp_path / "none.toml").write_text("")
    done = subprocess.run([sys.executable, "-m", "autopost", "list"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "AUTOPOST_BUSY_TIMEOUT" in done.stderr
