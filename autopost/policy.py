"""What a run does after each attempt: the decision table of DESIGN.md, as pure functions.

    kind            action
    auth_expired    (the engine refreshed once already) -> as auth_revoked
    auth_revoked    account -> needs_reauth; the job waits (attempt refunded), none fail
    rate_limited    account blocked until the reset; job retried then (counts an attempt)
    quota_exceeded  retried like rate_limited where the platform's policy says so, else failed
    network/server  retried with backoff while attempts remain, else failed
    ambiguous       unknown -> reconcile before any retry (operator if it cannot tell)
    duplicate       unknown -> reconcile: it may be our own earlier attempt
    invalid         failed at once, with the platform's message

After an unknown outcome, a reconcile (not an attempt) settles the job:
    posted          posted
    not posted      pending (resent as a new attempt), or failed when the attempts are spent:
                    the platform showed the post does not exist
    resend          the platform deduplicates a resend (Mastodon's Idempotency-Key inside
                    its hour, YouTube's upload session): resent at once, attempts spent or
                    not; the job stays unknown until that resend answers. After
                    MAX_FAILED_RESENDS failed resends in a row it is no longer resent: it
                    waits for the operator (the post may be live, so never failed)
    cannot tell     unknown, waiting for 'autopost resolve'
    (read failed)   unknown, asked again with backoff; after MAX_FAILED_RECONCILES failed
                    read-backs in a row it waits for the operator like a resend that
                    keeps failing

A job that may have reached the platform is never failed for want of attempts: only a
refusal by the platform or an established absence fails it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from autopost.config import PlatformPolicy
from autopost.models import AccountState, Attempt, ErrorKind, Job, JobStatus
from autopost.platforms.base import PlatformError, Reconciled, Verdict

# How soon a run looks at a job whose outcome became unknown.
RECONCILE_DELAY = timedelta(seconds=5)

# Failed settling resends in a row after which an unknown job waits for the operator.
MAX_FAILED_RESENDS = 5
# Failed read-backs (reconciles) in a row after which an unknown job waits for the
# operator. With the backoff growing each time, the tenth comes hours after the first.
MAX_FAILED_RECONCILES = 10

# Attempt outcomes of the log rows that settle (or fail to settle) an unknown job: a
# read-back that failed, and a settling resend that failed (Store.outcomes_in_a_row
# counts them).
RECONCILE_ERROR = "reconcile_error"
RESEND_FAILED = "resend_failed"


@dataclass(frozen=True)
class Decision:
    status: JobStatus
    next_attempt_at: datetime | None
    why: str
    block_until: datetime | None = None
    account_state: AccountState | None = None
    refund_attempt: bool = False
    # A reconcile's answer: send again now, the platform deduplicates it.
    resend: bool = False
    # No longer tried automatically (a bound was reached): the job waits for the operator
    # and its last error says why and what to do.
    gave_up: bool = False


def backoff_delay(policy: PlatformPolicy, attempt: int, rng: random.Random) -> float:
    """min(max_delay, base_delay * multiplier ** (attempt - 1)), with equal jitter:
    a uniform pick in [d/2, d], so retries spread out but never exceed the cap."""
    exponent = max(0, attempt - 1)
    try:
        raw = policy.base_delay * policy.backoff_multiplier ** exponent
    except OverflowError:
        raw = policy.max_delay
    delay = min(policy.max_delay, raw)
    return delay * (0.5 + 0.5 * rng.random())


def retry_time(policy: PlatformPolicy, attempt: int, now: datetime, rng: random.Random,
               not_before: datetime | None = None) -> datetime:
    at = now + timedelta(seconds=backoff_delay(policy, attempt, rng))
    if not_before is not None and not_before > at:
        at = not_before
    return at


def decide_error(err: PlatformError, *, job: Job, attempt: int, policy: PlatformPolicy,
                 now: datetime, rng: random.Random, can_reconcile: bool) -> Decision:
    kind = err.kind
    if kind in (ErrorKind.AUTH_EXPIRED, ErrorKind.AUTH_REVOKED):
        return Decision(JobStatus.PENDING, now, "account needs re-auth; the job waits for it",
                        account_state=AccountState.NEEDS_REAUTH, refund_attempt=True)
    if kind in (ErrorKind.AMBIGUOUS, ErrorKind.DUPLICATE):
        if can_reconcile:
            return Decision(JobStatus.UNKNOWN, now + RECONCILE_DELAY,
                            "outcome unknown; reconcile with the platform before any retry")
        return Decision(JobStatus.UNKNOWN, None,
                        "outcome unknown and the platform cannot be asked; "
                        "waits for 'autopost resolve'")
    if kind == ErrorKind.INVALID:
        return Decision(JobStatus.FAILED, None, "the platform refused the post")
    retryable = kind in (ErrorKind.NETWORK, ErrorKind.SERVER, ErrorKind.RATE_LIMITED) or (
        kind in policy.retryable)
    if not retryable:
        return Decision(JobStatus.FAILED, None, f"{kind} is not retried for this platform")
    if attempt >= job.max_attempts:
        return Decision(JobStatus.FAILED, None, f"gave up after {attempt} attempt(s)")
    at = retry_time(policy, attempt, now, rng, err.retry_at)
    block = None
    if kind in (ErrorKind.RATE_LIMITED, ErrorKind.QUOTA_EXCEEDED):
        block = err.retry_at or at
    return Decision(JobStatus.PENDING, at, f"retry at {at.isoformat(timespec='seconds')}",
                    block_until=block)


def decide_reconcile(found: Reconciled, *, job: Job, now: datetime) -> Decision:
    if found.verdict == Verdict.POSTED:
        return Decision(JobStatus.POSTED, None, f"reconciled: posted ({found.message})")
    if found.verdict == Verdict.CANNOT_TELL:
        return Decision(JobStatus.UNKNOWN, None,
                        f"cannot tell whether it was posted ({found.message}); "
                        "waits for 'autopost resolve'")
    if found.verdict == Verdict.RESEND:
        return Decision(JobStatus.UNKNOWN, now,
                        f"resent to settle the outcome ({found.message}); not an attempt",
                        resend=True)
    if job.last_error_kind == ErrorKind.DUPLICATE:
        return Decision(JobStatus.FAILED, None,
                        "the platform calls it a duplicate of a post that is not ours")
    if job.attempts >= job.max_attempts:
        return Decision(JobStatus.FAILED, None,
                        f"the platform shows it was not posted ({found.message}), and "
                        f"{job.attempts} attempt(s) are spent")
    return Decision(JobStatus.PENDING, now, f"reconciled: not posted ({found.message}); resend")


def _gave_up(job: Job, why: str) -> Decision:
    """An unknown job no longer settled automatically: it waits for the operator (never
    failed, never resent: the post may be live)."""
    return Decision(JobStatus.UNKNOWN, None, (
        f"{why}, the post may be live: see 'autopost show {job.id}', then "
        f"'autopost resolve' it or 'autopost retry --force {job.id}'"), gave_up=True)


def decide_reconcile_error(err: PlatformError, *, job: Job, policy: PlatformPolicy,
                           now: datetime, rng: random.Random,
                           failed_before: int = 0) -> Decision:
    """The platform could not be asked this time: stay unknown, ask again later, the
    backoff growing with each failed read-back in a row (`failed_before` of them before
    this one). At MAX_FAILED_RECONCILES the job is no longer asked about: it waits for
    the operator (never failed, never resent: the post may be live)."""
    failed = failed_before + 1
    if failed >= MAX_FAILED_RECONCILES:
        return _gave_up(job, f"reconcile failed ({err.kind}) {failed} times in a row; "
                        "no longer asked automatically")
    at = retry_time(policy, max(1, job.attempts) + failed_before, now, rng, err.retry_at)
    return Decision(JobStatus.UNKNOWN, at,
                    f"reconcile failed ({err.kind}); asking again at "
                    f"{at.isoformat(timespec='seconds')}")


def decide_resend_error(err: PlatformError, *, job: Job, policy: PlatformPolicy,
                        now: datetime, rng: random.Random, failed_before: int = 0) -> Decision:
    """The deduplicated resend that was to settle an unknown job failed.

    An earlier attempt may still be live, so the job stays unknown whatever the error,
    except when the platform itself refuses the post: a platform that deduplicates would
    have answered with the existing post instead. A refusal found before any request
    (a media file gone, say) proves nothing about the earlier attempt: the operator decides.
    `failed_before`: the failed resends in a row before this one; at MAX_FAILED_RESENDS
    the job is no longer resent and waits for the operator.
    """
    kind = err.kind
    if kind == ErrorKind.INVALID and err.http_status is not None:
        return Decision(JobStatus.FAILED, None, "the platform refused the post")
    if kind == ErrorKind.INVALID:
        return Decision(JobStatus.UNKNOWN, None,
                        "cannot resend to settle the outcome; waits for 'autopost resolve'")
    failed = failed_before + 1
    if failed >= MAX_FAILED_RESENDS:
        return _gave_up(job, f"resend failed ({kind}) {failed} times in a row; "
                        "no longer resent automatically")
    at = retry_time(policy, max(1, job.attempts), now, rng, err.retry_at)
    why = f"resend failed ({kind}); still unknown, asking again at " \
          f"{at.isoformat(timespec='seconds')}"
    if kind in (ErrorKind.AUTH_EXPIRED, ErrorKind.AUTH_REVOKED):
        return Decision(JobStatus.UNKNOWN, at, why, account_state=AccountState.NEEDS_REAUTH)
    block = None
    if kind in (ErrorKind.RATE_LIMITED, ErrorKind.QUOTA_EXCEEDED):
        block = err.retry_at or at
    return Decision(JobStatus.UNKNOWN, at, why, block_until=block)


# -- may a job have been posted? (the operator's `retry` asks) -------------------------

# Audit outcomes after which nothing earlier is in doubt: posted, an established absence,
# the operator's answer or order.
_SETTLING = frozenset({"posted", "not_posted", "resolved", "retried"})
_MAYBE_DELIVERED = frozenset({ErrorKind.AMBIGUOUS, ErrorKind.DUPLICATE})
# Outcomes of a send whose error kind says whether it may have reached the platform.
_SENT = frozenset({"error", RESEND_FAILED, "lost"})


def unsettled_attempt(attempts: Iterable[Attempt]) -> Attempt | None:
    """The last attempt (in log order) that may have reached the platform with nothing
    after it that settled the question; None when no attempt is in doubt."""
    doubt: Attempt | None = None
    for a in attempts:
        if a.outcome in _SETTLING or (a.outcome == "reconciled" and a.decision
                                      and a.decision.startswith("reconciled: posted")):
            doubt = None
        elif a.outcome is None and a.finished_at is None:
            doubt = a  # sent, and nobody recorded how it ended
        elif a.outcome in _SENT and a.error_kind in _MAYBE_DELIVERED:
            doubt = a
    return doubt


def retry_doubt(job: Job, attempts: Iterable[Attempt]) -> str | None:
    """Why a `retry` of this job could post it twice (None when it cannot): it is unknown,
    or its log holds an attempt that may have reached the platform and was never settled."""
    doubt = unsettled_attempt(attempts)
    if job.status != JobStatus.UNKNOWN and doubt is None:
        return None
    when = "its last attempt" if doubt is None else (
        f"attempt {doubt.number} ({doubt.started_at.isoformat(timespec='seconds')})")
    return (f"job {job.id} may already be posted on {job.platform}: the outcome of {when} "
            f"was never confirmed; check the account, then 'autopost resolve {job.id} "
            f"--posted URL', or 'autopost retry --force {job.id}' to send it again anyway")

