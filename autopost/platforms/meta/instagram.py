"""Instagram (professional accounts) through the Graph API's content publishing.

Credentials: {"ig_user_id", "access_token"}: the Instagram professional account linked
to a Facebook Page, and a token that may act for it (the Page's token or a user token);
or {"client_id", "client_secret"} of the Meta app, then `autopost accounts login NAME
[--ig-user ID|USERNAME]`, which stores the linked Page's token. Permissions: instagram_basic,
instagram_content_publish, pages_read_engagement, pages_show_list.

- One image: a container with `image_url` (JPEG only), `caption`, `alt_text`.
- Several (2-10): one container per item (`is_carousel_item`), then a CAROUSEL container
  naming them as `children`.
- One video: a REELS container with `video_url`.
Then the container is polled (`status_code`) and published with `media_publish`; see
containers.py for how a crash at any point is settled without a second post.

There is no text-only post. Instagram fetches media by URL, so a local file needs the
media host ([media] in config.toml). The 50 posts a moving 24 h allows are read from
`content_publishing_limit` before each post.
"""

from __future__ import annotations

from typing import Any

import regex

from autopost.errors import UsageError
from autopost.mediahost import is_url
from autopost.models import Job, Media
from autopost.oauth import OAuthPlatform
from autopost.platforms.base import AccountInfo, Refreshed
from autopost.platforms.meta.common import image_mime, media_kind
from autopost.platforms.meta.containers import ContainerAdapter
from autopost.platforms.meta.login import (
    INSTAGRAM_SCOPES,
    check_options,
    facebook_login,
    page_login,
)
from autopost.platforms.meta.versions import DEFAULT_VERSION

CAPTION_LIMIT = 2200
HASHTAG_LIMIT = 30
_HASHTAG = regex.compile(r"(?<![\w&])#[\p{L}\p{N}_]+")


class InstagramAdapter(ContainerAdapter):
    platform = "instagram"
    default_base_url = "https://graph.facebook.com"
    id_field = "ig_user_id"
    optional_fields = ("ig_user_id", "username", "page_id", "access_token", "client_id",
                       "client_secret", "expires_at", "scope")
    secret_fields = ("access_token", "client_secret")
    oauth = facebook_login(INSTAGRAM_SCOPES)
    text_limit = CAPTION_LIMIT
    max_media = 10

    owner_field = "ig_user_id"
    create_edge = "media"
    publish_edge = "media_publish"
    limit_edge = "content_publishing_limit"
    status_fields = "status_code,status"
    text_field = "caption"

    # -- add time -------------------------------------------------------------------
    @classmethod
    def validate(cls, text: str, media: tuple[Media, ...], options: dict[str, Any]) -> None:
        if not media:
            raise UsageError("instagram has no text-only posts: give an image or a video "
                             "(--media)")
        super().validate(text, media, options)
        tags = len(_HASHTAG.findall(text))
        if tags > HASHTAG_LIMIT:
            raise UsageError(f"caption has {tags} hashtags; instagram allows {HASHTAG_LIMIT}")
        videos = [m for m in media if media_kind(m) == "video"]
        if videos and len(media) == 1 and media[0].alt:
            raise UsageError("instagram takes alt text for images only")
        for item in media:
            if media_kind(item) == "image" and not is_url(item.path) \
                    and image_mime(item) != "image/jpeg":
                raise UsageError(f"{item.path}: instagram takes JPEG images only")

    # -- containers -----------------------------------------------------------------
    def container_state(self, body: dict[str, Any]) -> tuple[str, str]:
        state = str(body.get("status_code") or "").upper()
        detail = str(body.get("status") or "")
        return state, detail if state == "ERROR" else ""

    def container_params(self, job: Job, urls: list[str]) -> list[dict[str, Any]] | dict:
        caption = {"caption": job.text} if job.text else {}
        if len(job.media) == 1:
            item, url = job.media[0], urls[0]
            if media_kind(item) == "video":
                return {"media_type": "REELS", "video_url": url, **caption}
            params: dict[str, Any] = {"image_url": url, **caption}
            if item.alt:
                params["alt_text"] = item.alt
            return params
        items: list[dict[str, Any]] = []
        for item, url in zip(job.media, urls, strict=True):
            if media_kind(item) == "video":
                items.append({"media_type": "VIDEO", "video_url": url,
                              "is_carousel_item": True})
            else:
                items.append({"image_url": url, "is_carousel_item": True})
        return [*items, {"media_type": "CAROUSEL", **caption}]

    # -- login --------------------------------------------------------------------------
    @classmethod
    def login_spec(cls, options: dict[str, str]) -> OAuthPlatform:
        check_options(cls.platform, options, ("page", "ig_user"))
        return cls.oauth

    def after_login(self, options: dict[str, str]) -> Refreshed:
        return page_login(self, options, version=DEFAULT_VERSION, instagram=True)

    # -- accounts check -------------------------------------------------------------
    def check(self) -> AccountInfo:
        owner = self._owner()
        body = self.graph().get(owner, {"fields": "id,username"})
        username = str(body.get("username") or self.credentials.get("username") or owner)
        limit = self.graph().get(f"{owner}/content_publishing_limit",
                                 {"fields": "quota_usage,config"})
        details: dict[str, Any] = {"ig_user_id": owner, "graph_version": self.version}
        rows = limit.get("data") or []
        if rows and isinstance(rows[0], dict):
            config = rows[0].get("config") or {}
            details["published_last_24h"] = (f"{rows[0].get('quota_usage')} of "
                                             f"{config.get('quota_total')}")
        return AccountInfo(display=f"@{username}",
                           url=f"https://www.instagram.com/{username}/", details=details)


ADAPTER = InstagramAdapter
