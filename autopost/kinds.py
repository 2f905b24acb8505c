"""The states and error kinds every layer shares, apart from the domain objects in
autopost.models so that autopost.config (on the idle tick) loads enums alone."""

from __future__ import annotations

from enum import StrEnum


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
