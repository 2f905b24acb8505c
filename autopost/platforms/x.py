"""X (Twitter) API v2: posts with an OAuth 2.0 user token.

Credentials: {"client_id": ...} (plus "client_secret" for a confidential app), then
`autopost accounts login NAME`; or "access_token" / "refresh_token" / "expires_at" given
directly. Scopes: tweet.read tweet.write users.read media.write offline.access. Access
tokens live 2 hours; refresh tokens are single use and rotate (see autopost/oauth.py).

Posts: `POST /2/tweets` {"text", "media": {"media_ids"}, ...}; 201 with data.id. Text
is counted as X counts it (twitter-text: 280 weighted characters, every URL 23).
Media: up to 4 images, or one GIF or one video. Images go up in one request
(`POST /2/media/upload`, multipart, media_category tweet_image); GIFs and videos in
chunks (`/2/media/upload/initialize`, `/{id}/append` per chunk, `/{id}/finalize`), then
`GET /2/media/upload?command=STATUS` until processing succeeds, honouring
check_after_secs. Alt text: `POST /2/media/metadata`. Uploads publish nothing, so their
failures are plain retryable errors; only the create is ambiguous.

Limits: a 429 blocks the account until the latest reset among x-rate-limit-reset,
x-user-limit-24hour-reset and x-app-limit-24hour-reset (epoch seconds) whose remaining
is 0, or the 15-minute window's reset when none says 0 (a 429 is believed even when
`remaining` > 0). A usage cap (problem type usage-capped) and 402 are quota_exceeded.

Never twice: X has no idempotency key. After an unknown outcome, reconcile reads the
account's own posts since the first send (`GET /2/users/{id}/tweets?start_time=...`)
and looks for the job's text (X shortens links to t.co, escapes &<> and appends a
t.co link for media, so texts are compared with every link as one token) with the same
number of media: found -> posted; the whole window read and absent -> resend; the read
refused or rate-limited -> stays unknown and is asked again later. A 403 "duplicate
content" answer goes the same way (it may be our own earlier attempt). X refuses the
same text twice, so a post the timeline did not show yet (it lags a little) cannot be
made twice by a resend: the resend gets that 403 and the job is reconciled again.

Post URL: https://x.com/i/web/status/<id>.
"""

from __future__ import annotations

import base64
import html
import mimetypes
import os
import re
import unicodedata
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import httpx

from autopost.errors import UsageError
from autopost.models import ErrorKind, Job, Media
from autopost.oauth import OAuthAdapter, OAuthPlatform
from autopost.platforms import http
from autopost.platforms.base import AccountInfo, PlatformError, Published, Reconciled, Verdict
from autopost.platforms.options import Option
from autopost.timeparse import format_utc

TEXT_LIMIT = 280
ALT_LIMIT = 1000
IMAGE_MAX = 5 * 1024 * 1024
GIF_MAX = 15 * 1024 * 1024
VIDEO_MAX = 512 * 1024 * 1024
CHUNK = 4 * 1024 * 1024
IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
               ".webp": "image/webp"}
