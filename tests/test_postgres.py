"""The PostgreSQL store beyond the contract: selection, the CLI and the idle tick on it,
the missing driver, migrations from several hosts at once, the database's clock, and the
refresh lock on the account row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from autopost.models import Account, JobFilter, JobStatus, NewJob
from autopost.store.base import Result
from autopost.store.postgres import PostgresStore

from .conftest import CliRunnerHelper, outbox_credentials


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPOST_")}
    env.update(extra)
    return env


def _autopost(*args: str, env: dict[str, str], importtime: bool = False,
              timeout: float = 120) -> subprocess.CompletedProcess:
    argv = [sys.executable] + (["-X", "importtime"] if importtime else []) + ["-m", "autopost"]
    return subprocess.run(argv + list(args), capture_output=True, text=True, env=env,
                          timeout=timeout)


def _add_account(store, name="o", tmp_path: Path | None = None, **kw):
    return store.add_account(Account(name=name, platform="outbox", credentials={
        "path": str((tmp_path or Path("/tmp")) / f"out-{name}")}, **kw), now=datetime.now(UTC))


# -- selection and the command line -----------------------------------------------------------

def test_cli_on_postgres_adds_publishes_and_lists(pg_dsn, tmp_path, isolated_env):
    cli = CliRunnerHelper(pg_dsn)  # type: ignore[arg-type]
    out = cli("accounts", "add", "demo", "--platform", "outbox", "--credentials", "-",
              input=outbox_credentials(tmp_path))
    assert out.code == 0, out.stderr
    out = cli("add", "hello from postgres", "-a", "demo", "--at", "now", "--json")
    assert out.code == 0, out.stderr
    out = cli("run-due", "--json")
    assert out.code == 0, out.stderr
    assert out.json()["posted"] == 1
    store = PostgresStore(pg_dsn)
    try:
        (job,) = store.list_jobs(JobFilter())
        assert job.status == JobStatus.POSTED and job.text == "hello from postgres"
        assert [a.outcome for a in store.attempts_for(job.id)] == ["posted"]
    finally:
        store.close()
    assert not list(tmp_path.glob("**/*.db"))  # no SQLite file was made on the side


def test_database_in_config_selects_postgres(pg_dsn, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f'database = "{pg_dsn}"\n')
    env = _env(AUTOPOST_CONFIG=str(config), XDG_DATA_HOME=str(tmp_path / "data"))
    (tmp_path / "c.json").write_text(outbox_credentials(tmp_path))
    done = _autopost("accounts", "add", "c", "--platform", "outbox", "--credentials",
                     str(tmp_path / "c.json"), env=env)
    assert done.returncode == 0, done.stderr
    store = PostgresStore(pg_dsn)
    try:
        assert [a.name for a in store.list_accounts()] == ["c"]
    finally:
        store.close()
    assert not (tmp_path / "data").exists()


def test_missing_driver_is_one_clear_line(tmp_path):
    blocker = tmp_path / "block"
    blocker.mkdir()
    # A psycopg that cannot be imported, as on an install without the 'postgres' extra.
    (blocker / "psycopg.py").write_text("raise ImportError('No module named psycopg')\n")
    env = _env(PYTHONPATH=os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")]),
               XDG_DATA_HOME=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    for args in (["list"], ["run-due"]):
        done = _autopost("--db", "postgresql://u:hunter2@127.0.0.1:1/x", *args, env=env)
        assert done.returncode == 3, done.stderr
        assert done.stderr == ("autopost: PostgreSQL support needs the psycopg driver: "
                               "pip install 'autopost[postgres]'\n")
        assert "Traceback" not in done.stderr and done.stdout == ""


def test_unreachable_server_is_one_line_without_the_password(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = _env(XDG_DATA_HOME=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    done = _autopost("--db", f"postgresql://u:hunter2@127.0.0.1:{port}/x", "list", env=env)
    assert done.returncode == 3
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"autopost: cannot connect to PostgreSQL 127.0.0.1:{port}/x:")
    assert "hunter2" not in done.stderr + done.stdout


def test_cron_line_keeps_the_password_out(isolated_env):
    cli = CliRunnerHelper("postgresql://ap:s3cret@db.example:5433/autopost")  # type: ignore
    out = cli("cron")
    assert out.code == 0
    assert "--db postgresql://ap@db.example:5433/autopost run-due" in out.stdout
    assert "s3cret" not in out.stdout


# -- the idle tick ------------------------------------------------------------------------------

def test_idle_tick_on_postgres_is_recorded_and_imports_nothing_heavy(pg_dsn, tmp_path):
    from tests.test_idle import HEAVY, _imported

    store = PostgresStore(pg_dsn)
    _add_account(store, tmp_path=tmp_path)
    later = store.database_time() + timedelta(days=1)
    store.add_jobs([NewJob(account="o", platform="outbox", text=f"later {i}",
                           scheduled_at=later) for i in range(5)], now=later)
    (tmp_path / "none.toml").write_text("")
    env = _env(AUTOPOST_CONFIG=str(tmp_path / "none.toml"), AUTOPOST_HOST="host-a")
    for ticks in (1, 2):
        done = _autopost("--db", pg_dsn, "run-due", env=env, importtime=True)
        assert done.returncode == 0 and done.stdout == ""
        imported = _imported(done.stderr)
        assert "autopost.tick" in imported and "psycopg" in imported
        heavy = {m for m in imported for h in HEAVY if m == h or m.startswith(h + ".")}
        assert not heavy, heavy
        last = store.last_run()
        assert last.counts == {"idle_ticks": ticks} and last.host == "host-a"
    # Something due by the database's clock: the tick hands over and the job goes out.
    store.add_jobs([NewJob(account="o", platform="outbox", text="now",
                           scheduled_at=store.database_time())], now=later)
    done = _autopost("--db", pg_dsn, "run-due", env=env, importtime=True)
    assert done.returncode == 0, done.stderr
    assert "autopost.engine" in _imported(done.stderr)
    assert store.count_by_status()[JobStatus.POSTED] == 1
    store.close()


# -- migrations ---------------------------------------------------------------------------------

def test_migrations_from_several_hosts_at_once(pg_dsn):
    import psycopg

    from autopost.store.pg_schema import SCHEMA_VERSION

    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def start():
        try:
            barrier.wait(timeout=30)
            PostgresStore(pg_dsn).close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT version FROM autopost_schema").fetchall() == [
            (SCHEMA_VERSION,)]
        names = {r[0] for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'jobs'")}
    assert {"jobs_due", "jobs_account", "jobs_status_scheduled", "jobs_account_key"} <= names


def test_a_newer_schema_is_refused(pg_dsn):
    import psycopg

    from autopost.errors import EnvironmentTrouble

    PostgresStore(pg_dsn).close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE autopost_schema SET version = 99")
    with pytest.raises(EnvironmentTrouble, match="newer than this autopost"):
        PostgresStore(pg_dsn)


def test_upgrade_from_version_1(pg_dsn):
    import psycopg

    from autopost.store import pg_schema

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE autopost_schema (version bigint NOT NULL)")
        conn.execute("INSERT INTO autopost_schema VALUES (1)")
        conn.execute(pg_schema.MIGRATIONS[0])
    store = PostgresStore(pg_dsn)
    try:
        assert pg_schema.schema_version(store.conn) == pg_schema.SCHEMA_VERSION
    finally:
        store.close()


def test_upgrade_to_version_5_gives_failed_resends_their_outcome(pg_dsn, monkeypatch):
    import psycopg

    from autopost.store import pg_schema

    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    with monkeypatch.context() as m:
        m.setattr(pg_schema, "MIGRATIONS", pg_schema.MIGRATIONS[:4])
        m.setattr(pg_schema, "SCHEMA_VERSION", 4)
        PostgresStore(pg_dsn).close()
    rows = [("lost", None), ("error", "resend failed (network); still unknown"),
            ("reconcile_error", "reconcile failed (network)"),
            ("error", "resend failed (server); still unknown"), ("error", "retry at x")]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM autopost_schema").fetchone() == (4,)
        for outcome, decision in rows:
            conn.execute("INSERT INTO attempts (job_id, number, started_at, finished_at, "
                         "outcome, decision) VALUES ('j', 1, %s, %s, %s, %s)",
                         (now, now, outcome, decision))
    store = PostgresStore(pg_dsn, clock="caller")
    try:
        assert pg_schema.schema_version(store.conn) == pg_schema.SCHEMA_VERSION
        assert [a.outcome for a in store.attempts_for("j")] == [
            "lost", "resend_failed", "reconcile_error", "resend_failed", "error"]
        store.conn.execute("DELETE FROM attempts WHERE outcome = 'error'")
        assert store.outcomes_in_a_row("j", "resend_failed", passing=("reconcile_error",)) == 2
    finally:
        store.close()


def test_upgrade_to_version_3_fills_the_duplicate_guard_and_frees_cancelled_keys(pg_dsn):
    import psycopg

    from autopost.errors import UsageError
    from autopost.store import pg_schema

    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE autopost_schema (version bigint NOT NULL)")
        conn.execute("INSERT INTO autopost_schema VALUES (2)")
        conn.execute(pg_schema.MIGRATIONS[0])
        conn.execute(pg_schema.MIGRATIONS[1])
        conn.execute("INSERT INTO accounts (name, platform, created_at, updated_at) "
                     "VALUES ('a', 'outbox', %s, %s)", (now, now))
        for jid, status in (("old1", "pending"), ("old2", "cancelled")):
            conn.execute(
                "INSERT INTO jobs (id, account, platform, text, scheduled_at, status, "
                "max_attempts, next_attempt_at, key, idempotency_key, created_at, updated_at) "
                "VALUES (%s, 'a', 'outbox', 'Big  News', %s, %s, 3, %s, %s, 'i', %s, %s)",
                (jid, now, status, now, f"k-{jid}", now, now))
    store = PostgresStore(pg_dsn, clock="caller")
    try:
        assert pg_schema.schema_version(store.conn) == pg_schema.SCHEMA_VERSION
        with pytest.raises(UsageError, match="job old1"):
            store.add_jobs([NewJob(account="a", platform="outbox", text="big news",
                                   scheduled_at=now + timedelta(hours=1))],
                           now=now, duplicate_window=86400)
        ((job, created),) = store.add_jobs(
            [NewJob(account="a", platform="outbox", text="other", key="k-old2",
                    scheduled_at=now)], now=now)
        assert created and job.id != "old2"  # a cancelled job's key is free
    finally:
        store.close()


def test_both_stores_have_the_same_columns(pg_dsn, tmp_path):
    from autopost.store.sqlite import SqliteStore

    lite = SqliteStore(tmp_path / "a.db")
    pg = PostgresStore(pg_dsn)
    try:
        for table in ("accounts", "jobs", "attempts", "runs", "series"):
            mine = {r[1] for r in lite.conn.execute(f"PRAGMA table_info({table})")}
            theirs = {r["column_name"] for r in pg.conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s",
                (table,))}
            assert mine == theirs, table
    finally:
        lite.close()
        pg.close()


# -- the database's clock -------------------------------------------------------------------------

def _limits(_a):
    return (None, None)


def test_database_clock_judges_due_times_and_leases(pg_dsn, tmp_path):
    store = PostgresStore(pg_dsn)  # clock="database"
    _add_account(store, tmp_path=tmp_path)
    db_now = store.database_time()
    soon, = store.add_jobs([NewJob(account="o", platform="outbox", text="in 10 min",
                                   scheduled_at=db_now + timedelta(minutes=10))], now=db_now)
    due, = store.add_jobs([NewJob(account="o", platform="outbox",
                                  text="due", scheduled_at=db_now - timedelta(seconds=1))],
                          now=db_now)
    ahead = db_now + timedelta(minutes=30)  # a host whose clock runs 30 minutes fast
    got = store.claim("fast", now=ahead, lease=60, limit=10, per_account=10, limits_for=_limits)
    assert [j.id for j in got.jobs] == [due[0].id]  # not the job due in 10 minutes
    lease_end = got.jobs[0].lease_expires_at
    assert abs((lease_end - (db_now + timedelta(seconds=60))).total_seconds()) < 30
    # The fast host's "now" is past the lease; the database's is not: nothing is rescued.
    assert store.rescue_expired("fast", now=ahead + timedelta(minutes=5)) == []
    assert store.get_job(due[0].id).status == JobStatus.RUNNING
    # A retry "in 5 minutes" on the fast host's clock lands 5 minutes after the database's now.
    number = store.dispatch([due[0].id], "fast", now=ahead)
    assert number == {due[0].id: 1}
    assert store.record([Result(due[0].id, "fast", ahead, JobStatus.PENDING, "retry",
                                next_attempt_at=ahead + timedelta(minutes=5))]) == [True]
    retried = store.get_job(due[0].id)
    assert retried.updated_at < db_now + timedelta(minutes=1)
    delay = (retried.next_attempt_at - retried.updated_at).total_seconds()
    assert 299 <= delay <= 301
    # next_due_at answers on the caller's clock, so the fast host wakes at the right moment.
    nxt = store.next_due_at(now=ahead)
    assert abs((nxt - (ahead + timedelta(minutes=5))).total_seconds()) < 30
    assert soon[0].status == JobStatus.PENDING
    store.close()


# -- the refresh lock is the account row ----------------------------------------------------------

def test_refresh_lock_holds_the_account_row_until_the_credentials_are_saved(pg_dsn, tmp_path):
    a, b = PostgresStore(pg_dsn), PostgresStore(pg_dsn)
    _add_account(a, tmp_path=tmp_path)
    now = datetime.now(UTC)
    assert a.acquire_refresh_lock("o", "host-a", now=now, ttl=30)
    # Host B cannot take it, even past host A's lease by B's clock: the row is locked.
    assert not b.acquire_refresh_lock("o", "host-b", now=now + timedelta(hours=1), ttl=30)
    a.save_credentials("o", {"path": "/x", "token": "rotated"}, None, now=now)
    # Saved and committed: B sees the new credentials as soon as it gets the lock.
    a.release_refresh_lock("o", "host-a")
    assert b.acquire_refresh_lock("o", "host-b", now=now, ttl=30)
    assert b.get_account("o").credentials == {"path": "/x", "token": "rotated"}
    b.release_refresh_lock("o", "host-b")
    assert b.get_account("o").credentials["token"] == "rotated"
    a.close()
    b.close()


def test_a_host_that_dies_holding_the_refresh_lock_loses_it(pg_dsn, tmp_path):
    b = PostgresStore(pg_dsn)
    _add_account(b, tmp_path=tmp_path)
    script = (
        "import sys, time; from datetime import UTC, datetime\n"
        "from autopost.store.postgres import PostgresStore\n"
        "s = PostgresStore(sys.argv[1])\n"
        "assert s.acquire_refresh_lock('o', 'dying', now=datetime.now(UTC), ttl=600)\n"
        "print('locked', flush=True); time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, pg_dsn], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        assert not b.acquire_refresh_lock("o", "b", now=datetime.now(UTC), ttl=30)
    finally:
        proc.kill()
        proc.wait()
    # The server ends the dead session's transaction: the row lock and the lease columns
    # it set go with it.
    deadline = datetime.now(UTC) + timedelta(seconds=60)
    while not b.acquire_refresh_lock("o", "b", now=datetime.now(UTC), ttl=30):
        assert datetime.now(UTC) < deadline
        threading.Event().wait(0.05)
    b.release_refresh_lock("o", "b")
    b.close()


def test_credentials_are_json_text_and_round_trip(pg_dsn, tmp_path):
    store = PostgresStore(pg_dsn)
    _add_account(store, tmp_path=tmp_path)
    creds = {"path": "/p", "nested": {"k": [1, 2, "é"]}}
    store.save_credentials("o", creds, None, now=datetime.now(UTC))
    assert store.get_account("o").credentials == creds
    raw = store.conn.execute("SELECT credentials FROM accounts").fetchone()["credentials"]
    assert json.loads(raw) == creds
    store.close()


# -- quota under concurrent hosts ---------------------------------------------------------------

class _AfterStatement:
    """The store's connection, calling `hook` once right after the first statement whose
    SQL contains `marker` (another host committing at that moment)."""

    def __init__(self, conn, marker: str, hook):
        self._conn, self._marker, self._hook = conn, marker, hook

    def execute(self, sql, *args, **kwargs):
        cur = self._conn.execute(sql, *args, **kwargs)
        if self._hook is not None and self._marker in str(sql):
            hook, self._hook = self._hook, None
            rows = cur.fetchall()  # this statement's snapshot is taken and read
            hook()
            return _Rows(rows)
        return cur

    def __getattr__(self, name):
        return getattr(self._conn, name)


class _Rows(list):
    def fetchone(self):
        return self[0] if self else None

    def fetchall(self):
        return list(self)


def test_claim_counts_a_reconcile_that_another_host_commits_while_it_reads_the_quota(
        pg_dsn, tmp_path):
    """An unknown job being reconciled by another host counts against the quota as in
    flight, and as a post once recorded: a claim that reads the account's use while that
    result commits must count it exactly once, not zero times."""
    import psycopg

    store = PostgresStore(pg_dsn)
    _add_account(store, tmp_path=tmp_path)
    db_now = store.database_time()
    jobs = store.add_jobs([NewJob(account="o", platform="outbox", text=f"post {i}",
                                  scheduled_at=db_now - timedelta(minutes=5 - i))
                           for i in range(3)], now=db_now)
    posted, reconciling, due = (j.id for j, _ in jobs)
    with psycopg.connect(pg_dsn, autocommit=True) as other:
        other.execute("UPDATE jobs SET status = 'posted', posted_at = now() WHERE id = %s",
                      (posted,))
        other.execute("UPDATE jobs SET status = 'unknown', dispatched = 1, attempts = 1, "
                      "next_attempt_at = now() + interval '1 hour' WHERE id = %s",
                      (reconciling,))

        def reconciled() -> None:  # the other host's read-back finds the post
            other.execute("UPDATE jobs SET status = 'posted', posted_at = now(), "
                          "dispatched = 0 WHERE id = %s", (reconciling,))

        store.conn = _AfterStatement(store.conn, "posted_at >", reconciled)
        got = store.claim("run-a", now=db_now, lease=60, limit=10, per_account=10,
                          limits_for=lambda _a: (2, None))
        store.conn = store.conn._conn
    assert got.jobs == []  # two posts in the hour already: the limit
    assert [j.id for j, _ in got.deferred] == [due]
    assert store.count_by_status().get("posted") == 2
    store.close()
