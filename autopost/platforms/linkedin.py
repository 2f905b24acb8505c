"""LinkedIn: posts through the Posts API (/rest/posts), images through the Images API.

Credentials: the app's "client_id" and "client_secret", then `autopost accounts login
NAME` (oauth.py; LinkedIn's web apps take no PKCE) stores the tokens and the "author":
the member who logged in (GET /v2/userinfo, OpenID scopes), or with `--organization ID`
a page that member administers (asking w_organization_social too). A script may give
"access_token" (and "expires_at", "author") directly; without "author", the token's
member is asked for once at `accounts add`. LinkedIn gives refresh tokens only to
approved partner apps; where one exists, runs refresh with it.

Every request carries `LinkedIn-Version: YYYYMM` and `X-Restli-Protocol-Version: 2.0.0`.
The version is a setting (`[platforms.linkedin] api_version`, or
AUTOPOST_LINKEDIN_API_VERSION), default DEFAULT_VERSION. LinkedIn serves a version for
about a year: a retired one answers 426 NONEXISTENT_VERSION, which fails the job with a
message naming the setting, and `autopost status` warns from 10 months on.
DEFAULT_VERSION was last checked against LinkedIn's versioning table in 2026-11.

Text is LinkedIn's "little" format: the reserved characters are escaped with a
backslash, so the post shows exactly what was written (an unescaped one can silently cut
the post short while the API reports success). At most 3,000 characters.

Images: `initializeUpload` (owner = the author), one PUT of the whole file to the
upload URL it returns, then the post refers to the image URN; 2 to 20 images make a
multi-image post. Alt text goes with each image.

Never twice: LinkedIn has no idempotency key. Before the create, `first_sent_at` and the
number of sends are saved in the job's ref. The new post's URN comes from the
`x-restli-id` header. `422 DUPLICATE_POST` names the post that already has this text: if
this job was sent before, that post is taken to be ours (posted); on a first send it is
someone else's (failed). After an unknown outcome, reconcile reads the author's recent
posts once (it needs r_member_social or r_organization_social): a post with the same
text made since the first send is ours; a read that covers the whole time since the
first send and finds nothing means not posted; anything else (the read refused, too
many posts) cannot tell, and the job waits for `autopost resolve`.

Tokens last 60 days. `status` warns a week before the expiry, naming
`autopost accounts login NAME`; where a refresh token exists it is used instead.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from autopost.errors import UsageError
from autopost.models import Account, ErrorKind, Job, Media
from autopost.oauth import OAuthAdapter, OAuthPlatform
from autopost.platforms import http
from autopost.platforms.base import (
    AccountInfo,
    PlatformError,
    Published,
    Reconciled,
    Refreshed,
    SaveRef,
    Verdict,
    platform_options,
)
from autopost.platforms.imageinfo import read_image_info
from autopost.platforms.options import Option
from autopost.timeparse import format_utc

DEFAULT_VERSION = "202603"
VERSION_SETTING = "[platforms.linkedin] api_version in config.toml (or " \
                  "AUTOPOST_LINKEDIN_API_VERSION)"
# A version older than this gets a warning in `status` (LinkedIn serves about 12 months).
VERSION_WARN_AGE = timedelta(days=305)
TOKEN_WARN_AHEAD = timedelta(days=7)
TEXT_LIMIT = 3000
MAX_IMAGES = 20
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif")
VISIBILITIES = ("PUBLIC", "CONNECTIONS", "LOGGED_IN")
OAUTH_ORIGIN = "https://www.linkedin.com"
FEED_URL = "https://www.linkedin.com/feed/update/"

RESERVED = frozenset("\\|{}@[]()<>#*_~")
_AUTHOR = re.compile(r"^urn:li:(person|organization):[A-Za-z0-9_-]+$")
_POST_URN = re.compile(r"urn:li:(?:share|ugcPost):[0-9]+")
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


def escape(text: str) -> str:
    """Text as LinkedIn's little format shows it literally."""
    return "".join("\\" + c if c in RESERVED else c for c in text)


def unescape(commentary: str) -> str:
    return _ESCAPED.sub(r"\1", commentary)


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text or "").split())


def version_date(version: str) -> datetime | None:
    m = re.fullmatch(r"(\d{4})(\d{2})(?:\.\d{2})?", version or "")
    if not m or not 1 <= int(m.group(2)) <= 12:
        return None
    return datetime(int(m.group(1)), int(m.group(2)), 1, tzinfo=UTC)


