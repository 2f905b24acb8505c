"""run-due as a real process against the fake Mastodon server, killed with SIGKILL at
random moments; afterwards every job is posted exactly once (by the server's ledger)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from autopost.models import Account, JobFilter, JobStatus, NewJob
from autopost.store.sqlite import SqliteStore
from tests.fakes.mastodon_server import FakeMastodon

LEASE = 2.0


def _cli(db: Path, config: Path, *args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "AUTOPOST_CONFIG": str(config)}
    return subprocess.Popen([sys.executable, "-m", "autopost", "--db", str(db), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def _setup(tmp_path: Path, fake: FakeMastodon, jobs: int, accounts: int = 3):
    db = tmp_path / "autopost.db"
    config = tmp_path / "config.toml"
    config.write_text(f"[run]\nlease_seconds = {LEASE}\nmax_concurrent_jobs = 3\n"
                      "[platforms.mastodon]\nhourly_limit = 0\ndaily_limit = 0\n")
    store = SqliteStore(db)
    now = datetime.now(UTC)
    new = []
    for a in range(accounts):
        token = f"token-{a}"
        fake.add_account(token, f"user{a}")
        store.add_account(Account(name=f"m{a}", platform="mastodon", base_url=fake.base_url,
                                  credentials={"access_token": token}), now=now)
        new += [NewJob(account=f"m{a}", platform="mastodon", text=f"crash test {a}/{i}",
                       scheduled_at=now) for i in range(jobs // accounts)]
    store.add_jobs(new, now=now)
    return db, config, store


def _finish(db: Path, config: Path, store: SqliteStore, rounds: int = 12) -> None:
    """Let leases expire and run until nothing is pending, running or unknown."""
    for _ in range(rounds):
        counts = store.count_by_status()
        if not (counts[JobStatus.PENDING] or counts[JobStatus.RUNNING]
                or counts[JobStatus.UNKNOWN]):
            return
        time.sleep(LEASE + 0.2)
        proc = _cli(db, config, "run-due")
        out, err = proc.communicate(timeout=120)
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
        db, config, store = _setup(tmp_path, fake, jobs=45)
        for _ in range(15):
            proc = _cli(db, config, "run-due")
            time.sleep(rng.uniform(0.05, 0.9))
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
            if rng.random() < 0.3:
                time.sleep(LEASE + 0.1)  # sometimes let leases expire before the next run
        _finish(db, config, store)
        _assert_exactly_once(fake, store, 45)


def test_status_created_then_connection_dropped_is_reconciled_once(tmp_path):
    with FakeMastodon() as fake:
        db, config, store = _setup(tmp_path, fake, jobs=3, accounts=1)
        fake.inject("drop", path="/api/v1/statuses", count=1)
        proc = _cli(db, config, "run-due")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err  # unknown but reconcilable is not yet a problem
        assert store.count_by_status()[JobStatus.UNKNOWN] == 1
        assert len(fake.ledger()) == 3  # the dropped one was created
        time.sleep(5.2)  # the reconcile delay
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
    with FakeMastodon(latency=0.3) as fake:
        db, config, store = _setup(tmp_path, fake, jobs=20, accounts=1)
        proc = _cli(db, config, "run-due")
        deadline = time.monotonic() + 60  # signal once the first post is out, not by guess
        while not fake.ledger() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert "Traceback" not in err
        counts = store.count_by_status()
        assert counts[JobStatus.RUNNING] == 0  # nothing left holding a lease
        posted = counts[JobStatus.POSTED]
        assert 0 < posted < 20 and counts[JobStatus.PENDING] == 20 - posted
        assert all(j.attempts == 0 for j in store.list_jobs(JobFilter(status=JobStatus.PENDING)))
        assert len(fake.ledger()) == posted
