"""The schema, built by numbered migrations (sqlite-utils) recorded in PRAGMA user_version.

Each migration runs in one write transaction together with its version bump, so a
crash mid-migration leaves the previous version intact. Append new migrations; never
edit an applied one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlite_utils import Database

def _initial(db: Database) -> None:
    """1: accounts, jobs, attempts, runs: explicit STRICT tables with their indexes."""
    db["accounts"].create(
        {"name": str, "platform": str, "base_url": str, "credentials": str, "state": str,
         "state_reason": str, "blocked_until": str, "token_expires_at": str,
         "hourly_limit": int, "daily_limit": int, "refresh_owner": str, "refresh_until": str,
         "created_at": str, "updated_at": str},
        pk="name",
        not_null={"name", "platform", "credentials", "state", "created_at", "updated_at"},
        defaults={"credentials": "{}", "state": "ok"},
        strict=True,
    )
    jobs = db["jobs"]
    jobs.create(
        {"id": str, "account": str, "platform": str, "text": str, "media": str, "options": str,
         "scheduled_at": str, "status": str, "attempts": int, "max_attempts": int,
         "next_attempt_at": str, "lease_owner": str, "lease_expires_at": str,
         "dispatched": int, "last_error": str, "last_error_kind": str, "key": str,
         "idempotency_key": str, "group_id": str, "platform_post_id": str,
         "platform_url": str, "posted_at": str, "ref": str, "created_at": str,
         "updated_at": str},
        pk="id",
        not_null={"id", "account", "platform", "text", "media", "options", "scheduled_at",
                  "status", "attempts", "max_attempts", "dispatched", "idempotency_key", "ref",
                  "created_at", "updated_at"},
        defaults={"media": "[]", "options": "{}", "attempts": 0, "dispatched": 0, "ref": "{}"},
        strict=True,
    )
    # The due scan, the quota count and the calendar each have their index.
    jobs.create_index(["status", "next_attempt_at"], index_name="jobs_due")
    jobs.create_index(["account", "status", "posted_at"], index_name="jobs_account")
    jobs.create_index(["scheduled_at"], index_name="jobs_scheduled")
    # The operator's --key is unique per account; a partial index, which sqlite-utils'
    # create_index does not express.
    db.execute("CREATE UNIQUE INDEX jobs_account_key ON jobs (account, key) "
               "WHERE key IS NOT NULL")
    db["attempts"].create(
        {"id": int, "job_id": str, "number": int, "run_id": str, "started_at": str,
         "finished_at": str, "outcome": str, "error_kind": str, "http_status": int,
         "message": str, "platform_post_id": str, "decision": str},
        pk="id",
        not_null={"job_id", "number", "started_at"},
        strict=True,
    )
    db["attempts"].create_index(["job_id", "id"], index_name="attempts_job")
    db["runs"].create(
        {"id": str, "started_at": str, "finished_at": str, "host": str, "pid": int,
         "counts": str},
        pk="id",
        not_null={"id", "started_at", "host", "pid", "counts"},
        defaults={"counts": "{}"},
        strict=True,
    )
    db["runs"].create_index(["started_at"], index_name="runs_started")


def _list_order(db: Database) -> None:
    """2: `list --status S` in scheduled order without sorting every job of that status."""
    db["jobs"].create_index(["status", "scheduled_at", "id"], index_name="jobs_status_scheduled")


def _schedule(db: Database) -> None:
    """3: writing the schedule: threads, recurring series, paused accounts, reusable keys.

    jobs.thread_id / thread_part: the parts of one thread (part 1 first; each part is a
    reply to the one before). jobs.series_id / series_n: the occurrence of a recurring
    series. jobs.text_key: the duplicate guard's digest of the normalised text (filled
    in here for the jobs that count). accounts.paused_until (NULL = not paused) and
    resumed_at (when the last pause ended, where the catch-up window counts from). The
    (account, key) index now leaves cancelled jobs out, so a cancelled job's key can be
    given to a new job."""
    from autopost.store.base import duplicate_key

    jobs = db["jobs"]
    for column, kind in (("thread_id", str), ("thread_part", int), ("series_id", str),
                         ("series_n", int), ("text_key", str)):
        jobs.add_column(column, kind)
    db.conn.create_function("autopost_text_key", 1, duplicate_key, deterministic=True)
    db.execute("UPDATE jobs SET text_key = autopost_text_key(text) "
               "WHERE status IN ('pending', 'running', 'unknown', 'posted')")
    jobs.create_index(["account", "text_key"], index_name="jobs_text")
    jobs.create_index(["thread_id", "thread_part"], index_name="jobs_thread")
    jobs.create_index(["series_id", "series_n"], index_name="jobs_series")
    for column in ("paused_until", "resumed_at"):
        db["accounts"].add_column(column, str)
    db.execute("DROP INDEX jobs_account_key")
    db.execute("CREATE UNIQUE INDEX jobs_account_key ON jobs (account, key) "
               "WHERE key IS NOT NULL AND status <> 'cancelled'")
    db["series"].create(
        {"id": str, "account": str, "platform": str, "text": str, "media": str,
         "options": str, "max_attempts": int, "rule": str, "tz": str, "start_at": str,
         "until_at": str, "count": int, "status": str, "through": str, "made": int,
         "next_extend_at": str, "created_at": str, "updated_at": str},
        pk="id",
        not_null={"id", "account", "platform", "text", "media", "options", "max_attempts",
                  "rule", "tz", "start_at", "status", "made", "created_at", "updated_at"},
        defaults={"media": "[]", "options": "{}", "made": 0, "status": "active"},
        strict=True,
    )
    db["series"].create_index(["status", "next_extend_at"], index_name="series_extend")


def _job_counts(db: Database) -> None:
    """4: jobs per status kept by triggers, so `status` reads a few rows instead of
    counting a million index entries. The triggers run inside the statement that changes
    a job, so the counts are as transactional (and as concurrent-safe) as the jobs."""
    db.execute("CREATE TABLE job_counts (status TEXT PRIMARY KEY, n INTEGER NOT NULL) "
               "WITHOUT ROWID, STRICT")
    db.execute("INSERT INTO job_counts (status, n) "
               "SELECT status, count(*) FROM jobs GROUP BY status")
    up = ("INSERT INTO job_counts (status, n) VALUES (new.status, 1) "
          "ON CONFLICT (status) DO UPDATE SET n = n + 1;")
    down = "UPDATE job_counts SET n = n - 1 WHERE status = old.status;"
    db.execute(f"CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs BEGIN {up} END")
    db.execute(f"CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs BEGIN {down} END")
    db.execute("CREATE TRIGGER job_counts_update AFTER UPDATE OF status ON jobs "
               f"WHEN old.status IS NOT new.status BEGIN {down} {up} END")


def _resend_failed(db: Database) -> None:
    """5: a failed settling resend has its own attempt outcome, resend_failed (it was an
    error whose decision began "resend failed"), so the resend bound counts outcomes."""
    db.execute("UPDATE attempts SET outcome = 'resend_failed' WHERE outcome = 'error' "
               "AND decision GLOB 'resend failed*'")


# A status change moves a job's entries only in the indexes that hold both its statuses.
# Partial indexes whose WHERE is an OR of `status = '...'` terms: SQLite uses one for a
# query with a `status = '<one of them>'` term (an IN list does not qualify; store/
# sqlite.py writes one equality per status where it needs the index).
_DUE_STATUSES = ("pending", "running", "unknown")
_LISTED_STATUSES = ("pending", "unknown", "posted", "failed", "cancelled", "missed")


def _status_in(statuses: tuple[str, ...]) -> str:
    return " OR ".join(f"status = '{s}'" for s in statuses)


def _lighter_status_changes(db: Database) -> None:
    """6: fewer index pages written per status change (each one is a page of WAL per
    commit). `jobs_due` holds only the jobs a run looks for (pending, running, unknown):
    a posted job leaves it and goes nowhere else in it. `jobs_status_scheduled` leaves
    running jobs out (`list --status running` reads them through `jobs_due`): claiming
    takes a job out, its result puts it back. `jobs_account (account, status, posted_at)`
    moved a job's entry on every change; the quota's count of posts in the last day
    reads `jobs_posted (posted_at, account)` instead, which a job enters once, when it is
    posted, next to the other posts of that moment (one page for a group commit's posts,
    not one per account), and which holds nothing else."""
    db.execute("DROP INDEX jobs_account")
    db.execute("CREATE INDEX jobs_posted ON jobs (posted_at, account) "
               "WHERE posted_at IS NOT NULL")
    db.execute("DROP INDEX jobs_due")
    db.execute("CREATE INDEX jobs_due ON jobs (status, next_attempt_at) "
               f"WHERE {_status_in(_DUE_STATUSES)}")
    db.execute("DROP INDEX jobs_status_scheduled")
    db.execute("CREATE INDEX jobs_status_scheduled ON jobs (status, scheduled_at, id) "
               f"WHERE {_status_in(_LISTED_STATUSES)}")


def _posted_unlisted(db: Database) -> None:
    """7: posted jobs leave `jobs_status_scheduled` too, so a result adds no entry there
    (most of a long-lived database's jobs are posted, and a group commit's posts went to
    one or two of its pages). `list --status posted` reads the calendar index instead,
    now (scheduled_at, id): in that order, posts come first (they were scheduled
    earliest), so a listing with a limit stops after a page of them."""
    db.execute("DROP INDEX jobs_status_scheduled")
    db.execute("CREATE INDEX jobs_status_scheduled ON jobs (status, scheduled_at, id) "
               f"WHERE {_status_in(_UNPOSTED_STATUSES)}")
    db.execute("DROP INDEX jobs_scheduled")
    db.execute("CREATE INDEX jobs_scheduled ON jobs (scheduled_at, id)")


_UNPOSTED_STATUSES = ("pending", "unknown", "failed", "cancelled", "missed")

MIGRATIONS: list[Callable[[Database], None]] = [_initial, _list_order, _schedule,
                                                   _job_counts, _resend_failed,
                                                   _lighter_status_changes, _posted_unlisted]

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database up to SCHEMA_VERSION. Safe to run from several processes."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        from autopost.errors import EnvironmentTrouble

        raise EnvironmentTrouble(
            f"database schema version {version} is newer than this autopost knows "
            f"({SCHEMA_VERSION}); upgrade autopost"
        )
    if version == SCHEMA_VERSION:
        return version
    import sqlite_utils  # only when the schema changes: runs stay free of its import cost

    db = sqlite_utils.Database(conn)
    while version < SCHEMA_VERSION:
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            if current == version:
                MIGRATIONS[version](db)
                conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    return version
