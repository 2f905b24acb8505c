"""Connecting to PostgreSQL: the optional driver, session settings, one-line errors.

psycopg 3 is an optional extra (pip install 'autopost[postgres]'); asking for a
PostgreSQL database without it is one clear line, not an ImportError. Error lines name
the server by host, port and database, never with the password of the DSN.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from autopost.errors import EnvironmentTrouble

MISSING_DRIVER = ("PostgreSQL support needs the psycopg driver: "
                  "pip install 'autopost[postgres]'")
DSN_PREFIXES = ("postgresql://", "postgres://")


def is_dsn(value: str | None) -> bool:
    return bool(value) and str(value).startswith(DSN_PREFIXES)


def driver() -> Any:
    try:
        import psycopg
    except ImportError:
        raise EnvironmentTrouble(MISSING_DRIVER) from None
    return psycopg


def describe_dsn(dsn: str) -> str:
    """host:port/dbname of a DSN, for messages (no user, no password)."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(dsn)
    except Exception:
        return "PostgreSQL"
    host = parts.get("host") or "localhost"
    if host.startswith("/"):
        host = f"socket {host}"
    port = parts.get("port") or "5432"
    return f"PostgreSQL {host}:{port}/{parts.get('dbname') or ''}"


def connect(dsn: str, *, application: str = "autopost") -> Any:
    """An autocommit connection (transactions are explicit) with dict rows, UTC times,
    TCP keepalives (a dead host's session ends within about a minute) and a connect
    timeout."""
    psycopg = driver()
    from psycopg.rows import dict_row

    where = describe_dsn(dsn)
    try:
        conn = psycopg.connect(
            dsn, autocommit=True, row_factory=dict_row, connect_timeout=10,
            application_name=application, keepalives=1, keepalives_idle=30,
            keepalives_interval=10, keepalives_count=3, options="-c TimeZone=UTC")
    except psycopg.Error as exc:
        raise EnvironmentTrouble(f"cannot connect to {where}: {_first_line(exc)}") from None
    return conn


@contextlib.contextmanager
def translate_errors(where: str) -> Iterator[None]:
    """A lost server or connection becomes one-line EnvironmentTrouble (exit 3)."""
    import psycopg

    try:
        yield
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        errors = psycopg.errors
        if isinstance(exc, errors.LockNotAvailable | errors.DeadlockDetected
                      | errors.SerializationFailure):
            raise  # the store retries these
        if isinstance(exc, errors.DiskFull):
            raise EnvironmentTrouble(f"{where}: the disk is full: {_first_line(exc)}") from None
        raise EnvironmentTrouble(f"{where}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
