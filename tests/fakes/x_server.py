"""A stateful fake of the X API v2 on 127.0.0.1, for tests: posts, the user's timeline,
media (simple and chunked uploads with a processing state machine, alt text), OAuth 2.0
(an authorize page that approves at once, the token endpoint with PKCE S256 and
single-use rotating refresh tokens), rate-limit headers, duplicate 403s and faults.

Every request to an operation of the official OpenAPI description (tests/specs/
x-api-v2-openapi.json) is validated against it with openapi-core, and so is every answer
the fake gives: a request the spec rejects is answered 400 and recorded in
`violations` (tests assert it stays empty), an answer that drifts from the spec is
recorded in `response_violations`.

What X does that the fake copies: access tokens live `token_lifetime` seconds; a refresh
token works once (a reused one is refused with invalid_request and counted); the
timeline gives texts back with links as t.co links, &<> escaped, and a t.co link
appended for media; a 403 "duplicate content" answer for the same text twice; 429 with
x-rate-limit-* headers (epoch seconds) and, when configured, x-user-limit-24hour-*.

Faults (inject) apply to the next `count` requests matching method and path prefix:
  status   answer `status` with `body` (and `headers`) without doing the work
  drop     do the work, then close the connection without answering
  reset    close the connection without doing anything
"""

from __future__ import annotations

import base64
import hashlib
import html
import itertools
import json
import re
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SPEC = Path(__file__).resolve().parent.parent / "specs" / "x-api-v2-openapi.json"
RATE_WINDOW = timedelta(minutes=15)
_URL = re.compile(r"https?://\S+", re.IGNORECASE)
_spec_lock = threading.Lock()
_spec: Any = None


def openapi() -> Any:
    """The official spec, loaded once per process (spec validation off: the file has
    duplicate enum items that the strict validator refuses)."""
    global _spec
    with _spec_lock:
        if _spec is None:
            import warnings

            from jsonschema_path import SchemaPath
            from openapi_core import Config, OpenAPI

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _spec = OpenAPI(SchemaPath.from_file_path(str(SPEC)),
                                config=Config(spec_validator_cls=None))
        return _spec


class _SpecRequest:
    def __init__(self, method: str, path: str, query: list[tuple[str, str]], body: bytes,
                 content_type: str | None, headers: dict[str, str]):
        from openapi_core.datatypes import RequestParameters
        from werkzeug.datastructures import Headers, ImmutableMultiDict

        self.host_url = "https://api.x.com"
        self.path = path
        self.method = method.lower()
        self.body = body or None
        self.content_type = content_type
        self.parameters = RequestParameters(query=ImmutableMultiDict(query),
                                            header=Headers(headers),
                                            cookie=ImmutableMultiDict(), path={})

    @property
    def full_url_pattern(self) -> str:
        return self.host_url + self.path


class _SpecResponse:
    def __init__(self, status: int, body: bytes, content_type: str):
        from werkzeug.datastructures import Headers

        self.status_code = status
        self.data = body
        self.content_type = content_type
        self.headers = Headers({"Content-Type": content_type})


@dataclass
class Post:
    id: str
    author: str
    text: str
    created_at: datetime
    media_keys: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # reply, reply_settings, ...


