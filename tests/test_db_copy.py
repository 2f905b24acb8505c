"""`autopost db copy`: SQLite -> PostgreSQL -> SQLite gives the same accounts, jobs,
attempts and runs; the source is never touched; a non-empty target is refused; an
interrupted copy leaves the target empty or complete."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from autopost.models import (
    Account,
    AccountState,
    ErrorKind,
    JobFilter,
    JobStatus,
    Media,
    NewJob,
    Run,
    Series,
)
from autopost.store.base import Result
from autopost.store.copy import copy_database
from autopost.store.postgres import PostgresStore
from autopost.store.sqlite import SqliteStore

from .conftest import CliRunnerHelper, file_hash

NOW = datetime(2026, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
TABLES = ("accounts", "jobs", "attempts", "runs", "series")


def _limits(_a):
    return (2, None)


def build_source(path: Path, extra_jobs: int = 0) -> SqliteStore:
    """A database with something in every state and every column filled somewhere."""
    s = SqliteStore(path)
    s.add_account(Account(name="amy", platform="outbox", base_url="https://x.example",
                          credentials={"path": "/o/amy", "token": "t-é"}, hourly_limit=2,
                          daily_limit=9, token_expires_at=NOW + timedelta(hours=1)), now=NOW)
    s.add_account(Account(name="bob", platform="mastodon", credentials={"token": "b"}),
                  now=NOW)
    jobs = [NewJob(account="amy", platform="outbox", text=f"amy {i} ✓", key=f"k{i}",
                   scheduled_at=NOW - timedelta(minutes=10 - i),
                   media=(Media("/m/a.png", "alt"),) if i == 0 else (),
                   options={"visibility": "unlisted"} if i == 1 else {}, group_id="g1")
            for i in range(5)]
    jobs += [NewJob(account="bob", platform="mastodon", text=f"bob {i}",
                    scheduled_at=NOW + timedelta(days=i + 1)) for i in range(3 + extra_jobs)]
    s.add_jobs(jobs, now=NOW)
    s.start_run(Run(id="run1", started_at=NOW, finished_at=None, host="h1", pid=42))
    got = s.claim("run1", now=NOW, lease=300, limit=10, per_account=10, limits_for=_limits)
    ids = [j.id for j in got.jobs]
    assert len(ids) == 2 and got.deferred  # two within the quota, the rest deferred
    s.dispatch(ids, "run1", now=NOW)
    s.record([Result(ids[0], "run1", NOW + timedelta(seconds=1), JobStatus.POSTED, "posted",
                     platform_post_id="p1", platform_url="https://x.example/p1"),
              Result(ids[1], "run1", NOW + timedelta(seconds=2), JobStatus.PENDING, "retry",
                     next_attempt_at=NOW + timedelta(minutes=5),
                     error_kind=ErrorKind.NETWORK, http_status=503, message="busy",
                     block_account_until=NOW + timedelta(minutes=3))])
    bobs = s.list_jobs(JobFilter(account="bob"))
    s.cancel_job(bobs[0].id, now=NOW)
    s.set_account_state("bob", AccountState.NEEDS_REAUTH, "revoked", now=NOW)
    # A thread, a recurring series with its occurrences, a paused account.
    s.add_jobs([NewJob(account="bob", platform="mastodon", text=f"part {n}",
                       scheduled_at=NOW + timedelta(days=9), thread_id="t1", thread_part=n)
                for n in (1, 2)], now=NOW)
    s.add_series(Series(id="s-series01", account="bob", platform="mastodon", text="weekly",
                        rule="FREQ=WEEKLY", tz="Europe/Berlin", start_at=NOW,
                        until_at=NOW + timedelta(days=60), count=8, made=1,
                        through=NOW + timedelta(days=1), next_extend_at=NOW + timedelta(days=1)),
                 [NewJob(account="bob", platform="mastodon", text="weekly", scheduled_at=NOW,
                         series_id="s-series01", series_n=1)], now=NOW)
    s.pause_account("bob", until=NOW + timedelta(days=2), now=NOW)
    s.finish_run("run1", now=NOW + timedelta(seconds=3), counts={"posted": 1})
    return s


def dump_sqlite(path: Path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in TABLES}
    finally:
        conn.close()


def through_the_store(store) -> dict:
    """What the engine and CLI see: every dataclass, as read through the Store."""
    jobs = store.list_jobs(JobFilter())
    return {"accounts": store.list_accounts(), "jobs": jobs,
            "attempts": {j.id: store.attempts_for(j.id) for j in jobs},
            "counts": store.count_by_status(), "last_run": store.last_run()}


def test_round_trip_sqlite_postgres_sqlite_is_identical(pg_dsn, tmp_path, isolated_env):
    first = tmp_path / "first.db"
    build_source(first).close()
    before, hashed = dump_sqlite(first), file_hash(first)
    cli = CliRunnerHelper(tmp_path / "unused.db")
    out = cli("db", "copy", str(first), pg_dsn)
    assert out.code == 0, out.stderr
    assert out.stdout.startswith("copied 2 accounts, 11 jobs, ") and "counts verified" in out.stdout
    pg = PostgresStore(pg_dsn, clock="caller")
    sq = SqliteStore(first)
    assert through_the_store(pg) == through_the_store(sq)
    # New attempt rows on the copy get ids after the copied ones.
    top = pg.conn.execute("SELECT max(id) AS m FROM attempts").fetchone()["m"]
    nxt = pg.conn.execute(
        "SELECT nextval(pg_get_serial_sequence('attempts', 'id')) AS n").fetchone()["n"]
    assert nxt == top + 1
    pg.close()
    sq.close()
    back = tmp_path / "back.db"
    out = cli("db", "copy", pg_dsn, str(back))
    assert out.code == 0, out.stderr
    after = dump_sqlite(back)
    for table in TABLES:
        assert after[table] == before[table], table  # byte for byte, every column
    assert dump_sqlite(first) == before and file_hash(first) == hashed  # source untouched
    a, b = SqliteStore(first), SqliteStore(back)
    try:
        assert through_the_store(a) == through_the_store(b)
    finally:
        a.close()
        b.close()
    assert oct(back.stat().st_mode & 0o777) == "0o600"


def test_non_empty_target_is_refused_unless_replaced(pg_dsn, tmp_path, isolated_env):
    src = tmp_path / "src.db"
    build_source(src).close()
    target = PostgresStore(pg_dsn)
    target.add_account(Account(name="zed", platform="outbox", credentials={"path": "/z"}),
                       now=NOW)
    target.close()
    cli = CliRunnerHelper(tmp_path / "unused.db")
    out = cli("db", "copy", str(src), pg_dsn)
    assert out.code == 2 and out.stdout == ""
    assert out.err_lines == [
        f"autopost: PostgreSQL {pg_host_port(pg_dsn)} is not empty (1 accounts); "
        "use --replace to empty it first"]
    check = PostgresStore(pg_dsn)
    assert [a.name for a in check.list_accounts()] == ["zed"]
    out = cli("db", "copy", "--replace", str(src), pg_dsn)
    assert out.code == 0, out.stderr
    assert [a.name for a in check.list_accounts()] == ["amy", "bob"]
    check.close()
    # SQLite targets too, and bad sources: one line, nothing made.
    busy = tmp_path / "busy.db"
    build_source(busy).close()
    hashed = file_hash(busy)
    out = cli("db", "copy", pg_dsn, str(busy))
    assert out.code == 2 and "is not empty (2 accounts, 11 jobs" in out.stderr
    assert file_hash(busy) == hashed
    out = cli("db", "copy", str(tmp_path / "missing.db"), str(tmp_path / "new.db"))
    assert out.code == 2 and out.err_lines == [
        f"autopost: no such database: {tmp_path / 'missing.db'}"]
    assert not (tmp_path / "new.db").exists()
    out = cli("db", "copy", str(src), str(src))
    assert out.code == 2 and "the same database" in out.stderr


def pg_host_port(dsn: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    p = conninfo_to_dict(dsn)
    return f"{p.get('host') or 'localhost'}:{p.get('port') or '5432'}/{p['dbname']}"


@pytest.mark.parametrize("direction", ["to_postgres", "to_sqlite"])
def test_copy_interrupted_mid_way_leaves_the_target_empty(pg_dsn, tmp_path, direction):
    src = tmp_path / "src.db"
    build_source(src, extra_jobs=6000).close()
    if direction == "to_sqlite":
        copy_database(src, pg_dsn)
        source, target = pg_dsn, tmp_path / "target.db"
    else:
        source, target = src, pg_dsn
    seen = []

    def stop_after_first_jobs(table: str, n: int) -> None:
        seen.append((table, n))
        if table == "jobs":
            raise KeyboardInterrupt  # Ctrl-C (or a crash) half-way through the jobs

    with pytest.raises(KeyboardInterrupt):
        copy_database(source, target, progress=stop_after_first_jobs)
    assert ("accounts", 2) in seen and seen[-1] == ("jobs", 5000)
    store = SqliteStore(target) if direction == "to_sqlite" else PostgresStore(pg_dsn)
    try:
        counts = {t: _count(store, t) for t in TABLES}
        assert counts == {t: 0 for t in TABLES}
    finally:
        store.close()
    # And the copy can simply be run again.
    counts = copy_database(source, target)
    assert counts["jobs"] == 6011


def _count(store, table: str) -> int:
    row = store.conn.execute(f"SELECT count(*) AS n FROM {table}").fetchone()
    return row["n"] if isinstance(row, dict) else row[0]


def test_copy_killed_at_random_moments_leaves_target_empty_or_complete(pg_admin, tmp_path):
    from tests import pgserver

    src = tmp_path / "src.db"
    build_source(src, extra_jobs=20000).close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPOST_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "cfg")
    complete = {t: _count_sqlite(src, t) for t in TABLES}
    assert complete["jobs"] > 20000 and all(complete.values()), complete
    outcomes = []
    for delay in (0.2, 0.5, 0.8, 1.2, 1.8):
        dsn = pgserver.fresh_database(pg_admin)
        proc = subprocess.Popen([sys.executable, "-m", "autopost", "db", "copy", str(src), dsn],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        store = PostgresStore(dsn)
        counts = {t: _count(store, t) for t in TABLES}
        store.close()
        pgserver.drop_database(pg_admin, dsn)
        assert counts in ({t: 0 for t in TABLES}, complete), counts
        outcomes.append(counts["jobs"])
    assert outcomes  # each of the five ended empty or complete


def _count_sqlite(path: Path, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()
