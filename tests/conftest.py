"""Shared fixtures: an isolated environment, Store backends, and ways to run the CLI.

Nothing here touches the real user folders: the database lives in tmp_path and the
default config/data folders point into it too.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from autopost.store.base import Store


@pytest.fixture(autouse=True)
def _fresh_instance_limits():
    """Each test starts without the Mastodon instance limits an earlier test cached: the
    cache is keyed by base URL, and a fake server may get a port an earlier one had."""
    mastodon = sys.modules.get("autopost.platforms.mastodon")
    if mastodon is not None:
        mastodon._INSTANCES.clear()
    yield


# Store implementations the contract suite runs against.
STORE_BACKENDS = ["sqlite", "postgres"]


def make_store(backend: str, tmp_path: Path, request=None) -> Store:
    if backend == "sqlite":
        from autopost.store.sqlite import SqliteStore

        return SqliteStore(tmp_path / "contract.db")
    if backend == "postgres":
        from autopost.store.postgres import PostgresStore

        dsn = request.getfixturevalue("pg_shared_db")
        # The contract's times are explicit, so this store trusts the caller's clock;
        # tests/test_postgres.py covers the database's clock.
        store = PostgresStore(dsn, clock="caller")
        store.conn.execute("TRUNCATE accounts, jobs, attempts, runs RESTART IDENTITY")
        return store
    raise ValueError(f"no such store backend: {backend}")


@pytest.fixture(params=STORE_BACKENDS)
def store(request, tmp_path) -> Iterator[Store]:
    s = make_store(request.param, tmp_path, request)
    yield s
    s.close()


# -- PostgreSQL: a real server, never skipped under CI ----------------------------------------

@pytest.fixture(scope="session")
def pg_admin() -> Iterator[str]:
    """A server the tests may create databases on: AUTOPOST_TEST_DSN, else a throwaway one
    (tests/pgserver.py). Missing PostgreSQL skips locally and fails under CI=true."""
    from tests import pgserver

    try:
        import psycopg  # noqa: F401

        dsn, server = pgserver.admin_dsn()
    except (ImportError, pgserver.NoPostgres) as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"PostgreSQL tests cannot run under CI: {exc}")
        pytest.skip(f"PostgreSQL not available: {exc}")
    try:
        yield dsn
    finally:
        if server is not None:
            server.stop()


@pytest.fixture(scope="session")
def pg_shared_db(pg_admin) -> str:
    """One database for the contract suite (each test empties it first)."""
    from tests import pgserver

    return pgserver.fresh_database(pg_admin)


@pytest.fixture
def pg_dsn(pg_admin) -> Iterator[str]:
    """A fresh, empty database for one test."""
    from tests import pgserver

    dsn = pgserver.fresh_database(pg_admin)
    yield dsn
    pgserver.drop_database(pg_admin, dsn)


@pytest.fixture
def isolated_env(tmp_path, monkeypatch) -> Path:
    """No AUTOPOST_* from the outside; user folders inside tmp_path; UTC; wide output."""
    for name in list(os.environ):
        if name.startswith("AUTOPOST_"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("COLUMNS", "200")
    return home


def file_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)

    @property
    def err_lines(self) -> list[str]:
        return self.stderr.splitlines()


@dataclass
class CliRunnerHelper:
    """Runs `autopost --db DB ...` through Typer's CliRunner."""

    db: Path

    def __call__(self, *args: str, input: str | None = None,
                 env: dict[str, str] | None = None) -> Outcome:
        from typer.testing import CliRunner

        from autopost.cli import app

        result = CliRunner().invoke(app, ["--db", str(self.db), *args], input=input, env=env)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Outcome(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def cli(tmp_path, isolated_env) -> CliRunnerHelper:
    return CliRunnerHelper(tmp_path / "data" / "autopost.db")


@dataclass
class SubprocessHelper:
    """Runs `python -m autopost --db DB ...` in a real child process."""

    db: Path | str  # a SQLite file or a postgresql:// DSN
    cwd: Path

    def __call__(self, *args: str, input: str | None = None, env: dict[str, str] | None = None,
                 db: bool = True, timeout: float = 60) -> Outcome:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPOST_")}
        full_env.update(env or {})
        argv = [sys.executable, "-m", "autopost"]
        if db:
            argv += ["--db", str(self.db)]
        done = subprocess.run(argv + list(args), input=input, capture_output=True, text=True,
                              env=full_env, cwd=self.cwd, timeout=timeout)
        return Outcome(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def proc(tmp_path, isolated_env) -> SubprocessHelper:
    return SubprocessHelper(tmp_path / "data" / "autopost.db", tmp_path)


@contextmanager
def opened(cli: CliRunnerHelper) -> Iterator[Store]:
    """The SQLite store of a CLI test's database, closed afterwards."""
    from autopost.store.sqlite import SqliteStore

    store = SqliteStore(cli.db)
    try:
        yield store
    finally:
        store.close()


def outbox_credentials(tmp_path: Path) -> str:
    return json.dumps({"path": str(tmp_path / "outbox")})
