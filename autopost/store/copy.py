"""`autopost db copy SOURCE TARGET`: every account, job, attempt and run, SQLite <-> PostgreSQL.

- The source is only read: SQLite opened read-only, PostgreSQL in a READ ONLY
  REPEATABLE READ transaction, so the copy is one consistent snapshot.
- The target is written in one transaction that also checks it was empty (or, when told,
  empties it) and compares its row counts with the source's before committing. A copy
  that stops half-way (killed, disk full, connection lost) commits nothing: the target
  is as empty as it was (its tables may exist).
- Rows keep their ids, attempt numbers and times exactly (microseconds on both sides).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from autopost.config import is_dsn
from autopost.errors import EnvironmentTrouble, UsageError
from autopost.store.rows import TABLES
from autopost.store.timefmt import from_db, to_db

TIME_COLUMNS = {
    "accounts": {"blocked_until", "token_expires_at", "refresh_until", "created_at",
                 "updated_at", "paused_until", "resumed_at"},
    "jobs": {"scheduled_at", "next_attempt_at", "lease_expires_at", "posted_at", "created_at",
             "updated_at"},
    "attempts": {"started_at", "finished_at"},
    "runs": {"started_at", "finished_at"},
    "series": {"start_at", "until_at", "through", "next_extend_at", "created_at",
               "updated_at"},
}
ORDER = {"accounts": "name", "jobs": "id", "attempts": "id", "runs": "id", "series": "id"}
BATCH = 5000

Progress = Callable[[str, int], None]


@dataclass
class Side:
    """One end of a copy: its kind, a name for messages and an open connection."""

    kind: str  # "sqlite" | "postgres"
    name: str
    conn: Any


def describe(location: str | Path) -> str:
    if is_dsn(location):
        from autopost.store.pgconn import describe_dsn

        return describe_dsn(str(location))
    return f"SQLite {Path(location)}"


def copy_database(source: str | Path, target: str | Path, *, replace: bool = False,
                  progress: Progress | None = None) -> dict[str, int]:
    """Copy everything from source to target; returns the row count per table."""
    if _same(source, target):
        raise UsageError("source and target are the same database")
    src = _open_source(source)
    try:
        with _snapshot(src):
            counts = {t: _count(src, t) for t in TABLES}
            dst = _open_target(target)
            try:
                _fill(src, dst, counts, replace, progress)
            finally:
                dst.conn.close()
    finally:
        src.conn.close()
    return counts


# -- the source ----------------------------------------------------------------------------

def _same(a: str | Path, b: str | Path) -> bool:
    if is_dsn(a) or is_dsn(b):
        return str(a) == str(b)
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _open_source(location: str | Path) -> Side:
    if is_dsn(location):
        from autopost.store.pg_schema import SCHEMA_VERSION, schema_version
        from autopost.store.pgconn import connect

        conn = connect(str(location), application="autopost copy")
        version = schema_version(conn)
        if version == 0:
            conn.close()
            raise UsageError(f"{describe(location)} holds no autopost database")
    else:
        from autopost.store.probe import schema_version
        from autopost.store.schema import SCHEMA_VERSION

        path = Path(location).expanduser()
        if not path.exists():
            raise UsageError(f"no such database: {path}")
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
            version = schema_version(conn)
        except sqlite3.DatabaseError as exc:
            raise EnvironmentTrouble(f"cannot read {path}: {exc}") from None
        if version == 0:
            conn.close()
            raise UsageError(f"{path} holds no autopost database")
    if version != SCHEMA_VERSION:
        conn.close()
        raise UsageError(
            f"{describe(location)} has schema version {version}, this autopost "
            f"{SCHEMA_VERSION}; run any autopost command on it first to upgrade it")
    kind = "postgres" if is_dsn(location) else "sqlite"
    return Side(kind, describe(location), conn)


class _Snapshot:
    def __init__(self, side: Side):
        self.side = side

    def __enter__(self):
        if self.side.kind == "postgres":
            self.side.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        else:
            self.side.conn.execute("BEGIN")
        return self

    def __exit__(self, *exc):
        self.side.conn.execute("ROLLBACK")  # read only: nothing to keep


def _snapshot(side: Side) -> _Snapshot:
    return _Snapshot(side)


def _count(side: Side, table: str) -> int:
    row = side.conn.execute(f"SELECT count(*) AS n FROM {table}").fetchone()
    return row["n"] if isinstance(row, dict) else row[0]


def _read(side: Side, table: str) -> Iterator[tuple[list[str], list[tuple]]]:
    """Batches of the table's rows, in key order, with the column names."""
    sql = f"SELECT * FROM {table} ORDER BY {ORDER[table]}"
    if side.kind == "postgres":
        from psycopg.rows import tuple_row

        with side.conn.cursor(name=f"copy_{table}", row_factory=tuple_row) as cur:
            cur.execute(sql)
            cols = [d.name for d in cur.description]
            while batch := cur.fetchmany(BATCH):
                yield cols, batch
        return
    cur = side.conn.execute(sql)
    cols = [d[0] for d in cur.description]
    while batch := cur.fetchmany(BATCH):
        yield cols, batch


