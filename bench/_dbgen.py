"""Building benchmark databases fast.

The schema comes from autopost itself (SqliteStore runs the migrations); accounts go in
through the store; bulk job rows go in with executemany in one transaction, in exactly
the column form SqliteStore writes (store/sqlite.py _new_job_row). Large databases are
cached in CACHE (a temp folder) for a day, keyed by their recipe and the schema version.
"""

from __future__ import annotations

import os
import random
import secrets
import sqlite3
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _util import CACHE

from autopost.models import Account
from autopost.store.schema import SCHEMA_VERSION
from autopost.store.sqlite import SqliteStore
from autopost.store.timefmt import to_db

_ALPHA = "23456789abcdefghjkmnpqrstuvwxyz"
COLUMNS = ("id", "account", "platform", "text", "media", "options", "scheduled_at", "status",
           "attempts", "max_attempts", "next_attempt_at", "key", "idempotency_key", "group_id",
           "ref", "created_at", "updated_at", "posted_at", "platform_post_id")


def job_id(i: int) -> str:
    """Unique, deterministic 8-character ids in the store's alphabet."""
    out = []
    for _ in range(8):
        i, r = divmod(i, len(_ALPHA))
        out.append(_ALPHA[r])
    return "".join(reversed(out))


def create(path: Path, accounts: Iterable[tuple[str, str, str | None, dict]]) -> None:
    """A fresh database with these (name, platform, base_url, credentials) accounts."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    store = SqliteStore(path)
    now = datetime.now(UTC)
    for name, platform, base_url, creds in accounts:
        store.add_account(Account(name=name, platform=platform, base_url=base_url,
                                  credentials=creds), now=now)
    store.close()


def insert_jobs(path: Path, rows: Iterator[tuple], *, attempts: bool = False) -> int:
    """Bulk insert job rows (COLUMNS order); for posted rows also one finished attempt."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")  # setup only; the measured runs use FULL
    conn.execute("BEGIN")
    n = 0
    marks = ", ".join("?" for _ in COLUMNS)
    sql = f"INSERT INTO jobs ({', '.join(COLUMNS)}) VALUES ({marks})"
    chunk: list[tuple] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= 20000:
            conn.executemany(sql, chunk)
            if attempts:
                _attempts(conn, chunk)
            n += len(chunk)
            chunk = []
    if chunk:
        conn.executemany(sql, chunk)
        if attempts:
            _attempts(conn, chunk)
        n += len(chunk)
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return n


def _attempts(conn: sqlite3.Connection, chunk: list[tuple]) -> None:
    i_status, i_posted = COLUMNS.index("status"), COLUMNS.index("posted_at")
    conn.executemany(
        "INSERT INTO attempts (job_id, number, run_id, started_at, finished_at, outcome, "
        "platform_post_id, decision) VALUES (?, 1, 'benchrun0000', ?, ?, 'posted', ?, 'posted')",
        [(r[0], r[i_posted], r[i_posted], r[0]) for r in chunk if r[i_status] == "posted"])


def row(i: int, account: str, platform: str, when: datetime, status: str = "pending",
        now: datetime | None = None) -> tuple:
    now = now or datetime.now(UTC)
    stamp = to_db(now)
    at = to_db(when)
    posted = status == "posted"
    return (job_id(i), account, platform, f"benchmark post number {i} #bench", "[]", "{}",
            at, status, 1 if posted or status == "failed" else 0, 5,
            None if posted or status in ("failed", "cancelled") else at, None,
            secrets.token_hex(16), None, "{}", stamp, stamp,
            at if posted else None, f"p{i}" if posted else None)


def accounts(n: int, platform: str = "noop", base_url: str | None = None,
             ) -> list[tuple[str, str, str | None, dict]]:
    return [(f"acct{a:03d}", platform, base_url, {}) for a in range(n)]


def due_rows(n: int, n_accounts: int, platform: str, *, spread: float = 60.0,
             start: int = 0) -> Iterator[tuple]:
    """n pending jobs, round-robin over the accounts, all due within the last `spread` s."""
    now = datetime.now(UTC)
    for i in range(n):
        when = now - timedelta(seconds=spread * (n - i) / n)
        yield row(start + i, f"acct{i % n_accounts:03d}", platform, when, now=now)


def future_rows(n: int, n_accounts: int, platform: str, *, start: int = 0) -> Iterator[tuple]:
    now = datetime.now(UTC)
    base = now + timedelta(days=2)
    for i in range(n):
        yield row(start + i, f"acct{i % n_accounts:03d}", platform,
                  base + timedelta(seconds=37 * i), now=now)


def history_mix(n: int, n_accounts: int, platform: str, seed: int = 5) -> Iterator[tuple]:
    """A long-lived install: 60% posted (with their attempts) over the past two years,
    38% pending over the next year, 1% failed, 1% cancelled; nothing due now."""
    rnd = random.Random(seed)
    now = datetime.now(UTC)
    for i in range(n):
        u = rnd.random()
        account = f"acct{rnd.randrange(n_accounts):03d}"
        if u < 0.60:
            when, status = now - timedelta(days=2, seconds=rnd.uniform(0, 2 * 365 * 86400)), \
                "posted"
        elif u < 0.98:
            when, status = now + timedelta(days=2, seconds=rnd.uniform(0, 365 * 86400)), \
                "pending"
        elif u < 0.99:
            when, status = now - timedelta(days=2, seconds=rnd.uniform(0, 365 * 86400)), \
                "failed"
        else:
            when, status = now + timedelta(days=2, seconds=rnd.uniform(0, 365 * 86400)), \
                "cancelled"
        yield row(i, account, platform, when, status, now=now)


def cached(name: str, build) -> Path:
    """CACHE/<name>-v<schema>.db, built by build(path) unless a fresh copy exists."""
    path = CACHE / f"{name}-v{SCHEMA_VERSION}.db"
    if path.exists() and time.time() - path.stat().st_mtime < 86400:
        return path
    tmp = path.with_suffix(".building")
    t = time.perf_counter()
    build(tmp)
    for suffix in ("-wal", "-shm"):
        Path(str(tmp) + suffix).unlink(missing_ok=True)
    os.replace(tmp, path)
    print(f"(built {path.name} in {time.perf_counter() - t:.1f} s)")
    return path


def copy(src: Path, dst: Path) -> Path:
    """A private copy of a cached database (for runs that write)."""
    import shutil

    for suffix in ("", "-wal", "-shm"):
        Path(str(dst) + suffix).unlink(missing_ok=True)
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o600)
    return dst
