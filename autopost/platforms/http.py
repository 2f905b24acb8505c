"""Shared HTTP helpers for adapters: reset-time headers, status classification, transport
errors, and redaction of secrets from anything that may be shown or stored."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from autopost.models import ErrorKind
from autopost.platforms.base import PlatformError

# Default request timeouts: connect quickly, allow slow uploads.
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
USER_AGENT = "autopost/0.1 (+https://pypi.org/project/autopost/)"


def make_client(**kwargs: Any) -> httpx.Client:
    """The one Client a run shares across adapters and threads."""
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
    kwargs.setdefault("timeout", TIMEOUT)
    kwargs.setdefault("limits", limits)
    kwargs.setdefault("headers", {"User-Agent": USER_AGENT})
    return httpx.Client(**kwargs)


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 timestamp as platforms send it ("Z" or an offset; none means UTC), in
    UTC. None for anything else, a non-string or an empty one included."""
    if not isinstance(value, str):
        return None
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def parse_reset(value: str | None, now: datetime) -> datetime | None:
    """A reset moment from a header value: epoch seconds (possibly fractional), an
    ISO 8601 timestamp (Mastodon), or an HTTP date. None when unreadable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        # Small numbers are deltas (some servers send seconds-until-reset here).
        if number < 10**9:
            return now + timedelta(seconds=max(0.0, number))
        return datetime.fromtimestamp(number, UTC)
    stamp = parse_time(value)
    if stamp is not None:
        return stamp
    try:
        return parsedate_to_datetime(value).astimezone(UTC)
    except (TypeError, ValueError, IndexError):
        return None


def parse_retry_after(value: str | None, now: datetime) -> datetime | None:
    """Retry-After: delta seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    try:
        return now + timedelta(seconds=max(0.0, float(value)))
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(value).astimezone(UTC)
    except (TypeError, ValueError, IndexError):
        return None


def retry_at(response: httpx.Response, now: datetime, *,
             reset_headers: Iterable[str] = ("x-ratelimit-reset", "ratelimit-reset"),
             body_seconds: float | None = None) -> datetime | None:
    """The latest of all the reset signals a response carries."""
    found = [parse_retry_after(response.headers.get("retry-after"), now)]
    found += [parse_reset(response.headers.get(h), now) for h in reset_headers]
    if body_seconds is not None:
        found.append(now + timedelta(seconds=max(0.0, float(body_seconds))))
    times = [t for t in found if t is not None]
    return max(times) if times else None


def json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return None


def classify_status(status: int, *, is_create: bool) -> ErrorKind:
    """The generic mapping from an HTTP status; adapters refine it with body codes."""
    if status == 401:
        return ErrorKind.AUTH_EXPIRED
    if status == 429:
        return ErrorKind.RATE_LIMITED
    if status >= 500:
        # A 5xx on a create may hide a post that was made: reconcile before retrying.
        if is_create:
            return ErrorKind.AMBIGUOUS
        return ErrorKind.SERVER
    return ErrorKind.INVALID


def send(client: httpx.Client, request: httpx.Request, *, is_create: bool,
         redact: Iterable[str] = ()) -> httpx.Response:
    """Send a request, turning transport failures into classified PlatformErrors.

    A failure to connect means nothing was sent (network). A timeout or a dropped
    connection after the request went out leaves the outcome unknown for a create
    (ambiguous), and is a plain network error for a read.
    """
    try:
        return client.send(request)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise PlatformError(ErrorKind.NETWORK,
                            redacted(f"cannot connect: {_reason(exc)}", redact)) from None
    except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
        kind = ErrorKind.AMBIGUOUS if is_create else ErrorKind.NETWORK
        raise PlatformError(kind, redacted(
            f"connection lost after the request was sent: {_reason(exc)}", redact)) from None


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")


def redacted(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove secret values (and any bearer token) from a message."""
    for secret in secrets:
        if secret and len(str(secret)) >= 4:
            text = text.replace(str(secret), "[redacted]")
    return _BEARER.sub(r"\1[redacted]", text)


def secret_values(credentials: Mapping[str, Any], fields: Iterable[str]) -> list[str]:
    return [str(credentials[f]) for f in fields if credentials.get(f)]


def error_message(response: httpx.Response, pick: Callable[[Any], str | None] | None = None,
                  *, limit: int = 300) -> str:
    """A short, human message from an error response."""
    body = json_body(response)
    text = pick(body) if pick and body is not None else None
    if not text:
        if isinstance(body, dict):
            for key in ("error_description", "error", "message", "detail", "description"):
                if isinstance(body.get(key), str):
                    text = body[key]
                    break
        if not text:
            text = response.text.strip() or response.reason_phrase
    text = " ".join(str(text).split())
    return f"HTTP {response.status_code}: {text[:limit]}"
