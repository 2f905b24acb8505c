"""Discord: posts through a channel webhook.

Credentials: {"webhook_url": "https://discord.com/api/webhooks/<id>/<token>"}, optional
"thread_id" (post into a thread or forum post) and "username" (the name shown on posts).
The URL's token is the whole credential: anyone holding it can post, it never expires and
there is no refresh. It is removed from every message, log line, exception and repr this
module lets out. An account's base URL, when set, replaces the scheme and host of the
webhook URL (a self-hosted test server).

Posts: always `POST <webhook_url>?wait=true` (any query already in the URL, such as
thread_id, is kept), so the answer is the created message, and a message that failed to
save is an error rather than a silent 204. Text -> JSON {"content": ...}; text + one file
-> multipart with a `files[0]` part (with its filename) and a `payload_json` part whose
`attachments` entry names the file and carries the alt text as its description. One file
per post at most.

Options (job options, either flat or under a "discord" key): username, avatar_url,
thread_id, thread_name (creates a forum post), suppress_embeds, silent (or
disable_notification).

Post id: the message id. URL: https://discord.com/channels/<guild>/<channel>/<message>,
the guild read once per adapter from GET <webhook_url>; when that read fails the post
keeps its id and has no URL.

Never twice: Execute Webhook takes no nonce and a webhook cannot list messages, so after an
ambiguous outcome reconcile cannot tell: the job waits in `unknown` for the operator
(`autopost resolve JOB --posted URL | --not-posted`).
"""

from __future__ import annotations

import json
import mimetypes
import re
from pathlib import Path
from typing import Any

import httpx

from autopost.errors import UsageError
from autopost.models import ErrorKind, Job, Media
from autopost.platforms import http, urlsecret
from autopost.platforms.base import (
    AccountInfo,
    Adapter,
    PlatformError,
    Published,
    Reconciled,
    SaveRef,
    Verdict,
    platform_options,
    read_media,
)
from autopost.platforms.options import Option

CONTENT_LIMIT = 2000
ALT_LIMIT = 1024
USERNAME_LIMIT = 80
THREAD_NAME_LIMIT = 100
# The default per-file upload limit (since 2025-01-16).
FILE_MAX_BYTES = 10 * 1024 * 1024
FLAG_SUPPRESS_EMBEDS = 1 << 2
FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12

_WEBHOOK_PATH = re.compile(r"/webhooks/(\d+)/([A-Za-z0-9._~-]+)/?$")

# JSON error codes (https://discord.com/developers/docs/topics/opcodes-and-status-codes)
UNKNOWN_CHANNEL = 10003
UNKNOWN_WEBHOOK = 10015
INVALID_WEBHOOK_TOKEN = 50027

urlsecret.install_log_filter()


def _options(options: dict[str, Any]) -> dict[str, Any]:
    return platform_options(options, "discord")


def _check_username(name: Any) -> None:
    if name is None:
        return
    if not isinstance(name, str) or not name.strip() or len(name) > USERNAME_LIMIT:
        raise UsageError(f"discord username must be 1-{USERNAME_LIMIT} characters")
    lowered = name.lower()
    if "discord" in lowered or "clyde" in lowered:
        raise UsageError("discord refuses webhook usernames containing 'discord' or 'clyde'")


