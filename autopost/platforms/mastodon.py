"""Mastodon: statuses with an Idempotency-Key, media with alt text, read-back reconcile.

Credentials: {"access_token": TOKEN}; the account's base_url is the instance
(https://mastodon.social, a self-hosted server, a test server). There is no default.

Never posting twice: every create carries `Idempotency-Key: <job key>`. The server
keeps a key for an hour after the status was made and answers a repeat with the status
it already has. Before the first create the adapter saves `first_sent_at` in the job's
ref, so that after an unknown outcome it knows whether a resend is still covered by
that hour. Past it, the account's recent statuses are read back and matched on text.
The same read-back guards a publish whose earlier send is older than the window, so a
late retry cannot duplicate a post either.

Tokens do not expire and cannot be refreshed: a 401 means the account must be
authorised again.
"""

from __future__ import annotations

import html
import mimetypes
import os
import re
import time
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

import httpx

from autopost.errors import UsageError
from autopost.models import ErrorKind, Job, Media
from autopost.platforms import http
from autopost.platforms.base import (
    AccountInfo,
    Adapter,
    PlatformError,
    Published,
    Reconciled,
    SaveRef,
    Verdict,
)
from autopost.platforms.options import Option
from autopost.platforms.textcount import graphemes
from autopost.timeparse import format_utc

VISIBILITIES = ("public", "unlisted", "private", "direct")
URL_CHARS = 23

# What Mastodon gives a length concession to: links with a scheme, and remote mentions.
_URL = re.compile(r"(?<![\w@])https?://[^\s/?#<>\"']+[^\s<>\"]*", re.IGNORECASE)
_URL_TRAIL = ".,:;!?'\""
_MENTION = re.compile(
    r"(?<![=/\w@.])@([a-z0-9_]+(?:[.-]+[a-z0-9_]+)*)@[\w-]+(?:\.[\w-]+)*", re.IGNORECASE)


@dataclass(frozen=True)
class InstanceLimits:
    max_characters: int = 500
    url_chars: int = URL_CHARS
    max_media: int = 4
    image_size_limit: int | None = None
    video_size_limit: int | None = None


# Instance limits by base URL, shared by the adapters of one run (one per account
# chain), so a run asks each instance once rather than once per few posts.
_INSTANCES: dict[str, tuple[float, InstanceLimits]] = {}
INSTANCE_TTL = 600.0


def _url_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    for m in _URL.finditer(text):
        end = m.end()
        while end > m.start() and (
                text[end - 1] in _URL_TRAIL
                or (text[end - 1] == ")" and text.count("(", m.start(), end)
                    < text.count(")", m.start(), end))):
            end -= 1
        spans.append((m.start(), end))
    return spans


def count_characters(text: str, url_chars: int = URL_CHARS) -> int:
    """Mastodon's length of `text`: every link counts `url_chars`, a remote mention
    @user@domain counts as @user, everything else by grapheme."""
    total = 0
    pos = 0
    for start, end in _url_spans(text):
        total += graphemes(_MENTION.sub(r"@\1", text[pos:start])) + url_chars
        pos = end
    return total + graphemes(_MENTION.sub(r"@\1", text[pos:]))


_TAG = re.compile(r"<[^>]*>")
_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_PARA = re.compile(r"</p>\s*<p[^>]*>", re.IGNORECASE)


def plain_text(content: str) -> str:
    """A status's HTML `content` back to text."""
    content = _PARA.sub("\n\n", content or "")
    content = _BREAK.sub("\n", content)
    return html.unescape(_TAG.sub("", content))


def normalise(text: str) -> str:
    """Text for comparing what we sent with what the server shows (remote mentions are
    rendered without their domain, whitespace is reflowed)."""
    text = unicodedata.normalize("NFC", _MENTION.sub(r"@\1", text or ""))
    return " ".join(text.split())


