"""run-due as a real process against the fake Mastodon server, killed with SIGKILL at
chosen moments; afterwards every job is posted exactly once (by the server's ledger) and
every job's record says `posted`.

Nothing here sleeps to hope: a kill waits for the server to have seen the requests it is
aimed at, and the next run waits for the leases (or reconcile times) the database names.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from autopost.models import Account, JobFilter, JobStatus, NewJob
from autopost.store.sqlite import SqliteStore
from tests.fakes.mastodon_server import FakeMastodon

LEASE = 2.0
SHORT = 1.0  # where a test waits for a dead run's leases again and again
CREATE = "/api/v1/statuses"
DEADLINE = 120.0


def _cli(db: Path, config: Path, *args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "AUTOPOST_CONFIG": str(config)}
    return subprocess.Popen([sys.executable, "-m", "autopost", "--db", str(db), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def wait_until(check: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    """Poll observable state until `check()` holds; fail after a generous deadline."""
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _creates(fake: FakeMastodon) -> int:
    with fake._lock:
        return sum(1 for r in fake.requests if r["method"] == "POST" and r["path"] == CREATE)


def _setup(tmp_path: Path, fake: FakeMastodon, jobs: int, accounts: int = 3, *,
           concurrency: int = 3, max_attempts: int = 5, quota: str = "", policy: str = "",
           spread: float = 0.0, lease: float = LEASE):
    db = tmp_path / "autopost.db"
    config = tmp_path / "config.toml"
    config.write_text(f"[run]\nlease_seconds = {lease}\nmax_concurrent_jobs = {concurrency}\n"
                      "catch_up_window = 0\n"
                      f"[platforms.mastodon]\nmax_attempts = {max_attempts}\n"
                      + (quota or "hourly_limit = 0\ndaily_limit = 0\n") + policy)
    store = SqliteStore(db)
    now = datetime.now(UTC)
    new = []
    for a in range(accounts):
        token = f"token-{a}"
        fake.add_account(token, f"user{a}")
        store.add_account(Account(name=f"m{a}", platform="mastodon", base_url=fake.base_url,
                                  credentials={"access_token": token}), now=now)
        new += [NewJob(account=f"m{a}", platform="mastodon", text=f"crash test {a}/{i}",
                       scheduled_at=now + timedelta(seconds=i * spread),
                       max_attempts=max_attempts)
                for i in range(jobs // accounts)]
    store.add_jobs(new, now=now)
    return db, config, store


def _wait_for_leases(store: SqliteStore) -> None:
    """Until every lease a (dead) run holds has expired, by the database's own times."""
    held = [j.lease_expires_at for s in (JobStatus.RUNNING, JobStatus.UNKNOWN)
            for j in store.list_jobs(JobFilter(status=s)) if j.lease_expires_at is not None]
    if held:
        until = max(held)
        wait_until(lambda: datetime.now(UTC) > until, "the dead run's leases to expire")


def _wait_for_reconciles(store: SqliteStore) -> None:
    due = [j.next_attempt_at for j in store.list_jobs(JobFilter(status=JobStatus.UNKNOWN))
           if j.next_attempt_at is not None]
    if due:
        until = max(due)
        wait_until(lambda: datetime.now(UTC) >= until, "the unknown jobs' reconcile time")


def _kill_after_creates(fake: FakeMastodon, proc: subprocess.Popen, n: int) -> None:
    """SIGKILL the run once the server has received `n` more creates (or it has exited)."""
    start = _creates(fake)
    wait_until(lambda: _creates(fake) >= start + n or proc.poll() is not None,
               f"{n} create request(s)")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)


def _story(store: SqliteStore) -> str:
    """Each job's status and audit trail, for a failure message."""
    return "\n".join(
        f"{j.text}: {j.status} {[(a.outcome, a.decision) for a in store.attempts_for(j.id)]}"
        for j in store.list_jobs(JobFilter()))


def _publishing_pid(store: SqliteStore) -> int | None:
    """The process of the run that has a job on the platform right now, if any."""
    row = store.conn.execute(
        "SELECT r.pid FROM jobs j JOIN runs r ON r.id = j.lease_owner "
        "WHERE j.status = 'running' AND j.dispatched = 1").fetchone()
    return row[0] if row else None


