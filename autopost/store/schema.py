"""The schema, built by numbered migrations recorded in PRAGMA user_version.

Each migration runs in one write transaction together with its version bump, so a
crash mid-migration leaves the previous version intact. Append new migrations; never
edit an applied one.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: list[str] = [
    # 1: the initial schema
    """
    CREATE TABLE accounts (
        name TEXT PRIMARY KEY,
        platform TEXT NOT NULL,
        base_url TEXT,
        credentials TEXT NOT NULL DEFAULT '{}',
        state TEXT NOT NULL DEFAULT 'ok',
        state_reason TEXT,
        blocked_until TEXT,
        token_expires_at TEXT,
        hourly_limit INTEGER,
        daily_limit INTEGER,
        refresh_owner TEXT,
        refresh_until TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    ) STRICT;

    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        platform TEXT NOT NULL,
        text TEXT NOT NULL,
        media TEXT NOT NULL DEFAULT '[]',
        options TEXT NOT NULL DEFAULT '{}',
        scheduled_at TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        next_attempt_at TEXT,
        lease_owner TEXT,
        lease_expires_at TEXT,
        dispatched INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        last_error_kind TEXT,
        key TEXT,
        idempotency_key TEXT NOT NULL,
        group_id TEXT,
        platform_post_id TEXT,
        platform_url TEXT,
        posted_at TEXT,
        ref TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    ) STRICT;
    CREATE INDEX jobs_due ON jobs (status, next_attempt_at);
    CREATE INDEX jobs_account ON jobs (account, status, posted_at);
    CREATE INDEX jobs_scheduled ON jobs (scheduled_at);
    CREATE UNIQUE INDEX jobs_account_key ON jobs (account, key) WHERE key IS NOT NULL;

    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL,
        number INTEGER NOT NULL,
        run_id TEXT,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        outcome TEXT,
        error_kind TEXT,
        http_status INTEGER,
        message TEXT,
        platform_post_id TEXT,
        decision TEXT
    ) STRICT;
    CREATE INDEX attempts_job ON attempts (job_id, id);

    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        counts TEXT NOT NULL DEFAULT '{}'
    ) STRICT;
    CREATE INDEX runs_started ON runs (started_at);
    """,
]

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
    while version < SCHEMA_VERSION:
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            if current == version:
                for statement in _statements(MIGRATIONS[version]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
