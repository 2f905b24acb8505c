"""The Store interface: everything the CLI and the engine need from persistence.

Every method is one transaction. Implementations return autopost dataclasses, never
rows. The contract suite in tests/test_store_contract.py runs against any implementation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from autopost.models import (
    Account,
    AccountState,
    Attempt,
    ErrorKind,
    Job,
    JobFilter,
    JobStatus,
    NewJob,
    Run,
)

# (hourly, daily) limits for an account; None = no limit.
Limits = tuple[int | None, int | None]
LimitsFor = Callable[[Account], Limits]


@dataclass(frozen=True)
class Claim:
    """What one claim transaction decided."""

    jobs: list[Job] = field(default_factory=list)
    deferred: list[tuple[Job, datetime]] = field(default_factory=list)
    # The accounts of the claimed jobs, as the claim read them.
    accounts: dict[str, Account] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    """The end of one attempt (or of a reconcile), as the engine decided it.

    `status` is where the job goes: posted, pending (retry at next_attempt_at),
    failed, or unknown (next_attempt_at None = waits for the operator).
    """

    job_id: str
    run_id: str
    finished_at: datetime
    status: JobStatus
    outcome: str
    next_attempt_at: datetime | None = None
    error_kind: ErrorKind | None = None
    http_status: int | None = None
    message: str | None = None
    platform_post_id: str | None = None
    platform_url: str | None = None
    decision: str | None = None
    # Whether this result closes a platform attempt (False for a reconcile).
    closes_attempt: bool = True
    # The attempt does not count against max_attempts (the account needs re-auth).
    refund_attempt: bool = False
    # Account-wide consequences.
    block_account_until: datetime | None = None
    account_state: AccountState | None = None
    account_reason: str | None = None


@dataclass(frozen=True)
class CancelOutcome:
    job: Job
    cancelled: bool
    reason: str | None = None


class Store(ABC):
    """Persistence for accounts, jobs, attempts and runs."""

    # -- lifecycle -------------------------------------------------------------
    @abstractmethod
    def close(self) -> None: ...

    # -- accounts --------------------------------------------------------------
    @abstractmethod
    def add_account(self, account: Account, *, now: datetime, replace: bool = False) -> Account:
        """Insert an account (UsageError if the name exists, unless replace)."""

    @abstractmethod
    def get_account(self, name: str) -> Account:
        """NotFound if there is no such account."""

    @abstractmethod
    def list_accounts(self) -> list[Account]: ...

    @abstractmethod
    def remove_account(self, name: str) -> None:
        """Refuses (UsageError) while the account has pending, running or unknown jobs."""

    @abstractmethod
    def save_credentials(
        self, name: str, credentials: dict[str, Any], token_expires_at: datetime | None,
        *, now: datetime,
    ) -> None:
        """Store refreshed credentials (committed before the new token is used)."""

    @abstractmethod
    def set_account_state(
        self, name: str, state: AccountState, reason: str | None, *, now: datetime
    ) -> None: ...

    @abstractmethod
    def acquire_refresh_lock(self, name: str, owner: str, *, now: datetime, ttl: float) -> bool:
        """Take the per-account refresh lock; False if another live owner holds it."""

    @abstractmethod
    def release_refresh_lock(self, name: str, owner: str) -> None: ...

    # -- jobs: management ------------------------------------------------------
    @abstractmethod
    def add_jobs(self, jobs: Sequence[NewJob], *, now: datetime) -> list[tuple[Job, bool]]:
        """Insert all or nothing. A job whose (account, key) exists is returned, not added:
        each pair is (job, created)."""

    @abstractmethod
    def get_job(self, job_id: str) -> Job:
        """By id or unique id prefix; NotFound otherwise."""

    @abstractmethod
    def list_jobs(self, flt: JobFilter) -> list[Job]: ...

    @abstractmethod
    def attempts_for(self, job_id: str) -> list[Attempt]: ...

    @abstractmethod
    def cancel_job(self, job_id: str, *, now: datetime) -> CancelOutcome:
        """pending -> cancelled; failed / missed -> cancelled too (the operator's way to
        acknowledge them). A running, posted or unknown job is not cancelled."""

    @abstractmethod
    def retry_job(self, job_id: str, *, now: datetime, force: bool = False) -> Job:
        """failed / missed / cancelled -> pending, due now, with fresh attempts.

        A job that may already be posted (an unknown job, or one whose attempts log holds
        an outcome that was never settled: policy.unsettled_attempt) is refused with a
        UsageError saying why, unless `force`; so is an unknown job another run holds."""

    @abstractmethod
    def resolve_job(self, job_id: str, *, posted_url: str | None, now: datetime) -> Job:
        """The operator's answer for an unknown job: posted (with its URL) or not posted."""

    @abstractmethod
    def count_by_status(self) -> dict[JobStatus, int]: ...

    @abstractmethod
    def quota_usage(self, account: str, *, now: datetime) -> tuple[int, int]:
        """(posts in the last hour, posts in the last day), in-flight jobs included."""

    @abstractmethod
    def quota_times(self, account: str, *, now: datetime) -> list[datetime]:
        """The times the account's quota windows count, oldest first: when each post of the
        last day went out, and `now` (the store's clock, as in quota_usage) for each job
        that may be live (running or unknown). From them `quota` tells when a full window
        frees a place (quota.window_state)."""

    @abstractmethod
    def prune(self, *, before: datetime, dry_run: bool = False) -> tuple[int, int]:
        """Delete finished jobs (posted/failed/cancelled/missed) updated before `before`,
        with their attempts, and older runs. Returns (jobs, runs) deleted; with `dry_run`,
        what would be, deleting nothing."""

    # -- jobs: the engine --------------------------------------------------------
    @abstractmethod
    def rescue_expired(self, run_id: str, *, now: datetime) -> list[Job]:
        """Running jobs whose lease expired: dispatched ones -> unknown (to reconcile),
        never-dispatched ones -> pending. Returns the jobs as they are now."""

    @abstractmethod
    def mark_missed(self, *, now: datetime, window: float) -> list[Job]:
        """Pending jobs never attempted whose time passed more than `window` s ago -> missed."""

    @abstractmethod
    def claim_unknown(self, run_id: str, *, now: datetime, lease: float, limit: int) -> list[Job]:
        """Lease unknown jobs that are due for a reconcile (status stays unknown)."""

    @abstractmethod
    def claim(
        self, run_id: str, *, now: datetime, lease: float, limit: int, per_account: int,
        limits_for: LimitsFor,
    ) -> Claim:
        """One write transaction: pick due pending jobs in order, skipping accounts that are
        blocked, need re-auth or have a job running anywhere; check each against its
        account's hourly/daily quota (posted + in flight); defer those over quota to the
        next free slot (an audit row, not an attempt); mark the rest running, leased."""

    @abstractmethod
    def dispatch(self, job_ids: Sequence[str], run_id: str, *, now: datetime,
                 lease: float | None = None) -> dict[str, int]:
        """Mark jobs as about to reach the platform: attempts += 1 and an attempt row with
        started_at, committed before the call. Returns {job_id: attempt number} for the
        jobs whose lease is still ours. With `lease`, every job the run holds gets its
        lease renewed to now + lease (the run's heartbeat)."""

    @abstractmethod
    def record(self, results: Sequence[Result]) -> list[bool]:
        """Apply results in one transaction; each applies only while its lease is ours."""

    def dispatch_and_record(self, job_ids: Sequence[str], results: Sequence[Result],
                            run_id: str, *, now: datetime, lease: float | None = None,
                            ) -> tuple[dict[str, int], list[bool]]:
        """dispatch(job_ids) and record(results), each exactly as above, committed together
        (the engine's group commit: one durable commit per turn instead of two). The
        default runs them one after the other; a backend may use one transaction."""
        numbers = self.dispatch(job_ids, run_id, now=now, lease=lease) if job_ids else {}
        applied = self.record(results) if results else []
        return numbers, applied

    @abstractmethod
    def release(self, job_ids: Sequence[str], run_id: str, *, now: datetime) -> int:
        """Claimed but never dispatched -> pending again (no attempt spent)."""

    @abstractmethod
    def save_ref(self, job_id: str, run_id: str, ref: dict[str, Any], *, now: datetime,
                 lease: float | None = None) -> None:
        """Persist adapter state needed to reconcile (a container id, an upload URL).
        With `lease`, the job's lease is renewed too: an adapter saving progress during
        one long call (an upload) is alive, and no other run may take the job over."""

    @abstractmethod
    def due_jobs(self, *, now: datetime, limit: int | None) -> list[Job]:
        """Read-only: the pending jobs a claim would consider now, in claim order."""

    @abstractmethod
    def next_due_at(self, *, now: datetime) -> datetime | None:
        """The earliest time a claimable job becomes due (for --linger)."""

    # -- runs --------------------------------------------------------------------
    @abstractmethod
    def start_run(self, run: Run) -> None: ...

    @abstractmethod
    def finish_run(self, run_id: str, *, now: datetime, counts: dict[str, int]) -> None: ...

    @abstractmethod
    def last_run(self) -> Run | None: ...

    # -- metrics (a store may answer these with one query each) ---------------------
    def count_by_account_status(self) -> dict[tuple[str, str], int]:
        """Jobs per (account, status)."""
        counts: dict[tuple[str, str], int] = {}
        for job in self.list_jobs(JobFilter()):
            key = (job.account, str(job.status))
            counts[key] = counts.get(key, 0) + 1
        return counts

    def count_attempts(self) -> dict[tuple[str, str], int]:
        """Finished attempts per (outcome, error kind or "")."""
        counts: dict[tuple[str, str], int] = {}
        for job in self.list_jobs(JobFilter()):
            for a in self.attempts_for(job.id):
                if a.outcome is None:
                    continue
                key = (a.outcome, str(a.error_kind or ""))
                counts[key] = counts.get(key, 0) + 1
        return counts
