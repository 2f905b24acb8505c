"""A local YouTube Data API v3 (videos.insert resumable uploads, thumbnails.set, the
uploads listing) and Google's token endpoint, on 127.0.0.1, for tests.

Every API request is checked against the discovery document shipped in
google-api-python-client (tests/fakes/youtube_discovery.py): unknown or malformed query
parameters, a missing required one, a body the Video schema rejects, or a media type the
method does not accept answer 400 and are listed in `violations`.

The resumable protocol as Google documents it (and as platforms-testing.md 4.2 says
the fake must model it):
- POST /upload/youtube/v3/videos?uploadType=resumable&part=... with the metadata and
  X-Upload-Content-Length / X-Upload-Content-Type answers 200 with the session URI in
  Location (costs one call of the videos.insert bucket);
- PUT <session> with `Content-Range: bytes FIRST-LAST/TOTAL` appends a chunk; FIRST must
  be where the session is, and every chunk but the last must be a multiple of 256 KiB;
- PUT <session> with an empty body and `Content-Range: bytes */TOTAL` is the status
  question: 308 with `Range: bytes=0-N` (no Range when it has nothing), or 200 with the
  video once complete;
- a connection that breaks during a chunk keeps what arrived, in whole 256 KiB granules;
- the video exists only when the last byte is in; an expired session answers 404.
Quota: `inserts_left` (the videos.insert bucket, 100 a day) and `units_left` (10,000)
answer 403 quotaExceeded when spent; `upload_limit` per channel answers 400
uploadLimitExceeded. Tokens: unknown or expired access tokens answer 401 (authError);
POST /token refreshes (Google's answer omits refresh_token); a refresh token of an app in
"Testing" stops working after 7 days (400 invalid_grant). Login: GET /o/oauth2/v2/auth
(the channel `approver` approves at once; PKCE S256 required; a refresh token only with
access_type=offline), POST /token with grant_type=authorization_code (single-use code,
the verifier checked, the client secret in the form).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.fakes import youtube_discovery as discovery
from tests.fakes.httpfake import FakeServer, Reply, Request

GRANULE = 256 * 1024
CATEGORIES = {"1", "2", "10", "15", "17", "19", "20", "22", "23", "24", "25", "26", "27",
              "28", "29"}
TESTING_REFRESH_LIFETIME = timedelta(days=7)


def google_error(status: int, reason: str, message: str, domain: str = "youtube") -> Reply:
    return Reply(status, {"error": {"code": status, "message": message, "errors": [
        {"message": message, "domain": domain, "reason": reason}],
        "status": {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                   404: "NOT_FOUND"}.get(status, "UNKNOWN")}})


@dataclass
class Channel:
    id: str
    title: str
    uploads: list[str] = field(default_factory=list)   # video ids, newest last
    upload_limit: int | None = None


@dataclass
class Session:
    id: str
    token: str
    channel: str
    total: int
    content_type: str
    body: dict[str, Any]
    query: dict[str, list[str]]
    data: bytearray = field(default_factory=bytearray)
    video: str | None = None
    expired: bool = False


@dataclass
class Video:
    id: str
    channel: str
    resource: dict[str, Any]
    sha256: str
    size: int
    session: str
    thumbnail: bytes | None = None


class FakeYouTube(FakeServer):
    def __init__(self, *, port: int = 0):
        super().__init__(port)
        self.channels: dict[str, Channel] = {}
        self.tokens: dict[str, str] = {}                    # access token -> channel id
        self.expired_tokens: set[str] = set()
        self.refresh_tokens: dict[str, dict[str, Any]] = {}  # token -> {channel, testing, at}
        self.sessions: dict[str, Session] = {}
        self.videos: dict[str, Video] = {}
        self.violations: list[str] = []
        self.inserts_left = 100
        self.units_left = 10_000
        self.read_delay = 0.0       # seconds per 256 KiB read of a chunk body
        self.bytes_received = 0     # every chunk byte that arrived, resent ones included
        self.refreshes: list[str] = []
        self.clients: dict[str, dict[str, Any]] = {}   # client id -> {secret, testing}
        self.codes: dict[str, dict[str, Any]] = {}
        self.approver: str | None = None               # access token of the approving channel
        self.exchanges = 0
        self._ids = itertools.count(1)
        self._offset = timedelta()

    # -- test controls ------------------------------------------------------------------
    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, seconds: float) -> None:
        with self.lock:
            self._offset += timedelta(seconds=seconds)

    def add_channel(self, token: str, title: str = "Ada's channel", *,
                    refresh_token: str | None = None, testing: bool = False) -> Channel:
        with self.lock:
            channel = Channel(f"UC{secrets.token_hex(11)}", title)
            self.channels[channel.id] = channel
            self.tokens[token] = channel.id
            if refresh_token:
                self.refresh_tokens[refresh_token] = {"channel": channel.id,
                                                      "testing": testing, "at": self.now()}
        return channel

    def add_client(self, client_id: str, secret: str, *, testing: bool = False) -> None:
        with self.lock:
            self.clients[client_id] = {"secret": secret, "testing": testing}

    def expire_sessions(self) -> None:
        with self.lock:
            for s in self.sessions.values():
                s.expired = True

    def ledger(self) -> list[Video]:
        with self.lock:
            return list(self.videos.values())

    def received(self) -> int:
        """Bytes the open sessions hold (in whole granules), for tests to wait on."""
        with self.lock:
            return max((len(s.data) for s in self.sessions.values()), default=0)

    # -- reading chunk bodies (a broken connection keeps what arrived) ---------------------
    def read_body(self, handler: BaseHTTPRequestHandler) -> bytes:
        length = int(handler.headers.get("Content-Length") or 0)
        url = urlsplit(handler.path)
        upload_id = parse_qs(url.query).get("upload_id", [None])[0]
        if handler.command != "PUT" or not upload_id or length == 0:
            return handler.rfile.read(length)
        got = bytearray()
        try:
            while len(got) < length:
                piece = handler.rfile.read(min(GRANULE, length - len(got)))
                if not piece:
                    raise ConnectionError("client went away")
                got += piece
                with self.lock:
                    self.bytes_received += len(piece)
                if self.read_delay:
                    self.wait(self.read_delay)
        except (ConnectionError, OSError):
            self._keep_partial(upload_id, handler.headers.get("Content-Range", ""), got)
            raise ConnectionError("chunk cut short") from None
        return bytes(got)

    def _keep_partial(self, upload_id: str, content_range: str, got: bytearray) -> None:
        m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", content_range.strip())
        with self.lock:
            session = self.sessions.get(upload_id)
            if session is None or m is None or int(m.group(1)) != len(session.data):
                return
            keep = len(got) // GRANULE * GRANULE
            session.data += got[:keep]

    # -- routing ------------------------------------------------------------------------
    def route(self, request: Request) -> Reply:
        path = request.path
        if path == "/token" and request.method == "POST":
            return self._token(request)
        if path == "/o/oauth2/v2/auth" and request.method == "GET":
            return self._authorize(request)
        channel = self._channel(request)
        if isinstance(channel, Reply):
            return channel
        if path == "/upload/youtube/v3/videos" and request.method == "POST":
            return self._start(channel, request)
        if path == "/upload/youtube/v3/videos" and request.method == "PUT":
            return self._chunk(channel, request)
        if path == "/upload/youtube/v3/thumbnails/set" and request.method == "POST":
            return self._thumbnail(channel, request)
        if path == "/youtube/v3/channels" and request.method == "GET":
            return self._channels(channel, request)
        if path == "/youtube/v3/playlistItems" and request.method == "GET":
            return self._playlist(channel, request)
        return google_error(404, "notFound", f"Not Found: {request.method} {path}", "global")

    def _violation(self, what: str) -> Reply:
        with self.lock:
            self.violations.append(what)
        return google_error(400, "invalidParameter", what)

    def _channel(self, request: Request) -> Channel | Reply:
        auth = request.header("authorization") or ""
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if token not in self.tokens or token in self.expired_tokens:
            return google_error(401, "authError", "Request had invalid authentication "
                                "credentials. Expected OAuth 2 access token, login cookie or "
                                "other valid authentication credential.", "global")
        return self.channels[self.tokens[token]]

    def _spend(self, units: int) -> Reply | None:
        with self.lock:
            if self.units_left < units:
                return google_error(403, "quotaExceeded", "The request cannot be completed "
                                    "because you have exceeded your quota.", "youtube.quota")
            self.units_left -= units
        return None

    def _start(self, channel: Channel, request: Request) -> Reply:
        problems = discovery.query_errors("videos", "insert", request.query)
        if request.query.get("uploadType") != ["resumable"]:
            problems.append("uploadType: this fake speaks the resumable protocol")
        try:
            body = request.json() if request.body else {}
        except ValueError:
            return self._violation("body: not JSON")
        problems += discovery.body_errors("Video", body)
        ctype = request.header("x-upload-content-type") or "application/octet-stream"
        if not discovery.accepts("videos", "insert", ctype):
            problems.append(f"X-Upload-Content-Type {ctype!r} is not accepted")
        size = request.header("x-upload-content-length")
        if size is not None and not size.isdigit():
            problems.append("X-Upload-Content-Length: not a number")
        if problems:
            return self._violation("; ".join(problems))
        parts = set(",".join(request.query.get("part", [])).split(","))
        snippet = body.get("snippet") or {}
        status = body.get("status") or {}
        title = snippet.get("title")
        if "snippet" not in parts or not title:
            return google_error(400, "invalidTitle", "The request metadata specifies an "
                                "invalid or empty video title.")
        if len(title) > 100 or "<" in title or ">" in title:
            return google_error(400, "invalidTitle", "The request metadata specifies an "
                                "invalid video title.")
        description = snippet.get("description") or ""
        if len(description.encode()) > 5000 or "<" in description or ">" in description:
            return google_error(400, "invalidDescription", "The request metadata specifies "
                                "an invalid video description.")
        tags = snippet.get("tags") or []
        if sum(len(t) + (2 if " " in t else 0) for t in tags) + max(0, len(tags) - 1) > 500:
            return google_error(400, "invalidTags", "The request metadata specifies invalid "
                                "video keywords.")
        if snippet.get("categoryId") is not None and snippet["categoryId"] not in CATEGORIES:
            return google_error(400, "invalidCategoryId", "The snippet.categoryId property "
                                "specifies an invalid category ID.")
        if "publishAt" in status and status.get("privacyStatus") != "private":
            return google_error(400, "invalidPublishAt", "The request metadata specifies an "
                                "invalid scheduled publishing time.")
        with self.lock:
            if self.inserts_left <= 0:
                return google_error(403, "quotaExceeded", "The request cannot be completed "
                                    "because you have exceeded your quota.", "youtube.quota")
            if channel.upload_limit is not None and len(channel.uploads) >= channel.upload_limit:
                return google_error(400, "uploadLimitExceeded", "The user has exceeded the "
                                    "number of videos they may upload.", "youtube.video")
            self.inserts_left -= 1
            upload_id = f"ADPycd{secrets.token_urlsafe(24)}"
            token = (request.header("authorization") or "")[7:].strip()
            self.sessions[upload_id] = Session(
                upload_id, token, channel.id, int(size) if size else -1, ctype, body,
                request.query)
        query = request.raw_query + f"&upload_id={upload_id}"
        return Reply(200, None, {"Location": f"{self.base_url}{request.path}?{query}",
                                 "X-GUploader-UploadID": upload_id})

    def _chunk(self, channel: Channel, request: Request) -> Reply:
        upload_id = request.query.get("upload_id", [""])[0]
        with self.lock:
            session = self.sessions.get(upload_id)
            if session is None or session.expired:
                return google_error(404, "notFound", "Upload session not found or expired",
                                    "global")
            if session.channel != channel.id:
                return google_error(403, "forbidden", "This session belongs to another "
                                    "channel", "global")
            crange = (request.header("content-range") or "").strip()
            probe = re.fullmatch(r"bytes \*/(\d+|\*)", crange)
            if probe and not request.body:
                return self._state(session)
            if session.video is not None:
                return self._state(session)
            m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", crange)
            if not crange and len(request.body) == session.total:
                m = re.fullmatch(r"(\d+)-(\d+)/(\d+)", f"0-{session.total - 1}/{session.total}")
            if m is None:
                return google_error(400, "badContent", f"Bad Content-Range {crange!r}",
                                    "global")
            first, last = int(m.group(1)), int(m.group(2))
            total = int(m.group(3)) if m.group(3) != "*" else session.total
            if session.total < 0:
                session.total = total
            if total != session.total or last - first + 1 != len(request.body):
                return google_error(400, "badContent", "Content-Range does not match the "
                                    "body or the upload's size", "global")
            if first != len(session.data):
                return google_error(400, "badContent", f"Chunk starts at {first}; the session "
                                    f"has {len(session.data)} bytes", "global")
            if last + 1 < session.total and len(request.body) % GRANULE:
                return google_error(400, "badContent", "A chunk other than the last must be "
                                    "a multiple of 256 KiB", "global")
            session.data += request.body
            return self._state(session)

    def _state(self, session: Session) -> Reply:
        """The session's answer: 308 + Range while incomplete, 200 + the video when done."""
        if session.video is None and len(session.data) >= session.total >= 0:
            self._make_video(session)
        if session.video is not None:
            return Reply(200, self.videos[session.video].resource)
        headers = {"X-GUploader-UploadID": session.id}
        if session.data:
            headers["Range"] = f"bytes=0-{len(session.data) - 1}"
        return Reply(308, None, headers)

    def _make_video(self, session: Session) -> None:
        video_id = f"vid{next(self._ids):08d}"
        snippet = dict(session.body.get("snippet") or {})
        snippet.update({"publishedAt": self.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "channelId": session.channel,
                        "channelTitle": self.channels[session.channel].title})
        status = {"uploadStatus": "uploaded", "privacyStatus": "public", "license": "youtube",
                  "embeddable": True, "publicStatsViewable": True,
                  **(session.body.get("status") or {})}
        resource = {"kind": "youtube#video", "etag": secrets.token_urlsafe(12), "id": video_id,
                    "snippet": snippet, "status": status}
        self.videos[video_id] = Video(video_id, session.channel, resource,
                                      hashlib.sha256(session.data).hexdigest(),
                                      len(session.data), session.id)
        self.channels[session.channel].uploads.append(video_id)
        session.video = video_id

    def _thumbnail(self, channel: Channel, request: Request) -> Reply:
        problems = discovery.query_errors("thumbnails", "set", request.query)
        ctype = request.header("content-type") or ""
        if not discovery.accepts("thumbnails", "set", ctype):
            problems.append(f"Content-Type {ctype!r} is not accepted by thumbnails.set")
        if problems:
            return self._violation("; ".join(problems))
        spent = self._spend(50)
        if spent:
            return spent
        video = self.videos.get(request.query["videoId"][0])
        if video is None or video.channel != channel.id:
            return google_error(404, "videoNotFound", "The video that you are trying to "
                                "update cannot be found.")
        if len(request.body) > 2 * 1024 * 1024:
            return google_error(400, "mediaBodyRequired", "The thumbnail is too large.")
        with self.lock:
            video.thumbnail = request.body
        url = f"https://i.ytimg.com/vi/{video.id}/default.jpg"
        return Reply(200, {"kind": "youtube#thumbnailSetResponse", "items": [
            {"default": {"url": url, "width": 120, "height": 90}}]})

    def _channels(self, channel: Channel, request: Request) -> Reply:
        problems = discovery.query_errors("channels", "list", request.query)
        if problems:
            return self._violation("; ".join(problems))
        spent = self._spend(1)
        if spent:
            return spent
        return Reply(200, {"kind": "youtube#channelListResponse", "items": [{
            "kind": "youtube#channel", "id": channel.id,
            "snippet": {"title": channel.title},
            "contentDetails": {"relatedPlaylists": {"uploads": "UU" + channel.id[2:]}}}]})

    def _playlist(self, channel: Channel, request: Request) -> Reply:
        problems = discovery.query_errors("playlistItems", "list", request.query)
        if problems:
            return self._violation("; ".join(problems))
        spent = self._spend(1)
        if spent:
            return spent
        if request.query.get("playlistId") != ["UU" + channel.id[2:]]:
            return google_error(404, "playlistNotFound", "The playlist cannot be found.")
        limit = int(request.query.get("maxResults", ["5"])[0])
        items = []
        for video_id in reversed(channel.uploads[-limit:]):
            snippet = self.videos[video_id].resource["snippet"]
            items.append({"kind": "youtube#playlistItem", "snippet": {
                "title": snippet["title"], "publishedAt": snippet["publishedAt"],
                "resourceId": {"kind": "youtube#video", "videoId": video_id}}})
        return Reply(200, {"kind": "youtube#playlistItemListResponse", "items": items})

    def _authorize(self, request: Request) -> Reply:
        q = {k: v[-1] for k, v in request.query.items()}
        redirect = q.get("redirect_uri", "")
        if q.get("client_id") not in self.clients or q.get("response_type") != "code" \
                or not redirect.startswith("http://127.0.0.1:"):
            return Reply(400, {"error": "invalid_request"})
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return Reply(400, {"error": "invalid_request",
                               "error_description": "PKCE S256 is required"})
        channel = self.tokens.get(self.approver or "")
        if channel is None:
            return Reply(400, {"error": "access_denied"})
        code = f"4/0A{secrets.token_urlsafe(16)}"
        with self.lock:
            self.codes[code] = {"client": q["client_id"], "redirect": redirect,
                                "challenge": q["code_challenge"], "channel": channel,
                                "offline": q.get("access_type") == "offline"}
        return Reply(302, None, {"Location": redirect + "?" + urlencode(
            {"code": code, "state": q.get("state", ""), "scope": q.get("scope", "")})})

    def _exchange(self, form: dict[str, str]) -> Reply:
        with self.lock:
            entry = self.codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            if entry is None or entry["redirect"] != form.get("redirect_uri") or \
                    entry["client"] != form.get("client_id") or \
                    digest.rstrip(b"=").decode() != entry["challenge"]:
                return Reply(400, {"error": "invalid_grant", "error_description": "Bad Request"})
            self.exchanges += 1
            access = f"ya29.{secrets.token_urlsafe(24)}"
            self.tokens[access] = entry["channel"]
            body: dict[str, Any] = {"access_token": access, "expires_in": 3599,
                                    "scope": "https://www.googleapis.com/auth/youtube.upload",
                                    "token_type": "Bearer"}
            if entry["offline"]:
                refresh = f"1//0g{secrets.token_urlsafe(24)}"
                self.refresh_tokens[refresh] = {
                    "channel": entry["channel"], "at": self.now(),
                    "testing": self.clients[entry["client"]]["testing"]}
                body["refresh_token"] = refresh
        return Reply(200, body)

    def _token(self, request: Request) -> Reply:
        form = {k: v[-1] for k, v in parse_qs(request.body.decode()).items()}
        client = self.clients.get(form.get("client_id", ""))
        if client is not None and form.get("client_secret") != client["secret"]:
            return Reply(401, {"error": "invalid_client", "error_description": "Unauthorized"})
        if form.get("grant_type") == "authorization_code":
            return self._exchange(form)
        if form.get("grant_type") != "refresh_token":
            return Reply(400, {"error": "unsupported_grant_type"})
        if not form.get("client_id"):
            return Reply(400, {"error": "invalid_request",
                               "error_description": "Missing required parameter: client_id"})
        with self.lock:
            self.refreshes.append(form.get("refresh_token", ""))
            grant = self.refresh_tokens.get(form.get("refresh_token", ""))
            if grant is None or (grant["testing"]
                                 and self.now() - grant["at"] > TESTING_REFRESH_LIFETIME):
                return Reply(400, {"error": "invalid_grant",
                                   "error_description": "Token has been expired or revoked."})
            access = f"ya29.{secrets.token_urlsafe(24)}"
            self.tokens[access] = grant["channel"]
        return Reply(200, {"access_token": access, "expires_in": 3599,
                           "scope": "https://www.googleapis.com/auth/youtube.upload",
                           "token_type": "Bearer"})


def control_summary(fake: FakeYouTube) -> dict[str, Any]:
    """A JSON-able view for debugging a failed test."""
    return json.loads(json.dumps({
        "videos": [v.id for v in fake.ledger()], "violations": fake.violations,
        "bytes_received": fake.bytes_received, "time": time.time()}))
