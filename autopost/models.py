"""The domain objects every layer shares: jobs, attempts, accounts, and their enums.

Times are always timezone-aware UTC datetimes here; the store converts them to and
from its sortable text form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    POSTED = "posted"
    FAILED = "failed"
    CANCELLED = "cancelled"
    MISSED = "missed"
    UNKNOWN = "unknown"


class ErrorKind(StrEnum):
    """What went wrong, as DESIGN.md's error table names it."""

    AUTH_EXPIRED = "auth_expired"
    AUTH_REVOKED = "auth_revoked"
    RATE_LIMITED = "rate_limited"
    QUOTA_EXCEEDED = "quota_exceeded"
    NETWORK = "network"
    AMBIGUOUS = "ambiguous"
    SERVER = "server"
    INVALID = "invalid"
    DUPLICATE = "duplicate"


class AccountState(StrEnum):
    OK = "ok"
    NEEDS_REAUTH = "needs_reauth"


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

    def is_blocked(self, now: datetime) -> bool:
        return self.blocked_until is not None and self.blocked_until > now


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
