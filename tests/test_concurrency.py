"""Overlapping runs in separate processes: each job is published exactly once, and
concurrent runs never exceed an account's quota."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from autopost.config import load_settings
from autopost.models import Account, JobFilter, JobStatus, NewJob
from autopost.store.sqlite import SqliteStore
from tests.enginekit import T0, Kit


def _ledger_adapter():
    from autopost.platforms.base import AccountInfo, Adapter, Published, Reconciled, Verdict

    class LedgerAdapter(Adapter):
        """Appends one line per publish call: the count of calls is the truth."""

        platform = "ledger"
        required_fields = ("path",)
        needs_http = False

        def publish(self, job, save_ref):
            import time

            fd = os.open(self.credentials["path"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            try:
                os.write(fd, f"{job.id}\n".encode())
            finally:
                os.close(fd)
            time.sleep(0.002)
            return Published(post_id=job.id)

        def reconcile(self, job):
            lines = Path(self.credentials["path"]).read_text().split()
            verdict = Verdict.POSTED if job.id in lines else Verdict.NOT_POSTED
            return Reconciled(verdict, Published(job.id) if job.id in lines else None)

        def check(self):
            return AccountInfo("ledger")

    return LedgerAdapter


def _run_engine(db: str, config: str, env: dict, barrier) -> None:
    os.environ.update(env)
    from autopost.engine import Engine, RunOptions
    from autopost.platforms import registry

    registry.register("ledger", _ledger_adapter())
    settings = load_settings(config)
    store = SqliteStore(db)
    barrier.wait(timeout=60)
    Engine(store, settings, store_factory=lambda: SqliteStore(db)).run(
        RunOptions(concurrency=4))
    store.close()


def _spawn_runs(db: Path, config: Path, n: int, env: dict | None = None) -> None:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(n)
    procs = [ctx.Process(target=_run_engine, args=(str(db), str(config), env or {}, barrier))
             for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0


def _setup(tmp_path: Path, accounts: int, jobs_per_account: int, *, quota: str = ""):
    db = tmp_path / "autopost.db"
    config = tmp_path / "config.toml"
    config.write_text("[run]\nlease_seconds = 120\n" + quota)
    ledger = tmp_path / "ledger.txt"
    store = SqliteStore(db)
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    new = []
    for a in range(accounts):
        store.add_account(Account(name=f"acc{a}", platform="ledger",
                                  credentials={"path": str(ledger)}), now=now)
        new += [NewJob(account=f"acc{a}", platform="ledger", text=f"post {a}-{i}",
                       scheduled_at=now - timedelta(seconds=jobs_per_account - i))
                for i in range(jobs_per_account)]
    store.add_jobs(new, now=now)
    return db, config, ledger, store


def test_overlapping_runs_publish_each_job_exactly_once(tmp_path):
    db, config, ledger, store = _setup(tmp_path, accounts=12, jobs_per_account=25)
    _spawn_runs(db, config, 4)
    calls = Counter(ledger.read_text().split())
    jobs = store.list_jobs(JobFilter())
    assert len(jobs) == 300
    assert all(j.status == JobStatus.POSTED for j in jobs)
    assert set(calls) == {j.id for j in jobs}
    assert max(calls.values()) == 1  # nothing published twice
    # Every job has exactly one attempt row, from one run.
    assert all(j.attempts == 1 for j in jobs)


def test_concurrent_runs_never_exceed_the_hourly_quota(tmp_path):
    quota = "[platforms.default]\nhourly_limit = 5\ndaily_limit = 8\n"
    db, config, ledger, store = _setup(tmp_path, accounts=3, jobs_per_account=15, quota=quota)
    _spawn_runs(db, config, 4)
    calls = Counter(ledger.read_text().split())
    posted = store.list_jobs(JobFilter(status=JobStatus.POSTED))
    assert len(posted) == len(calls) == 15  # 5 per account, from all the runs together
    per_account = Counter(j.account for j in posted)
    assert per_account == {"acc0": 5, "acc1": 5, "acc2": 5}
    pending = store.list_jobs(JobFilter(status=JobStatus.PENDING))
    first_post = min(j.posted_at for j in posted)
    assert len(pending) == 30
    assert all(j.next_attempt_at >= first_post + timedelta(hours=1) - timedelta(seconds=1)
               for j in pending)
    deferrals = [a for j in pending for a in store.attempts_for(j.id)]
    assert deferrals and all(a.outcome == "deferred" for a in deferrals)
    assert all(j.attempts == 0 for j in pending)  # a deferral is not an attempt


@pytest.fixture
def kit(tmp_path):
    (tmp_path / "config.toml").write_text(
        "[run]\ncatch_up_window = 0\n[platforms.default]\nhourly_limit = 2\ndaily_limit = 5\n")
    k = Kit(tmp_path)
    k.account("a")
    yield k
    k.store.close()


def test_deferred_jobs_go_out_as_the_windows_free_up(kit):
    jobs = [kit.add("a", f"q{i}", at=T0 + timedelta(seconds=i)) for i in range(7)]
    kit.clock.advance(10)
    kit.run()
    assert len(kit.world.ledger) == 2
    times = []
    for _ in range(40):  # walk time forward to each next due moment
        nxt = kit.store.next_due_at(now=kit.clock())
        if nxt is None:
            break
        kit.clock.now = max(kit.clock.now, nxt)
        kit.run()
        times.append(kit.clock.now)
    posted = [kit.job(j.id) for j in jobs]
    stamps = sorted(j.posted_at for j in posted if j.posted_at)
    # Every rolling hour holds at most 2 posts, every rolling day at most 5.
    for t in stamps:
        assert sum(1 for s in stamps if t - timedelta(hours=1) < s <= t) <= 2
        assert sum(1 for s in stamps if t - timedelta(days=1) < s <= t) <= 5
    assert len(stamps) == 7  # the last two waited for the daily window
    assert stamps[-1] >= stamps[0] + timedelta(days=1)