def _finish(db: Path, config: Path, store: SqliteStore, rounds: int = 20, *,
            waiting_ok: bool = False) -> None:
    """Clean runs until nothing is running or unknown, and nothing pending (or, with
    `waiting_ok`, nothing pending that is due: jobs deferred by the quota may wait)."""
    for _ in range(rounds):
        counts = store.count_by_status()
        pending = (store.due_jobs(now=datetime.now(UTC), limit=1) if waiting_ok
                   else counts[JobStatus.PENDING])
        if not (pending or counts[JobStatus.RUNNING] or counts[JobStatus.UNKNOWN]):
            return
        _wait_for_leases(store)
        _wait_for_reconciles(store)
        proc = _cli(db, config, "run-due")
        out, err = proc.communicate(timeout=DEADLINE)
        assert "Traceback" not in err, err
    raise AssertionError(f"jobs left unfinished: {store.count_by_status()}")


def _assert_exactly_once(fake: FakeMastodon, store: SqliteStore, expected: int) -> None:
    ledger = Counter(c.text for c in fake.ledger())
    jobs = store.list_jobs(JobFilter())
    assert len(jobs) == expected
    assert {j.status for j in jobs} == {JobStatus.POSTED}, store.count_by_status()
    assert set(ledger) == {j.text for j in jobs}
    assert max(ledger.values()) == 1, [t for t, n in ledger.items() if n > 1]
    by_text = {c.text: c.id for c in fake.ledger()}
    assert all(j.platform_post_id == by_text[j.text] for j in jobs)


@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_at_random_moments_loses_nothing_and_posts_nothing_twice(tmp_path, seed):
    rng = random.Random(seed)
    with FakeMastodon(latency=0.03) as fake:
        db, config, store = _setup(tmp_path, fake, jobs=45, lease=SHORT)
        for _ in range(15):
            proc = _cli(db, config, "run-due")
            _kill_after_creates(fake, proc, rng.randint(1, 8))
            if rng.random() < 0.3:
                _wait_for_leases(store)  # sometimes let leases expire before the next run
        _finish(db, config, store)
        _assert_exactly_once(fake, store, 45)


@pytest.mark.parametrize("seed", [5])
def test_slow_platform_short_lease_repeated_sigkill_every_job_posted_once(tmp_path, seed):
    """Slow answers (0.5 s), a 2 s lease, 5 attempts, 100 jobs, 20 kills, each aimed at the
    moment a create is on the wire; then clean runs. The ledger has each post once, and
    the record says `posted` for every job: none ends failed for want of attempts."""
    rng = random.Random(seed)
    with FakeMastodon() as fake:
        fake.inject("latency", seconds=0.5, path=CREATE, count=10**9)
        db, config, store = _setup(tmp_path, fake, jobs=100, accounts=10, concurrency=10,
                                   max_attempts=5)
        for _ in range(20):
            proc = _cli(db, config, "run-due")
            _kill_after_creates(fake, proc, rng.randint(1, 4))
            if rng.random() < 0.4:
                _wait_for_leases(store)
        _finish(db, config, store)
        assert store.count_by_status()[JobStatus.FAILED] == 0
        _assert_exactly_once(fake, store, 100)


def test_the_same_job_killed_in_flight_five_times_ends_posted_once(tmp_path):
    """Every attempt of one job dies with its run while the create is on the wire."""
    with FakeMastodon() as fake:
        fake.inject("latency", seconds=0.3, path=CREATE, count=10**9)
        db, config, store = _setup(tmp_path, fake, jobs=1, accounts=1, max_attempts=5,
                                   lease=SHORT)
        for _ in range(5):
            proc = _cli(db, config, "run-due")
            _kill_after_creates(fake, proc, 1)
            _wait_for_leases(store)
            _wait_for_reconciles(store)
        _finish(db, config, store)
        _assert_exactly_once(fake, store, 1)


