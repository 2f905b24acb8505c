"""A small, real Mastodon API server on 127.0.0.1 for tests and benchmarks.

Implements what autopost uses (see platforms.md, section 1): POST /api/v1/statuses
(form data; Idempotency-Key kept per account for one hour of the server's clock;
in_reply_to_id must name an existing status, else 404 as on a real instance),
POST /api/v2/media (200, or 202 then GET /api/v1/media/:id), GET /api/v2/instance,
GET /api/v1/accounts/verify_credentials, GET /api/v1/accounts/:id/statuses (newest
first, max_id, limit), bearer tokens (one token = one account), X-RateLimit-* headers
(Reset in ISO 8601). Every created status goes into a thread-safe ledger.

Faults apply to the next `count` API requests matching `path` (a prefix) and `method`:
  status   answer `status` with {"error": message} (429 also sets the rate-limit headers)
  latency  wait `seconds`, then answer normally
  drop     do the work (create the status), then close the connection without answering
  reset    close the connection without doing anything

In process:  with FakeMastodon() as fake: fake.base_url, fake.inject(...), fake.ledger()
Over HTTP:   POST /_fault, DELETE /_fault, POST /_config, POST /_clock, POST /_accounts,
             GET /_ledger[?token=T], GET /_requests (JSON; see FakeMastodon.control).
Standalone:  python -m tests.fakes.mastodon_server [--port N] [--token TOKEN=username ...]
"""

from __future__ import annotations

import email.parser
import email.policy
import html
import itertools
import json
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.httpfake import LocalServer, QuietHandler

IDEMPOTENCY_TTL = timedelta(hours=1)
RATE_WINDOW = timedelta(minutes=5)
_URL = re.compile(r"https?://[^\s<>\"]+[^\s<>\".,:;!?')]")
_REMOTE = re.compile(r"(?<![=/\w])@(\w+(?:[.-]\w+)*)@([\w.-]*\w)")


def iso(moment: datetime, digits: int = 3) -> str:
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return text[: len(text) - 6 + digits] + "Z"


def length(text: str, url_chars: int) -> int:
    return len(_REMOTE.sub(r"@\1", _URL.sub("x" * url_chars, text)))


def render(text: str) -> str:
    """Plain text to Mastodon-like HTML: paragraphs, <br />, linked URLs and mentions."""
    def linkify(m: re.Match[str]) -> str:
        scheme, rest = m.group(0).split("://", 1)
        return (f'<a href="{m.group(0)}" rel="nofollow noopener" target="_blank">'
                f'<span class="invisible">{scheme}://</span><span class="">{rest}</span></a>')

    def mention(m: re.Match[str]) -> str:
        return (f'<span class="h-card"><a href="https://{m.group(2)}/@{m.group(1)}" '
                f'class="u-url mention">@<span>{m.group(1)}</span></a></span>')

    paras = [p for p in re.split(r"\n\s*\n", text.strip()) if p]
    out = [_REMOTE.sub(mention, _URL.sub(linkify, html.escape(p, quote=False)))
           for p in paras]
    return "".join(f"<p>{p.replace(chr(10), '<br />')}</p>" for p in out)


@dataclass
class Created:
    """One ledger row: a status the server really made."""
    id: str
    token: str
    account_id: str
    text: str
    idempotency_key: str | None
    created_at: datetime
    visibility: str = "public"
    spoiler_text: str = ""
    language: str | None = None
    media_ids: list[str] = field(default_factory=list)
    in_reply_to_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "created_at": iso(self.created_at)}


@dataclass
class Fault:
    kind: str = "status"            # status | latency | drop | reset
    count: int = 1
    path: str | None = None         # prefix of the request path
    method: str | None = None
    status: int = 503
    message: str | None = None
    seconds: float = 0.0            # latency
    reset_in: float = 60.0          # 429: X-RateLimit-Reset = now + reset_in
    retry_after: float | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.count > 0 and (self.path is None or path.startswith(self.path))
                and (self.method is None or self.method.upper() == method))


