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


MIGRATIONS: list[Callable[[Database], None]] = [_initial, _list_order]

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
