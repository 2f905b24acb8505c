"""run_due: publish what is due, keeping DESIGN.md's promises under crashes and overlap.

One run:
  rescue expired leases (running -> unknown if it reached the platform, else pending)
  -> mark jobs unstarted past the catch-up window as missed
  -> reconcile unknown jobs that are due for it
  -> claim a batch (quota-checked, one transaction) -> publish -> record -> claim again
  -> with --linger, wait for the next job to fall due until the linger time is up.

Threads: the main thread is the only one that writes the run's bookkeeping. Worker
threads (publisher.py) publish, one account's jobs in order, one at a time, and talk to
the main thread through a queue: "about to publish job X" (the main thread commits the attempt's
started_at and only then lets the worker call the platform) and "job X ended so". The
main thread commits whatever has queued up in one transaction (group commit), so the
fsync per commit is shared by all the workers waiting on it.
"""

from __future__ import annotations

import os
import queue
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from autopost.config import Settings
from autopost.ids import new_id
from autopost.models import Account, Job, JobStatus, Run
from autopost.publisher import ChainEnd, Dispatch, Done, Pool, Problem, Publisher, SaveRefRequest
from autopost.store.base import Store

BATCH = 100
POLL = 1.0  # how often a lingering run looks for newly added jobs
STOP_GRACE = 10.0
# Leases are renewed at most this often (and at most every tenth of the lease), with what
# the main thread commits, or on their own when a turn has nothing to commit. (Renewing
# every claimed row on every group commit was most of a commit's writes.)
HEARTBEAT = 1.0
# How long a turn waits for the workers the previous commit released, so that their
# results and next dispatch marks share one commit (they answer within microseconds when
# the platform is fast; a slow platform costs at most this per turn).
GROUP_WAIT = 0.001


def utcnow() -> datetime:
    return datetime.now(UTC)


def host_name() -> str:
    """The host a run is recorded under: AUTOPOST_HOST, else the machine's name."""
    return os.environ.get("AUTOPOST_HOST") or socket.gethostname()


@dataclass(frozen=True)
class RunOptions:
    limit: int | None = None
    concurrency: int | None = None
    linger: float = 0.0
    dry_run: bool = False


@dataclass
class RunSummary:
    run_id: str
    posted: int = 0
    retried: int = 0
    deferred: int = 0
    failed: int = 0
    unknown: int = 0
    missed: int = 0
    rescued: int = 0
    reconciled: int = 0
    released: int = 0
    problems: list[Problem] = field(default_factory=list)
    would_publish: list[Job] = field(default_factory=list)
    disabled: bool = False

    @property
    def needs_attention(self) -> bool:
        return bool(self.problems)

    def counts(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in (
            "posted", "retried", "deferred", "failed", "unknown", "missed", "rescued",
            "reconciled", "released")}