def test_status_created_then_connection_dropped_is_reconciled_once(tmp_path):
    with FakeMastodon() as fake:
        db, config, store = _setup(tmp_path, fake, jobs=3, accounts=1)
        fake.inject("drop", path=CREATE, count=1)
        proc = _cli(db, config, "run-due")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err  # unknown but reconcilable is not yet a problem
        assert store.count_by_status()[JobStatus.UNKNOWN] == 1
        assert len(fake.ledger()) == 3  # the dropped one was created
        _wait_for_reconciles(store)
        proc = _cli(db, config, "run-due")
        proc.communicate(timeout=60)
        _assert_exactly_once(fake, store, 3)


def test_overlapping_cli_runs_post_each_job_once(tmp_path):
    with FakeMastodon(latency=0.01) as fake:
        db, config, store = _setup(tmp_path, fake, jobs=120, accounts=6)
        procs = [_cli(db, config, "run-due") for _ in range(4)]
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
        _assert_exactly_once(fake, store, 120)


def test_sigterm_releases_unstarted_claims(tmp_path):
    with FakeMastodon(latency=0.05) as fake:
        db, config, store = _setup(tmp_path, fake, jobs=20, accounts=1)
        # The first create takes a while: SIGTERM arrives while it is on the wire.
        fake.inject("latency", seconds=2.0, path=CREATE, count=1)
        proc = _cli(db, config, "run-due")
        wait_until(lambda: _creates(fake) >= 1 or proc.poll() is not None, "the first create")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert "Traceback" not in err
        counts = store.count_by_status()
        assert counts[JobStatus.RUNNING] == 0  # nothing left holding a lease
        posted = counts[JobStatus.POSTED]
        assert posted == 1 and counts[JobStatus.PENDING] == 19  # the one in flight finished
        assert all(j.attempts == 0 for j in store.list_jobs(JobFilter(status=JobStatus.PENDING)))
        assert len(fake.ledger()) == posted


def test_quota_holds_while_runs_overlap_and_one_per_wave_is_killed(tmp_path):
    """An account limited to 7 posts an hour, jobs falling due one after another, waves
    of six overlapping runs, in each the run whose create is on the wire SIGKILLed: never
    more than 7 posts in the hour, since a killed run's post keeps counting after its
    lease expired, until a reconcile settles it. One attempt per job: a killed job has
    none left, and must still not be written off as failed (which stops its counting)."""
    with FakeMastodon() as fake:
        fake.inject("latency", seconds=0.3, path=CREATE, count=10**9)
        db, config, store = _setup(tmp_path, fake, jobs=12, accounts=1, concurrency=2,
                                   quota="hourly_limit = 7\ndaily_limit = 0\n", spread=0.3,
                                   lease=SHORT, max_attempts=1)
        for _ in range(2):  # two waves, one kill each
            procs = [_cli(db, config, "run-due") for _ in range(6)]
            start = _creates(fake)
            wait_until(lambda: _creates(fake) > start  # noqa: B023
                       or all(p.poll() is not None for p in procs), "a create")  # noqa: B023
            pid = _publishing_pid(store)
            for p in procs:  # the run whose create is on the wire dies
                if p.pid == pid:
                    p.send_signal(signal.SIGKILL)
            for p in procs:
                p.communicate(timeout=DEADLINE)
            _wait_for_leases(store)
        last = max(j.scheduled_at for j in store.list_jobs(JobFilter()))
        wait_until(lambda: datetime.now(UTC) > last, "every job to fall due")
        procs = [_cli(db, config, "run-due") for _ in range(6)]
        for p in procs:
            p.communicate(timeout=DEADLINE)
        _finish(db, config, store, waiting_ok=True)
        made = sorted(c.created_at for c in fake.ledger())
        live = Counter(c.text for c in fake.ledger())
        assert max(live.values()) == 1
        for t in made:
            assert sum(1 for s in made if t - timedelta(hours=1) < s <= t) <= 7, len(made)
        # The record matches the server: every posted job is there, every failed one is
        # not (a job killed before its create went out may fail: it has no attempt left).
        jobs = store.list_jobs(JobFilter())
        assert {j.text for j in jobs if j.status == JobStatus.POSTED} == set(live), _story(store)
        assert not {j.text for j in jobs if j.status == JobStatus.FAILED} & set(live), \
            _story(store)
        assert len(made) >= 7 - 2  # the quota was used: at most one job lost per kill
