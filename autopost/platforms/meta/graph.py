"""The Graph API client Facebook Pages, Instagram and Threads share.

- Every call carries the token as the `access_token` parameter (form field on POST,
  query on GET), as Meta's SDKs send it; no secret ever reaches a message.
- Errors come in one envelope, {"error": {"message", "type", "code", "error_subcode",
  "error_user_msg", "fbtrace_id", "is_transient"}}, and are classified by code and
  subcode (classify below), never by English text.
- Usage headers: X-App-Usage (the app, a rolling hour) and X-Business-Use-Case-Usage
  (per business object, with estimated_time_to_regain_access in minutes) are read on
  every answer. Past 90 % of any budget the client stops sending for that scope until
  the estimate (or an hour) has passed, so a run backs off before Meta's hard limit.
  Nothing is sent while a scope is cooling down, so that refusal is always safe.
- The version is a setting (`[meta] graph_version`); versions.py records the expiry
  dates Meta announced, which `autopost status` warns about.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from autopost.models import ErrorKind
from autopost.platforms import http
from autopost.platforms.base import PlatformError

# Usage (percent of a budget) past which the client stops sending for a while.
USAGE_LIMIT = 90.0
# How long to wait when Meta gives no estimate: its budgets are rolling one-hour windows.
DEFAULT_COOLDOWN = timedelta(hours=1)
# Code 368 ("temporarily blocked for policies violations"): wait long, a human should look.
POLICY_BLOCK = timedelta(hours=24)

RATE_LIMIT_CODES = frozenset({4, 17, 32, 341, 613} | set(range(80000, 80015)))
AUTH_CODES = frozenset({102, 190})
PERMISSION_CODES = frozenset({3, 10} | set(range(200, 300)))
# Token subcodes that a refresh can fix (expired); the rest need a new login.
EXPIRED_SUBCODES = frozenset({463})
# "The media is not ready to be published" (Instagram) and "Media Not Found" on
# threads_publish shortly after the container was made (a known race at Meta).
NOT_READY = frozenset({(9007, 2207027), (24, 4279009)})
# Daily publishing caps: Instagram answers code 9 / 2207042 ("maximum posts per day").
PUBLISHING_CAP = frozenset({(9, 2207042)})
QUOTA_CODES = frozenset({9})
# Meta could not fetch the media URL (Instagram 9004 / 2207052, and relatives).
MEDIA_FETCH = frozenset({(9004, 2207052), (9004, 2207077), (-1, 2207077), (-1, 2207052)})
DUPLICATE_CODES = frozenset({506})
SERVER_CODES = frozenset({1, 2})


@dataclass(frozen=True)
class GraphError:
    """The fields of Meta's error envelope that decide what happens."""

    code: int | None
    subcode: int | None
    type: str | None
    message: str
    user_message: str | None
    transient: bool

    @property
    def pair(self) -> tuple[int, int]:
        return (self.code if self.code is not None else -1,
                self.subcode if self.subcode is not None else -1)

    def label(self) -> str:
        if self.code is None:
            return ""
        return f"{self.code}/{self.subcode}" if self.subcode is not None else str(self.code)


def parse_error(body: Any) -> GraphError | None:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    return GraphError(
        code=_int(error.get("code")), subcode=_int(error.get("error_subcode")),
        type=error.get("type") if isinstance(error.get("type"), str) else None,
        message=" ".join(str(error.get("message") or "").split())[:300],
        user_message=(" ".join(str(error["error_user_msg"]).split())[:300]
                      if isinstance(error.get("error_user_msg"), str) else None),
        transient=error.get("is_transient") is True)


def classify(err: GraphError | None, status: int, *, is_create: bool) -> ErrorKind:
    """Meta's code and subcode (and the HTTP status, when there is no envelope) -> kind.

    `is_create` is true only for the calls that publish (a feed post, a published photo,
    media_publish, threads_publish): an unclear answer there may hide a live post.
    """
    if err is None or err.code is None:
        return http.classify_status(status, is_create=is_create)
    code = err.code
    if err.pair in NOT_READY:
        return ErrorKind.SERVER
    if code in AUTH_CODES:
        return ErrorKind.AUTH_EXPIRED if err.subcode in EXPIRED_SUBCODES else \
            ErrorKind.AUTH_REVOKED
    if code in RATE_LIMIT_CODES or code == 368:
        return ErrorKind.RATE_LIMITED
    if err.pair in PUBLISHING_CAP or code in QUOTA_CODES:
        return ErrorKind.QUOTA_EXCEEDED
    if code in PERMISSION_CODES:
        return ErrorKind.AUTH_REVOKED
    if code in DUPLICATE_CODES:
        return ErrorKind.DUPLICATE
    if code in SERVER_CODES or err.transient or status >= 500:
        return ErrorKind.AMBIGUOUS if is_create else ErrorKind.SERVER
    return ErrorKind.INVALID