class Engine:
    def __init__(self, store: Store, settings: Settings, *,
                 store_factory: Callable[[], Store],
                 clock: Callable[[], datetime] = utcnow,
                 sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None,
                 client_factory: Callable[[], Any] | None = None,
                 stop: threading.Event | None = None,
                 progress: Callable[[RunSummary, int], None] | None = None):
        self.store = store
        self.settings = settings
        self.clock = clock
        self.sleep = sleep
        self.stop = stop or threading.Event()
        self.publisher = Publisher(settings, store_factory=store_factory, clock=clock,
                                   sleep=sleep, rng=rng or random.Random(), stop=self.stop,
                                   client_factory=client_factory)
        self._beat_at: datetime | None = None
        # An internal error ended a chain: claim nothing more in this run (its jobs went
        # back to pending, and claiming them again would only meet the bug again).
        self._bug = False
        self._released = 0  # workers the last commit let go to the platform
        # Told (summary, jobs claimed and not yet finished) whenever either changes: what
        # a person watching on a terminal sees. Called on the main thread.
        self.progress = progress
        self._holding: dict[str, set[str]] = {}  # each chain's jobs not yet finished
        self._inbox: queue.SimpleQueue | None = None  # the workers' way to the main thread

    # -- the run ---------------------------------------------------------------
    def run(self, opts: RunOptions) -> RunSummary:
        run_id = new_id(12)
        summary = RunSummary(run_id=run_id)
        if not self.settings.run.enabled:
            summary.disabled = True
            return summary
        if opts.dry_run:
            summary.would_publish = self.store.due_jobs(now=self.clock(), limit=opts.limit)
            return summary
        start = self.clock()
        self.store.start_run(Run(id=run_id, started_at=start, finished_at=None,
                                 host=host_name(), pid=os.getpid()))
        deadline = start + timedelta(seconds=max(0.0, opts.linger))
        concurrency = max(1, opts.concurrency or self.settings.run.max_concurrent_jobs)
        pool = Pool(concurrency)
        crashed = False
        try:
            budget = opts.limit
            claim_until = deadline if opts.linger > 0 else None
            while not self.stop.is_set():
                self._housekeeping(run_id, summary)
                looked_at = self.clock()
                budget, claimed = self._drain(run_id, summary, pool, concurrency, budget,
                                              claim_until)
                if self.stop.is_set() or self._bug or (budget is not None and budget <= 0):
                    break
                if not self._wait_for_work(deadline, idle=not claimed, looked_at=looked_at):
                    break
        except BaseException as exc:
            crashed = True
            released, in_flight = self._after_crash(run_id, summary)
            from autopost.errors import AutopostError, RunCrashed

            if not isinstance(exc, Exception) or isinstance(exc, AutopostError):
                raise  # Ctrl-C, or trouble the CLI reports as such (a locked database...)
            from autopost.publisher import report_bug

            report_bug(exc)
            raise RunCrashed(
                f"internal error ({type(exc).__name__}) in run {run_id}; {released} claimed "
                f"job(s) put back to pending, {in_flight} in flight left for a later run to "
                "reconcile; run again with AUTOPOST_DEBUG=1 for the details") from exc
        finally:
            pool.shutdown()
            try:
                self.store.finish_run(run_id, now=self.clock(), counts=summary.counts())
            except Exception:
                if not crashed:
                    raise  # after a crash the crash is what gets reported
            finally:
                self.publisher.close()
        return summary

    def _after_crash(self, run_id: str, summary: RunSummary) -> tuple[int, int]:
        """The main thread failed: stop the workers, refuse the dispatch marks they are
        waiting for (none was committed, so none of those jobs reached the platform), and
        put every claimed job that was never dispatched back to pending now rather than
        when its lease expires. Dispatched ones keep their lease: a later run rescues them
        as unknown and reconciles. Returns (put back, left in flight)."""
        self.stop.set()
        inbox = self._inbox
        while inbox is not None:
            try:
                message = inbox.get_nowait()
            except queue.Empty:
                break
            for m in message if type(message) is tuple else (message,):
                if isinstance(m, Dispatch):
                    m.reply.set_result(None)
                elif isinstance(m, SaveRefRequest):
                    m.reply.set_exception(RuntimeError("the run stopped"))
        held = sorted({jid for name, ids in self._holding.items()
                       if not name.startswith("reconcile:") for jid in ids})
        released = 0
        try:
            released = self.store.release(held, run_id, now=self.clock())
        except Exception:  # the store itself may be what failed: the leases expire then
            pass
        summary.released += released
        return released, len(held) - released

    def _housekeeping(self, run_id: str, summary: RunSummary) -> None:
        now = self.clock()
        for job in self.store.rescue_expired(run_id, now=now):
            summary.rescued += 1
            if job.status == JobStatus.UNKNOWN:
                summary.unknown += 1
        for job in self.store.mark_missed(now=now, window=self.settings.run.catch_up_window):
            summary.missed += 1
            summary.problems.append(Problem(
                job.id, job.account, "missed",
                "not started within the catch-up window; 'autopost retry' sends it anyway"))

    def _wait_for_work(self, deadline: datetime, *, idle: bool, looked_at: datetime) -> bool:
        """Sleep until something may be due; False when the linger time is over.

        `idle`: the last look (at `looked_at`) claimed nothing. A job that was already due
        then and still is was not claimable (its account has a job running in another run):
        it waits a poll, not a busy loop. A job that fell due after that look is new work
        and is claimed at once."""
        while not self.stop.is_set():
            now = self.clock()
            if now >= deadline:
                return False
            nxt = self.store.next_due_at(now=now)
            if nxt is not None and nxt <= now:
                if not idle or nxt > looked_at:
                    return True
                idle = False
                nxt = None
            until = min(deadline, nxt) if nxt is not None else deadline
            self._pause(min(POLL, max(0.0, (until - now).total_seconds())))
        return False

    def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once on SIGTERM (unless a test injected its own sleep)."""
        if self.sleep is time.sleep:
            self.stop.wait(seconds)
        else:
            self.sleep(seconds)

    # -- claim, publish, record --------------------------------------------------
    def _drain(self, run_id: str, summary: RunSummary, pool: Pool, concurrency: int,
               budget: int | None, claim_until: datetime | None
               ) -> tuple[int | None, bool]:
        """Claim and publish until nothing claimable is left (or the budget is spent).
        Returns the budget left and whether anything was claimed."""
        # SimpleQueue: a C queue, a fraction of queue.Queue's cost per message.
        inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._inbox = inbox
        active: set[str] = set()
        lease = self.settings.run.lease_seconds
        stop_at: float | None = None
        want_claim = True
        claimed = False
        while True:
            if self.stop.is_set() and stop_at is None:
                stop_at = time.monotonic() + STOP_GRACE
            now = self.clock()
            if (want_claim and not self.stop.is_set() and not self._bug
                    and len(active) < concurrency
                    and (budget is None or budget > 0)
                    and (claim_until is None or now < claim_until)):
                unknown = self.store.claim_unknown(run_id, now=now, lease=lease, limit=BATCH)
                for job in unknown:
                    name = f"reconcile:{job.id}"
                    active.add(name)
                    self._holding[name] = {job.id}
                    account = self.store.get_account(job.account)
                    self._start(pool, inbox, run_id, name, account, [job], reconcile=True)
                size = BATCH if budget is None else min(BATCH, budget)
                claim = self.store.claim(run_id, now=now, lease=lease, limit=size,
                                         per_account=size, limits_for=self._limits_for)
                summary.deferred += len(claim.deferred)
                if budget is not None:
                    budget -= len(claim.jobs)
                chains: dict[str, list[Job]] = {}
                for job in claim.jobs:
                    chains.setdefault(job.account, []).append(job)
                for account, jobs in chains.items():
                    jobs.sort(key=lambda j: (j.scheduled_at, j.id))
                    active.add(account)
                    self._holding[account] = {j.id for j in jobs}
                    self._start(pool, inbox, run_id, account, claim.accounts[account], jobs,
                                reconcile=False)
                want_claim = bool(claim.jobs or unknown) and len(active) < concurrency
                claimed = claimed or bool(claim.jobs or unknown)
                if claim.jobs or unknown or claim.deferred:
                    self._tell(summary)
            if not active:
                return budget, claimed
            if stop_at is not None and time.monotonic() > stop_at:
                return budget, claimed
            finished = self._serve(inbox, run_id, summary)
            if finished:
                active.difference_update(finished)
                want_claim = True

    def _serve(self, inbox: queue.SimpleQueue, run_id: str, summary: RunSummary) -> list[str]:
        """Wait for workers' messages and commit them in as few transactions as possible."""
        try:
            first = inbox.get(timeout=self._beat_every())
        except queue.Empty:
            # Nothing to commit, but the run is alive: keep its leases, however long a
            # platform takes to answer.
            now = self.clock()
            lease = self._heartbeat(now)
            if lease is not None:
                self.store.dispatch([], run_id, now=now, lease=lease)
            return []
        batch: list[Any] = []
        _take(batch, first)
        want = 2 * self._released  # each reports its result, then its next step
        deadline = None
        while True:
            try:
                _take(batch, inbox.get_nowait())
                continue
            except queue.Empty:
                pass
            if len(batch) >= want:
                break
            t = time.monotonic()
            deadline = deadline or t + GROUP_WAIT
            if t >= deadline:
                break
            try:
                _take(batch, inbox.get(timeout=deadline - t))
            except queue.Empty:
                break
        now = self.clock()
        dispatches = [m for m in batch if isinstance(m, Dispatch)]
        done = [m for m in batch if isinstance(m, Done)]
        applied: list[bool] = []
        if dispatches or done:
            # Dispatch marks and results share one commit; workers hear back only after it.
            numbers, applied = self.store.dispatch_and_record(
                [m.job_id for m in dispatches], [m.result for m in done], run_id, now=now,
                lease=self._heartbeat(now))
            for m in dispatches:
                m.reply.set_result(numbers.get(m.job_id))
        self._released = len(dispatches)
        for m in batch:
            if isinstance(m, SaveRefRequest):
                try:
                    # Saving a ref is a sign of life: it renews the job's lease, so an
                    # adapter that saves progress during a long upload keeps its job.
                    self.store.save_ref(m.job_id, run_id, m.ref, now=now,
                                        lease=self.settings.run.lease_seconds)
                    m.reply.set_result(True)
                except Exception as exc:  # the worker decides what a lost ref means
                    m.reply.set_exception(exc)
        if done:
            for m, ok in zip(done, applied, strict=True):
                if not ok:
                    continue
                setattr(summary, m.counter, getattr(summary, m.counter) + 1)
                if m.problem is not None:
                    summary.problems.append(m.problem)
        finished = []
        for m in batch:
            if isinstance(m, ChainEnd):
                if m.unstarted:
                    summary.released += self.store.release(
                        [j.id for j in m.unstarted], run_id, now=now)
                if m.account_state is not None:
                    state, reason = m.account_state
                    self.store.set_account_state(m.account, state, reason, now=now)
                    summary.problems.append(Problem(None, m.account, str(state), reason))
                if m.bug is not None:
                    self._bug = True
                    summary.problems.append(Problem(None, m.account, "internal error", m.bug))
                finished.append(m.account)
        if done or finished:
            for m in done:
                # A job is held by its account's chain or by its own reconcile chain.
                for name in (m.job.account, f"reconcile:{m.job.id}"):
                    held = self._holding.get(name)
                    if held is not None:
                        held.discard(m.job.id)
            for name in finished:
                self._holding.pop(name, None)
            self._tell(summary)
        return finished

    def _tell(self, summary: RunSummary) -> None:
        if self.progress is not None:
            self.progress(summary, sum(len(held) for held in self._holding.values()))

    def _beat_every(self) -> float:
        return min(HEARTBEAT, self.settings.run.lease_seconds / 10)

    def _heartbeat(self, now: datetime) -> float | None:
        """The lease to renew the run's jobs to with this commit, or None (renewed lately)."""
        every = timedelta(seconds=self._beat_every())
        if self._beat_at is not None and timedelta(0) <= now - self._beat_at < every:
            return None
        self._beat_at = now
        return self.settings.run.lease_seconds

    def _limits_for(self, account: Account) -> tuple[int | None, int | None]:
        policy = self.settings.policy(account.platform)
        hourly = account.hourly_limit if account.hourly_limit is not None else policy.hourly_limit
        daily = account.daily_limit if account.daily_limit is not None else policy.daily_limit
        return hourly or None, daily or None

    def _start(self, pool: Pool, inbox: queue.SimpleQueue, run_id: str, name: str,
               account: Account, jobs: list[Job], *, reconcile: bool) -> None:
        # Accounts are read on the main thread: only it uses the run's connection.
        pool.submit(lambda: self.publisher.chain(inbox, run_id, name, account, jobs, reconcile))


def _take(batch: list[Any], message: Any) -> None:
    """A worker's message, or several it sent as one tuple (a result and its next step)."""
    if type(message) is tuple:
        batch.extend(message)
    else:
        batch.append(message)
