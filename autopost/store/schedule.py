"""The schedule rules both stores apply to what they have read: the duplicate guard,
queue slots, what an edit changes and when a retry is refused. Each store keeps only
its SQL.

Times come in the form the store keeps them (SQLite: fixed-width UTC text, PostgreSQL:
a timestamptz), compared as they are; `t` is the store's converter to that form
(rows.ToDb), so that a large import compares without converting every row it reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from autopost.errors import UsageError
from autopost.models import Attempt, Job, JobEdit, JobStatus, NewJob
from autopost.store.base import RETRYABLE, CancelOutcome, duplicate_key, not_editable_reason
from autopost.store.rows import ToDb
from autopost.store.timefmt import to_db

# (id, scheduled_at, posted_at, status) of a LIVE job with a given text key
Known = tuple[str, Any, Any, str]


def hours(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"


def around(at: datetime, window: float, t: ToDb) -> tuple[Any, Any]:
    """The open interval the duplicate guard looks in: `window` seconds either side."""
    span = timedelta(seconds=window)
    return t(at - span), t(at + span)


def refuse_duplicate(account: str, at: datetime, window: float, t: ToDb, *,
                     known: Any = (), exclude: str | None = None,
                     batch: Any = None) -> None:
    """UsageError when an earlier job of this batch (`batch`: its (time, id) with this
    text key) or a LIVE job of `known` (Known rows) is less than `window` from `at`."""
    span = timedelta(seconds=window)
    for when, other_id in batch or ():
        if abs(when - at) < span:
            raise UsageError(
                f"{account}: the same text is already in this batch (job {other_id}, "
                f"{to_db(when)[:16]}Z), less than {hours(window)} apart; add "
                "--allow-duplicate to post it anyway (nothing changed)")
    lo, hi = around(at, window, t)
    for jid, scheduled, posted, status in known:
        if jid == exclude or not (lo < scheduled < hi or (posted and lo < posted < hi)):
            continue
        when = posted if status == "posted" and posted else scheduled
        verb = "posted" if status == "posted" else "scheduled"
        shown = when if isinstance(when, str) else to_db(when)
        raise UsageError(
            f"{account}: job {jid} with the same text is {verb} at {shown[:16]}Z, less "
            f"than {hours(window)} from this one; add --allow-duplicate to post it "
            "anyway (nothing changed)")


def first_free(job: NewJob, held: set, t: ToDb) -> datetime:
    """The first of job.slots not in `held`: the times (as the store keeps them) that a
    LIVE job of the account, or an earlier job of the batch, is scheduled at."""
    for slot in job.slots:
        if t(slot) not in held:
            return slot
    raise UsageError(f"{job.account}: no free slot until {to_db(job.slots[-1])[:16]}Z "
                     "(every slot is taken; add slots in the config or give --at)")


def as_update(job: NewJob, at: datetime) -> JobEdit:
    """`add --key K --update`: what the job holding K takes from `job`, due at `at`."""
    return JobEdit(text=job.text, scheduled_at=at, media=tuple(job.media),
                   options=dict(job.options), max_attempts=job.max_attempts)


def edit_guard(job: Job, edit: JobEdit) -> tuple[str | None, datetime] | None:
    """The text key and time the duplicate guard judges for an edit; None when it
    changes neither the text nor the time."""
    if edit.text is None and edit.scheduled_at is None:
        return None
    text = job.text if edit.text is None else edit.text
    at = job.scheduled_at if edit.scheduled_at is None else edit.scheduled_at
    return duplicate_key(text), at


def planned_edit(job: Job, edit: JobEdit, verb: str, stamp: Any, t: ToDb
                 ) -> tuple[dict[str, Any], str]:
    """The columns an edit of `job` sets (stored values, `stamp` the update time) and the
    note of its audit row; UsageError when the job must be left alone."""
    reason = not_editable_reason(job)
    if reason is not None:
        raise UsageError(f"job {job.id} cannot be {verb}: {reason} (nothing changed)")
    sets: dict[str, Any] = {"updated_at": stamp}
    if edit.text is not None:
        sets["text"] = edit.text
        sets["text_key"] = duplicate_key(edit.text)
    if edit.media is not None:
        sets["media"] = json.dumps([m.to_dict() for m in edit.media]) if edit.media else "[]"
    if edit.options is not None:
        sets["options"] = json.dumps(edit.options) if edit.options else "{}"
    if edit.max_attempts is not None:
        sets["max_attempts"] = edit.max_attempts
    if edit.scheduled_at is not None:
        sets["scheduled_at"] = sets["next_attempt_at"] = t(edit.scheduled_at)
        if job.status != JobStatus.PENDING:
            sets.update(status="pending", last_error=None, last_error_kind=None)
    changed = [name for name in edit.fields() if _value(job, name) != getattr(edit, name)]
    return sets, f"{verb} by operator: {', '.join(changed) or 'nothing changed'}"


def _value(job: Job, name: str) -> Any:
    value = getattr(job, name)
    return tuple(value) if name == "media" else value


def cancel_outcome(job: Job, cancelled: bool) -> CancelOutcome:
    """What cancel_job answers: the job as it is now and, when it was left as it was,
    why."""
    if cancelled:
        return CancelOutcome(job, True)
    reasons = {
        JobStatus.RUNNING: "it is being published right now by a run",
        JobStatus.POSTED: "it is already posted",
        JobStatus.CANCELLED: "it is already cancelled",
    }
    return CancelOutcome(job, False, reasons.get(job.status, f"it is {job.status}"))


def retryable(job: Job, now: datetime) -> bool:
    """Whether `retry` may set the job pending again (False: its status cannot be
    retried); UsageError for an unknown job whose lease another run holds."""
    if job.status not in RETRYABLE and job.status != JobStatus.UNKNOWN:
        return False
    if (job.status == JobStatus.UNKNOWN and job.lease_owner is not None
            and job.lease_expires_at is not None and job.lease_expires_at > now):
        raise UsageError(f"job {job.id} is being reconciled by run {job.lease_owner}; try "
                         "again when that run has finished")
    return True


def retry_note(job: Job, attempts: Iterable[Attempt], at: datetime | None, *, force: bool,
               key_holder: str | None) -> str:
    """The audit note of a retry; UsageError for a job that may already be posted (unless
    `force`) and for a cancelled job whose key another job (`key_holder`) now holds."""
    from autopost.policy import retry_doubt  # policy loads the platform layer

    doubt = retry_doubt(job, attempts)
    if doubt is not None and not force:
        raise UsageError(doubt)
    if key_holder is not None:
        raise UsageError(f"job {job.id} cannot be retried: its key {job.key!r} now belongs "
                         f"to job {key_holder} (nothing changed)")
    return "set pending by operator" + (f", due {to_db(at)}" if at is not None else "") + (
        " (forced: it may already be posted)" if doubt else "")


def series_sets(edit: JobEdit, stamp: Any) -> dict[str, Any]:
    """The columns an edit of a series sets (its times come from its rule)."""
    sets: dict[str, Any] = {"updated_at": stamp}
    if edit.text is not None:
        sets["text"] = edit.text
    if edit.media is not None:
        sets["media"] = json.dumps([m.to_dict() for m in edit.media])
    if edit.options is not None:
        sets["options"] = json.dumps(edit.options)
    if edit.max_attempts is not None:
        sets["max_attempts"] = edit.max_attempts
    return sets
