"""Migrations build exactly the declared schema, once, safely, even from several processes."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat

import pytest

from autopost.errors import EnvironmentTrouble
from autopost.store import schema
from autopost.store.connect import check_sqlite_version, open_connection
from autopost.store.sqlite import SqliteStore

# The declared schema (DESIGN.md's data model): table -> [(column, type, not null, pk)].
# (STRICT tables make a TEXT primary key NOT NULL.)
TABLES = {
    "accounts": [
        ("name", "TEXT", 1, 1), ("platform", "TEXT", 1, 0), ("base_url", "TEXT", 0, 0),
        ("credentials", "TEXT", 1, 0), ("state", "TEXT", 1, 0), ("state_reason", "TEXT", 0, 0),
        ("blocked_until", "TEXT", 0, 0), ("token_expires_at", "TEXT", 0, 0),
        ("hourly_limit", "INTEGER", 0, 0), ("daily_limit", "INTEGER", 0, 0),
        ("refresh_owner", "TEXT", 0, 0), ("refresh_until", "TEXT", 0, 0),
        ("created_at", "TEXT", 1, 0), ("updated_at", "TEXT", 1, 0),
        ("paused_until", "TEXT", 0, 0), ("resumed_at", "TEXT", 0, 0),
    ],
    "jobs": [
        ("id", "TEXT", 1, 1), ("account", "TEXT", 1, 0), ("platform", "TEXT", 1, 0),
        ("text", "TEXT", 1, 0), ("media", "TEXT", 1, 0), ("options", "TEXT", 1, 0),
        ("scheduled_at", "TEXT", 1, 0), ("status", "TEXT", 1, 0),
        ("attempts", "INTEGER", 1, 0), ("max_attempts", "INTEGER", 1, 0),
        ("next_attempt_at", "TEXT", 0, 0), ("lease_owner", "TEXT", 0, 0),
        ("lease_expires_at", "TEXT", 0, 0), ("dispatched", "INTEGER", 1, 0),
        ("last_error", "TEXT", 0, 0), ("last_error_kind", "TEXT", 0, 0), ("key", "TEXT", 0, 0),
        ("idempotency_key", "TEXT", 1, 0), ("group_id", "TEXT", 0, 0),
        ("platform_post_id", "TEXT", 0, 0), ("platform_url", "TEXT", 0, 0),
        ("posted_at", "TEXT", 0, 0), ("ref", "TEXT", 1, 0), ("created_at", "TEXT", 1, 0),
        ("updated_at", "TEXT", 1, 0), ("thread_id", "TEXT", 0, 0),
        ("thread_part", "INTEGER", 0, 0), ("series_id", "TEXT", 0, 0),
        ("series_n", "INTEGER", 0, 0), ("text_key", "TEXT", 0, 0),
    ],
    "series": [
        ("id", "TEXT", 1, 1), ("account", "TEXT", 1, 0), ("platform", "TEXT", 1, 0),
        ("text", "TEXT", 1, 0), ("media", "TEXT", 1, 0), ("options", "TEXT", 1, 0),
        ("max_attempts", "INTEGER", 1, 0), ("rule", "TEXT", 1, 0), ("tz", "TEXT", 1, 0),
        ("start_at", "TEXT", 1, 0), ("until_at", "TEXT", 0, 0), ("count", "INTEGER", 0, 0),
        ("status", "TEXT", 1, 0), ("through", "TEXT", 0, 0), ("made", "INTEGER", 1, 0),
        ("next_extend_at", "TEXT", 0, 0), ("created_at", "TEXT", 1, 0),
        ("updated_at", "TEXT", 1, 0),
    ],
    "attempts": [
        ("id", "INTEGER", 0, 1), ("job_id", "TEXT", 1, 0), ("number", "INTEGER", 1, 0),
        ("run_id", "TEXT", 0, 0), ("started_at", "TEXT", 1, 0), ("finished_at", "TEXT", 0, 0),
        ("outcome", "TEXT", 0, 0), ("error_kind", "TEXT", 0, 0),
        ("http_status", "INTEGER", 0, 0), ("message", "TEXT", 0, 0),
        ("platform_post_id", "TEXT", 0, 0), ("decision", "TEXT", 0, 0),
    ],
    "runs": [
        ("id", "TEXT", 1, 1), ("started_at", "TEXT", 1, 0), ("finished_at", "TEXT", 0, 0),
        ("host", "TEXT", 1, 0), ("pid", "INTEGER", 1, 0), ("counts", "TEXT", 1, 0),
    ],
    # jobs per status, kept by triggers on jobs (migration 3)
    "job_counts": [("status", "TEXT", 1, 1), ("n", "INTEGER", 1, 0)],
}
# index -> (table, columns, unique, partial)
INDEXES = {
    # partial since migration 6: a status change moves fewer entries
    "jobs_due": ("jobs", ["status", "next_attempt_at"], 0, 1),
    "jobs_posted": ("jobs", ["posted_at", "account"], 0, 1),
    "jobs_scheduled": ("jobs", ["scheduled_at", "id"], 0, 0),
    "jobs_status_scheduled": ("jobs", ["status", "scheduled_at", "id"], 0, 1),
    "jobs_account_key": ("jobs", ["account", "key"], 1, 1),
    "jobs_thread": ("jobs", ["thread_id", "thread_part"], 0, 0),
    "jobs_series": ("jobs", ["series_id", "series_n"], 0, 0),
    "jobs_text": ("jobs", ["account", "text_key"], 0, 0),
    "series_extend": ("series", ["status", "next_extend_at"], 0, 0),
    "attempts_job": ("attempts", ["job_id", "id"], 0, 0),
    "runs_started": ("runs", ["started_at"], 0, 0),
}


def dump(conn: sqlite3.Connection) -> list[tuple]:
    return conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master "
                        "ORDER BY type, name").fetchall()


def actual_schema(conn: sqlite3.Connection):
    tables = {}
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                "AND name NOT LIKE 'sqlite_%'"):
        tables[name] = [(r[1], r[2], r[3], r[5]) for r in conn.execute(
            f"PRAGMA table_info({name})")]
    indexes = {}
    for (name, table) in conn.execute("SELECT name, tbl_name FROM sqlite_master "
                                      "WHERE type = 'index' AND sql IS NOT NULL"):
        cols = [r[2] for r in conn.execute(f"PRAGMA index_info({name})")]
        info = {r[1]: r for r in conn.execute(f"PRAGMA index_list({table})")}
        indexes[name] = (table, cols, info[name][2], info[name][4])
    return tables, indexes


@pytest.fixture
def db(tmp_path):
    return tmp_path / "data" / "autopost.db"


def test_migrations_build_the_declared_schema(db):
    SqliteStore(db).close()
    conn = sqlite3.connect(db)
    tables, indexes = actual_schema(conn)
    assert tables == TABLES
    assert indexes == INDEXES
    for (sql,) in conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table'"):
        assert sql.rstrip().endswith("STRICT"), sql  # no silent type coercion
    assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    assert schema.SCHEMA_VERSION == len(schema.MIGRATIONS) >= 1


def test_running_migrations_again_changes_nothing(db):
    store = SqliteStore(db)
    store.conn.execute("INSERT INTO runs (id, started_at, host, pid) VALUES ('r', 't', 'h', 1)")
    before = dump(store.conn)
    assert schema.migrate(store.conn) == schema.SCHEMA_VERSION
    assert dump(store.conn) == before
    store.close()
    data = db.read_bytes()
    SqliteStore(db).close()  # opening an up-to-date database writes nothing
    assert db.read_bytes() == data
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT id FROM runs").fetchall() == [("r",)]


def test_a_failing_migration_leaves_the_previous_version(db, monkeypatch):
    SqliteStore(db).close()
    def broken(db):
        db.execute("CREATE TABLE half_done (x INTEGER)")
        db.execute("CREATE TABLE jobs (nope INTEGER)")

    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, broken])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", len(schema.MIGRATIONS))
    conn = open_connection(db)
    with pytest.raises(sqlite3.OperationalError):
        schema.migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(schema.MIGRATIONS) - 1
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "half_done" not in names
    conn.close()


def test_a_newer_schema_is_refused(db):
    SqliteStore(db).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(EnvironmentTrouble, match="newer"):
        SqliteStore(db)


def _open_at(path: str, barrier) -> None:
    barrier.wait(60)  # every child has imported autopost: they open the file together
    SqliteStore(path).close()


def test_processes_migrating_at_once_are_safe(db):
    db.parent.mkdir(mode=0o700)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_open_at, args=(str(db), barrier)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    conn = sqlite3.connect(db)
    tables, indexes = actual_schema(conn)
    assert tables == TABLES and indexes == INDEXES
    assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION


def test_database_is_private_wal_and_durable(db):
    store = SqliteStore(db)
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(db.parent).st_mode) == 0o700
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    store.close()


def test_due_scan_uses_the_status_index(db):
    store = SqliteStore(db)
    plan = " ".join(r[3] for r in store.conn.execute(
        "EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE status = 'pending' "
        "AND next_attempt_at <= '2026-01-01'"))
    store.close()
    assert "jobs_due" in plan and "SCAN jobs" not in plan


def test_old_sqlite_is_refused():
    with pytest.raises(EnvironmentTrouble, match="3.35"):
        check_sqlite_version((3, 34, 1))
    check_sqlite_version((3, 35, 0))


def test_a_version_1_database_upgrades_with_its_jobs(tmp_path, monkeypatch):
    from datetime import UTC, datetime

    from autopost.models import Account, NewJob

    path = tmp_path / "old.db"
    with monkeypatch.context() as m:
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:1])
        m.setattr(schema, "SCHEMA_VERSION", 1)
        old = SqliteStore(path)
        now = datetime.now(UTC)
        old.add_account(Account(name="o", platform="outbox", credentials={"path": "x"}), now=now)
        # Written as version 1 wrote it (today's store writes today's columns).
        stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        old.conn.execute(
            "INSERT INTO jobs (id, account, platform, text, scheduled_at, status, "
            "max_attempts, next_attempt_at, key, idempotency_key, created_at, updated_at) "
            "VALUES ('oldjob22', 'o', 'outbox', 'kept', ?, 'pending', 5, ?, 'k1', 'ik', ?, ?)",
            (stamp, stamp, stamp, stamp))
        job = old.get_job("oldjob22")
        assert old.conn.execute("PRAGMA user_version").fetchone()[0] == 1
        old.close()
    store = SqliteStore(path)
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    assert store.get_job(job.id).text == "kept"
    # The (account, key) index of version 3 still holds the old job's key.
    assert store.add_jobs([NewJob(account="o", platform="outbox", text="again", key="k1",
                                  scheduled_at=now)], now=now)[0] == (store.get_job(job.id),
                                                                      False)
    names = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master")}
    assert "jobs_status_scheduled" in names
    store.close()


def test_a_version_3_database_upgrades_with_its_counts(tmp_path, monkeypatch):
    from datetime import UTC, datetime

    from autopost.models import Account, JobStatus, NewJob

    path = tmp_path / "old.db"
    with monkeypatch.context() as m:
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:3])
        m.setattr(schema, "SCHEMA_VERSION", 3)
        old = SqliteStore(path)
        assert old.conn.execute("PRAGMA user_version").fetchone()[0] == 3
        now = datetime.now(UTC)
        old.add_account(Account(name="o", platform="outbox", credentials={"path": "x"}), now=now)
        made = old.add_jobs([NewJob(account="o", platform="outbox", text=f"t{i}",
                                    scheduled_at=now) for i in range(5)], now=now)
        old.cancel_job(made[0][0].id, now=now)
        old.close()
    store = SqliteStore(path)
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    counts = store.count_by_status()
    assert (counts[JobStatus.PENDING], counts[JobStatus.CANCELLED]) == (4, 1)
    store.retry_job(made[0][0].id, now=now)
    assert store.count_by_status()[JobStatus.PENDING] == 5
    store.close()


def test_a_version_4_database_upgrades_its_failed_resends(tmp_path, monkeypatch):
    """Before version 5 a failed settling resend was an 'error' whose decision began
    "resend failed"; the upgrade gives those rows their outcome, so the bound counts them."""
    from datetime import UTC, datetime

    from autopost.models import Account, NewJob

    path = tmp_path / "old.db"
    with monkeypatch.context() as m:
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:4])
        m.setattr(schema, "SCHEMA_VERSION", 4)
        old = SqliteStore(path)
        now = datetime.now(UTC)
        old.add_account(Account(name="o", platform="outbox", credentials={"path": "x"}), now=now)
        ((job, _),) = old.add_jobs([NewJob(account="o", platform="outbox", text="t",
                                           scheduled_at=now)], now=now)
        rows = [("lost", None), ("error", "resend failed (network); still unknown, asking "
                                          "again at 2026-06-01T12:00:00+00:00"),
                ("reconcile_error", "reconcile failed (network)"),
                ("error", "resend failed (server); still unknown"),
                ("error", "Resend failed, written by hand"), ("error", "retry at x")]
        with old.conn:
            old.conn.executemany(
                "INSERT INTO attempts (job_id, number, started_at, finished_at, outcome, "
                "decision) VALUES (?, 1, ?, ?, ?, ?)",
                [(job.id, "2026-06-01T12:00:00Z", "2026-06-01T12:00:00Z", o, d) for o, d in rows])
        old.close()
    store = SqliteStore(path)
    assert store.conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    assert [a.outcome for a in store.attempts_for(job.id)] == [
        "lost", "resend_failed", "reconcile_error", "resend_failed", "error", "error"]
    store.conn.execute("DELETE FROM attempts WHERE outcome = 'error'")
    assert store.outcomes_in_a_row(job.id, "resend_failed", passing=("reconcile_error",)) == 2


def test_a_large_import_counts_per_batch_and_keeps_the_trigger(db, monkeypatch):
    """import_jobs stands in for the per-row insert trigger only while it is exactly the
    one migration 4 made (else the trigger keeps counting), and creates it again."""
    from datetime import UTC, datetime

    from autopost.models import Account, NewJob
    from autopost.store import sqlite as store_sqlite

    store = SqliteStore(db)
    sql = "SELECT sql FROM sqlite_master WHERE name = 'job_counts_insert'"
    assert store.conn.execute(sql).fetchone()[0] == store_sqlite._COUNTER_SQL
    now = datetime(2026, 6, 1, tzinfo=UTC)
    store.add_account(Account(name="a", platform="outbox", credentials={"path": "/tmp/a"}),
                      now=now)
    dropped: list[str] = []
    real = store_sqlite._counter_off

    def spy(c):
        dropped.append(real(c))
        assert c.execute(sql).fetchone() is None
        return dropped[-1]

    monkeypatch.setattr(store_sqlite, "_counter_off", spy)
    store.import_jobs((NewJob(account="a", platform="outbox", text=f"t{i}",
                              scheduled_at=now) for i in range(1200)), now=now)
    assert dropped == [store_sqlite._COUNTER_SQL]
    assert store.conn.execute(sql).fetchone()[0] == store_sqlite._COUNTER_SQL
    assert store.conn.execute("SELECT n FROM job_counts WHERE status = 'pending'"
                              ).fetchone()[0] == 1200
    store.close()


def test_the_status_indexes_serve_every_query_that_needs_them(db):
    """Migrations 6 and 7 made jobs_due, jobs_status_scheduled and jobs_posted partial:
    SQLite uses a partial index only for a query whose WHERE implies the index's. Every
    statement a run, the tick and the listing commands issue on `jobs` is planned here
    and must seek through an index (a full scan of `jobs` is a full read at 1M jobs)."""
    from datetime import UTC, datetime, timedelta

    from autopost.models import Account, JobFilter, JobStatus, NewJob
    from autopost.store.base import Result
    from autopost.store.probe import has_work
    from autopost.store.timefmt import to_db

    store = SqliteStore(db)
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    store.add_account(Account(name="a", platform="outbox", credentials={"path": "x"}),
                      now=now)
    store.add_jobs([NewJob(account="a", platform="outbox", text=f"t{i}",
                           scheduled_at=now - timedelta(minutes=i)) for i in range(4)],
                   now=now - timedelta(hours=1))
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    claim = store.claim("r1", now=now, lease=60, limit=4, per_account=4,
                        limits_for=lambda _a: (10, 20))
    ids = [j.id for j in claim.jobs]
    store.dispatch_and_record(ids[:2], [], "r1", now=now, lease=60)
    store.dispatch_and_record(ids[2:], [Result(i, "r1", now, JobStatus.POSTED, "posted")
                                        for i in ids[:2]], "r1", now=now, lease=60)
    later = now + timedelta(hours=1)
    store.rescue_expired("r2", now=later)
    store.mark_missed(now=later, window=60)
    store.claim_unknown("r2", now=later, lease=60, limit=10)
    store.next_due_at(now=later)
    store.due_jobs(now=later, limit=10)
    store.quota_usage("a", now=later)
    for status in JobStatus:
        store.list_jobs(JobFilter(status=status, limit=50))
    store.retry_jobs(account=None, statuses=[JobStatus.MISSED], now=later)
    store.cancel_jobs(account=None, statuses=[JobStatus.PENDING], now=later)
    has_work(store.conn, to_db(later))
    store.conn.set_trace_callback(None)
    checked, quota = 0, False
    for sql in statements:
        if "jobs" not in sql or sql.split()[0].upper() not in ("SELECT", "UPDATE", "WITH"):
            continue
        plan = [r[3] for r in store.conn.execute("EXPLAIN QUERY PLAN " + sql)]
        scans = [step for step in plan if step.split()[:2] in (["SCAN", "jobs"],
                                                               ["SCAN", "j"], ["SCAN", "p"])]
        if "status = 'posted'" in sql and "ORDER BY scheduled_at, id LIMIT" in sql:
            # Posts are listed in calendar order, the scan stopping at the limit.
            assert scans == ["SCAN jobs USING INDEX jobs_scheduled"], (sql, plan)
            scans = []
        assert not scans, (sql, plan)
        if "posted_at >" in sql:  # the quota's posts of the last day: that day's only
            assert any("jobs_posted" in step for step in plan), (sql, plan)
            quota = True
        checked += 1
    store.close()
    assert checked >= 20 and quota
