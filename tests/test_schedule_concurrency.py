"""Queue slots and the duplicate guard under concurrent `add` processes: the check runs
inside the write transaction (on PostgreSQL, under the account's row lock), so exactly one
process wins a slot or passes the guard. On both stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autopost.models import JobFilter
from autopost.store.select import open_store

from .conftest import SubprocessHelper, outbox_credentials

PROCESSES = 4


@pytest.fixture(params=["sqlite", "postgres"])
def proc(request, tmp_path, isolated_env) -> SubprocessHelper:
    if request.param == "postgres":
        return SubprocessHelper(request.getfixturevalue("pg_dsn"), tmp_path)
    return SubprocessHelper(tmp_path / "data" / "autopost.db", tmp_path)


def _start(db: Path | str, config: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPOST_")}
    env["AUTOPOST_CONFIG"] = str(config)
    return subprocess.Popen([sys.executable, "-m", "autopost", "--db", str(db), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _setup(tmp_path: Path, proc) -> Path:
    config = tmp_path / "config.toml"
    config.write_text('[accounts.demo]\nslots = ["tue 10:00"]\ntz = "America/New_York"\n')
    out = proc("accounts", "add", "demo", "--platform", "outbox", "--credentials", "-",
               input=outbox_credentials(tmp_path))
    assert out.code == 0, out.stderr
    return config


def _all(procs: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    done = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        done.append((p.returncode, out, err))
    return done


def test_concurrent_adds_of_the_same_text_let_exactly_one_through(tmp_path, proc):
    config = _setup(tmp_path, proc)
    for round_ in range(3):
        procs = [_start(proc.db, config, "add", f"the same news {round_}", "-a", "demo",
                        "--at", f"+{round_ + 1}h") for _ in range(PROCESSES)]
        results = _all(procs)
        assert "Traceback" not in "".join(err for _, _, err in results)
        assert sorted(code for code, _, _ in results) == [0] + [2] * (PROCESSES - 1), results
        for code, _, err in results:
            if code:
                assert "--allow-duplicate" in err and len(err.splitlines()) == 1
    store = open_store(proc.db)
    try:
        texts = [j.text for j in store.list_jobs(JobFilter(account="demo"))]
    finally:
        store.close()
    assert sorted(texts) == [f"the same news {i}" for i in range(3)]


def test_concurrent_next_slot_adds_each_take_a_different_slot(tmp_path, proc):
    config = _setup(tmp_path, proc)
    first = json.loads(proc("--config", str(config), "slots", "demo", "--json").stdout)["free"]
    procs = [_start(proc.db, config, "add", f"queued {i}", "-a", "demo", "--at", "next-slot",
                    "--json") for i in range(PROCESSES)]
    results = _all(procs)
    assert [code for code, _, _ in results] == [0] * PROCESSES, results
    times = [json.loads(out)[0]["scheduled_at"] for _, out, _ in results]
    assert len(set(times)) == PROCESSES  # nobody shares a slot
    assert sorted(t[:16] for t in times) == [t[:16] for t in first[:PROCESSES]]


# -- PostgreSQL: an add in flight on another host holds the account ---------------------------

def _in_flight_add(dsn: str, job):
    """Another host's add that has written its job and not yet committed: the account row
    locked, as add_jobs locks it, and the job inserted. Returns its open connection."""
    import psycopg

    from autopost.store.pg_common import to_pg
    from autopost.store.rows import new_job_row

    conn = psycopg.connect(dsn)
    conn.execute("SELECT 1 FROM accounts WHERE name = %s FOR UPDATE", (job.account,))
    row = new_job_row(job, "inflight", job.scheduled_at, to_pg)
    conn.execute(f"INSERT INTO jobs ({', '.join(row)}) VALUES "
                 f"({', '.join(f'%({k})s' for k in row)})", row)
    return conn


def _run_while_held(dsn: str, conn, work):
    """Start work() in a thread, wait (polling the server) until it waits for a lock or
    has finished, commit `conn`, and return what work() returned or raised."""
    import threading
    import time

    import psycopg

    done = threading.Event()
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = work()
        except Exception as exc:  # noqa: BLE001  (handed to the test)
            outcome["error"] = exc
        done.set()

    watcher = psycopg.connect(dsn, autocommit=True)
    thread = threading.Thread(target=target)
    thread.start()
    deadline = time.monotonic() + 60
    while not done.is_set() and time.monotonic() < deadline:
        waiting = watcher.execute(
            "SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()[0]
        if waiting:
            break
        time.sleep(0.01)
    conn.commit()
    thread.join(60)
    watcher.close()
    conn.close()
    return outcome


def test_postgres_next_slot_waits_for_an_add_in_flight(pg_dsn):
    from datetime import UTC, datetime, timedelta

    from autopost.models import Account, NewJob
    from autopost.store.postgres import PostgresStore

    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    slots = (now + timedelta(days=1), now + timedelta(days=8))
    store = PostgresStore(pg_dsn, clock="caller")
    try:
        store.add_account(Account(name="a", platform="outbox", credentials={"path": "/x"}),
                          now=now)
        conn = _in_flight_add(pg_dsn, NewJob(account="a", platform="outbox", text="first",
                                             scheduled_at=slots[0]))
        got = _run_while_held(pg_dsn, conn, lambda: store.add_jobs(
            [NewJob(account="a", platform="outbox", text="second", scheduled_at=slots[0],
                    slots=slots)], now=now))
        assert "error" not in got, got
        ((job, created),) = got["value"]
        assert created and job.scheduled_at == slots[1]  # the first add's slot is taken
    finally:
        store.close()


def test_postgres_duplicate_guard_waits_for_an_add_in_flight(pg_dsn):
    from datetime import UTC, datetime, timedelta

    from autopost.errors import UsageError
    from autopost.models import Account, NewJob
    from autopost.store.postgres import PostgresStore

    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    store = PostgresStore(pg_dsn, clock="caller")
    try:
        store.add_account(Account(name="a", platform="outbox", credentials={"path": "/x"}),
                          now=now)
        conn = _in_flight_add(pg_dsn, NewJob(account="a", platform="outbox", text="News!",
                                             scheduled_at=now + timedelta(hours=1)))
        got = _run_while_held(pg_dsn, conn, lambda: store.add_jobs(
            [NewJob(account="a", platform="outbox", text="news!",
                    scheduled_at=now + timedelta(hours=2))], now=now, duplicate_window=86400))
        assert isinstance(got.get("error"), UsageError), got
        assert "job inflight" in str(got["error"])
        assert [j.id for j in store.list_jobs(JobFilter(account="a"))] == ["inflight"]
    finally:
        store.close()
