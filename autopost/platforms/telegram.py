"""Telegram: a bot posts to a channel or group through the Bot API.

Credentials: {"bot_token": from @BotFather, "chat_id": numeric id or "@channelusername"}.
The bot must be an admin of the channel with the right to post. The token never expires
and cannot be refreshed; it sits in the request path (/bot<TOKEN>/sendMessage), so it is
removed from every message, URL, log line and exception this module lets out.

Posts: text -> sendMessage (JSON); text + one image -> sendPhoto (multipart: a `photo`
file part, the text as `caption`). One image per post at most: albums (sendMediaGroup)
are not supported. Alt text is not supported by Telegram and is ignored.

Options (job options, either flat or under a "telegram" key):
  parse_mode            "HTML", "MarkdownV2" or "Markdown"
  disable_notification  true to post silently
  link_preview          false to turn the link preview off
  link_preview_options  a LinkPreviewOptions object, sent as given

Post id: "<chat id>:<message id>" (the numeric chat id Telegram answers with). A message
id is only unique within its chat, and deleting or editing a message later needs both.
URL: https://t.me/<username>/<message id> for a chat with a public username,
https://t.me/c/<id>/<message id> for a private channel or supergroup (-100... ids; only
members can open it), none for other chats.

Never twice: the Bot API has no idempotency key and no way to list a chat's past
messages, so after an ambiguous outcome (timeout after sending, a 5xx) reconcile cannot
tell: the job waits in `unknown` until the operator looks at the chat and runs
`autopost resolve JOB --posted URL` or `--not-posted`.
"""

from __future__ import annotations

import html
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

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
# sendPhoto takes uploads up to 10 MB.
PHOTO_MAX_BYTES = 10 * 1000 * 1000
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")
PARSE_MODES = {"html": "HTML", "markdownv2": "MarkdownV2", "markdown": "Markdown"}

urlsecret.install_log_filter()


def _options(options: dict[str, Any]) -> dict[str, Any]:
    return platform_options(options, "telegram")


def _parse_mode(opts: dict[str, Any]) -> str | None:
    mode = opts.get("parse_mode")
    if mode is None or mode == "":
        return None
    if not isinstance(mode, str) or mode.lower() not in PARSE_MODES:
        raise UsageError(f"telegram parse_mode must be one of {', '.join(PARSE_MODES.values())}")
    return PARSE_MODES[mode.lower()]


_HTML_TAG = re.compile(r"<[^>]*>")
_MD_LINK_TARGET = re.compile(r"\]\((?:\\.|[^)\\])*\)")
_MD_ESCAPE = re.compile(r"\\(.)")
_MD_MARKUP = re.compile(r"\\.|(\*|__?|~|\|\||`{1,3}|\[|\])")


def visible_length(text: str, parse_mode: str | None = None) -> int:
    """Telegram's limits count characters "after entity parsing": the text a reader sees,
    without HTML tags or Markdown markup. This counts Unicode code points (len()), not
    UTF-16 code units: entity offsets are UTF-16, but the length limits are documented
    in characters. With a parse_mode the markup is stripped first; that stripping is an
    approximation (Telegram's own parser decides, and answers 400 "message is too long"
    for anything over the limit, which fails the job with that message)."""
    if parse_mode == "HTML":
        return len(html.unescape(_HTML_TAG.sub("", text)))
    if parse_mode in ("MarkdownV2", "Markdown"):
        stripped = _MD_LINK_TARGET.sub("", text)
        stripped = _MD_MARKUP.sub(lambda m: m.group(0) if m.group(1) is None else "", stripped)
        return len(_MD_ESCAPE.sub(r"\1", stripped))
    return len(text)


