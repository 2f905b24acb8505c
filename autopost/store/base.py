"""The Store interface: everything the CLI and the engine need from persistence.

Every method is one transaction. Implementations return autopost dataclasses, never
rows. The contract suite in tests/test_store_contract.py runs against any implementation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from autopost.models import (
    Account,
    AccountState,
    Attempt,
    ErrorKind,
    Job,
    JobEdit,
    JobFilter,
    JobStatus,
    NewJob,
    Run,
    Series,
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


# Jobs a bulk cancel / retry may touch, and the statuses `edit` accepts.
CANCELLABLE = (JobStatus.PENDING, JobStatus.FAILED, JobStatus.MISSED)
RETRYABLE = (JobStatus.FAILED, JobStatus.MISSED, JobStatus.CANCELLED)
EDITABLE = (JobStatus.PENDING, JobStatus.MISSED, JobStatus.FAILED)
# Jobs that hold their time and text: the duplicate guard and the slots count these.
LIVE = (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.UNKNOWN, JobStatus.POSTED)


def not_editable_reason(job: Job) -> str | None:
    """Why `edit` (or `add --update`) must leave this job alone; None when it may change.
    A job that has reached the platform once keeps what it sent: a later reconcile
    compares with it, and a resend under the same idempotency key would not change it."""
    if job.status == JobStatus.RUNNING:
        return "it is being published right now by a run"
    if job.status == JobStatus.UNKNOWN:
        return "its outcome is unknown (it may be live); resolve it first"
    if job.status == JobStatus.POSTED:
        return "it is already posted"
    if job.status == JobStatus.CANCELLED:
        return "it is cancelled ('autopost retry' brings it back first)"
    if job.attempts > 0:
        return (f"it has already reached {job.platform} ({job.attempts} attempt"
                f"{'s' if job.attempts != 1 else ''}); cancel it and add a new job")
    return None


def duplicate_key(text: str) -> str | None:
    """What the duplicate guard compares: a digest of the text made NFKC, case-folded and
    whitespace-collapsed (stored with each job, so the check is one indexed read). None
    for a post without text (media only), which the guard does not compare."""
    import hashlib
    import unicodedata

    if text.isascii():  # NFKC leaves ASCII as it is, and casefold is lower there
        norm = " ".join(text.lower().split())
    else:
        norm = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    if not norm:
        return None
    return hashlib.sha256(norm.encode("utf-8")).hexdigest()[:24]


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
    def pause_account(self, name: str, *, until: datetime, now: datetime) -> Account:
        """Its jobs wait: claims, due scans and the missed check skip the account until
        `until` (PAUSED_FOREVER = until resume). No job changes."""

    @abstractmethod
    def resume_account(self, name: str, *, now: datetime) -> Account:
        """End a pause now; the catch-up window of its jobs counts from now."""

    @abstractmethod
    def acquire_refresh_lock(self, name: str, owner: str, *, now: datetime, ttl: float) -> bool:
        """Take the per-account refresh lock; False if another live owner holds it."""

    @abstractmethod
    def release_refresh_lock(self, name: str, owner: str) -> None: ...

    # -- jobs: management ------------------------------------------------------
    @abstractmethod
    def add_jobs(self, jobs: Sequence[NewJob], *, now: datetime, update: bool = False,
                 duplicate_window: float | None = None) -> list[tuple[Job, bool]]:
        """Insert all or nothing, in one write transaction. Each pair is (job, created).

        A job whose (account, key) is held by a job that is not cancelled is returned, not
        added; with `update`, that job takes the new text, time, media, options and
        max_attempts if it may still be edited (not_editable_reason), stays as it is if
        posted, and anything else refuses the whole batch (UsageError). A cancelled job's
        key is free for a new job (the old job keeps its history).

        A NewJob with `slots` gets the first of them that no LIVE job of its account (nor
        an earlier job of the batch) is scheduled at; none free is a UsageError.

        With `duplicate_window` (seconds), a job whose duplicate_key(text) equals that of
        a LIVE job of the same account scheduled, or posted, less than the window away
        from it (or of an earlier job of the batch) refuses the batch (UsageError naming
        the other job). The checks read inside the write transaction, so two concurrent
        adds cannot both take one slot or both pass the guard."""

    @abstractmethod
    def edit_job(self, job_id: str, edit: JobEdit, *, now: datetime,
                 duplicate_window: float | None = None) -> Job:
        """Change a job that has not reached the platform (not_editable_reason; checked in
        the write transaction, UsageError saying why otherwise). A new scheduled_at also
        sets next_attempt_at, and makes a missed or failed job pending again. An audit
        row names the fields changed. The duplicate guard is as in add_jobs (the job
        itself excluded)."""

    @abstractmethod
    def import_jobs(self, jobs: Iterable[NewJob], *, now: datetime,
                    duplicate_window: float | None = None) -> Sequence[tuple[str, bool]]:
        """add_jobs for a stream: insert every job the iterable yields, in one transaction,
        holding only a batch in memory (the duplicate guard as add_jobs has it). All or
        nothing: an exception from the iterable (a bad row found late) rolls back every job
        added before it and propagates.
        Returns (job id, created) in order (compactly: rows.Imported); a job whose
        (account, key) exists is not added (its existing id, created False)."""

    @abstractmethod
    def find_keys(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The job id of each (account, key) that exists."""

    @abstractmethod
    def get_job(self, job_id: str) -> Job:
        """By id or unique id prefix; NotFound otherwise."""

    @abstractmethod
    def list_jobs(self, flt: JobFilter) -> list[Job]: ...

    @abstractmethod
    def attempts_for(self, job_id: str) -> list[Attempt]: ...

    @abstractmethod
    def outcomes_in_a_row(self, job_id: str, outcome: str, *,
                          passing: Sequence[str] = ()) -> int:
        """How many of the job's attempt rows with this outcome end its log in a row: rows
        in flight and rows whose outcome is in `passing` neither count nor end the run;
        any other row ends it (e.g. failed settling resends since the last answer)."""

    @abstractmethod
    def cancel_job(self, job_id: str, *, now: datetime) -> CancelOutcome:
        """pending -> cancelled; failed / missed -> cancelled too (the operator's way to
        acknowledge them). A running, posted or unknown job is not cancelled."""

    @abstractmethod
    def retry_job(self, job_id: str, *, now: datetime, at: datetime | None = None,
                  force: bool = False) -> Job:
        """failed / missed / cancelled -> pending, due now (or at `at`, which also becomes
        its scheduled time), with fresh attempts. UsageError when a cancelled job's key
        has since been given to another job.

        A job that may already be posted (an unknown job, or one whose attempts log holds
        an outcome that was never settled: policy.unsettled_attempt) is refused with a
        UsageError saying why, unless `force`; so is an unknown job another run holds."""

    @abstractmethod
    def cancel_jobs(self, *, account: str | None, statuses: Sequence[JobStatus],
                    now: datetime) -> list[Job]:
        """Cancel every job of `account` (None = all accounts) whose status is in
        `statuses` (only CANCELLABLE ones are touched), in one transaction, each with an
        audit row. Returns the jobs cancelled."""

    @abstractmethod
    def retry_jobs(self, *, account: str | None, statuses: Sequence[JobStatus],
                   now: datetime, at: datetime | None = None) -> list[Job]:
        """retry_job (without force) for every job of `account` whose status is in
        `statuses` (RETRYABLE ones only), all or nothing: one that may already be posted
        refuses the whole batch. Returns the jobs set pending."""

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

    # -- recurring series ---------------------------------------------------------
    @abstractmethod
    def add_series(self, series: Series, jobs: Sequence[NewJob], *, now: datetime,
                   duplicate_window: float | None = None) -> tuple[Series, list[Job]]:
        """Insert a series and its first occurrences (jobs carrying its id and series_n),
        all or nothing; the jobs are checked as add_jobs checks them."""

    @abstractmethod
    def get_series(self, series_id: str) -> Series:
        """By id or unique id prefix; NotFound otherwise."""

    @abstractmethod
    def list_series(self, *, active_only: bool = False) -> list[Series]: ...

    @abstractmethod
    def series_to_extend(self, *, now: datetime) -> list[Series]:
        """Active series whose next_extend_at has come."""

    @abstractmethod
    def extend_series(self, series_id: str, jobs: Sequence[NewJob], *, expected_made: int,
                      made: int, through: datetime | None,
                      next_extend_at: datetime | None, done: bool, now: datetime) -> bool:
        """Add occurrences, only if the series is still active with `expected_made` made
        (so two runs extending at once add them once). False if another got there first."""

    @abstractmethod
    def cancel_series(self, series_id: str, *, now: datetime) -> tuple[Series, list[Job]]:
        """Stop the series and cancel its occurrences not yet posted (CANCELLABLE ones);
        posted, running and unknown occurrences stay as they are. Returns the series and
        the jobs cancelled, in occurrence order."""

    @abstractmethod
    def edit_series(self, series_id: str, edit: JobEdit, *, now: datetime
                    ) -> tuple[Series, list[Job]]:
        """Change the template (text, media, options, max_attempts; not the time) and
        every occurrence that may still be edited; the others stay as they are. Returns
        the series and the jobs changed, in occurrence order."""

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
