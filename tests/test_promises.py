"""One test per promise mechanism, each built to fail when that one line breaks.

Deterministic: hooks inside the claim and inside `publish`, events between threads, a
fake clock where time matters and the real one only where the lease heartbeat is the
subject (and then the test waits on the database, not on a sleep)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from autopost.engine import Engine, RunOptions
from autopost.errors import EnvironmentTrouble
from autopost.models import ErrorKind, JobStatus
from autopost.platforms.base import PlatformError
from autopost.store.sqlite import SqliteStore
from tests.enginekit import Kit


@pytest.fixture
def kit(tmp_path):
    k = Kit(tmp_path)
    k.account("a")
    yield k
    k.store.close()


# -- quotas: read inside the claim's write transaction ----------------------------------------

def test_the_quota_is_read_inside_the_claims_write_transaction(kit):
    """A claim paused after reading usage and before marking its jobs: a rival claim
    cannot slip in and spend the same free slot."""
    kit.account("b")
    now = kit.clock()
    for i in range(2):
        kit.add("a", f"a{i}", at=now - timedelta(minutes=10 - i))
    kit.add("b", "b0", at=now - timedelta(minutes=1))
    paused, go = threading.Event(), threading.Event()

    def pausing_limits(account):
        if account.name == "b":  # a's usage is read and a0 chosen; nothing marked yet
            paused.set()
            assert go.wait(30)
        return (1, None)

    first = {}
    store1 = SqliteStore(kit.path)
    t = threading.Thread(target=lambda: first.update(claim=store1.claim(
        "r1", now=now, lease=60, limit=10, per_account=10, limits_for=pausing_limits)))
    t.start()
    assert paused.wait(30)
    rival = SqliteStore(kit.path, busy_timeout=0)
    with pytest.raises(EnvironmentTrouble, match="locked"):
        rival.claim("r2", now=now, lease=60, limit=10, per_account=10,
                    limits_for=lambda a: (1, None))
    go.set()
    t.join(30)
    later = rival.claim("r2", now=now, lease=60, limit=10, per_account=10,
                        limits_for=lambda a: (1, None))
    taken = [j.account for c in (first["claim"], later) for j in c.jobs]
    assert taken.count("a") == 1 and taken.count("b") == 1
    assert [j.account for j, _ in first["claim"].deferred] == ["a"]
    store1.close()
    rival.close()


# -- the dispatch mark, and the lease it needs ---------------------------------------------------

def test_the_dispatch_mark_is_committed_before_the_platform_is_called(kit):
    job = kit.add("a", "look before")
    seen = {}

    def look():  # runs inside publish, on the worker thread, on a connection of its own
        other = SqliteStore(kit.path)
        try:
            seen["job"] = other.get_job(job.id)
            seen["attempts"] = other.attempts_for(job.id)
        finally:
            other.close()

    kit.world.script["look before"] = [look]
    kit.run()
    assert seen["job"].status == JobStatus.RUNNING and seen["job"].attempts == 1
    (mark,) = seen["attempts"]
    assert mark.number == 1 and mark.started_at is not None and mark.finished_at is None
    assert kit.job(job.id).status == JobStatus.POSTED


def test_a_worker_that_lost_its_lease_does_not_call_the_platform(kit, monkeypatch):
    # The run's own lease renewals (a real-time heartbeat, tested below) held off: on a
    # slow machine one could land between the clock's jump and the thief's claim.
    import autopost.engine

    monkeypatch.setattr(autopost.engine, "HEARTBEAT", 3600.0)
    first = kit.add("a", "first", at=kit.clock() - timedelta(seconds=2))
    second = kit.add("a", "second", at=kit.clock() - timedelta(seconds=1))
    lease = kit.settings.run.lease_seconds

    def steal():  # while "first" is on the wire, the run's leases run out and are taken
        kit.clock.advance(lease + 1)
        thief = SqliteStore(kit.path)
        try:
            thief.rescue_expired("thief", now=kit.clock())
            thief.claim("thief", now=kit.clock(), lease=lease, limit=5, per_account=5,
                        limits_for=lambda a: (None, None))
        finally:
            thief.close()

    kit.world.script["first"] = [steal]
    kit.run()
    assert kit.world.calls == [("a", "first")]  # "second" belongs to the thief now
    got = kit.job(second.id)
    assert got.status == JobStatus.RUNNING and got.lease_owner == "thief" and got.attempts == 0
    assert kit.job(first.id).status == JobStatus.POSTED  # its result still applied


@pytest.mark.timeout(60)
def test_leases_are_renewed_while_a_slow_call_is_on_the_wire(tmp_path):
    """A real clock, a 3 s lease and a platform that answers only after the lease would
    have run out twice: no other run may rescue the live run's jobs. (The run renews
    every 0.3 s, so it may stall for well over 2 s on a busy machine and still pass.)"""
    (tmp_path / "config.toml").write_text("[run]\nlease_seconds = 3\ncatch_up_window = 0\n")
    k = Kit(tmp_path)
    k.account("a")
    k.account("b")
    now = datetime.now(UTC)
    slow = k.add("a", "slow", at=now - timedelta(seconds=1))
    queued = k.add("a", "queued", at=now)
    other = k.add("b", "other account", at=now)
    rescued = []

    def on_the_wire():
        rival = SqliteStore(tmp_path / "autopost.db")
        start = rival.get_job(slow.id).lease_expires_at
        try:
            # Wait, on the real clock, until the lease as first granted is long past.
            deadline = start + timedelta(seconds=3)
            while datetime.now(UTC) < deadline:
                time.sleep(0.05)
                rescued.extend(rival.rescue_expired("rival", now=datetime.now(UTC)))
        finally:
            rival.close()

    k.world.script["slow"] = [on_the_wire]
    Engine(k.store, k.settings, store_factory=lambda: SqliteStore(tmp_path / "autopost.db"),
           rng=k.rng).run(RunOptions(concurrency=2))
    assert rescued == []
    for job in (slow, queued, other):
        assert k.store.get_job(job.id).status == JobStatus.POSTED
    assert sorted(t for _, t in k.world.ledger) == ["other account", "queued", "slow"]
    k.store.close()


# -- a rate limit defers the account's other jobs; none is marked missed -----------------------

def test_a_rate_limit_moves_the_accounts_other_jobs_to_the_reset_and_none_is_missed(tmp_path):
    (tmp_path / "config.toml").write_text("[run]\ncatch_up_window = \"1h\"\n")
    k = Kit(tmp_path)
    k.account("a")
    k.account("b")
    start = k.clock()
    reset = start + timedelta(hours=3)  # longer than the catch-up window
    limited = k.add("a", "limited", at=start - timedelta(seconds=3))
    waiting = [k.add("a", f"w{i}", at=start - timedelta(seconds=2 - i)) for i in range(2)]
    elsewhere = k.add("b", "b", at=start + timedelta(hours=2))
    k.world.script["limited"] = [PlatformError(ErrorKind.RATE_LIMITED, "429", retry_at=reset)]
    k.run()
    for job in waiting:
        got = k.job(job.id)
        assert got.status == JobStatus.PENDING and got.next_attempt_at == reset
        assert got.attempts == 0
    assert k.job(elsewhere.id).next_attempt_at == start + timedelta(hours=2)  # not its account
    # Runs keep coming every minute through the block; none marks the waiting jobs missed.
    for _ in range(int((reset - start).total_seconds() // 600) + 1):
        k.clock.now = min(reset, k.clock.now + timedelta(minutes=10))
        summary = k.run()
        assert summary.missed == 0
    statuses = {k.job(j.id).status for j in (limited, *waiting, elsewhere)}
    assert statuses == {JobStatus.POSTED}
    assert [t for _, t in k.world.calls].count("w0") == 1
    k.store.close()
