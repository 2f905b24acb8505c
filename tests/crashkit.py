"""Test kit for runs of the real CLI against a fake platform, killed and run again: the
database and config they share, and the clean runs that finish what they left."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from autopost.models import JobStatus
from autopost.store.sqlite import SqliteStore


def engine_files(tmp_path: Path, platform: str, lease: float
                 ) -> tuple[Path, Path, SqliteStore]:
    """A database (and a store open on it) and a config: leases of `lease` seconds, three
    jobs at a time, no quota on `platform`."""
    db = tmp_path / "autopost.db"
    config = tmp_path / "config.toml"
    config.write_text(f"[run]\nlease_seconds = {lease}\nmax_concurrent_jobs = 3\n"
                      f"[platforms.{platform}]\nhourly_limit = 0\ndaily_limit = 0\n")
    return db, config, SqliteStore(db)


def finish(store: SqliteStore, run_due: Callable[[], str], lease: float, rounds: int) -> None:
    """Clean runs (`run_due` runs one and returns its stderr), each after the leases a
    killed run may hold have run out, until nothing is pending, running or unknown."""
    for _ in range(rounds):
        counts = store.count_by_status()
        if not (counts[JobStatus.PENDING] or counts[JobStatus.RUNNING]
                or counts[JobStatus.UNKNOWN]):
            return
        time.sleep(lease + 0.2)
        err = run_due()
        assert "Traceback" not in err, err
    raise AssertionError(f"jobs left unfinished: {store.count_by_status()}")
