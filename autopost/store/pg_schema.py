"""The PostgreSQL schema, built by numbered migrations recorded in autopost_schema.

The same tables, columns and indexes as the SQLite schema (schema.py), with times as
timestamptz so that the database's own clock can judge leases and due times. Version N
here is version N there, so a copy between the two needs no translation.

Migrations are safe when several hosts start at once: each runs in one transaction
that first takes a transaction-level advisory lock (the other hosts wait on it) and then
re-reads the version; DDL is transactional, so a crash mid-migration leaves the previous
version intact. Append new migrations; never edit an applied one.
"""

from __future__ import annotations

from typing import Any

# pg_advisory_xact_lock key: "autopost" as a number, shared by every autopost database.
MIGRATION_LOCK = 0x6175746F706F7374

_INITIAL = """
CREATE TABLE accounts (
    name text COLLATE "C" PRIMARY KEY,
    platform text NOT NULL,
    base_url text,
    credentials text NOT NULL DEFAULT '{}',
    state text NOT NULL DEFAULT 'ok',
    state_reason text,
    blocked_until timestamptz,
    token_expires_at timestamptz,
    hourly_limit bigint,
    daily_limit bigint,
    refresh_owner text,
    refresh_until timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE TABLE jobs (
    id text COLLATE "C" PRIMARY KEY,
    account text COLLATE "C" NOT NULL,
    platform text NOT NULL,
    text text NOT NULL,
    media text NOT NULL DEFAULT '[]',
    options text NOT NULL DEFAULT '{}',
    scheduled_at timestamptz NOT NULL,
    status text NOT NULL,
    attempts bigint NOT NULL DEFAULT 0,
    max_attempts bigint NOT NULL,
    next_attempt_at timestamptz,
    lease_owner text,
    lease_expires_at timestamptz,
    dispatched bigint NOT NULL DEFAULT 0,
    last_error text,
    last_error_kind text,
    key text COLLATE "C",
    idempotency_key text NOT NULL,
    group_id text,
    platform_post_id text,
    platform_url text,
    posted_at timestamptz,
    ref text NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX jobs_due ON jobs (status, next_attempt_at);
CREATE INDEX jobs_account ON jobs (account, status, posted_at);
CREATE INDEX jobs_scheduled ON jobs (scheduled_at);
CREATE UNIQUE INDEX jobs_account_key ON jobs (account, key) WHERE key IS NOT NULL;
CREATE TABLE attempts (
    id bigserial PRIMARY KEY,
    job_id text COLLATE "C" NOT NULL,
    number bigint NOT NULL,
    run_id text,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    outcome text,
    error_kind text,
    http_status bigint,
    message text,
    platform_post_id text,
    decision text
);
CREATE INDEX attempts_job ON attempts (job_id, id);
CREATE TABLE runs (
    id text COLLATE "C" PRIMARY KEY,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    host text NOT NULL,
    pid bigint NOT NULL,
    counts text NOT NULL DEFAULT '{}'
);
CREATE INDEX runs_started ON runs (started_at);
"""

_LIST_ORDER = "CREATE INDEX jobs_status_scheduled ON jobs (status, scheduled_at, id);"

# 3: writing the schedule (schema.py's _schedule says what each column is for).
_SCHEDULE = """
ALTER TABLE jobs ADD COLUMN thread_id text COLLATE "C", ADD COLUMN thread_part bigint,
    ADD COLUMN series_id text COLLATE "C", ADD COLUMN series_n bigint,
    ADD COLUMN text_key text;
CREATE INDEX jobs_text ON jobs (account, text_key);
CREATE INDEX jobs_thread ON jobs (thread_id, thread_part);
CREATE INDEX jobs_series ON jobs (series_id, series_n);
ALTER TABLE accounts ADD COLUMN paused_until timestamptz, ADD COLUMN resumed_at timestamptz;
DROP INDEX jobs_account_key;
CREATE UNIQUE INDEX jobs_account_key ON jobs (account, key)
    WHERE key IS NOT NULL AND status <> 'cancelled';
CREATE TABLE series (
    id text COLLATE "C" PRIMARY KEY,
    account text COLLATE "C" NOT NULL,
    platform text NOT NULL,
    text text NOT NULL,
    media text NOT NULL DEFAULT '[]',
    options text NOT NULL DEFAULT '{}',
    max_attempts bigint NOT NULL,
    rule text NOT NULL,
    tz text NOT NULL,
    start_at timestamptz NOT NULL,
    until_at timestamptz,
    count bigint,
    status text NOT NULL DEFAULT 'active',
    through timestamptz,
    made bigint NOT NULL DEFAULT 0,
    next_extend_at timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX series_extend ON series (status, next_extend_at);
"""


