"""The domain objects every layer shares: jobs, attempts, accounts (their enums are in
autopost.kinds, and importable from here).

Times are always timezone-aware UTC datetimes here; the store converts them to and
from its sortable text form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from autopost.kinds import AccountState, ErrorKind, JobStatus  # noqa: F401  (re-exported)

# `accounts pause NAME` without --until: paused until `accounts resume NAME`.
PAUSED_FOREVER = datetime(9999, 12, 31, tzinfo=UTC)


@dataclass(frozen=True)
class Media:
    path: str
    alt: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "alt": self.alt}


@dataclass(frozen=True)
class Account:
    name: str
    platform: str
    base_url: str | None = None
    credentials: dict[str, Any] = field(default_factory=dict)
    state: AccountState = AccountState.OK
    state_reason: str | None = None
    blocked_until: datetime | None = None
    token_expires_at: datetime | None = None
    hourly_limit: int | None = None
    daily_limit: int | None = None
    created_at: datetime | None = None
    # Paused by the operator until then (PAUSED_FOREVER = until `accounts resume`).
    paused_until: datetime | None = None
    # When the last pause ended: the catch-up window counts from here.
    resumed_at: datetime | None = None

    def is_blocked(self, now: datetime) -> bool:
        return self.blocked_until is not None and self.blocked_until > now

    def is_paused(self, now: datetime) -> bool:
        return self.paused_until is not None and self.paused_until > now


@dataclass(frozen=True)
class Job:
    id: str
    account: str
    platform: str
    text: str
    scheduled_at: datetime
    next_attempt_at: datetime | None
    status: JobStatus = JobStatus.PENDING
    media: tuple[Media, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    max_attempts: int = 5
    key: str | None = None
    idempotency_key: str = ""
    group_id: str | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    last_error: str | None = None
    last_error_kind: ErrorKind | None = None
    platform_post_id: str | None = None
    platform_url: str | None = None
    posted_at: datetime | None = None
    ref: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # A part of a thread: part 1 is the first post, each later part replies to the one
    # before it.
    thread_id: str | None = None
    thread_part: int | None = None
    # An occurrence of a recurring series (the n-th).
    series_id: str | None = None
    series_n: int | None = None
    # Set by a claim for a thread part after the first: the posts it replies to.
    reply: Reply | None = None


@dataclass(frozen=True)
class PostRef:
    """A post already on the platform: its id, URL and the adapter state kept with it."""

    post_id: str
    url: str | None = None
    ref: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    """What a thread part replies to: the part before it (parent) and part 1 (root)."""

    parent: PostRef
    root: PostRef


@dataclass(frozen=True)
class Attempt:
    job_id: str
    number: int
    run_id: str | None
    started_at: datetime
    finished_at: datetime | None = None
    outcome: str | None = None
    error_kind: ErrorKind | None = None
    http_status: int | None = None
    message: str | None = None
    platform_post_id: str | None = None
    decision: str | None = None


@dataclass(frozen=True)
class NewJob:
    """What `add` and `import` hand to the store: a job before it has an id."""

    account: str
    platform: str
    text: str
    scheduled_at: datetime
    media: tuple[Media, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    max_attempts: int = 5
    key: str | None = None
    group_id: str | None = None
    thread_id: str | None = None
    thread_part: int | None = None
    series_id: str | None = None
    series_n: int | None = None
    # `add --at next-slot`: the candidate times, earliest first; the store takes the
    # first one no other live job of the account holds (scheduled_at is then ignored).
    slots: tuple[datetime, ...] = ()


@dataclass(frozen=True)
class Series:
    """A recurring post: the template its occurrences (ordinary jobs) are made from."""

    id: str
    account: str
    platform: str
    text: str
    rule: str                   # an RRULE without DTSTART (series.normalise_rule)
    tz: str                     # the zone the rule's wall times are in
    start_at: datetime          # the first wall time, as an instant
    media: tuple[Media, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    max_attempts: int = 5
    until_at: datetime | None = None
    count: int | None = None
    status: str = "active"      # active | done (no more occurrences) | cancelled
    made: int = 0               # occurrences made into jobs so far (numbered 1..made)
    through: datetime | None = None
    next_extend_at: datetime | None = None   # when the next occurrence enters the horizon
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class JobEdit:
    """What `edit` changes (None = unchanged)."""

    text: str | None = None
    scheduled_at: datetime | None = None
    media: tuple[Media, ...] | None = None
    options: dict[str, Any] | None = None
    max_attempts: int | None = None

    def fields(self) -> list[str]:
        return [name for name in ("text", "scheduled_at", "media", "options", "max_attempts")
                if getattr(self, name) is not None]


@dataclass(frozen=True)
class Run:
    id: str
    started_at: datetime
    finished_at: datetime | None
    host: str
    pid: int
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class JobFilter:
    status: JobStatus | None = None
    account: str | None = None
    platform: str | None = None
    limit: int | None = None
    thread_id: str | None = None  # the parts of one thread, in part order
    series_id: str | None = None
