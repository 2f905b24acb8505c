"""The worker side of a run: one account's claimed jobs, published in order on one thread.

A worker never writes the database itself. Before each platform call it asks the main
thread (engine.py) to commit the job's dispatch mark and waits for the answer; after the
call it hands back a Done carrying the Result that policy.py decided. Token refresh is
the exception: it goes through its own connection, serialised per account by
accounts.refresh_account, because new tokens must be stored before they are used.
"""

from __future__ import annotations

import os
import queue
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from autopost.accounts import needs_proactive_refresh, refresh_account, resolve_credentials
from autopost.config import Settings
from autopost.errors import UsageError
from autopost.models import Account, AccountState, ErrorKind, Job, JobStatus
from autopost.platforms.base import Adapter, PlatformError, Published, Reconciled
from autopost.platforms.registry import adapter_class
from autopost.policy import (
    RECONCILE_ERROR,
    RESEND_FAILED,
    Decision,
    decide_error,
    decide_reconcile,
    decide_reconcile_error,
    decide_resend_error,
)
from autopost.redact import account_secrets, scrub
from autopost.store.base import Result, Store


@dataclass(frozen=True)
class Problem:
    """One line of run-due's output: something a human should know about."""

    job_id: str | None
    account: str
    status: str
    message: str

    def line(self) -> str:
        if self.job_id is None:
            return f"account {self.account}: {self.message}"
        return f"job {self.job_id} ({self.account}): {self.status}: {self.message}"

# -- messages between workers and the main thread -------------------------------------