class FakeMastodon(LocalServer):
    def __init__(self, tokens: Mapping[str, str] | None = None, *, max_characters: int = 500,
                 url_chars: int = 23, media_polls: int = 0, rate_limit: int = 300,
                 enforce_rate_limit: bool = False, latency: float = 0.0,
                 clock: Callable[[], datetime] | None = None, port: int = 0):
        self.max_characters, self.url_chars = max_characters, url_chars
        self.media_polls = media_polls          # 0: media ready at once (200), else 202
        self.rate_limit, self.enforce_rate_limit = rate_limit, enforce_rate_limit
        self.latency = latency                  # seconds added to every API request
        self._clock = clock or (lambda: datetime.now(UTC))
        self._offset = timedelta()
        self._lock = threading.Lock()
        self._ids = itertools.count(110_000_000_000_000_001)
        self.accounts: dict[str, dict[str, Any]] = {}      # token -> account entity
        self.statuses: dict[str, dict[str, Any]] = {}      # id -> status entity
        self.media: dict[str, dict[str, Any]] = {}         # id -> attachment (+ _polls_left)
        self.faults: list[Fault] = []
        self.requests: list[dict[str, Any]] = []
        self._ledger: list[Created] = []
        self._keys: dict[tuple[str, str], tuple[str, datetime]] = {}
        self._usage: dict[str, tuple[datetime, int]] = {}
        super().__init__(_Handler, port)
        for token, username in (tokens or {"token-alice": "alice"}).items():
            self.add_account(token, username)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._httpd.server_address[1]}"

    # -- test controls --------------------------------------------------------------------
    def now(self) -> datetime:
        return self._clock() + self._offset

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._offset += timedelta(seconds=seconds)
        return self.now()

    def add_account(self, token: str, username: str) -> str:
        with self._lock:
            account_id = str(len(self.accounts) + 1)
            self.accounts[token] = {
                "id": account_id, "username": username, "acct": username,
                "display_name": username.title(), "url": f"{self.base_url}/@{username}"}
            return account_id

    def inject(self, kind: str = "status", **options: Any) -> Fault:
        fault = Fault(kind=kind, **options)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def ledger(self, token: str | None = None) -> list[Created]:
        with self._lock:
            return [c for c in self._ledger if token is None or c.token == token]

    def configure(self, **settings: Any) -> None:
        allowed = {"latency", "max_characters", "url_chars", "media_polls", "rate_limit",
                   "enforce_rate_limit"}
        for key, value in settings.items():
            if key not in allowed:
                raise ValueError(f"unknown setting {key!r}")
            setattr(self, key, value)

    # -- request handling (called by _Handler) ----------------------------------------------
    def take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.count -= 1
                    self.faults = [f for f in self.faults if f.count > 0]
                    return fault
        return None

    def rate_headers(self, token: str | None, count: bool = True) -> tuple[dict[str, str], bool]:
        now = self.now()
        with self._lock:
            start, used = self._usage.get(token or "", (now, 0))
            if now - start >= RATE_WINDOW:
                start, used = now, 0
            used += 1 if count else 0
            self._usage[token or ""] = (start, used)
        headers = {"X-RateLimit-Limit": str(self.rate_limit),
                   "X-RateLimit-Remaining": str(max(0, self.rate_limit - used)),
                   "X-RateLimit-Reset": iso(start + RATE_WINDOW, 6)}
        return headers, self.enforce_rate_limit and used > self.rate_limit

    def create_status(self, token: str, form: dict[str, list[str]],
                      key: str | None) -> tuple[int, dict[str, Any]]:
        account = self.accounts[token]
        text = form.get("status", [""])[0]
        spoiler = form.get("spoiler_text", [""])[0]
        visibility = form.get("visibility", ["public"])[0]
        media_ids = form.get("media_ids[]", [])
        reply_to = form.get("in_reply_to_id", [None])[0]
        if visibility not in ("public", "unlisted", "private", "direct"):
            return 422, {"error": "Validation failed: Visibility is not included in the list"}
        if not text.strip() and not media_ids:
            return 422, {"error": "Validation failed: Text can't be blank"}
        if length(spoiler + text, self.url_chars) > self.max_characters:
            return 422, {"error": "Validation failed: Text character limit of "
                                  f"{self.max_characters} exceeded"}
        with self._lock:
            now = self.now()
            if key and (token, key) in self._keys:
                status_id, made = self._keys[(token, key)]
                if now - made < IDEMPOTENCY_TTL:
                    return 200, self.statuses[status_id]
            if reply_to is not None and reply_to not in self.statuses:
                return 404, {"error": "Record not found"}
            attached = []
            for media_id in media_ids:
                item = self.media.get(media_id)
                if item is None or item["_owner"] != token:
                    return 422, {"error": "Validation failed: Media attachments are invalid"}
                if item["url"] is None:
                    return 422, {"error": "Cannot attach files that have not finished "
                                          "processing. Try again in a moment!"}
                attached.append({k: v for k, v in item.items() if not k.startswith("_")})
            status_id = str(next(self._ids))
            status = {
                "id": status_id, "created_at": iso(now), "visibility": visibility,
                "language": form.get("language", [None])[0], "spoiler_text": spoiler,
                "sensitive": form.get("sensitive", ["false"])[0] == "true",
                "uri": f"{self.base_url}/users/{account['username']}/statuses/{status_id}",
                "url": f"{self.base_url}/@{account['username']}/{status_id}",
                "content": render(text), "reblog": None, "in_reply_to_id": reply_to,
                "media_attachments": attached, "account": account}
            self.statuses[status_id] = status
            self._ledger.append(Created(status_id, token, account["id"], text, key, now,
                                        visibility, spoiler, status["language"], media_ids,
                                        reply_to))
            if key:
                self._keys[(token, key)] = (status_id, now)
            return 200, status

    def upload_media(self, token: str, parts: dict[str, tuple[str | None, bytes]]
                     ) -> tuple[int, dict[str, Any]]:
        if "file" not in parts:
            return 422, {"error": "Validation failed: File can't be blank"}
        ctype, data = parts["file"]
        if not ctype or ctype.split("/")[0] not in ("image", "video", "audio"):
            return 422, {"error": "Validation failed: File content type is invalid"}
        description = parts.get("description", (None, b""))[1].decode() or None
        with self._lock:
            media_id = str(next(self._ids))
            url = f"{self.base_url}/system/media/{media_id}"
            self.media[media_id] = {
                "id": media_id, "type": ctype.split("/")[0], "description": description,
                "url": None if self.media_polls else url, "_url": url, "_owner": token,
                "_polls_left": self.media_polls, "_size": len(data)}
            return (202 if self.media_polls else 200), self.public_media(media_id)

    def poll_media(self, token: str, media_id: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            item = self.media.get(media_id)
            if item is None or item["_owner"] != token:
                return 404, {"error": "Record not found"}
            if item["url"] is None:
                item["_polls_left"] -= 1
                if item["_polls_left"] <= 0:
                    item["url"] = item["_url"]
            return (200 if item["url"] else 206), self.public_media(media_id)

    def public_media(self, media_id: str) -> dict[str, Any]:
        return {k: v for k, v in self.media[media_id].items() if not k.startswith("_")}

    def account_statuses(self, account_id: str, query: dict[str, list[str]]
                         ) -> tuple[int, Any]:
        if account_id not in {a["id"] for a in self.accounts.values()}:
            return 404, {"error": "Record not found"}
        limit = max(1, min(40, int(query.get("limit", ["20"])[0])))
        max_id = query.get("max_id", [None])[0]
        with self._lock:
            found = [s for s in self.statuses.values() if s["account"]["id"] == account_id
                     and (max_id is None or int(s["id"]) < int(max_id))]
        return 200, sorted(found, key=lambda s: int(s["id"]), reverse=True)[:limit]

    def instance(self) -> dict[str, Any]:
        return {"domain": self.host, "title": "Fake Mastodon", "version": "4.3.0",
                "configuration": {
                    "statuses": {"max_characters": self.max_characters,
                                 "max_media_attachments": 4,
                                 "characters_reserved_per_url": self.url_chars},
                    "media_attachments": {"image_size_limit": 16 * 2**20,
                                          "video_size_limit": 99 * 2**20}}}

    def control(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if (method, path) == ("GET", "/_ledger"):
            return 200, {"statuses": [c.to_json() for c in self.ledger(body.get("token"))]}
        if (method, path) == ("GET", "/_requests"):
            with self._lock:
                return 200, {"requests": list(self.requests)}
        if (method, path) == ("POST", "/_fault"):
            kind = body.pop("kind", "status")
            return 200, {"fault": asdict(self.inject(kind, **body))}
        if (method, path) == ("DELETE", "/_fault"):
            self.clear_faults()
            return 200, {"ok": True}
        if (method, path) == ("POST", "/_config"):
            self.configure(**body)
            return 200, {"ok": True}
        if (method, path) == ("POST", "/_clock"):
            if "now" in body:
                target = datetime.fromisoformat(body["now"].replace("Z", "+00:00"))
                self.advance((target - self.now()).total_seconds())
            return 200, {"now": iso(self.advance(float(body.get("advance", 0))), 6)}
        if (method, path) == ("POST", "/_accounts"):
            return 200, {"id": self.add_account(body["token"], body["username"])}
        return 404, {"error": "unknown control endpoint"}


class _Handler(QuietHandler):
    server_version = "FakeMastodon/1.0"

    def do_DELETE(self) -> None:
        self.handle_method("DELETE")

    def handle_method(self, method: str) -> None:
        fake: FakeMastodon = self.server.fake  # type: ignore[attr-defined]
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        if path.startswith("/_"):
            try:
                body = json.loads(raw or b"{}")
                body.update({k: v[-1] for k, v in query.items()})
                self.send_json(*fake.control(method, path, body))
            except (ValueError, TypeError, KeyError) as exc:
                self.send_json(400, {"error": f"bad control request: {exc}"})
            return
        auth = self.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        key = self.headers.get("Idempotency-Key")
        with fake._lock:
            fake.requests.append({"method": method, "path": path, "token": token,
                                  "idempotency_key": key})
        fake.wait(fake.latency)
        fault = fake.take_fault(method, path)
        if fault is not None and fault.kind == "latency":
            fake.wait(fault.seconds)
        elif fault is not None and fault.kind == "reset":
            self.close_connection = True
            return
        elif fault is not None and fault.kind == "status":
            headers, _ = fake.rate_headers(token, count=False)
            if fault.status == 429:
                headers.update({"X-RateLimit-Remaining": "0",
                                "X-RateLimit-Reset": iso(
                                    fake.now() + timedelta(seconds=fault.reset_in), 6)})
                if fault.retry_after is not None:
                    headers["Retry-After"] = str(int(fault.retry_after))
            default = ("The access token is invalid" if fault.status == 401
                       else HTTPStatus(fault.status).phrase)
            self.send_json(fault.status, {"error": fault.message or default}, headers)
            return
        status, body, headers = self._route(fake, method, path, query, token, key, raw)
        if fault is not None and fault.kind == "drop":
            self.close_connection = True
            return
        self.send_json(status, body, headers)

    def _route(self, fake: FakeMastodon, method: str, path: str, query: dict[str, list[str]],
               token: str | None, key: str | None, raw: bytes
               ) -> tuple[int, Any, dict[str, str]]:
        if (method, path) == ("GET", "/api/v2/instance"):
            return 200, fake.instance(), {}
        if token not in fake.accounts:
            return 401, {"error": "The access token is invalid"}, {}
        headers, limited = fake.rate_headers(token)
        if limited:
            return 429, {"error": "Too many requests"}, headers
        ctype = self.headers.get("Content-Type", "")
        parts = path.strip("/").split("/")
        if (method, path) == ("POST", "/api/v1/statuses"):
            if ctype.startswith("application/json"):
                form = {k: v if isinstance(v, list) else [str(v)]
                        for k, v in json.loads(raw or b"{}").items()}
            else:
                form = parse_qs(raw.decode(), keep_blank_values=True)
            return (*fake.create_status(token, form, key), headers)
        if (method, path) == ("POST", "/api/v2/media"):
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw)
            files: dict[str, tuple[str | None, bytes]] = {}
            for part in message.iter_parts() if message.is_multipart() else []:
                name = part.get_param("name", header="content-disposition")
                files[str(name)] = (part["Content-Type"] and part.get_content_type(),
                                    part.get_payload(decode=True) or b"")
            return (*fake.upload_media(token, files), headers)
        if method == "GET" and len(parts) == 4 and parts[:3] == ["api", "v1", "media"]:
            return (*fake.poll_media(token, parts[3]), headers)
        if (method, path) == ("GET", "/api/v1/accounts/verify_credentials"):
            return 200, fake.accounts[token], headers
        if method == "GET" and len(parts) == 5 and parts[:3] == ["api", "v1", "accounts"] \
                and parts[4] == "statuses":
            return (*fake.account_statuses(parts[3], query), headers)
        return 404, {"error": "Record not found"}, headers


def control(base_url: str, path: str, payload: dict[str, Any] | None = None,
            method: str | None = None) -> Any:
    """Drive a fake in another process over HTTP, e.g. control(url, "/_fault", {...})."""
    import urllib.request

    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(base_url.rstrip("/") + path, data=data,
                                     method=method or ("GET" if data is None else "POST"),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


try:
    import pytest
except ImportError:  # pragma: no cover - the standalone server does not need pytest
    pytest = None  # type: ignore[assignment]
else:
    @pytest.fixture
    def fake_mastodon() -> Any:
        """A running FakeMastodon with one account, token "token-alice"."""
        with FakeMastodon() as fake:
            yield fake


def main(argv: list[str] | None = None) -> None:
    import argparse
    import signal

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", action="append", default=[], help="TOKEN=username")
    parser.add_argument("--media-polls", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args(argv)
    tokens = dict(t.split("=", 1) for t in args.token) or None
    fake = FakeMastodon(tokens, port=args.port, media_polls=args.media_polls,
                        latency=args.latency)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with fake:
        print(fake.base_url, flush=True)
        try:
            done.wait()
        except KeyboardInterrupt:
            pass

if __name__ == "__main__":
    main()
