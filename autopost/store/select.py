"""Which store a location names: a postgresql:// DSN -> PostgreSQL, anything else -> SQLite.

The engine, CLI and adapters see only the Store interface; this is the one place that
knows both implementations.
"""

from __future__ import annotations

from pathlib import Path

from autopost.config import is_dsn
from autopost.store.base import Store


def open_store(location: str | Path, *, create: bool = True,
               busy_timeout: float | None = None) -> Store:
    """Open (and migrate) the store at `location`. `create` and `busy_timeout` concern a
    SQLite file (whether a missing one may be made; how long to wait for its lock)."""
    if is_dsn(location):
        from autopost.store.pgconn import driver

        driver()  # one clear line when psycopg is not installed
        from autopost.store.postgres import PostgresStore

        return PostgresStore(str(location))
    from autopost.store.sqlite import SqliteStore

    return SqliteStore(Path(location), create=create, busy_timeout=busy_timeout)


def reopen(store: Store) -> Store:
    """Another connection to the same store (for a worker thread)."""
    return open_store(store.location)