@dataclass
class Fault:
    kind: str
    method: str
    path: str
    count: int
    status: int = 503
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class FakeX:
    def __init__(self, *, validate: bool = True, token_lifetime: float = 7200,
                 rate_limit: int = 100, user_daily_limit: int | None = None,
                 processing_polls: int = 2, clients: dict[str, str | None] | None = None):
        self.validate = validate
        self.latency = 0.0  # seconds each create takes
        self.token_lifetime = token_lifetime
        self.rate_limit = rate_limit
        self.user_daily_limit = user_daily_limit
        self.processing_polls = processing_polls
        self.clients: dict[str, str | None] = clients if clients is not None else {"cid": None}
        self.lock = threading.RLock()
        self.offset = timedelta(0)
        self._ids = itertools.count(1_860_000_000_000_000_001)
        self.users: dict[str, dict[str, str]] = {}
        self.access: dict[str, tuple[str, datetime]] = {}
        self.refresh: dict[str, tuple[str, tuple[str, ...]]] = {}
        self.spent_refresh: set[str] = set()
        self.codes: dict[str, dict[str, Any]] = {}
        self.used_codes: set[str] = set()
        self.posts: list[Post] = []
        self.media: dict[str, dict[str, Any]] = {}
        self.creates: dict[str, list[datetime]] = {}
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []
        self.violations: list[str] = []
        self.response_violations: list[str] = []
        self.refreshes = 0
        self.reused_refresh = 0
        self.exchanges = 0
        self.code_reuse = 0
        self.approve_as = self.add_user("alice", "Alice")
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> FakeX:
        if self.validate:
            openapi()
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True, name="fake-x").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeX:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.offset += timedelta(seconds=seconds)

    # -- set-up helpers ------------------------------------------------------------------
    def add_user(self, username: str, name: str) -> str:
        with self.lock:
            user_id = str(next(self._ids))
            self.users[user_id] = {"id": user_id, "username": username, "name": name}
            return user_id

    def issue(self, user_id: str | None = None, *, lifetime: float | None = None,
              scopes: tuple[str, ...] = ("tweet.read", "tweet.write", "users.read",
                                         "media.write", "offline.access")
              ) -> dict[str, Any]:
        """A token pair for a user, as a login would give it."""
        with self.lock:
            user_id = user_id or self.approve_as
            access = "at-" + secrets.token_urlsafe(24)
            life = self.token_lifetime if lifetime is None else lifetime
            self.access[access] = (user_id, self.now() + timedelta(seconds=life))
            body: dict[str, Any] = {"token_type": "bearer", "expires_in": int(life),
                                    "access_token": access, "scope": " ".join(scopes)}
            if "offline.access" in scopes:
                token = "rt-" + secrets.token_urlsafe(24)
                self.refresh[token] = (user_id, scopes)
                body["refresh_token"] = token
            return body

    def inject(self, kind: str, path: str, *, method: str = "POST", count: int = 1,
               **options: Any) -> Fault:
        fault = Fault(kind, method, path, count, **options)
        with self.lock:
            self.faults.append(fault)
        return fault

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.count > 0 and fault.method == method and path.startswith(fault.path):
                    fault.count -= 1
                    return fault
        return None

    def seed(self, text: str, user_id: str | None = None) -> Post:
        """A post made earlier (by another client, say), straight into the timeline."""
        with self.lock:
            post = Post(str(next(self._ids)), user_id or self.approve_as, text, self.now())
            self.posts.append(post)
            return post

    def timeline(self, user_id: str | None = None) -> list[Post]:
        with self.lock:
            uid = user_id or self.approve_as
            return [p for p in self.posts if p.author == uid]

    # -- auth ----------------------------------------------------------------------------
    def user_for(self, header: str | None) -> str | None:
        if not header or not header.startswith("Bearer "):
            return None
        found = self.access.get(header[7:])
        if found is None or found[1] <= self.now():
            return None
        return found[0]

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], str]:
        problems = []
        if query.get("response_type") != "code":
            problems.append("response_type must be code")
        if query.get("client_id") not in self.clients:
            problems.append("unknown client_id")
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            problems.append("PKCE S256 is required")
        if not query.get("state"):
            problems.append("state is required")
        redirect = query.get("redirect_uri", "")
        if not redirect.startswith("http"):
            problems.append("redirect_uri is required")
        if problems:
            return 400, {}, "; ".join(problems)
        code = "code-" + secrets.token_urlsafe(16)
        with self.lock:
            self.codes[code] = {"client_id": query["client_id"], "redirect_uri": redirect,
                                "challenge": query["code_challenge"],
                                "scopes": tuple(query.get("scope", "").split()),
                                "user": self.approve_as}
        sep = "&" if "?" in redirect else "?"
        location = redirect + sep + urllib.parse.urlencode({"state": query["state"],
                                                            "code": code})
        return 302, {"Location": location}, ""

    def token(self, form: dict[str, str], auth: str | None) -> tuple[int, dict[str, Any]]:
        client_id = form.get("client_id")
        if auth and auth.startswith("Basic "):
            raw = base64.b64decode(auth[6:]).decode()
            cid, _, secret = raw.partition(":")
            cid, secret = urllib.parse.unquote(cid), urllib.parse.unquote(secret)
            if cid not in self.clients or self.clients[cid] != secret:
                return 401, {"error": "unauthorized_client",
                             "error_description": "Missing valid authorization header"}
            client_id = cid
        elif client_id not in self.clients or self.clients[client_id] is not None:
            return 401, {"error": "unauthorized_client",
                         "error_description": "Missing valid authorization header"}
        with self.lock:
            grant = form.get("grant_type")
            if grant == "authorization_code":
                code = form.get("code", "")
                if code in self.used_codes:
                    self.code_reuse += 1
                    return 400, {"error": "invalid_grant",
                                 "error_description": "authorization code was used"}
                info = self.codes.pop(code, None)
                if info is None or info["client_id"] != client_id:
                    return 400, {"error": "invalid_grant", "error_description": "bad code"}
                self.used_codes.add(code)
                verifier = form.get("code_verifier", "")
                digest = base64.urlsafe_b64encode(
                    hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                if digest != info["challenge"] or form.get("redirect_uri") != \
                        info["redirect_uri"]:
                    return 400, {"error": "invalid_grant",
                                 "error_description": "PKCE or redirect_uri mismatch"}
                self.exchanges += 1
                return 200, self.issue(info["user"], scopes=info["scopes"])
            if grant == "refresh_token":
                token = form.get("refresh_token", "")
                found = self.refresh.pop(token, None)
                if found is None:
                    if token in self.spent_refresh:
                        self.reused_refresh += 1
                    return 400, {"error": "invalid_request",
                                 "error_description": "Value passed for the token was "
                                                      "invalid."}
                self.spent_refresh.add(token)
                self.refreshes += 1
                return 200, self.issue(found[0], scopes=found[1])
        return 400, {"error": "unsupported_grant_type"}

    # -- the API -----------------------------------------------------------------------
    def rate_headers(self, user: str, count: bool) -> tuple[dict[str, str], bool]:
        now = self.now()
        with self.lock:
            stamps = [t for t in self.creates.get(user, []) if t > now - timedelta(days=1)]
            self.creates[user] = stamps
            window = [t for t in stamps if t > now - RATE_WINDOW]
            over = len(window) >= self.rate_limit
            daily_over = self.user_daily_limit is not None and \
                len(stamps) >= self.user_daily_limit
            if count and not over and not daily_over:
                stamps.append(now)
                window.append(now)
            reset = (min(window) if window else now) + RATE_WINDOW
            headers = {"x-rate-limit-limit": str(self.rate_limit),
                       "x-rate-limit-remaining": str(max(0, self.rate_limit - len(window))),
                       "x-rate-limit-reset": str(int(reset.timestamp()))}
            if self.user_daily_limit is not None:
                day_reset = (min(stamps) if stamps else now) + timedelta(days=1)
                headers.update({
                    "x-user-limit-24hour-limit": str(self.user_daily_limit),
                    "x-user-limit-24hour-remaining":
                        str(max(0, self.user_daily_limit - len(stamps))),
                    "x-user-limit-24hour-reset": str(int(day_reset.timestamp()))})
            return headers, over or daily_over

    def create_post(self, user: str, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        from twitter_text import parse_tweet

        headers, limited = self.rate_headers(user, count=True)
        if limited:
            return 429, {"title": "Too Many Requests", "detail": "Too Many Requests",
                         "type": "about:blank", "status": 429}, headers
        text = body.get("text", "")
        media_ids = (body.get("media") or {}).get("media_ids") or []
        if not text and not media_ids:
            return 400, _invalid("text or media is required"), headers
        if text and parse_tweet(text).weightedLength > 280:
            return 400, _invalid("Your Post text is too long."), headers
        with self.lock:
            keys = []
            for media_id in media_ids:
                item = self.media.get(media_id)
                if item is None or item["owner"] != user or item["state"] != "succeeded":
                    return 400, _invalid("Your media IDs are invalid."), headers
                keys.append(item["media_key"])
            if any(p.author == user and p.text == text and text for p in self.posts):
                return 403, {"detail": "You are not allowed to create a Tweet with duplicate "
                             "content.", "type": "about:blank", "title": "Forbidden",
                             "status": 403}, headers
            parent = (body.get("reply") or {}).get("in_reply_to_tweet_id")
            if parent is not None and not any(p.id == str(parent) for p in self.posts):
                return 403, {"detail": "You attempted to reply to a Tweet that is deleted or "
                             "not visible to you.", "type": "about:blank",
                             "title": "Forbidden", "status": 403}, headers
            extra = {k: v for k, v in body.items() if k not in ("text", "media")}
            post = Post(str(next(self._ids)), user, text, self.now(), keys, extra)
            self.posts.append(post)
        return 201, {"data": {"id": post.id, "text": text,
                              "edit_history_post_ids": [post.id]}}, headers

    def rendered(self, post: Post) -> str:
        def tco(_m: re.Match[str] | None = None) -> str:
            return "https://t.co/" + hashlib.sha1(post.id.encode() + (
                _m.group(0).encode() if _m else b"m")).hexdigest()[:10]

        text = html.escape(post.text, quote=False)
        text = _URL.sub(tco, text)
        if post.media_keys:
            text = (text + " " if text else "") + tco()
        return text

    def user_posts(self, user_id: str, query: dict[str, str]) -> tuple[int, Any]:
        if user_id not in self.users:
            return 404, {"title": "Not Found Error", "type": "https://api.x.com/2/problems/"
                         "resource-not-found", "detail": "Could not find user"}
        start = query.get("start_time")
        since = datetime.fromisoformat(start.replace("Z", "+00:00")) if start else None
        with self.lock:
            posts = [p for p in reversed(self.posts) if p.author == user_id
                     and (since is None or p.created_at >= since)]
        size = int(query.get("max_results", "10"))
        offset = int(query.get("pagination_token", "0") or 0)
        page = posts[offset:offset + size]
        fields = set(query.get("post.fields", "").split(","))
        data = []
        for p in page:
            item: dict[str, Any] = {"id": p.id, "text": self.rendered(p),
                                    "edit_history_tweet_ids": [p.id]}
            if "created_at" in fields:
                item["created_at"] = p.created_at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
            if "attachments" in fields and p.media_keys:
                item["attachments"] = {"media_keys": p.media_keys}
            data.append(item)
        meta: dict[str, Any] = {"result_count": len(page)}
        if page:
            meta.update(newest_id=page[0].id, oldest_id=page[-1].id)
        if offset + size < len(posts):
            meta["next_token"] = str(offset + size)
        body: dict[str, Any] = {"meta": meta}
        if data:
            body["data"] = data
        return 200, body

    def new_media(self, user: str, *, category: str, total: int | None,
                  data: bytes | None) -> dict[str, Any]:
        with self.lock:
            media_id = str(next(self._ids))
            item = {"id": media_id, "media_key": f"3_{media_id}", "owner": user,
                    "category": category, "total": total, "chunks": {},
                    "size": len(data) if data is not None else 0,
                    "state": "succeeded" if data is not None else "uploading",
                    "polls": 0, "alt": None}
            self.media[media_id] = item
            return item

    def media_status(self, item: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"id": item["id"], "media_key": item["media_key"],
                               "size": item["size"], "expires_after_secs": 86400}
        if item["state"] in ("pending", "in_progress", "failed"):
            out["processing_info"] = {"state": item["state"], "check_after_secs": 1}
            if item["state"] != "pending":
                out["processing_info"]["progress_percent"] = 50
        elif item["category"] != "tweet_image":
            out["processing_info"] = {"state": "succeeded", "progress_percent": 100}
        return out

    def route(self, method: str, path: str, query: dict[str, str], body: bytes,
              ctype: str, headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        user = self.user_for(headers.get("authorization"))
        if user is None:
            return 401, {"title": "Unauthorized", "type": "about:blank", "status": 401,
                         "detail": "Unauthorized"}, {}
        if method == "POST" and path == "/2/tweets":
            if self.latency:
                time.sleep(self.latency)
            return self.create_post(user, json.loads(body or b"{}"))
        if method == "GET" and path == "/2/users/me":
            return 200, {"data": dict(self.users[user])}, {}
        m = re.fullmatch(r"/2/users/([0-9]+)/tweets", path)
        if method == "GET" and m:
            status, out = self.user_posts(m.group(1), query)
            return status, out, {}
        if method == "POST" and path == "/2/media/upload":
            form = _multipart(body, ctype)
            item = self.new_media(user, category=form["media_category"].decode(),
                                  total=None, data=form["media"])
            return 200, {"data": {**self.media_status(item), "image": {"w": 1, "h": 1,
                                                                       "image_type": "png"}}}, {}
        if method == "GET" and path == "/2/media/upload":
            with self.lock:
                item = self.media.get(query.get("media_id", ""))
                if item is None or item["owner"] != user:
                    return 400, _invalid("unknown media_id"), {}
                item["polls"] += 1
                if item["state"] in ("pending", "in_progress"):
                    item["state"] = ("succeeded" if item["polls"] >= self.processing_polls
                                     else "in_progress")
            return 200, {"data": self.media_status(item)}, {}
        if method == "POST" and path == "/2/media/upload/initialize":
            doc = json.loads(body)
            item = self.new_media(user, category=doc.get("media_category", "tweet_video"),
                                  total=doc.get("total_bytes"), data=None)
            return 200, {"data": {"id": item["id"], "media_key": item["media_key"],
                                  "expires_after_secs": 86400}}, {}
        m = re.fullmatch(r"/2/media/upload/([0-9]+)/(append|finalize)", path)
        if method == "POST" and m:
            with self.lock:
                item = self.media.get(m.group(1))
                if item is None or item["owner"] != user:
                    return 400, _invalid("unknown media id"), {}
                if m.group(2) == "append":
                    doc = json.loads(body)
                    item["chunks"][doc["segment_index"]] = base64.b64decode(doc["media"])
                    return 200, {"data": {"expires_at": int(self.now().timestamp()) + 86400}}, {}
                size = sum(len(c) for c in item["chunks"].values())
                if size != item["total"]:
                    return 400, _invalid(f"expected {item['total']} bytes, got {size}"), {}
                item["size"] = size
                item["state"] = "pending"
            return 200, {"data": self.media_status(item)}, {}
        if method == "POST" and path == "/2/media/metadata":
            doc = json.loads(body)
            with self.lock:
                item = self.media.get(doc["id"])
                if item is None or item["owner"] != user:
                    return 400, _invalid("unknown media id"), {}
                item["alt"] = doc["metadata"]["alt_text"]["text"]
            return 200, {"data": {"id": doc["id"], "associated_metadata": {
                "alt_text": {"text": item["alt"]}}}}, {}
        return 404, {"title": "Not Found Error", "type": "about:blank", "detail": path}, {}

    def check_request(self, method: str, path: str, query: list[tuple[str, str]],
                      body: bytes, ctype: str, headers: dict[str, str]) -> tuple[Any, str | None]:
        request = _SpecRequest(method, path, query, body, ctype or None, headers)
        try:
            openapi().validate_request(request)
        except Exception as exc:  # noqa: BLE001 - every validation failure is a finding
            detail = f"{method} {path}: {type(exc).__name__}: {exc} {exc.__cause__ or ''}"
            return request, " ".join(detail.split())[:600]
        return request, None

    def check_response(self, request: Any, status: int, body: bytes) -> None:
        try:
            openapi().validate_response(request, _SpecResponse(status, body,
                                                               "application/json"))
        except Exception as exc:  # noqa: BLE001
            detail = f"{request.method} {request.path} -> {status}: {type(exc).__name__}: " \
                     f"{exc} {exc.__cause__ or ''}"
            with self.lock:
                self.response_violations.append(" ".join(detail.split())[:600])


def _invalid(detail: str) -> dict[str, Any]:
    return {"errors": [{"message": detail}], "title": "Invalid Request", "detail": detail,
            "type": "https://api.x.com/2/problems/invalid-request"}


def _multipart(body: bytes, ctype: str) -> dict[str, bytes]:
    import email.parser
    import email.policy

    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
    out = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        out[name] = part.get_payload(decode=True) or b""
    return out


_SPEC_PATHS = re.compile(r"^/2/(tweets|users/me|users/[0-9]+/tweets|media/.*)$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeX

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None,
               ctype: str = "application/json") -> bytes:
        raw = body if isinstance(body, bytes) else (
            body.encode() if isinstance(body, str) else json.dumps(body).encode())
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)
        self.wfile.flush()
        return raw

    def _handle(self, method: str) -> None:
        fake: FakeX = self.server.fake  # type: ignore[attr-defined]
        parts = urllib.parse.urlsplit(self.path)
        path = parts.path
        pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        query = dict(pairs)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        ctype = self.headers.get("Content-Type", "")
        headers = {k.lower(): v for k, v in self.headers.items()}
        with fake.lock:
            fake.requests.append((method, path))
        if path == "/i/oauth2/authorize" and method == "GET":
            status, extra, text = fake.authorize(query)
            self._reply(status, text or "redirecting", extra, "text/plain")
            return
        if path == "/2/oauth2/token" and method == "POST":
            if not ctype.startswith("application/x-www-form-urlencoded"):
                self._reply(400, {"error": "invalid_request"})
                return
            form = dict(urllib.parse.parse_qsl(body.decode()))
            status, out = fake.token(form, headers.get("authorization"))
            self._reply(status, out)
            return
        request = None
        if fake.validate and _SPEC_PATHS.match(path):
            request, problem = fake.check_request(method, path, pairs, body, ctype, headers)
            if problem:
                with fake.lock:
                    fake.violations.append(problem)
                self._reply(400, _invalid(problem))
                return
        fault = fake.take_fault(method, path)
        if fault is not None and fault.kind == "reset":
            self.close_connection = True
            return
        if fault is not None and fault.kind == "status":
            self._reply(fault.status, fault.body if fault.body is not None else
                        {"title": "Service Unavailable", "type": "about:blank",
                         "status": fault.status}, fault.headers)
            return
        status, out, extra = fake.route(method, path, query, body, ctype, headers)
        if fault is not None and fault.kind == "drop":
            self.close_connection = True
            return
        raw = self._reply(status, out, extra)
        if request is not None and status < 300:
            fake.check_response(request, status, raw)