class TelegramAdapter(Adapter):
    platform = "telegram"
    default_base_url = "https://api.telegram.org"
    required_fields = ("bot_token", "chat_id")
    secret_fields = ("bot_token",)
    text_limit = TEXT_LIMIT
    max_media = 1
    options = (
        Option("parse_mode", "choice", "how Telegram reads the text",
               choices=("HTML", "MarkdownV2", "Markdown")),
        Option("disable_notification", "bool", "post silently"),
        Option("link_preview", "bool", "false turns the link preview off"),
        Option("disable_web_page_preview", "bool", "true turns the link preview off"),
        Option("link_preview_options", "object", "a LinkPreviewOptions object, sent as given"),
    )
    can_reconcile = False
    refreshable = False

    def __repr__(self) -> str:
        return f"<TelegramAdapter account={self.account.name!r}>"

    # -- add time --------------------------------------------------------------------
    @classmethod
    def validate(cls, text: str, media: tuple[Media, ...], options: dict[str, Any]) -> None:
        opts = _options(options)
        mode = _parse_mode(opts)
        if len(media) > cls.max_media:
            raise UsageError("telegram takes at most 1 image per post")
        if not text.strip() and not media:
            raise UsageError("empty post: give some text or --media")
        limit = CAPTION_LIMIT if media else TEXT_LIMIT
        n = visible_length(text, mode)
        if n > limit:
            what = "caption" if media else "text"
            extra = " with an image" if media else ""
            raise UsageError(f"{what} is {n} characters; telegram allows {limit}{extra}")
        for item in media:
            path = Path(item.path).expanduser()
            if path.suffix.lower() not in PHOTO_SUFFIXES:
                raise UsageError(
                    f"telegram posts images only ({', '.join(PHOTO_SUFFIXES)}): {item.path}")
            # A file that is not there yet is reported when the post is due.
            if path.is_file() and path.stat().st_size > PHOTO_MAX_BYTES:
                raise UsageError(f"{item.path} is over telegram's 10 MB photo limit")
        preview = opts.get("link_preview_options")
        if preview is not None and not isinstance(preview, dict):
            raise UsageError("telegram link_preview_options must be an object")

    # -- plumbing --------------------------------------------------------------------
    @property
    def _token(self) -> str:
        return str(self.credentials.get("bot_token") or "")

    def _secrets(self) -> list[str]:
        token = self._token
        secrets = [token]
        if ":" in token:
            secrets.append(token.split(":", 1)[1])
        return [s for s in secrets if s]

    def _scrub(self, text: str) -> str:
        return urlsecret.scrub(text, self._secrets())

    def _call(self, method: str, *, is_create: bool, **kwargs: Any) -> Any:
        url = f"{self.base_url}/bot{self._token}/{method}"
        response = urlsecret.request(self._client(), "POST", url, is_create=is_create,
                                     secrets=self._secrets(), **kwargs)
        body = http.json_body(response)
        if response.is_success and isinstance(body, dict) and body.get("ok") is True:
            return body.get("result")
        if response.is_success and not (isinstance(body, dict) and body.get("ok") is False):
            # A 2xx we cannot read: for a send, the message may well exist.
            kind = ErrorKind.AMBIGUOUS if is_create else ErrorKind.SERVER
            raise PlatformError(kind, self._scrub(
                f"telegram {method}: unreadable answer ({http.error_message(response)})"),
                http_status=response.status_code)
        raise self._error(method, response, body, is_create=is_create)

    def _error(self, method: str, response: httpx.Response, body: Any, *,
               is_create: bool) -> PlatformError:
        status = response.status_code
        body = body if isinstance(body, dict) else {}
        code = body.get("error_code")
        if not isinstance(code, int):
            code = status
        params = body.get("parameters")
        params = params if isinstance(params, dict) else {}
        description = body.get("description")
        if isinstance(description, str) and description.strip():
            text = f"telegram {code}: {' '.join(description.split())[:300]}"
        else:
            text = f"telegram {method}: {http.error_message(response)}"

        def err(kind: ErrorKind, message: str, **kw: Any) -> PlatformError:
            return PlatformError(kind, self._scrub(message), http_status=status,
                                 code=str(code), **kw)

        if params.get("migrate_to_chat_id") is not None:
            new_id = params["migrate_to_chat_id"]
            return err(ErrorKind.INVALID,
                       f"{text}; the group became a supergroup with chat id {new_id}: "
                       f"set the account's chat_id to {new_id}")
        if code == 429 or status == 429:
            seconds = params.get("retry_after")
            if not isinstance(seconds, (int, float)):
                seconds = None
            at = http.retry_at(response, self.clock(), reset_headers=(), body_seconds=seconds)
            return err(ErrorKind.RATE_LIMITED, text, retry_at=at)
        if code == 401:
            # A bot token never expires and cannot be refreshed: rejected means revoked
            # (or mistyped). The account needs a new token; its jobs wait, none fail.
            return err(ErrorKind.AUTH_REVOKED,
                       f"{text}; the bot token was rejected: get the current token from "
                       "@BotFather and update the account")
        if code == 404:
            # api.telegram.org answers a plain 404 "Not Found" for a token it does not
            # recognise at all (the method names here are fixed); same remedy as a 401.
            return err(ErrorKind.AUTH_REVOKED,
                       f"{text}; the bot token (or the API base URL) is not recognised: "
                       "check the token from @BotFather and update the account")
        if code == 403:
            # "Forbidden: bot is not a member of the channel chat", "bot was kicked",
            # "bot was blocked by the user": the bot cannot post to this chat at all until
            # a human adds it back (as an admin with posting rights). Every job of the
            # account would fail the same way, so the account is marked as needing
            # re-auth: its jobs wait instead of failing, and `status` shows it.
            return err(ErrorKind.AUTH_REVOKED,
                       f"{text}; the bot cannot post to this chat: make it an admin of the "
                       "channel with the right to post messages, then run "
                       f"`autopost accounts check {self.account.name}`")
        if status >= 500 or code >= 500:
            # The message may have been sent before the server failed.
            kind = ErrorKind.AMBIGUOUS if is_create else ErrorKind.SERVER
            return err(kind, text)
        # 400: chat not found, message is too long, can't parse entities, bad photo, ...
        return err(ErrorKind.INVALID, text)

    # -- a run -----------------------------------------------------------------------
    def publish(self, job: Job, save_ref: SaveRef) -> Published:
        opts = _options(job.options)
        try:
            mode = _parse_mode(opts)
        except UsageError as exc:
            raise PlatformError(ErrorKind.INVALID, str(exc)) from None
        chat_id = self.credentials["chat_id"]
        if job.media:
            item = job.media[0]
            path, content = read_media(item)
            data: dict[str, str] = {"chat_id": str(chat_id)}
            if job.text:
                data["caption"] = job.text
            if mode:
                data["parse_mode"] = mode
            if opts.get("disable_notification"):
                data["disable_notification"] = "true"
            mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            result = self._call("sendPhoto", is_create=True, data=data,
                                files={"photo": (path.name, content, mime)})
        else:
            payload: dict[str, Any] = {"chat_id": chat_id, "text": job.text}
            if mode:
                payload["parse_mode"] = mode
            if opts.get("disable_notification"):
                payload["disable_notification"] = True
            preview = opts.get("link_preview_options")
            if isinstance(preview, dict):
                payload["link_preview_options"] = preview
            elif opts.get("link_preview") is False or opts.get("disable_web_page_preview"):
                payload["link_preview_options"] = {"is_disabled": True}
            result = self._call("sendMessage", is_create=True, json=payload)
        return self._published(result)

    def _published(self, result: Any) -> Published:
        message_id = result.get("message_id") if isinstance(result, dict) else None
        if message_id is None:
            raise PlatformError(ErrorKind.AMBIGUOUS,
                                "telegram answered ok but without a message id")
        chat = result.get("chat") if isinstance(result.get("chat"), dict) else {}
        chat_id = chat.get("id", self.credentials.get("chat_id"))
        return Published(post_id=f"{chat_id}:{message_id}",
                         url=post_url(chat_id, chat.get("username"), message_id))

    def reconcile(self, job: Job) -> Reconciled:
        return Reconciled(
            Verdict.CANNOT_TELL, None,
            "Telegram offers no way to check whether a bot's message was sent; look at the "
            f"chat, then run `autopost resolve {job.id} --posted URL` or "
            f"`autopost resolve {job.id} --not-posted`")

    def check(self) -> AccountInfo:
        chat_id = self.credentials["chat_id"]
        me = self._call("getMe", is_create=False) or {}
        chat = self._call("getChat", is_create=False, json={"chat_id": chat_id}) or {}
        bot = f"@{me.get('username')}" if me.get("username") else str(me.get("id", "bot"))
        if chat.get("title"):
            where = str(chat["title"])
        elif chat.get("username"):
            where = f"@{chat['username']}"
        else:
            where = str(chat.get("id", chat_id))
        details: dict[str, Any] = {"bot": bot, "chat_id": chat.get("id", chat_id),
                                   "chat_type": chat.get("type")}
        if me.get("id") is not None:
            member = self._call("getChatMember", is_create=False,
                                json={"chat_id": chat_id, "user_id": me["id"]}) or {}
            details["bot_status"] = member.get("status")
            problem = _posting_problem(chat.get("type"), member)
            if problem:
                raise PlatformError(ErrorKind.AUTH_REVOKED,
                                    self._scrub(f"{bot} -> {where}: {problem}"))
        url = f"https://t.me/{chat['username']}" if chat.get("username") else None
        return AccountInfo(display=self._scrub(f"{bot} -> {where}"), url=url, details=details)


def _posting_problem(chat_type: Any, member: dict[str, Any]) -> str | None:
    status = member.get("status")
    if status in ("left", "kicked"):
        return "the bot is not a member of this chat; add it (as an admin for a channel)"
    if chat_type == "channel":
        if status == "creator":
            return None
        if status != "administrator" or not member.get("can_post_messages", False):
            return "the bot is not an admin of this channel with the right to post messages"
    elif status == "restricted" and member.get("can_send_messages") is False:
        return "the bot is not allowed to send messages in this chat"
    return None


def post_url(chat_id: Any, username: Any, message_id: Any) -> str | None:
    """The public link to a message, where the chat has one."""
    if username:
        return f"https://t.me/{username}/{message_id}"
    text = str(chat_id)
    if text.startswith("-100") and text[4:].isdigit():
        return f"https://t.me/c/{text[4:]}/{message_id}"
    return None


ADAPTER = TelegramAdapter