def _fill_text_keys(conn: Any) -> None:
    """The duplicate guard's digest for the jobs that count (computed here, in Python,
    as the stores compute it for new jobs)."""
    from autopost.store.base import duplicate_key

    rows = conn.execute("SELECT id, text FROM jobs WHERE status IN "
                        "('pending', 'running', 'unknown', 'posted')").fetchall()
    pairs = [(duplicate_key(_field(r, "text", 1)), _field(r, "id", 0)) for r in rows]
    if pairs:
        with conn.cursor() as cur:
            cur.executemany("UPDATE jobs SET text_key = %s WHERE id = %s", pairs)


def _field(row: Any, name: str, index: int) -> Any:
    return row[name] if isinstance(row, dict) else row[index]


# 4 on SQLite keeps jobs per status in a table maintained by triggers. Here `status`
# still counts: one counter row per status would be a row lock every claim and every
# result takes, serialising the hosts' transactions (and deadlocking them on the order
# of their status rows). The version is kept in step with SQLite's for `db copy`.
_JOB_COUNTS = "SELECT 1;"

# 5: a failed settling resend has its own attempt outcome (schema.py's _resend_failed).
_RESEND_FAILED = ("UPDATE attempts SET outcome = 'resend_failed' WHERE outcome = 'error' "
                  "AND decision LIKE 'resend failed%';")

# 6 on SQLite makes three indexes partial so that a status change writes fewer pages to
# its WAL. Not done here: an update of an indexed column writes a new row version with an
# entry in every index (old entries go at vacuum, not in the update), so the saving is
# smaller, and neither it nor the planner's use of such indexes is measured on
# PostgreSQL yet. The version is kept in step with SQLite's for `db copy`.
_LIGHTER_STATUS_CHANGES = "SELECT 1;"

# 7 on SQLite leaves posted jobs out of jobs_status_scheduled; here, as for 6, a no-op.
_POSTED_UNLISTED = "SELECT 1;"

# Each migration: SQL, or SQL and then a Python step, in one transaction.
MIGRATIONS: list[str | tuple[str, Any]] = [_INITIAL, _LIST_ORDER,
                                            (_SCHEDULE, _fill_text_keys), _JOB_COUNTS,
                                            _RESEND_FAILED, _LIGHTER_STATUS_CHANGES,
                                            _POSTED_UNLISTED]


SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(conn: Any) -> int:
    """The applied version; 0 for a database autopost has not touched."""
    row = conn.execute("SELECT to_regclass('autopost_schema') IS NOT NULL AS present").fetchone()
    if not _first(row):
        return 0
    return _first(conn.execute("SELECT version FROM autopost_schema").fetchone())


def migrate(conn: Any) -> int:
    """Bring the database up to SCHEMA_VERSION (conn in autocommit mode)."""
    from autopost.errors import EnvironmentTrouble

    version = schema_version(conn)
    if version > SCHEMA_VERSION:
        raise EnvironmentTrouble(
            f"database schema version {version} is newer than this autopost knows "
            f"({SCHEMA_VERSION}); upgrade autopost")
    while version < SCHEMA_VERSION:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS autopost_schema (version bigint NOT NULL)")
            row = conn.execute("SELECT version FROM autopost_schema").fetchone()
            if row is None:
                conn.execute("INSERT INTO autopost_schema (version) VALUES (0)")
                current = 0
            else:
                current = _first(row)
            if current == version:
                step = MIGRATIONS[version]
                sql, after = step if isinstance(step, tuple) else (step, None)
                conn.execute(sql)
                if after is not None:
                    after(conn)
                conn.execute("UPDATE autopost_schema SET version = %s", (version + 1,))
        version = schema_version(conn)
    return version


def _first(row: Any) -> Any:
    if row is None:
        return None
    return next(iter(row.values())) if isinstance(row, dict) else row[0]