def next_midnight_utc(now: datetime) -> datetime:
    day = now.astimezone(UTC).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(minutes=1)


def _options(options: dict[str, Any]) -> dict[str, Any]:
    return platform_options(options or {}, "linkedin")


def _visibility(opts: dict[str, Any]) -> str:
    value = opts.get("visibility")
    if value in (None, ""):
        return "PUBLIC"
    if not isinstance(value, str) or value.upper() not in VISIBILITIES:
        raise UsageError(f"linkedin visibility must be one of {', '.join(VISIBILITIES)}")
    return value.upper()


def _check_image(item: Media) -> str:
    try:
        info = read_image_info(item.path)
    except OSError as exc:
        raise UsageError(f"media {item.path}: cannot read ({exc.strerror})") from None
    if info is None or info.mime not in IMAGE_TYPES:
        raise UsageError(f"media {Path(item.path).name}: linkedin takes JPEG, PNG or GIF "
                         "images (checked by content)")
    return info.mime


MEMBER_SCOPES = ("openid", "profile", "w_member_social")
OAUTH = OAuthPlatform(
    authorize_url=f"{OAUTH_ORIGIN}/oauth/v2/authorization",
    token_url=f"{OAUTH_ORIGIN}/oauth/v2/accessToken",
    scopes=MEMBER_SCOPES,
    # LinkedIn's standard (web) apps take no PKCE and authenticate with the secret in the
    # form; refresh tokens come only to approved partner apps.
    pkce=False, client="confidential", token_auth="body",
    default_lifetime=60 * 86400)


