"""The idle run-due tick, answered with the standard library alone.

cron calls `autopost run-due` 1,440-2,880 times a day and almost every call finds
nothing to do. This module recognises that call, asks the database one read-only
question ("is anything due, expired or waiting for a reconcile?") and, when the
answer is no, records the tick and exits, without importing Typer, rich, httpx,
sqlite-utils or any platform. Whenever anything is unusual (other flags, an error,
work to do, a schema to migrate) it returns None and the full CLI takes over.
"""

from __future__ import annotations

import os
import time

_GLOBAL_VALUED = ("--db", "--config")
_RUN_VALUED = ("--limit", "--concurrency", "--linger")
POLL = 1.0
# A lingering tick hands over this long before the next job falls due, so the full CLI
# has loaded and the engine is waiting for the job (to the millisecond) when it does.
LEAD = 2.0
# The longest --linger (a day; the full CLI refuses more, with the reason).
MAX_LINGER = 86400.0


def _parse(argv: list[str]) -> dict[str, str] | None:
    """The options of a plain `[--db X] [--config Y] run-due [...]`, else None."""
    opts: dict[str, str] = {}
    args = list(argv)
    seen_command = False
    while args:
        arg = args.pop(0)
        name, eq, value = arg.partition("=")
        if not seen_command and arg == "run-due":
            seen_command = True
            continue
        allowed = _RUN_VALUED if seen_command else _GLOBAL_VALUED
        if name not in allowed:
            return None
        if not eq:
            if not args:
                return None
            value = args.pop(0)
        opts[name] = value
    return opts if seen_command else None


def try_idle(argv: list[str]) -> int | None:
    opts = _parse(argv)
    if opts is None:
        return None
    try:
        from autopost.config import MAX_CONCURRENCY

        linger = float(opts.get("--linger", "0"))
        # nan, inf, huge or negative: the full CLI explains what is wrong with it.
        if not 0 <= linger <= MAX_LINGER or not _in_range(opts.get("--limit"), 10**9) \
                or not _in_range(opts.get("--concurrency"), MAX_CONCURRENCY):
            return None
        return _idle(opts, linger, argv)
    except KeyboardInterrupt:
        os.write(2, b"autopost: interrupted\n")
        return 130
    except Exception as exc:  # anything unusual is the full CLI's to explain
        from autopost.errors import interrupted_by

        if interrupted_by(exc):  # Ctrl-C, wrapped by the import it stopped
            os.write(2, b"autopost: interrupted\n")
            return 130
        return None


def _in_range(value: str | None, most: int) -> bool:
    return value is None or (value.strip().isdigit() and 1 <= int(value) <= most)


def _idle(opts: dict[str, str], linger: float, argv: list[str]) -> int | None:
    from autopost.config import is_dsn, load_settings, resolve_database
    from autopost.store.connect import open_connection
    from autopost.store.probe import has_work, record_idle_tick, schema_version
    from autopost.store.schema import SCHEMA_VERSION
    from autopost.store.timefmt import to_db

    settings = load_settings(opts.get("--config"))
    if not settings.run.enabled:
        return None
    path = resolve_database(opts.get("--db"), settings)
    if is_dsn(path):
        return _idle_postgres(str(path), linger, argv)
    if not path.exists():
        return None
    start = time.monotonic()
    conn = open_connection(path, create=False)
    try:
        if schema_version(conn) != SCHEMA_VERSION:
            return None
        from datetime import UTC, datetime, timedelta

        while True:
            now = datetime.now(UTC)
            left = linger - (time.monotonic() - start)
            # Due within LEAD (but inside the linger time) counts as due now.
            soon = now + timedelta(seconds=max(0.0, min(LEAD, left)))
            if has_work(conn, to_db(now), to_db(soon)):
                _hand_over(argv, linger - (time.monotonic() - start))
                return None
            if left <= 0:
                break
            time.sleep(min(POLL, left))
        # os.urandom, not secrets: secrets pulls in hashlib and OpenSSL (~4 MB, ~5 ms).
        record_idle_tick(conn, os.urandom(6).hex(), to_db(datetime.now(UTC)), _host(),
                         os.getpid())
        return 0
    finally:
        conn.close()


def _idle_postgres(dsn: str, linger: float, argv: list[str]) -> int | None:
    """The same tick on PostgreSQL, by the database's clock."""
    from autopost.store.pg_probe import has_work, record_idle_tick
    from autopost.store.pg_schema import SCHEMA_VERSION, schema_version
    from autopost.store.pgconn import connect

    start = time.monotonic()
    conn = connect(dsn, application="autopost tick")
    try:
        if schema_version(conn) != SCHEMA_VERSION:
            return None
        while True:
            left = linger - (time.monotonic() - start)
            if has_work(conn, max(0.0, min(LEAD, left))):
                _hand_over(argv, linger - (time.monotonic() - start))
                return None
            if left <= 0:
                break
            time.sleep(min(POLL, left))
        record_idle_tick(conn, os.urandom(6).hex(), _host(), os.getpid())
        return 0
    finally:
        conn.close()


def _host() -> str:
    # The node name is what socket.gethostname() returns, without importing socket.
    return os.environ.get("AUTOPOST_HOST") or os.uname().nodename


def _hand_over(argv: list[str], linger_left: float) -> None:
    """Shorten --linger by the time already spent watching, in place."""
    for i, arg in enumerate(argv):
        if arg == "--linger" and i + 1 < len(argv):
            argv[i + 1] = f"{max(0.0, linger_left):.3f}"
        elif arg.startswith("--linger="):
            argv[i] = f"--linger={max(0.0, linger_left):.3f}"
