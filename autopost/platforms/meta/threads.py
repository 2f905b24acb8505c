"""Threads: text, image, video and carousel posts through containers.

Credentials: {"threads_user_id", "access_token"} (a long-lived Threads token, 60 days),
or what `autopost accounts login` stores (with the token's expiry, and the app's
client_secret for the exchange). Permissions: threads_basic, threads_content_publish.

POST /{threads-user-id}/threads (media_type TEXT, IMAGE, VIDEO or CAROUSEL), then
POST /{threads-user-id}/threads_publish with the container id; containers.py tells how
a crash is settled. Meta advises waiting about 30 s between the two ([meta]
threads_publish_wait); a "Media Not Found" (24/4279009) right after is retried on the
same container. 500 characters, emoji counted by their UTF-8 bytes. 250 posts a moving
24 h, read from threads_publishing_limit.

Tokens last 60 days and are refreshed (th_refresh_token) in the last week of their
life, by a run or by `accounts check`; a token left to expire cannot be refreshed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import regex

from autopost.errors import UsageError
from autopost.mediahost import is_url
from autopost.models import ErrorKind, Job, Media
from autopost.oauth import OAuthPlatform
from autopost.platforms.base import AccountInfo, PlatformError, Refreshed
from autopost.platforms.meta.common import image_mime, media_kind
from autopost.platforms.meta.containers import ContainerAdapter
from autopost.platforms.meta.graph import Graph
from autopost.platforms.meta.login import THREADS_LOGIN, check_options, threads_login
from autopost.platforms.options import Option

TEXT_LIMIT = 500
MAX_ITEMS = 20
IMAGE_TYPES = ("image/jpeg", "image/png")
# What Threads counts by its UTF-8 length: emoji and the code points that build them.
_EMOJI = regex.compile(r"[\p{Extended_Pictographic}\p{Regional_Indicator}\u200d\ufe0f"
                       r"\u20e3\U0001F3FB-\U0001F3FF\U000E0020-\U000E007F]")


def threads_length(text: str) -> int:
    return sum(len(ch.encode("utf-8")) if _EMOJI.match(ch) else 1 for ch in text)


class ThreadsAdapter(ContainerAdapter):
    platform = "threads"
    default_base_url = "https://graph.threads.net"
    fixed_version = "v1.0"
    id_field = "threads_user_id"
    optional_fields = ("threads_user_id", "username", "access_token", "client_id",
                       "client_secret", "expires_at", "scope")
    secret_fields = ("access_token", "client_secret")
    oauth = THREADS_LOGIN
    text_limit = TEXT_LIMIT
    max_media = MAX_ITEMS
    refreshable = True
    supports_replies = True
    refresh_ahead = timedelta(days=7)
    options = (Option("reply_control", "choice", "who may reply",
                      choices=("everyone", "accounts_you_follow", "mentioned_only")),)

    owner_field = "threads_user_id"
    create_edge = "threads"
    publish_edge = "threads_publish"
    limit_edge = "threads_publishing_limit"
    status_fields = "status,error_message"
    text_field = "text"

    # -- add time -------------------------------------------------------------------
    @classmethod
    def text_length(cls, text: str) -> int:
        return threads_length(text)

    @classmethod
    def validate(cls, text: str, media: tuple[Media, ...], options: dict[str, Any]) -> None:
        super().validate(text, media, options)
        for item in media:
            if media_kind(item) == "image" and not is_url(item.path) \
                    and image_mime(item) not in IMAGE_TYPES:
                raise UsageError(f"{item.path}: threads takes JPEG or PNG images")

    def publish_wait(self) -> float:
        return self.settings.meta.threads_publish_wait

    # -- containers -----------------------------------------------------------------
    def container_state(self, body: dict[str, Any]) -> tuple[str, str]:
        state = str(body.get("status") or "").upper()
        return state, str(body.get("error_message") or "") if state == "ERROR" else ""

    def container_params(self, job: Job, urls: list[str]) -> list[dict[str, Any]] | dict:
        text: dict[str, Any] = {"text": job.text} if job.text else {}
        if job.options.get("reply_control"):
            text["reply_control"] = job.options["reply_control"]
        if job.reply is not None:  # a thread's later part answers the part before it
            text["reply_to_id"] = job.reply.parent.post_id
        if not job.media:
            return {"media_type": "TEXT", **text}
        if len(job.media) == 1:
            return {**_item(job.media[0], urls[0]), **text}
        items = [{**_item(m, u), "is_carousel_item": True}
                 for m, u in zip(job.media, urls, strict=True)]
        return [*items, {"media_type": "CAROUSEL", **text}]

    # -- tokens -----------------------------------------------------------------------
    def refresh(self) -> Refreshed:
        """th_refresh_token: a new 60-day token for one at least a day old and alive."""
        graph = self._token_graph()
        try:
            body = graph.get("refresh_access_token", {"grant_type": "th_refresh_token"})
        except PlatformError as exc:
            if exc.kind in (ErrorKind.AUTH_EXPIRED, ErrorKind.AUTH_REVOKED,
                            ErrorKind.INVALID):
                raise PlatformError(
                    ErrorKind.AUTH_REVOKED,
                    f"threads refused to refresh the token ({exc.message}); run "
                    f"'autopost accounts login {self.account.name}'") from None
            raise
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise PlatformError(ErrorKind.SERVER, "threads: the refresh answer has no token")
        expires = body.get("expires_in")
        at = self.clock() + timedelta(seconds=int(expires)) if isinstance(expires, int) \
            else None
        return Refreshed({"access_token": token}, at)

    def _token_graph(self) -> Graph:
        graph = self.graph()
        return Graph(graph.client, origin=self.base_url, version="", token=graph.token,
                     platform=self.platform, account=self.account.name, clock=self.clock,
                     secrets=graph.secrets)

    @classmethod
    def login_spec(cls, options: dict[str, str]) -> OAuthPlatform:
        check_options(cls.platform, options, ())
        return cls.oauth

    def after_login(self, options: dict[str, str]) -> Refreshed:
        return threads_login(self)

    # -- accounts check -------------------------------------------------------------
    def check(self) -> AccountInfo:
        body = self.graph().get("me", {"fields": "id,username"})
        username = str(body.get("username") or self.credentials.get("username") or "")
        return AccountInfo(display=f"@{username}" if username else str(body.get("id")),
                           url=f"https://www.threads.net/@{username}" if username else None,
                           details={"threads_user_id": str(body.get("id") or "")})


def _item(item: Media, url: str) -> dict[str, Any]:
    if media_kind(item) == "video":
        return {"media_type": "VIDEO", "video_url": url}
    params: dict[str, Any] = {"media_type": "IMAGE", "image_url": url}
    if item.alt:
        params["alt_text"] = item.alt
    return params


ADAPTER = ThreadsAdapter