class LinkedInAdapter(OAuthAdapter):
    platform = "linkedin"
    default_base_url = "https://api.linkedin.com"
    oauth = OAUTH
    optional_fields = (*OAuthAdapter.optional_fields, "author")
    text_limit = TEXT_LIMIT
    max_media = MAX_IMAGES
    options = (
        Option("visibility", "choice", "who sees the post", choices=VISIBILITIES),
        Option("disable_reshare", "bool", "others may not reshare the post"),
    )

    # How far before our first send a post found by read-back may be dated.
    readback_margin: ClassVar[timedelta] = timedelta(minutes=2)
    readback_count: ClassVar[int] = 50

    # -- add time -------------------------------------------------------------------
    @classmethod
    def validate(cls, text: str, media: tuple[Media, ...], options: dict[str, Any]) -> None:
        super().validate(text, media, options)
        _visibility(_options(options))
        for item in media:
            _check_image(item)

    @classmethod
    def check_credentials(cls, credentials: dict[str, Any]) -> None:
        super().check_credentials(credentials)
        author = credentials.get("author")
        if author is not None and not (isinstance(author, dict) or (
                isinstance(author, str) and _AUTHOR.match(author))):
            raise UsageError("linkedin author must be urn:li:person:ID or "
                             "urn:li:organization:ID")

    @classmethod
    def status_warnings(cls, account: Account, policy: Any, now: datetime) -> list[str]:
        warnings = []
        version = getattr(policy, "api_version", None) or DEFAULT_VERSION
        released = version_date(version)
        if released is not None and now - released > VERSION_WARN_AGE:
            warnings.append(
                f"account {account.name}: LinkedIn-Version {version} is "
                f"{(now - released).days // 30} months old; LinkedIn retires versions after "
                f"about a year (then every post fails): set {VERSION_SETTING} to a newer "
                "YYYYMM")
        expires = account.token_expires_at
        creds = account.credentials
        if expires is not None and not creds.get("refresh_token"):
            login = f"run 'autopost accounts login {account.name}'"
            if expires <= now:
                warnings.append(f"account {account.name}: the LinkedIn token expired "
                                f"{format_utc(expires)}; {login}")
            elif expires - now <= TOKEN_WARN_AHEAD:
                days = max(1, round((expires - now).total_seconds() / 86400))
                warnings.append(f"account {account.name}: the LinkedIn token expires "
                                f"{format_utc(expires)} (in {days} day(s)); {login}")
        return warnings

    # -- HTTP -----------------------------------------------------------------------
    @property
    def version(self) -> str:
        return getattr(self.policy, "api_version", None) or DEFAULT_VERSION

    def _secrets(self) -> list[str]:
        return self.secrets()

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {**self.bearer(), "LinkedIn-Version": self.version,
                   "X-Restli-Protocol-Version": "2.0.0"}
        headers.update(extra or {})
        return headers

    def _request(self, method: str, url: str, *, is_create: bool = False,
                 ok: tuple[int, ...] = (200,), restli: bool = True,
                 **kwargs: Any) -> httpx.Response:
        # Every URL, the upload URLs LinkedIn hands out included, goes through --base-url.
        url = self.url(url)
        headers = self._headers(kwargs.pop("headers", None)) if restli else {
            **self.bearer(), **(kwargs.pop("headers", None) or {})}
        client = self._client()
        request = client.build_request(method, url, headers=headers, **kwargs)
        response = http.send(client, request, is_create=is_create, redact=self._secrets())
        if response.status_code not in ok:
            raise self._error(response, is_create=is_create)
        return response

    def _error(self, response: httpx.Response, *, is_create: bool) -> PlatformError:
        status = response.status_code
        body = http.json_body(response)
        code = body.get("code") if isinstance(body, dict) else None
        kind = http.classify_status(status, is_create=is_create)
        message = f"linkedin: {http.error_message(response)}"
        retry = None
        if status == 426 or code == "NONEXISTENT_VERSION":
            kind = ErrorKind.INVALID
            message = (f"linkedin: LinkedIn-Version {self.version} is not served any more "
                       f"(426 NONEXISTENT_VERSION); set {VERSION_SETTING} to a current "
                       "version (YYYYMM, e.g. this month's) and retry the job")
            code = "NONEXISTENT_VERSION"
        elif status == 401:
            kind = ErrorKind.AUTH_EXPIRED
            message += (" (LinkedIn tokens last 60 days; run 'autopost accounts login "
                        f"{self.account.name}')")
        elif status == 403:
            kind = ErrorKind.INVALID
            message += (" (the token lacks the permission: w_member_social for a member, "
                        "w_organization_social and an admin role for a page)")
        elif status == 422 and (existing := _duplicate_of(body)) is not None:
            kind = ErrorKind.DUPLICATE
            code = "DUPLICATE_POST"
            message = ("linkedin: HTTP 422 DUPLICATE_POST: the same text is already posted"
                       + (f" as {existing}" if existing else ""))
        elif status == 429:
            # Daily limits reset at midnight UTC; LinkedIn sends no reset header.
            retry = http.retry_at(response, self.clock()) or next_midnight_utc(self.clock())
        elif status < 400:
            kind = ErrorKind.INVALID
            message += " (unexpected answer; check the account's --base-url)"
        return PlatformError(kind, http.redacted(message, self._secrets()),
                             http_status=status, retry_at=retry, code=code)

    # -- author -----------------------------------------------------------------------
    def author(self) -> str:
        author = self.credentials.get("author")
        if isinstance(author, str) and author:
            return author
        return self._member()

    def _member(self) -> str:
        body = http.json_body(self._request("GET", "/v2/userinfo", restli=False))
        sub = body.get("sub") if isinstance(body, dict) else None
        if not isinstance(sub, str) or not sub:
            raise PlatformError(ErrorKind.SERVER, "linkedin: /v2/userinfo gave no member id")
        self.credentials["author"] = f"urn:li:person:{sub}"
        return self.credentials["author"]

    def setup(self) -> Refreshed | None:
        """With a token given directly: ask once who it belongs to and store the author."""
        stored = dict(self.account.credentials)
        if stored.get("author") or not self.credentials.get("access_token"):
            return None  # the author comes with `accounts login`
        stored["author"] = self._member()
        return Refreshed(stored, None)

    @classmethod
    def login_spec(cls, options: dict[str, str]) -> OAuthPlatform:
        if options.get("organization"):
            from dataclasses import replace

            return replace(OAUTH, scopes=(*MEMBER_SCOPES, "w_organization_social"))
        return OAUTH

    def after_login(self, options: dict[str, str]) -> dict[str, Any]:
        """The author the posts go out as: the member who logged in, or with
        --organization a page that member administers."""
        unknown = sorted(set(options) - {"organization"})
        if unknown:
            raise UsageError(f"linkedin login takes no {', '.join(unknown)}")
        org = (options.get("organization") or "").strip()
        member = self._member()
        if not org:
            return {"author": member}
        urn = org if org.startswith("urn:li:organization:") else f"urn:li:organization:{org}"
        if not _AUTHOR.match(urn):
            raise UsageError(f"--organization {org!r}: expected a page id or "
                             "urn:li:organization:ID")
        try:
            body = http.json_body(self._request(
                "GET", "/rest/organizationAcls?q=roleAssignee&role=ADMINISTRATOR"
                "&state=APPROVED"))
        except PlatformError as exc:
            if exc.http_status == 403:  # the app may not read roles; posting will tell
                return {"author": urn}
            raise
        pages = {str(e.get("organization")) for e in (body or {}).get("elements") or []
                 if isinstance(e, dict)}
        if urn not in pages:
            raise UsageError(f"--organization: the member who logged in does not "
                             f"administer {urn}")
        return {"author": urn}

    # -- publish ------------------------------------------------------------------------
    def publish(self, job: Job, save_ref: SaveRef) -> Published:
        opts = _options(job.options)
        try:
            visibility = _visibility(opts)
        except UsageError as exc:
            raise PlatformError(ErrorKind.INVALID, f"linkedin: {exc}") from None
        if len(job.text) > TEXT_LIMIT:
            raise PlatformError(ErrorKind.INVALID, f"linkedin: text is {len(job.text)} "
                                                   f"characters; LinkedIn allows {TEXT_LIMIT}")
        author = self.author()
        images = [(self._upload(item, author), item.alt) for item in job.media]

        ref = dict(job.ref)
        ref.setdefault("first_sent_at", format_utc(self.clock()))
        ref["sends"] = int(ref.get("sends") or 0) + 1
        ref["author"] = author
        save_ref(ref)

        body: dict[str, Any] = {
            "author": author,
            "commentary": escape(job.text),
            "visibility": visibility,
            "distribution": {"feedDistribution": "MAIN_FEED", "targetEntities": [],
                             "thirdPartyDistributionChannels": []},
            "lifecycleState": "PUBLISHED",
            "isReshareDisabledByAuthor": bool(opts.get("disable_reshare", False)),
        }
        if len(images) == 1:
            body["content"] = {"media": _image(*images[0])}
        elif images:
            body["content"] = {"multiImage": {"images": [_image(*i) for i in images]}}
        try:
            response = self._request("POST", "/rest/posts", is_create=True, ok=(201,),
                                     json=body)
        except PlatformError as exc:
            if exc.kind == ErrorKind.DUPLICATE:
                return self._duplicate(job, ref, exc, save_ref)
            raise
        urn = response.headers.get("x-restli-id") or response.headers.get("x-linkedin-id")
        if not urn:
            raise PlatformError(ErrorKind.AMBIGUOUS, "linkedin: the create answered "
                                f"{response.status_code} without an x-restli-id header",
                                http_status=response.status_code)
        return Published(post_id=urn, url=FEED_URL + urn)

    def _duplicate(self, job: Job, ref: dict[str, Any], exc: PlatformError,
                   save_ref: SaveRef) -> Published:
        """422 DUPLICATE_POST: ours when this job was sent before, else someone else's."""
        urn = _POST_URN.search(exc.message)
        if urn and ref["sends"] > 1:
            return Published(post_id=urn.group(0), url=FEED_URL + urn.group(0),
                             note=f"LinkedIn called the resend a duplicate of {urn.group(0)}, "
                                  "this job's earlier send")
        if urn:
            save_ref({**ref, "duplicate_of": urn.group(0)})
        raise PlatformError(ErrorKind.DUPLICATE, exc.message, http_status=exc.http_status,
                            code="DUPLICATE_POST")

    def _upload(self, item: Media, owner: str) -> str:
        try:
            data = Path(item.path).read_bytes()
        except OSError as exc:
            raise PlatformError(ErrorKind.INVALID, f"linkedin: cannot read media "
                                                   f"{item.path}: {exc.strerror}") from None
        try:
            mime = _check_image(item)
        except UsageError as exc:
            raise PlatformError(ErrorKind.INVALID, f"linkedin: {exc}") from None
        response = self._request("POST", "/rest/images?action=initializeUpload",
                                 json={"initializeUploadRequest": {"owner": owner}})
        body = http.json_body(response)
        value = body.get("value") if isinstance(body, dict) else None
        if not isinstance(value, dict) or not value.get("uploadUrl") or not value.get("image"):
            raise PlatformError(ErrorKind.SERVER,
                                "linkedin: initializeUpload gave no uploadUrl or image")
        # One PUT of the whole file: LinkedIn keeps only the last PUT to an upload URL.
        self._request("PUT", str(value["uploadUrl"]), ok=(200, 201), restli=False,
                      content=data, headers={"Content-Type": mime})
        return str(value["image"])

    # -- reconcile ------------------------------------------------------------------------
    def reconcile(self, job: Job) -> Reconciled:
        ref = job.ref or {}
        first = http.parse_time(ref.get("first_sent_at"))
        if first is None:
            return Reconciled(Verdict.NOT_POSTED, None, "the post was never sent")
        duplicate = ref.get("duplicate_of")
        if duplicate and int(ref.get("sends") or 0) <= 1:
            return Reconciled(Verdict.NOT_POSTED, None,
                              f"LinkedIn called it a duplicate of {duplicate}, which was there "
                              "before this job's first send")
        author = str(ref.get("author") or self.credentials.get("author") or "")
        if not author:
            return Reconciled(Verdict.CANNOT_TELL, None, "the post's author is not known")
        try:
            posts = self._recent_posts(author)
        except PlatformError as exc:
            return Reconciled(Verdict.CANNOT_TELL, None, (
                f"LinkedIn would not list the author's posts ({exc.message}); reading them "
                "needs r_member_social or r_organization_social"))
        since = first - self.readback_margin
        want = normalise(job.text)
        oldest = None
        for post in posts:
            created = post.get("createdAt")
            if not isinstance(created, int | float):
                continue
            at = datetime.fromtimestamp(created / 1000, UTC)
            oldest = at if oldest is None or at < oldest else oldest
            if at < since:
                continue
            text = normalise(unescape(str(post.get("commentary") or "")))
            if text == want and post.get("id"):
                urn = str(post["id"])
                return Reconciled(Verdict.POSTED, Published(post_id=urn, url=FEED_URL + urn),
                                  f"found {urn} among the author's posts")
        if len(posts) < self.readback_count or (oldest is not None and oldest < since):
            return Reconciled(Verdict.NOT_POSTED, None,
                              "no post with this text among the author's posts since the "
                              "first send")
        return Reconciled(Verdict.CANNOT_TELL, None, (
            f"more than {self.readback_count} posts since the first send; check the "
            "author's page by hand"))

    def _recent_posts(self, author: str) -> list[dict[str, Any]]:
        # Rest.li 2.0 wants the URN in a query parameter percent-encoded.
        query = (f"q=author&author={quote(author, safe='')}&count={self.readback_count}"
                 "&sortBy=CREATED")
        response = self._request("GET", f"/rest/posts?{query}",
                                 headers={"X-RestLi-Method": "FINDER"})
        body = http.json_body(response)
        elements = body.get("elements") if isinstance(body, dict) else None
        if not isinstance(elements, list):
            raise PlatformError(ErrorKind.SERVER, "linkedin: unreadable list of posts")
        return [e for e in elements if isinstance(e, dict)]

    # -- accounts check / refresh -----------------------------------------------------------
    def check(self) -> AccountInfo:
        body = http.json_body(self._request("GET", "/v2/userinfo", restli=False))
        if not isinstance(body, dict) or not body.get("sub"):
            raise PlatformError(ErrorKind.SERVER, "linkedin: /v2/userinfo gave no member id")
        author = self.credentials.get("author") or f"urn:li:person:{body['sub']}"
        name = body.get("name") or body.get("given_name") or body["sub"]
        return AccountInfo(display=f"{name} (posting as {author})",
                           token_expires_at=http.parse_time(self.credentials.get("expires_at")),
                           details={"member": f"urn:li:person:{body['sub']}",
                                    "author": author, "api_version": self.version})


def _image(urn: str, alt: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {"id": urn}
    if alt:
        item["altText"] = alt
    return item


def _duplicate_of(body: Any) -> str | None:
    """The existing post a 422 DUPLICATE_POST names, or None if it is not one."""
    if not isinstance(body, dict):
        return None
    details = body.get("errorDetails") or {}
    errors = details.get("inputErrors") if isinstance(details, dict) else None
    for error in errors if isinstance(errors, list) else []:
        if isinstance(error, dict) and error.get("code") == "DUPLICATE_POST":
            found = _POST_URN.search(str(error.get("description") or "")
                                     + " " + str(body.get("message") or ""))
            return found.group(0) if found else ""
    if body.get("code") == "DUPLICATE_POST":
        found = _POST_URN.search(str(body.get("message") or ""))
        return found.group(0) if found else ""
    return None


ADAPTER = LinkedInAdapter