class DiscordAdapter(Adapter):
    platform = "discord"
    default_base_url = None
    required_fields = ("webhook_url",)
    optional_fields = ("thread_id", "username")
    secret_fields = ("webhook_url",)
    text_limit = CONTENT_LIMIT
    max_media = 1
    options = (
        Option("username", "text", "the name shown on the post", max_length=80),
        Option("avatar_url", "url", "the avatar shown on the post"),
        Option("thread_id", "text", "post into this thread", pattern=r"[0-9]+"),
        Option("thread_name", "text", "create a forum post with this title",
               max_length=100),
        Option("suppress_embeds", "bool", "no link embeds"),
        Option("silent", "bool", "post without notifying"),
        Option("disable_notification", "bool", "same as silent"),
    )
    can_reconcile = False
    refreshable = False

    _guild: str | None = None

    def __repr__(self) -> str:
        return f"<DiscordAdapter account={self.account.name!r}>"

    # -- add time --------------------------------------------------------------------
    @classmethod
    def check_credentials(cls, credentials: dict[str, Any]) -> None:
        super().check_credentials(credentials)
        url = credentials.get("webhook_url")
        # A value kept in the environment ({"env": VAR}) is checked when it is read.
        if isinstance(url, str):
            try:
                parsed = httpx.URL(url)
            except (httpx.InvalidURL, ValueError, TypeError):
                parsed = None
            if (parsed is None or parsed.scheme not in ("http", "https")
                    or not _WEBHOOK_PATH.search(parsed.path)):
                # The value itself is never shown: it is the secret.
                raise UsageError("discord webhook_url must look like "
                                 "https://discord.com/api/webhooks/<id>/<token>")
        thread = credentials.get("thread_id")
        if isinstance(thread, (str, int)) and not str(thread).isdigit():
            raise UsageError("discord thread_id must be a numeric id")
        if isinstance(credentials.get("username"), str):
            _check_username(credentials["username"])

    @classmethod
    def validate(cls, text: str, media: tuple[Media, ...], options: dict[str, Any]) -> None:
        opts = _options(options)
        if len(media) > cls.max_media:
            raise UsageError("discord takes at most 1 file per post")
        if not text.strip() and not media:
            raise UsageError("empty post: give some text or --media")
        # "2000 characters": counted as Unicode code points (len()).
        if len(text) > CONTENT_LIMIT:
            raise UsageError(f"text is {len(text)} characters; discord allows {CONTENT_LIMIT}")
        for item in media:
            if item.alt and len(item.alt) > ALT_LIMIT:
                raise UsageError(f"alt text is {len(item.alt)} characters; "
                                 f"discord allows {ALT_LIMIT}")
            path = Path(item.path).expanduser()
            # A file that is not there yet is reported when the post is due.
            if path.is_file() and path.stat().st_size > FILE_MAX_BYTES:
                raise UsageError(f"{item.path} is over discord's 10 MiB file limit")
        _check_username(opts.get("username"))
        thread = opts.get("thread_id")
        if thread is not None and not str(thread).isdigit():
            raise UsageError("discord thread_id must be a numeric id")
        name = opts.get("thread_name")
        if name is not None and (not isinstance(name, str) or len(name) > THREAD_NAME_LIMIT):
            raise UsageError(f"discord thread_name must be text of at most "
                             f"{THREAD_NAME_LIMIT} characters")

    # -- plumbing --------------------------------------------------------------------
    @property
    def _raw_url(self) -> str:
        return str(self.credentials.get("webhook_url") or "")

    def _secrets(self) -> list[str]:
        # The token is the secret; removing it alone keeps the host and webhook id in
        # messages, which helps. A URL of an unexpected shape is removed whole.
        raw = self._raw_url
        found = _WEBHOOK_PATH.search(raw.split("?", 1)[0])
        return [found.group(2)] if found else [s for s in (raw,) if s]

    def _scrub(self, text: str) -> str:
        return urlsecret.scrub(text, self._secrets())

    def _webhook(self) -> httpx.URL:
        try:
            url = httpx.URL(self._raw_url)
        except (httpx.InvalidURL, ValueError, TypeError):
            raise PlatformError(ErrorKind.AUTH_REVOKED,
                                "the account's webhook_url is not a URL; update it") from None
        if self.account.base_url:
            base = self.account.base_url.rstrip("/")
            url = httpx.URL(base + url.raw_path.decode("ascii"))
        return url

    def _request(self, method: str, url: httpx.URL, *, is_create: bool,
                 thread_from_job: bool = False, **kwargs: Any) -> Any:
        response = urlsecret.request(self._client(), method, str(url), is_create=is_create,
                                     secrets=self._secrets(), **kwargs)
        body = http.json_body(response)
        if response.is_success:
            return body
        raise self._error(response, body, is_create=is_create, thread_from_job=thread_from_job)

    def _error(self, response: httpx.Response, body: Any, *, is_create: bool,
               thread_from_job: bool) -> PlatformError:
        status = response.status_code
        body = body if isinstance(body, dict) else {}
        code = body.get("code") if isinstance(body.get("code"), int) else None
        message = body.get("message")
        if isinstance(message, str) and message.strip():
            text = f"discord {status}" + (f" (code {code})" if code is not None else "")
            text += f": {' '.join(message.split())[:300]}"
            fields = _field_errors(body.get("errors"))
            if fields:
                text += " (" + "; ".join(fields[:3]) + ")"
        else:
            text = f"discord: {http.error_message(response)}"

        def err(kind: ErrorKind, msg: str, **kw: Any) -> PlatformError:
            return PlatformError(kind, self._scrub(msg), http_status=status,
                                 code=str(code) if code is not None else None, **kw)

        if status == 429:
            # The latest of Retry-After, the body's retry_after (float seconds) and
            # X-RateLimit-Reset-After. X-RateLimit-Reset (an epoch) is left out: it
            # says the same thing, but through our clock's skew.
            seconds = body.get("retry_after")
            if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
                seconds = None
            at = http.retry_at(response, self.clock(),
                               reset_headers=("x-ratelimit-reset-after",), body_seconds=seconds)
            scope = response.headers.get("x-ratelimit-scope")
            if body.get("global") is True:
                scope = scope or "global"
            return err(ErrorKind.RATE_LIMITED, text + (f" [scope: {scope}]" if scope else ""),
                       retry_at=at)
        if code == UNKNOWN_CHANNEL:
            if thread_from_job:
                return err(ErrorKind.INVALID, f"{text}; the job's thread_id does not exist")
            return err(ErrorKind.AUTH_REVOKED,
                       f"{text}; the account's thread does not exist any more: "
                       "update its thread_id")
        if code == UNKNOWN_WEBHOOK or status == 404:
            # Discord: stop using a webhook after a 404 (repeated use gets the client
            # restricted). The account needs a new webhook URL; its jobs wait.
            return err(ErrorKind.AUTH_REVOKED,
                       f"{text}; the webhook was deleted: create a new one and update "
                       "the account's webhook_url")
        if code == INVALID_WEBHOOK_TOKEN or status == 401:
            return err(ErrorKind.AUTH_REVOKED,
                       f"{text}; the webhook token was rejected: update the account's "
                       "webhook_url")
        if status >= 500:
            # The message may have been created before the server failed.
            return err(ErrorKind.AMBIGUOUS if is_create else ErrorKind.SERVER, text)
        # 400 (50035 invalid form body, 50006 empty message, automod blocks, ...),
        # 413 / 40005 (request entity too large), and 403: a webhook's credential is its
        # URL, and a bad one answers 401 or 404; a 403 refuses this message or its target
        # (missing permission, locked thread), so it fails the job with Discord's reason.
        return err(ErrorKind.INVALID, text)

    def _get_webhook(self) -> dict[str, Any]:
        body = self._request("GET", self._webhook(), is_create=False)
        if not isinstance(body, dict):
            raise PlatformError(ErrorKind.SERVER, "discord: unreadable webhook object")
        if body.get("guild_id"):
            self._guild = str(body["guild_id"])
        return body

    def _guild_id(self) -> str | None:
        if self._guild is None:
            try:
                self._get_webhook()
            except PlatformError:
                return None
        return self._guild

    # -- a run -----------------------------------------------------------------------
    def publish(self, job: Job, save_ref: SaveRef) -> Published:
        opts = _options(job.options)
        params: dict[str, str] = {"wait": "true"}
        thread = opts.get("thread_id")
        thread_from_job = thread is not None
        if thread is None:
            thread = self.credentials.get("thread_id")
        if thread is not None:
            params["thread_id"] = str(thread)
        url = self._webhook().copy_merge_params(params)

        payload: dict[str, Any] = {}
        if job.text:
            payload["content"] = job.text
        username = opts.get("username") or self.credentials.get("username")
        if username:
            payload["username"] = username
        if opts.get("avatar_url"):
            payload["avatar_url"] = opts["avatar_url"]
        if opts.get("thread_name") and thread is None:
            payload["thread_name"] = opts["thread_name"]
        flags = 0
        if opts.get("suppress_embeds"):
            flags |= FLAG_SUPPRESS_EMBEDS
        if opts.get("silent") or opts.get("disable_notification"):
            flags |= FLAG_SUPPRESS_NOTIFICATIONS
        if flags:
            payload["flags"] = flags

        if job.media:
            item = job.media[0]
            path, content = read_media(item)
            attachment: dict[str, Any] = {"id": 0, "filename": path.name}
            if item.alt:
                attachment["description"] = item.alt
            payload["attachments"] = [attachment]
            mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            body = self._request(
                "POST", url, is_create=True, thread_from_job=thread_from_job,
                data={"payload_json": json.dumps(payload, ensure_ascii=False)},
                files={"files[0]": (path.name, content, mime)})
        else:
            body = self._request("POST", url, is_create=True, thread_from_job=thread_from_job,
                                 json=payload)
        if not isinstance(body, dict) or not body.get("id"):
            # With wait=true a success carries the message; without it we cannot tell.
            raise PlatformError(ErrorKind.AMBIGUOUS,
                                "discord accepted the message but did not return it")
        message_id = str(body["id"])
        guild = str(body["guild_id"]) if body.get("guild_id") else self._guild_id()
        channel = body.get("channel_id")
        link = (f"https://discord.com/channels/{guild}/{channel}/{message_id}"
                if guild and channel else None)
        return Published(post_id=message_id, url=link)

    def reconcile(self, job: Job) -> Reconciled:
        return Reconciled(
            Verdict.CANNOT_TELL, None,
            "a Discord webhook cannot list the channel's messages, so there is no way to "
            "check; look at the channel, then run "
            f"`autopost resolve {job.id} --posted URL` or "
            f"`autopost resolve {job.id} --not-posted`")

    def check(self) -> AccountInfo:
        hook = self._get_webhook()
        name = hook.get("name") or "webhook"
        channel = hook.get("channel_id")
        guild = hook.get("guild_id")
        thread = self.credentials.get("thread_id")
        display = f"{name} -> channel {channel}" + (f" (thread {thread})" if thread else "")
        url = f"https://discord.com/channels/{guild}/{channel}" if guild and channel else None
        details = {"webhook_id": hook.get("id"), "channel_id": channel, "guild_id": guild}
        if thread:
            details["thread_id"] = str(thread)
        return AccountInfo(display=self._scrub(display), url=url, details=details)


def _field_errors(tree: Any, path: tuple[str, ...] = ()) -> list[str]:
    """Flatten Discord's nested {"field": {"_errors": [{"message": ...}]}} tree."""
    out: list[str] = []
    if not isinstance(tree, dict):
        return out
    for item in tree.get("_errors") or []:
        if isinstance(item, dict) and item.get("message"):
            out.append(f"{'.'.join(path) or 'body'}: {item['message']}")
    for key, value in tree.items():
        if key != "_errors":
            out.extend(_field_errors(value, (*path, str(key))))
    return out


ADAPTER = DiscordAdapter