# -- the target ----------------------------------------------------------------------------

def _open_target(location: str | Path) -> Side:
    """Open the target and build its schema (the store's own migrations)."""
    from autopost.store.select import open_store

    store = open_store(location)
    if is_dsn(location):
        store.conn.execute("SET application_name = 'autopost copy'")
        return Side("postgres", describe(location), store.conn)
    return Side("sqlite", describe(location), store.conn)


def _fill(src: Side, dst: Side, counts: dict[str, int], replace: bool,
          progress: Progress | None) -> None:
    conn = dst.conn
    if dst.kind == "postgres":
        conn.execute("BEGIN")
        # No run on another host writes while the copy fills the tables.
        conn.execute(f"LOCK TABLE {', '.join(TABLES)} IN EXCLUSIVE MODE")
    else:
        conn.execute("BEGIN IMMEDIATE")
    try:
        present = {t: _count(dst, t) for t in TABLES}
        if any(present.values()):
            if not replace:
                what = ", ".join(f"{n} {t}" for t, n in present.items() if n)
                raise UsageError(f"{dst.name} is not empty ({what}); use --replace to "
                                 "empty it first")
            for table in reversed(TABLES):
                conn.execute(f"DELETE FROM {table}")
        for table in TABLES:
            written = 0
            for cols, batch in _read(src, table):
                rows = [_convert(table, cols, row, dst.kind) for row in batch]
                _write(dst, table, cols, rows)
                written += len(rows)
                if progress:
                    progress(table, written)
        if dst.kind == "postgres":
            conn.execute("SELECT setval(pg_get_serial_sequence('attempts', 'id'), "
                         "coalesce((SELECT max(id) FROM attempts), 0) + 1, false)")
        after = {t: _count(dst, t) for t in TABLES}
        if after != counts:
            raise EnvironmentTrouble(
                f"copy check failed: the source has {counts}, the target would have {after};"
                " nothing was written")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _convert(table: str, cols: list[str], row: tuple, kind: str) -> tuple:
    times = TIME_COLUMNS[table]
    out = []
    for col, value in zip(cols, row, strict=True):
        if col in times and value is not None:
            value = _aware(value) if kind == "postgres" else to_db(_aware(value))
        out.append(value)
    return tuple(out)


def _aware(value: datetime | str) -> datetime:
    return from_db(value) if isinstance(value, str) else from_db(value.isoformat())


def _write(dst: Side, table: str, cols: list[str], rows: list[tuple]) -> None:
    if dst.kind == "postgres":
        with dst.conn.cursor() as cur, cur.copy(
                f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" for _ in cols)
    dst.conn.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})", rows)