def is_not_ready(exc: PlatformError) -> bool:
    return exc.code in {f"{c}/{s}" for c, s in NOT_READY}


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


# -- usage headers ---------------------------------------------------------------------

class Cooldowns:
    """When each scope (the app at an origin; one account) may send again. Shared by the
    adapters of a process, since the app's budget is shared by all its accounts."""

    def __init__(self) -> None:
        self._until: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def until(self, scopes: Iterable[str], now: datetime) -> datetime | None:
        with self._lock:
            times = [self._until[s] for s in scopes if s in self._until and self._until[s] > now]
        return max(times) if times else None

    def hold(self, scope: str, until: datetime) -> None:
        with self._lock:
            if until > self._until.get(scope, until - timedelta(seconds=1)):
                self._until[scope] = until

    def clear(self) -> None:
        with self._lock:
            self._until.clear()


COOLDOWNS = Cooldowns()


def usage_backoff(headers: Mapping[str, str], now: datetime) -> tuple[str, datetime] | None:
    """From X-App-Usage and X-Business-Use-Case-Usage: ('app' or 'account', until) when a
    budget is at or past USAGE_LIMIT percent, else None."""
    app = _json_header(headers.get("x-app-usage"))
    found: list[tuple[str, datetime]] = []
    if isinstance(app, dict) and _over(app):
        found.append(("app", now + DEFAULT_COOLDOWN))
    buc = _json_header(headers.get("x-business-use-case-usage"))
    if isinstance(buc, dict):
        for entries in buc.values():
            for entry in entries if isinstance(entries, list) else [entries]:
                if not isinstance(entry, dict):
                    continue
                eta = _number(entry.get("estimated_time_to_regain_access"))
                if _over(entry) or (eta or 0) > 0:
                    wait = timedelta(minutes=eta) if eta else DEFAULT_COOLDOWN
                    found.append(("account", now + wait))
    if not found:
        return None
    return max(found, key=lambda f: f[1])


def regain_at(headers: Mapping[str, str], now: datetime) -> datetime | None:
    """estimated_time_to_regain_access from the BUC header, as a moment."""
    buc = _json_header(headers.get("x-business-use-case-usage"))
    minutes = []
    if isinstance(buc, dict):
        for entries in buc.values():
            for entry in entries if isinstance(entries, list) else [entries]:
                if isinstance(entry, dict):
                    eta = _number(entry.get("estimated_time_to_regain_access"))
                    if eta:
                        minutes.append(eta)
    return now + timedelta(minutes=max(minutes)) if minutes else None


def _over(usage: Mapping[str, Any]) -> bool:
    return any((_number(usage.get(k)) or 0) >= USAGE_LIMIT
               for k in ("call_count", "total_cputime", "total_time"))


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except (TypeError, ValueError):
        return None


def _json_header(value: str | None) -> Any:
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


# -- the client ------------------------------------------------------------------------