class MastodonAdapter(Adapter):
    platform = "mastodon"
    required_fields = ("access_token",)
    secret_fields = ("access_token",)
    needs_base_url = True
    text_limit = 500
    max_media = 4
    supports_replies = True
    options = (
        Option("visibility", "choice", "who sees the post", choices=VISIBILITIES),
        Option("spoiler_text", "text", "content warning shown before the text"),
        Option("language", "text", "ISO 639 language code, e.g. en",
               pattern=r"[A-Za-z]{2,3}"),
        Option("sensitive", "bool", "mark the media as sensitive"),
        Option("in_reply_to_id", "text", "reply to this status id", pattern=r"[0-9A-Za-z]+"),
    )

    # The server keeps an Idempotency-Key for 1 h; stay well inside it.
    idempotency_window: ClassVar[timedelta] = timedelta(minutes=55)
    # A status found by read-back may carry a created_at slightly before our send.
    readback_margin: ClassVar[timedelta] = timedelta(minutes=5)
    readback_pages: ClassVar[int] = 5
    page_size: ClassVar[int] = 40
    media_poll_interval: ClassVar[float] = 1.0
    media_poll_max_interval: ClassVar[float] = 5.0
    media_max_wait: ClassVar[float] = 120.0

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._limits: InstanceLimits | None = None

    # -- add time -------------------------------------------------------------------
    @classmethod
    def text_length(cls, text: str) -> int:
        return count_characters(text, URL_CHARS)

    @classmethod
    def text_length_at_most(cls, text: str) -> int:
        # Each link holds "://" and is at least "http://" long (7 characters) before it
        # counts URL_CHARS; a mention only gets shorter, and a grapheme is at least one
        # code point. So links add at most URL_CHARS - 7 each.
        return len(text) + (URL_CHARS - 7) * text.count("://")

    @classmethod
    def validate(cls, text: str, media: tuple[Media, ...], options: dict[str, Any]) -> None:
        visibility = options.get("visibility")
        if visibility is not None and visibility not in VISIBILITIES:
            raise UsageError(f"mastodon visibility must be one of {', '.join(VISIBILITIES)}")
        super().validate(text, media, options)
        spoiler = options.get("spoiler_text") or ""
        if spoiler:
            n = cls.text_length(spoiler + text)
            if cls.text_limit is not None and n > cls.text_limit:
                raise UsageError(f"text and content warning are {n} characters; "
                                 f"mastodon allows {cls.text_limit}")

    # -- HTTP -----------------------------------------------------------------------
    def _secrets(self) -> list[str]:
        return http.secret_values(self.credentials, self.secret_fields)

    def _request(self, method: str, path: str, *, is_create: bool = False, auth: bool = True,
                 ok: tuple[int, ...] = (200,), **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if auth:
            headers["Authorization"] = f"Bearer {self.credentials.get('access_token', '')}"
        client = self._client()
        request = client.build_request(method, self.base_url + path, headers=headers, **kwargs)
        response = http.send(client, request, is_create=is_create, redact=self._secrets())
        if response.status_code not in ok:
            raise self._error(response, is_create=is_create)
        return response

    def _error(self, response: httpx.Response, *, is_create: bool) -> PlatformError:
        status = response.status_code
        message = f"mastodon: {http.error_message(response)}"
        kind = http.classify_status(status, is_create=is_create)
        retry = None
        if status == 401:
            kind = ErrorKind.AUTH_REVOKED
            message += (" (the access token was revoked or is invalid; Mastodon tokens "
                        "cannot be refreshed: re-authorise the account)")
        elif status == 429:
            retry = http.retry_at(response, self.clock())
        elif status == 408:
            kind = ErrorKind.SERVER
        elif status < 400:
            kind = ErrorKind.INVALID
            message += " (unexpected answer; check the account's --base-url)"
        return PlatformError(kind, http.redacted(message, self._secrets()),
                             http_status=status, retry_at=retry)

    def _json(self, response: httpx.Response, *, is_create: bool = False) -> dict[str, Any]:
        body = http.json_body(response)
        if not isinstance(body, dict):
            kind = ErrorKind.AMBIGUOUS if is_create else ErrorKind.SERVER
            raise PlatformError(kind, f"mastodon: unreadable answer to {response.request.url.path}"
                                      f" (HTTP {response.status_code})",
                                http_status=response.status_code)
        return body

    # -- instance limits ----------------------------------------------------------------
    def instance_limits(self) -> InstanceLimits | None:
        """The instance's own limits (GET /api/v2/instance), cached; None when unknown."""
        if self._limits is not None:
            return self._limits
        cached = _INSTANCES.get(self.base_url)
        if cached is not None and time.monotonic() - cached[0] < INSTANCE_TTL:
            self._limits = cached[1]
            return self._limits
        try:
            body = self._json(self._request("GET", "/api/v2/instance", auth=False))
        except PlatformError:
            return None
        config = body.get("configuration") or {}
        statuses = config.get("statuses") or {}
        media = config.get("media_attachments") or {}

        def number(table: dict[str, Any], key: str, default: int | None) -> int | None:
            value = table.get(key)
            return value if isinstance(value, int) and value > 0 else default

        self._limits = InstanceLimits(
            max_characters=number(statuses, "max_characters", self.text_limit or 500),
            url_chars=number(statuses, "characters_reserved_per_url", URL_CHARS),
            max_media=number(statuses, "max_media_attachments", self.max_media),
            image_size_limit=number(media, "image_size_limit", None),
            video_size_limit=number(media, "video_size_limit", None),
        )
        _INSTANCES[self.base_url] = (time.monotonic(), self._limits)
        return self._limits

    # -- publish ------------------------------------------------------------------------
    def publish(self, job: Job, save_ref: SaveRef) -> Published:
        for item in job.media:
            self._check_file(item)
        limits = self.instance_limits()
        if limits is not None:
            self._check_limits(job, limits)

        ref = dict(job.ref)
        first = http.parse_time(ref.get("first_sent_at"))
        now = self.clock()
        if first is not None and now - first >= self.idempotency_window:
            # An earlier send is past the server's idempotency hour: a resend would not
            # be deduplicated, so look for that post first.
            found = self._read_back(job, first)
            if found.verdict is Verdict.POSTED and found.published is not None:
                return found.published
            if found.verdict is Verdict.CANNOT_TELL:
                raise PlatformError(ErrorKind.AMBIGUOUS, f"mastodon: {found.message}")
            first = None

        media_ids = [self._upload(item, limits) for item in job.media]

        if first is None:
            ref["first_sent_at"] = format_utc(self.clock())
            save_ref(ref)
        data: dict[str, Any] = {"status": job.text}
        options = job.options or {}
        for key in ("visibility", "language", "spoiler_text", "in_reply_to_id"):
            if options.get(key):
                data[key] = str(options[key])
        if job.reply is not None:
            data["in_reply_to_id"] = job.reply.parent.post_id
        if options.get("sensitive"):
            data["sensitive"] = "true"
        if media_ids:
            data["media_ids[]"] = media_ids
        response = self._request("POST", "/api/v1/statuses", is_create=True, data=data,
                                 headers={"Idempotency-Key": job.idempotency_key})
        body = self._json(response, is_create=True)
        if not body.get("id"):
            raise PlatformError(ErrorKind.AMBIGUOUS, "mastodon: created status has no id",
                                http_status=response.status_code)
        return Published(post_id=str(body["id"]), url=body.get("url") or body.get("uri"))

    def _check_file(self, item: Media) -> None:
        if not os.path.isfile(item.path) or not os.access(item.path, os.R_OK):
            raise PlatformError(ErrorKind.INVALID,
                                f"mastodon: media file {item.path} is missing or unreadable")

    def _check_limits(self, job: Job, limits: InstanceLimits) -> None:
        spoiler = str((job.options or {}).get("spoiler_text") or "")
        n = count_characters(spoiler + job.text, limits.url_chars)
        if n > limits.max_characters:
            raise PlatformError(ErrorKind.INVALID, (
                f"mastodon: text is {n} characters; the instance {self.base_url} allows "
                f"{limits.max_characters} (links count {limits.url_chars})"))
        if len(job.media) > limits.max_media:
            raise PlatformError(ErrorKind.INVALID, (
                f"mastodon: {len(job.media)} media files; the instance allows "
                f"{limits.max_media}"))

    def _upload(self, item: Media, limits: InstanceLimits | None) -> str:
        mime = mimetypes.guess_type(item.path)[0] or "application/octet-stream"
        try:
            size = os.path.getsize(item.path)
            cap = None
            if limits is not None:
                cap = limits.image_size_limit if mime.startswith("image/") else \
                    limits.video_size_limit if mime.startswith(("video/", "audio/")) else None
            if cap is not None and size > cap:
                raise PlatformError(ErrorKind.INVALID, (
                    f"mastodon: {os.path.basename(item.path)} is {size} bytes; the instance "
                    f"takes at most {cap}"))
            with open(item.path, "rb") as fh:
                data = {"description": item.alt} if item.alt else {}
                response = self._request(
                    "POST", "/api/v2/media", ok=(200, 202), data=data,
                    files={"file": (os.path.basename(item.path), fh, mime)})
        except OSError as exc:
            raise PlatformError(ErrorKind.INVALID, f"mastodon: cannot read media {item.path}: "
                                                   f"{exc.strerror}") from None
        body = self._json(response)
        media_id = body.get("id")
        if not media_id:
            raise PlatformError(ErrorKind.SERVER, "mastodon: uploaded media has no id")
        if body.get("url"):
            return str(media_id)
        return self._wait_for_media(str(media_id))

    def _wait_for_media(self, media_id: str) -> str:
        waited = 0.0
        delay = self.media_poll_interval
        while waited < self.media_max_wait:
            delay = min(delay, self.media_max_wait - waited)
            self.sleep(delay)
            waited += delay
            body = self._json(self._request("GET", f"/api/v1/media/{media_id}", ok=(200, 206)))
            if body.get("url"):
                return media_id
            delay = min(delay * 2, self.media_poll_max_interval)
        raise PlatformError(ErrorKind.SERVER,
                            f"mastodon: media {media_id} still processing after {waited:g} s")

    # -- reconcile ------------------------------------------------------------------------
    def reconcile(self, job: Job) -> Reconciled:
        first = http.parse_time(job.ref.get("first_sent_at"))
        if first is None:
            return Reconciled(Verdict.NOT_POSTED, None, "the status was never sent")
        age = self.clock() - first
        if age < self.idempotency_window:
            # Not an established absence: the server simply answers a resend with the
            # status it already made, if it made one.
            return Reconciled(Verdict.RESEND, None, (
                f"first sent {int(age.total_seconds() // 60)} min ago: "
                "safe to resend with the same Idempotency-Key"))
        return self._read_back(job, first)

    def _read_back(self, job: Job, first_sent: datetime) -> Reconciled:
        """Look for the job's status among the account's statuses since `first_sent`."""
        me = self._json(self._request("GET", "/api/v1/accounts/verify_credentials"))
        account_id = me.get("id")
        if not account_id:
            raise PlatformError(ErrorKind.SERVER, "mastodon: verify_credentials gave no id")
        since = first_sent - self.readback_margin
        params: dict[str, Any] = {"limit": self.page_size}
        for _ in range(self.readback_pages):
            response = self._request("GET", f"/api/v1/accounts/{account_id}/statuses",
                                     params=params)
            statuses = http.json_body(response)
            if not isinstance(statuses, list):
                raise PlatformError(ErrorKind.SERVER, "mastodon: unreadable statuses list")
            reached_older = False
            for status in statuses:
                created = http.parse_time(status.get("created_at")) if isinstance(status, dict) \
                    else None
                if created is None:
                    continue
                if created < since:
                    reached_older = True
                    continue
                if self._matches(job, status):
                    published = Published(post_id=str(status["id"]),
                                          url=status.get("url") or status.get("uri"))
                    return Reconciled(Verdict.POSTED, published,
                                      f"found status {status['id']} among the account's posts")
            if reached_older or len(statuses) < self.page_size:
                return Reconciled(Verdict.NOT_POSTED, None,
                                  "no matching status among the account's posts since the send")
            params = {"limit": self.page_size, "max_id": statuses[-1].get("id")}
        return Reconciled(Verdict.CANNOT_TELL, None, (
            f"more than {self.readback_pages * self.page_size} statuses since the send; "
            "check the account by hand"))

    @staticmethod
    def _matches(job: Job, status: dict[str, Any]) -> bool:
        if status.get("reblog") or not status.get("id"):
            return False
        if normalise(plain_text(str(status.get("content") or ""))) != normalise(job.text):
            return False
        if not job.text.strip():
            attached = status.get("media_attachments") or []
            return [m.get("description") or None for m in attached if isinstance(m, dict)] \
                == [m.alt or None for m in job.media]
        return True

    # -- accounts check -------------------------------------------------------------------
    def check(self) -> AccountInfo:
        me = self._json(self._request("GET", "/api/v1/accounts/verify_credentials"))
        acct = me.get("acct") or me.get("username") or "?"
        return AccountInfo(display=f"@{acct}", url=me.get("url"), details={
            "id": me.get("id"), "display_name": me.get("display_name"),
            "instance": self.base_url})


ADAPTER = MastodonAdapter