class Reply:
    """The main thread's one answer to a waiting worker. A bare lock, held until the
    answer is in: a concurrent.futures.Future (a condition variable, callbacks, states)
    costs several times more, and there is one per job."""

    __slots__ = ("_exc", "_lock", "_value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._value: Any = None
        self._exc: BaseException | None = None

    def set_result(self, value: Any) -> None:
        self._value = value
        self._lock.release()

    def set_exception(self, exc: BaseException) -> None:
        self._exc = exc
        self._lock.release()

    def result(self) -> Any:
        self._lock.acquire()
        if self._exc is not None:
            raise self._exc
        return self._value


class Outbox:
    """One chain's way to the main thread. A result is held back until the worker's next
    message (its next dispatch mark, or the end of the chain, which follow at once) and
    goes with it as one tuple: one wake-up of the main thread per job, not two."""

    __slots__ = ("_held", "_inbox")

    def __init__(self, inbox: queue.SimpleQueue) -> None:
        self._inbox = inbox
        self._held: list[Any] = []

    def hold(self, message: Any) -> None:
        self._held.append(message)

    def put(self, message: Any) -> None:
        if self._held:
            self._inbox.put((*self._held, message))
            self._held.clear()
        else:
            self._inbox.put(message)


@dataclass
class Dispatch:
    job_id: str
    reply: Reply


@dataclass
class SaveRefRequest:
    job_id: str
    ref: dict[str, Any]
    reply: Reply


@dataclass
class Done:
    job: Job
    result: Result
    problem: Problem | None
    counter: str


@dataclass
class ChainEnd:
    account: str
    unstarted: list[Job]
    account_state: tuple[AccountState, str] | None = None
    bug: str | None = None  # an internal error ended the chain early


class Pool:
    """A fixed set of daemon threads: a run that must exit never waits for a hung call."""

    def __init__(self, size: int):
        self.tasks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.threads = [threading.Thread(target=self._work, daemon=True, name=f"publish-{i}")
                        for i in range(size)]
        for t in self.threads:
            t.start()

    def _work(self) -> None:
        while (task := self.tasks.get()) is not None:
            task()

    def submit(self, task: Callable[[], None]) -> None:
        self.tasks.put(task)

    def shutdown(self) -> None:
        for _ in self.threads:
            self.tasks.put(None)


class Publisher:
    """Publishes chains of jobs for the engine; shared by all its worker threads."""

    def __init__(self, settings: Settings, *, store_factory: Callable[[], Store],
                 clock: Callable[[], datetime], sleep: Callable[[float], None],
                 rng: random.Random, stop: threading.Event,
                 client_factory: Callable[[], Any] | None = None):
        self.settings = settings
        self.store_factory = store_factory
        self.clock = clock
        self.sleep = sleep
        self.rng = rng
        self.stop = stop
        self.client_factory = client_factory
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._rng_lock = threading.Lock()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def chain(self, inbox: queue.SimpleQueue, run_id: str, name: str, account: Account,
               jobs: list[Job], reconcile: bool) -> None:
        end = ChainEnd(name, [])
        progress = [0, False]  # the job in hand, and whether its dispatch mark is committed
        out = Outbox(inbox)
        try:
            end = self._chain_body(out, run_id, name, account, jobs, reconcile, progress)
        except Exception as exc:  # a bug must not leave the main thread waiting forever
            report_bug(exc)
            # Jobs not yet dispatched go back to pending now (not after their lease); the
            # one in hand, if it reached the platform, is rescued and reconciled later.
            at, dispatched = progress
            unstarted = [] if reconcile else jobs[at + 1 if dispatched else at:]
            end = ChainEnd(name, unstarted, None,
                           bug=f"internal error ({type(exc).__name__}) while publishing; "
                               f"{len(unstarted)} job(s) put back to pending")
        finally:
            out.put(end)  # with any result still held

    def _chain_body(self, inbox: Outbox, run_id: str, name: str, account: Account,
                    jobs: list[Job], reconcile: bool, progress: list) -> ChainEnd:
        store = None
        try:
            adapter = self._adapter(account)
        except PlatformError as exc:  # e.g. a credential's environment variable is unset
            return ChainEnd(name, [] if reconcile else jobs,
                             (AccountState.NEEDS_REAUTH, exc.message))
        except UsageError as exc:  # e.g. a platform this install does not support
            return ChainEnd(name, [] if reconcile else jobs,
                             (AccountState.NEEDS_REAUTH, str(exc)))
        seen = account.credentials
        try:
            if not reconcile and needs_proactive_refresh(account, adapter, self.clock()):
                store = self.store_factory()
                try:
                    seen = refresh_account(store, adapter, seen, run_id, clock=self.clock,
                                           sleep=self.sleep).credentials
                except PlatformError as exc:
                    if exc.kind == ErrorKind.AUTH_REVOKED:
                        raise
                    # The token has not expired yet (or a 401 will say so and retry the
                    # refresh): a platform hiccup now is no reason to stop the account.
                    pass
            for i, job in enumerate(jobs):
                progress[:] = [i, False]
                if self.stop.is_set():
                    return ChainEnd(name, [] if reconcile else jobs[i:])
                if reconcile:
                    done, seen, store = self._reconcile(adapter, job, run_id, inbox, seen,
                                                        store)
                    if done is not None:
                        inbox.hold(done)
                    continue
                number = self._dispatch(inbox, job)
                if number is None:
                    continue  # the lease is no longer ours: another run owns the job
                progress[1] = True
                outcome, refreshed, seen, store = self._publish(adapter, job, run_id, inbox,
                                                               seen, store)
                if isinstance(outcome, Published):
                    done = self._posted(job, run_id, outcome, refreshed)
                else:
                    done = self._failed(adapter, job, number, run_id, outcome)
                inbox.hold(done)  # sent with the next dispatch mark or the chain's end
                if done.result.block_account_until is not None or done.result.account_state:
                    return ChainEnd(name, jobs[i + 1:])
            return ChainEnd(name, [])
        except PlatformError as exc:  # a proactive refresh that failed
            return ChainEnd(name, [] if reconcile else jobs,
                             (AccountState.NEEDS_REAUTH, scrubbed(adapter, exc).message))
        finally:
            if store is not None:
                store.close()

    def _adapter(self, account: Account) -> Adapter:
        cls = adapter_class(account.platform)
        credentials = resolve_credentials(account)
        client = self._http_client() if cls.needs_http else None
        return cls(account, credentials, client, clock=self.clock, sleep=self.sleep,
                   policy=self.settings.policy(account.platform), settings=self.settings)

    def _http_client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                if self.client_factory is not None:
                    self._client = self.client_factory()
                else:
                    from autopost.platforms.http import make_client

                    self._client = make_client()
            return self._client

    @staticmethod
    def _dispatch(inbox: Outbox, job: Job) -> int | None:
        """Have the main thread commit the dispatch mark; None when the lease is lost."""
        reply = Reply()
        inbox.put(Dispatch(job.id, reply))
        return reply.result()

    def _publish(self, adapter: Adapter, job: Job, run_id: str, inbox: Outbox,
                 seen: dict, store: Store | None
                 ) -> tuple[Published | PlatformError, bool, dict, Store | None]:
        """One platform call for the job (refreshing an expired token once).
        Returns what came of it, whether a refresh happened, and the refresh state."""
        def save_ref(ref: dict[str, Any]) -> None:
            reply = Reply()
            inbox.put(SaveRefRequest(job.id, {**job.ref, **ref}, reply))
            reply.result()

        refreshed = False
        while True:
            try:
                return adapter.publish(job, save_ref), refreshed, seen, store
            except PlatformError as exc:
                if exc.kind == ErrorKind.AUTH_EXPIRED and adapter.refreshable and not refreshed:
                    refreshed = True
                    try:
                        store = store or self.store_factory()
                        seen = refresh_account(store, adapter, seen, run_id, clock=self.clock,
                                               sleep=self.sleep).credentials
                        continue
                    except PlatformError as again:
                        exc = again
                return exc, refreshed, seen, store
            except Exception as exc:  # an adapter bug: the post may or may not have gone out
                report_bug(exc)
                return PlatformError(ErrorKind.AMBIGUOUS,
                                     f"internal error in the {adapter.platform} adapter "
                                     f"({type(exc).__name__})"), refreshed, seen, store

    def _posted(self, job: Job, run_id: str, published: Published, refreshed: bool) -> Done:
        note = "posted" + (" after refreshing the token" if refreshed else "")
        if published.note:
            note += f"; {published.note}"
        result = Result(job.id, run_id, self.clock(), JobStatus.POSTED, "posted",
                        platform_post_id=published.post_id, platform_url=published.url,
                        decision=note)
        return Done(job, result, None, "posted")

    def _failed(self, adapter: Adapter, job: Job, number: int, run_id: str,
                exc: PlatformError) -> Done:
        exc = scrubbed(adapter, exc)
        now = self.clock()
        policy = self.settings.policy(job.platform)
        with self._rng_lock:
            d = decide_error(exc, job=job, attempt=number, policy=policy, now=now, rng=self.rng,
                             can_reconcile=adapter.can_reconcile)
        return self._done(job, run_id, now, d, exc, closes_attempt=True)

    def _reconcile(self, adapter: Adapter, job: Job, run_id: str, inbox: Outbox,
                   seen: dict, store: Store | None
                   ) -> tuple[Done | None, dict, Store | None]:
        policy = self.settings.policy(job.platform)
        try:
            try:
                found: Reconciled = adapter.reconcile(job)
            except PlatformError as exc:
                if exc.kind != ErrorKind.AUTH_EXPIRED or not adapter.refreshable:
                    raise
                # Reading back needs a live token too: refresh once (serialised), ask again.
                store = store or self.store_factory()
                seen = refresh_account(store, adapter, seen, run_id, clock=self.clock,
                                       sleep=self.sleep).credentials
                found = adapter.reconcile(job)
        except PlatformError as exc:
            exc = scrubbed(adapter, exc)
            now = self.clock()
            store = store or self.store_factory()
            failed_before = store.outcomes_in_a_row(job.id, RECONCILE_ERROR)
            with self._rng_lock:
                d = decide_reconcile_error(exc, job=job, policy=policy, now=now, rng=self.rng,
                                           failed_before=failed_before)
            if d.gave_up:
                exc = self._given_up(exc, d)
            return self._done(job, run_id, now, d, exc, closes_attempt=False,
                              reconcile=True), seen, store
        # The answer's words go into the record: without any of the account's secrets.
        found = Reconciled(found.verdict, found.published,
                           scrub(found.message, _secrets(adapter)) or "")
        now = self.clock()
        d = decide_reconcile(found, job=job, now=now)
        if d.resend:
            return self._resend(adapter, job, run_id, inbox, seen, store, d)
        published = found.published
        outcome = {JobStatus.POSTED: "reconciled", JobStatus.UNKNOWN: "cannot_tell"}.get(
            d.status, "not_posted")
        result = Result(
            job.id, run_id, now, d.status, outcome,
            next_attempt_at=d.next_attempt_at,
            error_kind=job.last_error_kind if d.status != JobStatus.POSTED else None,
            message=None if d.status == JobStatus.POSTED else (job.last_error or found.message),
            platform_post_id=published.post_id if published else None,
            platform_url=published.url if published else None,
            decision=d.why, closes_attempt=False)
        problem = _problem(job, d, found.message)
        counter = {JobStatus.POSTED: "posted", JobStatus.FAILED: "failed",
                   JobStatus.UNKNOWN: "unknown"}.get(d.status, "reconciled")
        return Done(job, result, problem, counter), seen, store

    def _resend(self, adapter: Adapter, job: Job, run_id: str, inbox: Outbox,
                seen: dict, store: Store | None, why: Decision
                ) -> tuple[Done | None, dict, Store | None]:
        """Settle an unknown job by sending it again where the platform deduplicates the
        resend. Not an attempt: allowed whatever the attempts spent, and the job stays
        unknown (counted against the quota) until the platform answers."""
        if self._dispatch(inbox, job) is None:
            return None, seen, store  # another run took the job over
        outcome, _refreshed, seen, store = self._publish(adapter, job, run_id, inbox, seen,
                                                        store)
        now = self.clock()
        if isinstance(outcome, Published):
            result = Result(job.id, run_id, now, JobStatus.POSTED, "posted",
                            platform_post_id=outcome.post_id, platform_url=outcome.url,
                            decision=f"posted: {why.why}")
            return Done(job, result, None, "posted"), seen, store
        outcome = scrubbed(adapter, outcome)
        store = store or self.store_factory()
        # The failed resends since the platform last answered (failed read-backs between
        # them aside; the resend in flight is not yet recorded).
        failed_before = store.outcomes_in_a_row(job.id, RESEND_FAILED,
                                                passing=(RECONCILE_ERROR,))
        with self._rng_lock:
            d = decide_resend_error(outcome, job=job, policy=self.settings.policy(job.platform),
                                    now=now, rng=self.rng, failed_before=failed_before)
        if d.gave_up:
            outcome = self._given_up(outcome, d)
        done = self._done(job, run_id, now, d, outcome, closes_attempt=True,
                          outcome=RESEND_FAILED)
        counter = {JobStatus.FAILED: "failed", JobStatus.UNKNOWN: "unknown"}[d.status]
        if d.status == JobStatus.UNKNOWN and d.next_attempt_at is not None:
            counter = "reconciled"  # asked again later: not yet anyone's problem
        return Done(job, done.result, done.problem, counter), seen, store

    @staticmethod
    def _given_up(exc: PlatformError, d: Decision) -> PlatformError:
        """No longer tried automatically: the job's last error says why and what to do."""
        return PlatformError(exc.kind, f"{exc.message}; {d.why}", http_status=exc.http_status,
                             code=exc.code)

    def _done(self, job: Job, run_id: str, now: datetime, d: Decision, exc: PlatformError, *,
              closes_attempt: bool, reconcile: bool = False,
              outcome: str | None = None) -> Done:
        result = Result(
            job.id, run_id, now, d.status,
            outcome or (RECONCILE_ERROR if reconcile else "error"),
            next_attempt_at=d.next_attempt_at, error_kind=exc.kind, http_status=exc.http_status,
            message=exc.message, decision=d.why, closes_attempt=closes_attempt,
            refund_attempt=d.refund_attempt, block_account_until=d.block_until,
            account_state=d.account_state,
            account_reason=exc.message if d.account_state else None)
        # A failed read-back is nobody's problem yet, unless it was the last one tried.
        asked_again = reconcile and not d.gave_up
        problem = None if asked_again else _problem(job, d, exc.message)
        counter = {JobStatus.FAILED: "failed", JobStatus.UNKNOWN: "unknown"}.get(
            d.status, "retried")
        if asked_again:
            counter = "reconciled"
        return Done(job, result, problem, counter)

def _secrets(adapter: Adapter) -> list[str]:
    return account_secrets(adapter.credentials, adapter.secret_fields,
                           adapter.account.base_url)


def scrubbed(adapter: Adapter, exc: PlatformError) -> PlatformError:
    """The error with every secret of the adapter's account taken out of its message,
    before the message is stored or printed (a platform may quote what it was sent)."""
    clean = scrub(exc.message, _secrets(adapter))
    if clean == exc.message:
        return exc
    return PlatformError(exc.kind, clean or "", http_status=exc.http_status,
                         retry_at=exc.retry_at, code=exc.code)


def _problem(job: Job, d: Decision, message: str) -> Problem | None:
    if d.status == JobStatus.FAILED:
        return Problem(job.id, job.account, "failed", message)
    if d.status == JobStatus.UNKNOWN and d.next_attempt_at is None:
        return Problem(job.id, job.account, "unknown",
                       f"{message}; check {job.platform} and run 'autopost resolve {job.id} "
                       "--posted URL' or '--not-posted'")
    if d.account_state == AccountState.NEEDS_REAUTH:
        return Problem(None, job.account, "needs_reauth", message)
    return None


def report_bug(exc: BaseException) -> None:
    """The traceback of a bug, with AUTOPOST_DEBUG=1. The run reports the bug itself as a
    problem line (and exits 1), so nothing is printed here otherwise."""
    if os.environ.get("AUTOPOST_DEBUG"):
        import sys
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
