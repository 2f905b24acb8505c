"""Facebook Pages: text and link posts, one photo, several photos, through the Graph API.

Credentials: {"page_id", "access_token"} with a Page access token (one fetched with a
long-lived user token does not expire); or {"client_id", "client_secret"} of the Meta
app, then `autopost accounts login NAME [--page ID|NAME]`, which stores the Page's.
Permissions: pages_manage_posts, pages_read_engagement, pages_show_list.

- Text (and a link): POST /{page-id}/feed with `message` (and `link`).
- One photo: POST /{page-id}/photos, the local file uploaded as `source` (or an https
  URL as `url`), `caption`, alt text as `alt_text_custom`; the answer's `post_id` is
  the post.
- Several photos: each uploaded with published=false, then one POST /{page-id}/feed with
  `attached_media` naming them. Uploads are safe to repeat; only the feed post publishes.

Never twice: Facebook has no idempotency key. Before the publishing call the adapter
saves `since` (when the first attempt began) in the job's ref; after an unknown
outcome, reconcile reads the Page's posts published since then and matches the
message. Code 506 ("duplicate status message") goes through the same reconcile.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from autopost.errors import UsageError
from autopost.mediahost import is_url
from autopost.models import ErrorKind, Job, Media
from autopost.oauth import OAuthPlatform
from autopost.platforms.base import (
    AccountInfo,
    PlatformError,
    Published,
    Reconciled,
    Refreshed,
    SaveRef,
    Verdict,
    platform_options,
    read_media,
)
from autopost.platforms.meta.common import GraphAdapter, image_mime, media_kind, same_text
from autopost.platforms.meta.graph import epoch
from autopost.platforms.meta.login import (
    FACEBOOK_SCOPES,
    check_options,
    facebook_login,
    page_login,
)
from autopost.platforms.meta.versions import DEFAULT_VERSION
from autopost.platforms.options import Option

# Posts are read back from a little before the first attempt (clocks differ).
RECONCILE_SLACK = timedelta(minutes=5)
RECENT_LIMIT = 100
MAX_PHOTO_BYTES = 10 * 2**20
PHOTO_TYPES = ("image/jpeg", "image/png", "image/gif")


class FacebookAdapter(GraphAdapter):
    platform = "facebook"
    default_base_url = "https://graph.facebook.com"
    id_field = "page_id"
    optional_fields = ("page_id", "page_name", "access_token", "client_id", "client_secret",
                       "expires_at", "scope")
    secret_fields = ("access_token", "client_secret")
    oauth = facebook_login(FACEBOOK_SCOPES)
    text_limit = 63206  # the figure commonly cited; Meta does not document one
    media_urls = True
    options = (Option("link", "url", "a link to attach to a text post (Facebook shows its "
                                     "preview)"),)
    max_media = 10

    # -- add time -------------------------------------------------------------------
    @classmethod
    def validate(cls, text: str, media: tuple[Media, ...], options: dict[str, Any]) -> None:
        super().validate(text, media, options)
        for item in media:
            if media_kind(item) == "video":
                raise UsageError(f"{item.path}: facebook posts from autopost take photos, "
                                 "not videos")
            if is_url(item.path):
                continue
            mime = image_mime(item)
            if mime not in PHOTO_TYPES:
                raise UsageError(f"{item.path}: facebook takes JPEG, PNG or GIF photos")
            size = Path(item.path).expanduser().stat().st_size
            if size > MAX_PHOTO_BYTES:
                raise UsageError(f"{item.path} is {size:,} bytes; facebook takes photos up "
                                 f"to {MAX_PHOTO_BYTES:,}")
        link = platform_options(options, "facebook").get("link")
        if link is not None and (not isinstance(link, str) or not link.startswith(
                ("https://", "http://"))):
            raise UsageError("facebook option link: expected an http(s):// URL")

    # -- posting --------------------------------------------------------------------
    def publish(self, job: Job, save_ref: SaveRef) -> Published:
        page = self._page_id()
        graph = self.graph()
        photos = []
        if len(job.media) > 1:
            # Unpublished uploads are not posts: repeating them is harmless.
            photos = [self._photo(page, item, published=False)["id"] for item in job.media]
        since = job.ref.get("since") or epoch(self.clock())
        save_ref({"since": since})
        if len(job.media) == 1:
            body = self._photo(page, job.media[0], published=True, caption=job.text)
            post_id = str(body.get("post_id") or f"{page}_{body.get('id')}")
        else:
            data: dict[str, Any] = {}
            if job.text:
                data["message"] = job.text
            link = platform_options(job.options, "facebook").get("link")
            if link:
                data["link"] = link
            if photos:
                data["attached_media"] = [{"media_fbid": p} for p in photos]
            body = graph.post(f"{page}/feed", data, is_create=True)
            post_id = str(body.get("id") or "")
            if not post_id:
                raise PlatformError(ErrorKind.AMBIGUOUS,
                                    "facebook feed: the answer names no post (checking)")
        return Published(post_id, self._permalink(post_id))

    def _photo(self, page: str, item: Media, *, published: bool,
               caption: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if caption:
            data["caption"] = caption
        if item.alt:
            data["alt_text_custom"] = item.alt
        if not published:
            data["published"] = False
        if is_url(item.path):
            data["url"] = item.path
            return self.graph().post(f"{page}/photos", data, is_create=published)
        path, content = read_media(item, "facebook: cannot read")
        mime = image_mime(item) or "application/octet-stream"
        files = {"source": (path.name, content, mime)}
        return self.graph().post(f"{page}/photos", data, files=files, is_create=published)

    def _permalink(self, post_id: str) -> str:
        """The post's address. A failed read must never fail a post that is live."""
        try:
            body = self.graph().get(post_id, {"fields": "permalink_url"})
            url = body.get("permalink_url")
            if isinstance(url, str) and url.startswith("https://"):
                return url
        except PlatformError:
            pass
        return f"https://www.facebook.com/{post_id}"

    # -- after an unknown outcome ---------------------------------------------------
    def reconcile(self, job: Job) -> Reconciled:
        page = self._page_id()
        since = int(job.ref.get("since") or epoch(job.created_at or self.clock()))
        body = self.graph().get(f"{page}/published_posts", {
            "fields": "id,message,created_time,permalink_url",
            "since": since - int(RECONCILE_SLACK.total_seconds()), "limit": RECENT_LIMIT})
        posts = [p for p in body.get("data") or [] if isinstance(p, dict)]
        if not job.text.strip():
            captionless = [p for p in posts if not (p.get("message") or "").strip()]
            if captionless:
                return Reconciled(Verdict.CANNOT_TELL, None,
                                  "a post without text was published since the attempt; "
                                  "cannot tell whether it is this one")
            return Reconciled(Verdict.NOT_POSTED, None, "no post since the attempt")
        for post in posts:
            if same_text(post.get("message"), job.text):
                post_id = str(post.get("id"))
                url = post.get("permalink_url")
                return Reconciled(Verdict.POSTED, Published(
                    post_id, url if isinstance(url, str) else f"https://www.facebook.com/"
                    f"{post_id}"), f"post {post_id} has the job's text")
        if len(posts) >= RECENT_LIMIT:
            return Reconciled(Verdict.CANNOT_TELL, None,
                              f"more than {RECENT_LIMIT} posts since the attempt")
        return Reconciled(Verdict.NOT_POSTED, None,
                          f"none of the Page's {len(posts)} post(s) since the attempt has "
                          "the job's text")

    # -- login --------------------------------------------------------------------------
    @classmethod
    def login_spec(cls, options: dict[str, str]) -> OAuthPlatform:
        check_options(cls.platform, options, ("page",))
        return cls.oauth

    def after_login(self, options: dict[str, str]) -> Refreshed:
        return page_login(self, options, version=DEFAULT_VERSION, instagram=False)

    # -- accounts check -------------------------------------------------------------
    def check(self) -> AccountInfo:
        body = self.graph().get(self._page_id(), {"fields": "id,name,link"})
        name = str(body.get("name") or self.credentials.get("page_name") or self._page_id())
        link = body.get("link")
        return AccountInfo(display=f"Page {name}",
                           url=link if isinstance(link, str) else None,
                           details={"page_id": str(body.get("id") or self._page_id()),
                                    "graph_version": self.version})

    def _page_id(self) -> str:
        return self._field("page_id")


ADAPTER = FacebookAdapter