class Graph:
    """Calls one Graph API origin for one account, with its token."""

    def __init__(self, client: httpx.Client, *, origin: str, version: str, token: str,
                 platform: str, account: str, clock: Callable[[], datetime],
                 secrets: Iterable[str] = (), cooldowns: Cooldowns = COOLDOWNS):
        self.client = client
        self.origin = origin.rstrip("/")
        self.version = version
        self.token = token
        self.platform = platform
        self.account = account
        self.clock = clock
        self.secrets = [s for s in secrets if s]
        self.cooldowns = cooldowns

    def url(self, path: str) -> str:
        path = path.lstrip("/")
        return f"{self.origin}/{self.version}/{path}" if self.version else f"{self.origin}/{path}"

    def get(self, path: str, params: Mapping[str, Any] | None = None, *,
            token: bool = True) -> dict[str, Any]:
        return self.call("GET", path, params=params, token=token)

    def post(self, path: str, data: Mapping[str, Any] | None = None, *,
             files: Mapping[str, Any] | None = None, is_create: bool = False) -> dict[str, Any]:
        return self.call("POST", path, data=data, files=files, is_create=is_create)

    def call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
             data: Mapping[str, Any] | None = None, files: Mapping[str, Any] | None = None,
             is_create: bool = False, token: bool = True) -> dict[str, Any]:
        what = f"{self.platform} {method} {path.split('?')[0]}"
        now = self.clock()
        held = self.cooldowns.until(self._scopes(), now)
        if held is not None:
            raise PlatformError(
                ErrorKind.RATE_LIMITED,
                f"{what}: not sent; Meta's usage headers said this app or account is near "
                f"its limit until {held.isoformat(timespec='seconds')}", retry_at=held)
        params = {k: _form(v) for k, v in (params or {}).items()}
        body = {k: _form(v) for k, v in (data or {}).items()} if data is not None else None
        if token:
            if method == "GET":
                params["access_token"] = self.token
            else:
                body = {**(body or {}), "access_token": self.token}
        request = self.client.build_request(method, self.url(path), params=params or None,
                                            data=body, files=files)
        try:
            response = http.send(self.client, request, is_create=is_create,
                                 redact=self._secrets())
        except PlatformError as exc:
            exc.message = self._redact(f"{what}: {exc.message}")
            exc.args = (exc.message,)
            raise
        self._read_usage(response)
        payload = http.json_body(response)
        if response.is_success and not (isinstance(payload, dict) and "error" in payload):
            return payload if isinstance(payload, dict) else {}
        raise self._error(what, response, payload, is_create=is_create)

    def _scopes(self) -> tuple[str, str]:
        return (f"app {self.origin}", f"account {self.origin} {self.account}")

    def _read_usage(self, response: httpx.Response) -> None:
        found = usage_backoff(response.headers, self.clock())
        if found is not None:
            scope, until = found
            app, account = self._scopes()
            self.cooldowns.hold(app if scope == "app" else account, until)

    def _error(self, what: str, response: httpx.Response, payload: Any, *,
               is_create: bool) -> PlatformError:
        err = parse_error(payload)
        status = response.status_code
        kind = classify(err, status, is_create=is_create)
        now = self.clock()
        if err is None:
            message = http.error_message(response)
        else:
            message = f"HTTP {status}: {err.message or 'error'}"
            if err.code is not None:
                message += f" (code {err.label()})"
            if err.user_message and err.user_message not in message:
                message += f": {err.user_message}"
        retry = None
        if kind == ErrorKind.RATE_LIMITED:
            retry = regain_at(response.headers, now) or http.retry_at(response, now)
            if err is not None and err.code == 368:
                retry = max(retry or now, now + POLICY_BLOCK)
                message += " (Meta blocked the account for a policy reason; review it)"
            retry = retry or now + DEFAULT_COOLDOWN
        elif kind == ErrorKind.QUOTA_EXCEEDED:
            retry = now + DEFAULT_COOLDOWN
        if err is not None and err.pair in MEDIA_FETCH:
            message += (" (Meta could not fetch the media from its URL: the media host "
                        "must be reachable from the internet)")
        if kind in (ErrorKind.AUTH_REVOKED, ErrorKind.AUTH_EXPIRED):
            message += f" (run 'autopost accounts login {self.account}' to authorise again)"
        if kind == ErrorKind.AMBIGUOUS:
            message += " (the post may exist: checking before any retry)"
        code = err.label() if err is not None and err.code is not None else None
        return PlatformError(kind, self._redact(f"{what}: {message}"), http_status=status,
                             retry_at=retry, code=code)

    def _secrets(self) -> list[str]:
        return [self.token, *self.secrets]

    def _redact(self, text: str) -> str:
        return http.redacted(text, self._secrets())


def _form(value: Any) -> str:
    """A parameter as Graph takes it: JSON for lists and objects, true/false for bools."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def epoch(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp())


def parse_time(value: Any) -> datetime | None:
    """Graph timestamps: '2026-12-01T09:00:00+0000' (or ISO 8601 with a colon / Z)."""
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return None
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)