VIDEO_TYPES = {".mp4": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm"}
_URL = re.compile(r"https?://\S+", re.IGNORECASE)
_PROBLEM = "https://api.x.com/2/problems/"


def weighted_length(text: str) -> int:
    from twitter_text import parse_tweet

    return parse_tweet(text).weightedLength


def media_kind(path: str) -> str:
    """image, gif or video, by the file's name; UsageError for anything else."""
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_TYPES:
        return "image"
    if suffix == ".gif":
        return "gif"
    if suffix in VIDEO_TYPES:
        return "video"
    raise UsageError(f"x takes images (jpg, png, webp), a GIF or a video (mp4, mov, webm): "
                     f"{path}")


def comparable(text: str) -> str:
    """A post's text as X gives it back and as we sent it, made comparable."""
    text = unicodedata.normalize("NFC", html.unescape(text))
    return " ".join(_URL.sub("\x00", text).split())


class XAdapter(OAuthAdapter):
    platform = "x"
    default_base_url = "https://api.x.com"
    oauth = OAuthPlatform(
        authorize_url="https://x.com/i/oauth2/authorize",
        token_url="https://api.x.com/2/oauth2/token",
        scopes=("tweet.read", "tweet.write", "users.read", "media.write", "offline.access"),
        client="either", token_auth="basic", rotating_refresh=True, default_lifetime=7200)
    text_limit = TEXT_LIMIT
    max_media = 4
    supports_replies = True
    reply_refuses = {"quote_tweet_id": "a thread's later parts reply to the part before, "
                                       "so they cannot quote"}
    options = (
        Option("reply_settings", "choice", "who may reply",
               choices=("following", "mentionedUsers", "subscribers", "verified")),
        Option("in_reply_to_tweet_id", "text", "reply to this post id",
               pattern=r"[0-9]{1,19}"),
        Option("quote_tweet_id", "text", "quote this post id", pattern=r"[0-9]{1,19}"),
        Option("made_with_ai", "bool", "disclose AI-generated media"),
        Option("paid_partnership", "bool", "disclose a paid partnership"),
    )
    # How far before the first send a found post may be dated (clock skew).
    readback_margin: ClassVar[timedelta] = timedelta(minutes=2)
    readback_pages: ClassVar[int] = 5
    media_max_wait: ClassVar[float] = 600.0

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._me: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"<XAdapter account={self.account.name!r}>"

    # -- add time ----------------------------------------------------------------------
    @classmethod
    def text_length(cls, text: str) -> int:
        return weighted_length(text)

    @classmethod
    def validate(cls, text: str, media: tuple[Media, ...], options: dict[str, Any]) -> None:
        super().validate(text, media, options)
        kinds = [media_kind(m.path) for m in media]
        if len(kinds) > 1 and any(k != "image" for k in kinds):
            raise UsageError("x takes up to 4 images, or one GIF or one video, per post")
        for item, kind in zip(media, kinds, strict=True):
            if item.alt and len(item.alt) > ALT_LIMIT:
                raise UsageError(f"alt text is {len(item.alt)} characters; x allows "
                                 f"{ALT_LIMIT}")
            path = Path(item.path).expanduser()
            limit = {"image": IMAGE_MAX, "gif": GIF_MAX, "video": VIDEO_MAX}[kind]
            if path.is_file() and path.stat().st_size > limit:
                raise UsageError(f"{item.path} is over x's {limit // (1024 * 1024)} MB "
                                 f"{kind} limit")
        if options.get("in_reply_to_tweet_id") and options.get("quote_tweet_id"):
            raise UsageError("x: a post cannot both reply and quote")

    # -- HTTP --------------------------------------------------------------------------
    def _send(self, method: str, path: str, *, is_create: bool = False,
              ok: tuple[int, ...] = (200, 201), **kwargs: Any) -> dict[str, Any]:
        assert self.client is not None
        headers = {**self.bearer(), **kwargs.pop("headers", {})}
        request = self.client.build_request(method, self.url(path), headers=headers, **kwargs)
        response = http.send(self.client, request, is_create=is_create,
                             redact=self.secrets())
        if response.status_code not in ok:
            raise self._error(response, is_create=is_create)
        body = http.json_body(response)
        if not isinstance(body, dict):
            kind = ErrorKind.AMBIGUOUS if is_create else ErrorKind.SERVER
            raise PlatformError(kind, f"x: HTTP {response.status_code} with an unreadable body",
                                http_status=response.status_code)
        if "data" not in body and body.get("errors"):
            raise PlatformError(ErrorKind.INVALID, "x: " + _problems(body),
                                http_status=response.status_code)
        return body

    def _error(self, response: httpx.Response, *, is_create: bool) -> PlatformError:
        status = response.status_code
        body = http.json_body(response)
        body = body if isinstance(body, dict) else {}
        kind_url = str(body.get("type") or "")
        detail = _problems(body) or response.reason_phrase or f"HTTP {status}"
        message = http.redacted(f"x: HTTP {status}: {detail}"[:400], self.secrets())
        code = kind_url.removeprefix(_PROBLEM) or None
        if status == 429 or status == 402:
            at = self._reset(response)
            capped = status == 402 or "usage-capped" in kind_url
            return PlatformError(ErrorKind.QUOTA_EXCEEDED if capped else ErrorKind.RATE_LIMITED,
                                 message, http_status=status, retry_at=at, code=code)
        if status == 401:
            return PlatformError(ErrorKind.AUTH_EXPIRED, message, http_status=status, code=code)
        if status == 403:
            # The duplicate answer carries no code: its detail text is the only signal.
            if "duplicate content" in str(body.get("detail", "")).lower():
                return PlatformError(ErrorKind.DUPLICATE, message, http_status=status,
                                     code="duplicate")
            if code in ("client-forbidden", "unsupported-authentication"):
                return PlatformError(ErrorKind.AUTH_REVOKED,
                                     f"{message}; check the app's access level and scopes, "
                                     f"then 'autopost accounts login {self.account.name}'",
                                     http_status=status, code=code)
            return PlatformError(ErrorKind.INVALID, message, http_status=status, code=code)
        return PlatformError(http.classify_status(status, is_create=is_create), message,
                             http_status=status, code=code)

    def _reset(self, response: httpx.Response) -> datetime:
        now = self.clock()
        resets, spent = [], []
        for prefix in ("x-rate-limit", "x-user-limit-24hour", "x-app-limit-24hour"):
            at = http.parse_reset(response.headers.get(f"{prefix}-reset"), now)
            if at is None:
                continue
            resets.append(at)
            if response.headers.get(f"{prefix}-remaining", "").strip() == "0":
                spent.append(at)
        chosen = max(spent) if spent else (max(resets) if resets else None)
        if chosen is None or chosen <= now:
            chosen = now + timedelta(minutes=15)  # X's windows are 15 minutes
        return chosen

    def me(self) -> dict[str, Any]:
        if self._me is None:
            body = self._send("GET", "/2/users/me")
            data = body.get("data")
            if not isinstance(data, dict) or not data.get("id"):
                raise PlatformError(ErrorKind.SERVER, "x: /2/users/me answered without a user")
            self._me = data
        return self._me

    # -- media -------------------------------------------------------------------------
    def _upload(self, item: Media) -> str:
        path = Path(item.path)
        if not path.is_file() or not os.access(path, os.R_OK):
            raise PlatformError(ErrorKind.INVALID, f"x: media file {item.path} is missing or "
                                "unreadable")
        kind = media_kind(item.path)
        if kind == "image":
            media_id = self._upload_image(path)
        else:
            media_id = self._upload_chunked(path, kind)
        if item.alt:
            self._send("POST", "/2/media/metadata",
                       json={"id": media_id, "metadata": {"alt_text": {"text": item.alt}}})
        return media_id

    def _upload_image(self, path: Path) -> str:
        mime = IMAGE_TYPES[path.suffix.lower()]
        body = self._send("POST", "/2/media/upload",
                          files={"media": (path.name, path.read_bytes(), mime)},
                          data={"media_category": "tweet_image"})
        data = _data(body, "media upload")
        self._wait_processing(str(data["id"]), data.get("processing_info"))
        return str(data["id"])

    def _upload_chunked(self, path: Path, kind: str) -> str:
        mime = "image/gif" if kind == "gif" else (VIDEO_TYPES.get(path.suffix.lower())
                                                  or mimetypes.guess_type(path.name)[0]
                                                  or "video/mp4")
        size = path.stat().st_size
        init = _data(self._send("POST", "/2/media/upload/initialize", json={
            "media_type": mime, "total_bytes": size,
            "media_category": "tweet_gif" if kind == "gif" else "tweet_video"}),
            "media initialize")
        media_id = str(init["id"])
        with path.open("rb") as fh:
            index = 0
            while chunk := fh.read(CHUNK):
                self._send("POST", f"/2/media/upload/{media_id}/append", json={
                    "media": base64.b64encode(chunk).decode("ascii"), "segment_index": index})
                index += 1
        done = _data(self._send("POST", f"/2/media/upload/{media_id}/finalize"),
                     "media finalize")
        self._wait_processing(media_id, done.get("processing_info"))
        return media_id

    def _wait_processing(self, media_id: str, info: Any) -> None:
        waited = 0.0
        while isinstance(info, dict):
            state = info.get("state")
            if state == "succeeded" or state is None:
                return
            if state == "failed":
                raise PlatformError(ErrorKind.INVALID, f"x: media {media_id} failed processing")
            delay = float(info.get("check_after_secs") or 1)
            if waited + delay > self.media_max_wait:
                raise PlatformError(ErrorKind.SERVER, f"x: media {media_id} still processing "
                                    f"after {int(waited)} s")
            self.sleep(delay)
            waited += delay
            status = _data(self._send("GET", "/2/media/upload",
                                      params={"command": "STATUS", "media_id": media_id}),
                           "media status")
            info = status.get("processing_info")

    # -- publish -----------------------------------------------------------------------
    def publish(self, job: Job, save_ref) -> Published:
        media_ids = [self._upload(item) for item in job.media]
        ref: dict[str, Any] = {}
        if "first_sent_at" not in job.ref:
            ref["first_sent_at"] = format_utc(self.clock())
        ref["media_count"] = len(job.media)
        save_ref(ref)
        payload: dict[str, Any] = {}
        if job.text:
            payload["text"] = job.text
        if media_ids:
            payload["media"] = {"media_ids": media_ids}
        opts = job.options or {}
        if job.reply is not None:  # a thread's later part answers the part before it
            payload["reply"] = {"in_reply_to_tweet_id": job.reply.parent.post_id}
        elif opts.get("in_reply_to_tweet_id"):
            payload["reply"] = {"in_reply_to_tweet_id": str(opts["in_reply_to_tweet_id"])}
        for key in ("quote_tweet_id", "reply_settings"):
            if opts.get(key):
                payload[key] = str(opts[key])
        for key in ("made_with_ai", "paid_partnership"):
            if opts.get(key):
                payload[key] = True
        body = self._send("POST", "/2/tweets", json=payload, is_create=True, ok=(200, 201))
        data = body.get("data")
        if not isinstance(data, dict) or not data.get("id"):
            raise PlatformError(ErrorKind.AMBIGUOUS, "x: the created post has no id")
        post_id = str(data["id"])
        return Published(post_id=post_id, url=f"https://x.com/i/web/status/{post_id}")

    # -- reconcile ---------------------------------------------------------------------
    def reconcile(self, job: Job) -> Reconciled:
        since_raw = job.ref.get("first_sent_at")
        if not since_raw:
            return Reconciled(Verdict.NOT_POSTED, None, "the post was never sent")
        since = datetime.fromisoformat(str(since_raw).replace("Z", "+00:00"))
        try:
            user = self.me()
            wanted = comparable(job.text)
            params: dict[str, Any] = {
                "start_time": (since - self.readback_margin).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "max_results": 100, "post.fields": "created_at,attachments"}
            for _ in range(self.readback_pages):
                body = self._send("GET", f"/2/users/{user['id']}/tweets", params=params)
                for post in body.get("data") or []:
                    if self._matches(post, wanted, len(job.media)):
                        post_id = str(post["id"])
                        return Reconciled(Verdict.POSTED, Published(
                            post_id, f"https://x.com/i/web/status/{post_id}"),
                            f"found in the account's posts as {post_id}")
                token = (body.get("meta") or {}).get("next_token")
                if not token:
                    return Reconciled(Verdict.NOT_POSTED, None,
                                      f"not among the account's posts since {since_raw}")
                params["pagination_token"] = token
        except PlatformError as exc:
            if exc.kind in (ErrorKind.AUTH_EXPIRED, ErrorKind.RATE_LIMITED,
                            ErrorKind.QUOTA_EXCEEDED, ErrorKind.NETWORK, ErrorKind.SERVER):
                raise  # asked again later (after a refresh, or the reset)
            return Reconciled(Verdict.CANNOT_TELL, None, f"reading the posts failed: "
                              f"{exc.message}")
        return Reconciled(Verdict.CANNOT_TELL, None,
                          f"more than {self.readback_pages * 100} posts since {since_raw}")

    @staticmethod
    def _matches(post: dict[str, Any], wanted: str, media: int) -> bool:
        keys = (post.get("attachments") or {}).get("media_keys") or []
        if len(keys) != media:
            return False
        got = comparable(str(post.get("text") or ""))
        if media and got.endswith("\x00"):
            # X appends a t.co link to the media; our own text may end with a link too.
            trimmed = got[:-1].rstrip()
            return got == wanted or trimmed == wanted
        return got == wanted

    # -- accounts check / login --------------------------------------------------------
    def check(self) -> AccountInfo:
        user = self.me()
        username = user.get("username") or user["id"]
        name = user.get("name")
        display = f"@{username}" + (f" ({name})" if name else "")
        return AccountInfo(display=display, url=f"https://x.com/{username}",
                           details={"id": str(user["id"])})


def _data(body: dict[str, Any], what: str) -> dict[str, Any]:
    data = body.get("data")
    if not isinstance(data, dict) or not data.get("id"):
        raise PlatformError(ErrorKind.SERVER, f"x: {what} answered without an id")
    return data


def _problems(body: dict[str, Any]) -> str:
    parts = []
    if isinstance(body.get("detail"), str):
        parts.append(body["detail"])
    elif isinstance(body.get("title"), str):
        parts.append(body["title"])
    for err in body.get("errors") or []:
        if isinstance(err, dict):
            text = err.get("message") or err.get("detail") or err.get("title")
            if isinstance(text, str):
                parts.append(text)
    return "; ".join(" ".join(p.split()) for p in parts)[:300]


ADAPTER = XAdapter
