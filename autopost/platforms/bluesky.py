"""Bluesky (AT Protocol): posts as app.bsky.feed.post records in the account's repo on
its PDS.

Credentials as the operator gives them: {"identifier": handle or DID, "password": app
password}. `accounts add` logs in once (createSession) and stores the session beside
them: access_jwt, refresh_jwt, did, handle. Runs reuse the access token; when it has
expired (HTTP 400 ExpiredToken, not 401) the engine asks refresh(), which spends the
refresh token (refreshSession rotates both tokens) and logs in with the password only
when the refresh token itself is refused. The PDS allows 30 logins per 5 minutes and
300 a day per account, so a run never logs in just because it started.

Never twice: each job's record key is a TID derived from the job itself, so every
attempt, in any process, writes the same key. After an unknown outcome, getRecord on
that key tells whether the post exists. A second create on an existing key is refused
with a bare 500, which is why a 500 on create is ambiguous, never a plain retry.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from autopost.errors import UsageError
from autopost.models import ErrorKind, Job, Media
from autopost.platforms import http
from autopost.platforms.atproto import (
    facet,
    find_spans,
    grapheme_count,
    job_record_key,
    jwt_expiry,
    link_feature,
    mention_feature,
    tag_feature,
    utf8_len,
)
from autopost.platforms.base import (
    AccountInfo,
    Adapter,
    PlatformError,
    Published,
    Reconciled,
    Refreshed,
    SaveRef,
    Verdict,
)
from autopost.platforms.imageinfo import ImageInfo, read_image_info
from autopost.platforms.options import Option

POST = "app.bsky.feed.post"
MAX_TEXT_BYTES = 3000
MAX_IMAGE_BYTES = 1_000_000  # app.bsky.embed.images#image: the PDS refuses bigger blobs
MAX_LANGS = 3
SESSION_FIELDS = ("access_jwt", "refresh_jwt", "did", "handle")
# Error names that mean the token (not the account) is the problem.
TOKEN_ERRORS = ("ExpiredToken", "InvalidToken")
# Error names that mean the account itself cannot be used.
ACCOUNT_ERRORS = ("AccountTakedown", "AccountDeactivated", "AccountSuspended")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_LANG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")


class BlueskyAdapter(Adapter):
    platform = "bluesky"
    default_base_url = "https://bsky.social"
    required_fields = ("identifier", "password")
    optional_fields = SESSION_FIELDS
    secret_fields = ("password", "access_jwt", "refresh_jwt")
    text_limit = 300
    max_media = 4
    options = (
        Option("langs", "list", "the post's languages, e.g. en,pt-BR (at most 3)",
               max_length=3, pattern=r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*"),
    )
    refreshable = True
    supports_replies = True

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._dids: dict[str, str | None] = {}

    # -- add time -------------------------------------------------------------------
    @classmethod
    def text_length(cls, text: str) -> int:
        return grapheme_count(text)

    @classmethod
    def validate(cls, text: str, media: tuple[Media, ...], options: dict[str, Any]) -> None:
        n = cls.text_length(text)
        if n > 300:
            raise UsageError(f"text is {n} graphemes; bluesky allows 300")
        size = utf8_len(text)
        if size > MAX_TEXT_BYTES:
            raise UsageError(f"text is {size} bytes in UTF-8; bluesky allows {MAX_TEXT_BYTES}")
        super().validate(text, media, options)
        for item in media:
            _check_image(item)
        langs(options)

    # -- at `accounts add` ----------------------------------------------------------
    def setup(self) -> Refreshed:
        """Log in once; store the session beside the credentials as the operator gave
        them (an {"env": VAR} reference stays a reference)."""
        fresh = self._login()
        return Refreshed({**self.account.credentials, **fresh.credentials},
                         fresh.token_expires_at)

    # -- tokens ---------------------------------------------------------------------
    def refresh(self) -> Refreshed:
        token = self.credentials.get("refresh_jwt")
        if token:
            try:
                body = self._xrpc("POST", "com.atproto.server.refreshSession", token=token)
                return _session(body)
            except PlatformError as exc:
                if exc.kind != ErrorKind.AUTH_EXPIRED:
                    raise
                # The refresh token is expired or revoked: only now log in again.
        return self._login()

    def _login(self) -> Refreshed:
        identifier = self.credentials.get("identifier")
        password = self.credentials.get("password")
        if not identifier or not password:
            raise PlatformError(ErrorKind.AUTH_REVOKED,
                                "bluesky: no identifier and password to log in with; "
                                "re-add the account")
        try:
            body = self._xrpc("POST", "com.atproto.server.createSession",
                              json={"identifier": identifier, "password": password})
        except PlatformError as exc:
            if exc.kind in (ErrorKind.AUTH_EXPIRED, ErrorKind.INVALID):
                raise PlatformError(
                    ErrorKind.AUTH_REVOKED,
                    f"{exc.message} (login refused: re-add the account with a valid app "
                    "password)", http_status=exc.http_status, code=exc.code) from None
            raise
        return _session(body)

    # -- posting --------------------------------------------------------------------
    def publish(self, job: Job, save_ref: SaveRef) -> Published:
        did = self._did()
        record: dict[str, Any] = {"$type": POST, "text": job.text}
        facets = self._facets(job.text)
        if facets:
            record["facets"] = facets
        languages = langs(job.options)
        if languages:
            record["langs"] = languages
        if job.media:
            record["embed"] = self._embed(job.media)
        if job.reply is not None:
            # A reply names the thread's first post (root) and the post it answers
            # (parent), each as a strong ref: the record's URI and its content hash.
            record["reply"] = {"root": self._strong_ref(job.reply.root.post_id),
                               "parent": self._strong_ref(job.reply.parent.post_id)}
        rkey = job.ref.get("rkey") or job_record_key(job)
        record["createdAt"] = self._created_at(job)
        save_ref({"rkey": rkey, "created_at": record["createdAt"]})
        body = self._xrpc("POST", "com.atproto.repo.createRecord", is_create=True, auth=True,
                          json={"repo": did, "collection": POST, "rkey": rkey,
                                "record": record})
        uri = body.get("uri") or f"at://{did}/{POST}/{rkey}"
        return Published(post_id=uri, url=self._post_url(rkey))

    def _created_at(self, job: Job) -> str:
        """The record's createdAt. A resend after an unknown outcome repeats the earlier
        request's value, so every request that may have made the record carries the same
        record; any other attempt is stamped now (a post that waited for a re-login or
        a rate limit is not dated back to its first try)."""
        saved = job.ref.get("created_at")
        if saved and job.last_error_kind in (ErrorKind.AMBIGUOUS, ErrorKind.DUPLICATE):
            return str(saved)
        return _timestamp(self.clock())

    def _facets(self, text: str) -> list[dict[str, Any]]:
        facets = []
        for span in find_spans(text):
            if span.kind == "link":
                facets.append(facet(span, link_feature(span.value)))
            elif span.kind == "tag":
                facets.append(facet(span, tag_feature(span.value)))
            else:
                did = self._resolve_handle(span.value)
                if did:
                    facets.append(facet(span, mention_feature(did)))
        return facets

    def _resolve_handle(self, handle: str) -> str | None:
        """The DID behind a handle; None when the handle does not resolve."""
        handle = handle.lower()
        if handle not in self._dids:
            try:
                body = self._xrpc("GET", "com.atproto.identity.resolveHandle",
                                  params={"handle": handle})
            except PlatformError as exc:
                if exc.kind != ErrorKind.INVALID:
                    raise
                body = {}
            did = body.get("did")
            self._dids[handle] = did if isinstance(did, str) and did.startswith("did:") else None
        return self._dids[handle]

    def _embed(self, media: tuple[Media, ...]) -> dict[str, Any]:
        images = []
        for item in media:
            path = Path(item.path).expanduser()
            info = _check_image(item)
            blob = self._xrpc("POST", "com.atproto.repo.uploadBlob", auth=True,
                              content=path.read_bytes(),
                              headers={"Content-Type": info.mime}).get("blob")
            if not isinstance(blob, dict):
                raise PlatformError(ErrorKind.SERVER, "bluesky uploadBlob: no blob in the answer")
            image: dict[str, Any] = {"alt": item.alt or "", "image": blob}
            if info.width and info.height:
                image["aspectRatio"] = {"width": info.width, "height": info.height}
            images.append(image)
        return {"$type": "app.bsky.embed.images", "images": images}

    def _strong_ref(self, uri: str) -> dict[str, str]:
        """{"uri", "cid"} of a post of ours (a thread's earlier part), from getRecord."""
        parts = uri.removeprefix("at://").split("/")
        if len(parts) != 3 or not uri.startswith("at://"):
            raise PlatformError(ErrorKind.INVALID, f"bluesky: cannot reply to {uri!r} "
                                                   "(not an at:// record URI)")
        try:
            body = self._xrpc("GET", "com.atproto.repo.getRecord",
                              params={"repo": parts[0], "collection": parts[1],
                                      "rkey": parts[2]})
        except PlatformError as exc:
            if exc.code == "RecordNotFound":
                raise PlatformError(ErrorKind.INVALID, f"bluesky: the post this part replies "
                                                       f"to ({uri}) is gone") from None
            raise
        cid = body.get("cid")
        if not isinstance(cid, str) or not cid:
            raise PlatformError(ErrorKind.SERVER, f"bluesky getRecord {uri}: no cid")
        return {"uri": str(body.get("uri") or uri), "cid": cid}

    # -- after an unknown outcome ---------------------------------------------------
    def reconcile(self, job: Job) -> Reconciled:
        rkey = job.ref.get("rkey") or job_record_key(job)
        try:
            body = self._xrpc("GET", "com.atproto.repo.getRecord",
                              params={"repo": self._did(), "collection": POST, "rkey": rkey})
        except PlatformError as exc:
            if exc.code == "RecordNotFound":
                return Reconciled(Verdict.NOT_POSTED, None, f"no record {rkey}")
            raise
        value = body.get("value") if isinstance(body.get("value"), dict) else {}
        if value.get("text") != job.text:
            return Reconciled(Verdict.CANNOT_TELL, None,
                              f"record {rkey} exists but holds another text")
        uri = body.get("uri") or f"at://{self._did()}/{POST}/{rkey}"
        return Reconciled(Verdict.POSTED, Published(uri, self._post_url(rkey)),
                          f"record {rkey} exists")

    # -- accounts check -------------------------------------------------------------
    def check(self) -> AccountInfo:
        self._access_token()
        body = self._xrpc("GET", "com.atproto.server.getSession", auth=True)
        handle = str(body.get("handle") or self.credentials.get("handle") or "")
        did = str(body.get("did") or self.credentials.get("did") or "")
        if body.get("active") is False:
            raise PlatformError(ErrorKind.AUTH_REVOKED,
                                f"bluesky account {handle or did} is not active "
                                f"({body.get('status') or 'deactivated'})")
        return AccountInfo(
            display=handle or did,
            url=f"https://bsky.app/profile/{handle or did}",
            token_expires_at=jwt_expiry(self.credentials.get("access_jwt")),
            details={"did": did, "pds": self.base_url})

    # -- HTTP -----------------------------------------------------------------------
    def _did(self) -> str:
        return str(self.credentials.get("did") or self.credentials["identifier"])

    def _post_url(self, rkey: str) -> str:
        who = self.credentials.get("handle") or self._did()
        return f"https://bsky.app/profile/{who}/post/{rkey}"

    def _access_token(self) -> str:
        token = self.credentials.get("access_jwt")
        if not token:
            # No session stored (e.g. the account was added without one): the engine's
            # refresh logs in once and stores it.
            raise PlatformError(ErrorKind.AUTH_EXPIRED, "bluesky: no session yet; logging in")
        return str(token)

    def _secrets(self) -> list[str]:
        return http.secret_values(self.credentials, self.secret_fields)

    def _redact(self, text: str) -> str:
        return _JWT.sub("[redacted]", http.redacted(text, self._secrets()))

    def _xrpc(self, method: str, nsid: str, *, auth: bool = False, token: str | None = None,
              is_create: bool = False, **kwargs: Any) -> dict[str, Any]:
        headers = dict(kwargs.pop("headers", None) or {})
        if auth:
            token = self._access_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        client = self._client()
        request = client.build_request(method, f"{self.base_url}/xrpc/{nsid}",
                                       headers=headers, **kwargs)
        try:
            response = http.send(client, request, is_create=is_create, redact=self._secrets())
        except PlatformError as exc:
            exc.message = self._redact(f"bluesky {nsid}: {exc.message}")
            exc.args = (exc.message,)
            raise
        if response.is_success:
            body = http.json_body(response)
            return body if isinstance(body, dict) else {}
        raise self._error(nsid, response, is_create=is_create)

    def _error(self, nsid: str, response: httpx.Response, *, is_create: bool) -> PlatformError:
        status = response.status_code
        body = http.json_body(response)
        code = body.get("error") if isinstance(body, dict) else None
        code = code if isinstance(code, str) else None
        kind = classify(status, code, is_create=is_create)
        message = self._redact(f"bluesky {nsid}: {http.error_message(response, _pick)}")
        if kind == ErrorKind.AMBIGUOUS:
            message += " (the record may exist: checking before any retry)"
        retry = rate_limit_reset(response, self.clock()) if status == 429 else None
        return PlatformError(kind, message, http_status=status, retry_at=retry, code=code)


def classify(status: int, code: str | None, *, is_create: bool) -> ErrorKind:
    """Bluesky's status and error name -> what went wrong."""
    if code in TOKEN_ERRORS:
        return ErrorKind.AUTH_EXPIRED  # 400 on the reference PDS, not 401
    if code in ACCOUNT_ERRORS:
        return ErrorKind.AUTH_REVOKED
    return http.classify_status(status, is_create=is_create)


def rate_limit_reset(response: httpx.Response, now: datetime) -> datetime | None:
    """RateLimit-Reset (epoch seconds) and Retry-After, whichever is later; failing both,
    the window of RateLimit-Policy ("30;w=300")."""
    at = http.retry_at(response, now, reset_headers=("ratelimit-reset", "x-ratelimit-reset"))
    if at is None:
        match = re.search(r";\s*w=(\d+)", response.headers.get("ratelimit-policy", ""))
        if match:
            at = now + timedelta(seconds=int(match.group(1)))
    return at


def langs(options: dict[str, Any]) -> list[str]:
    """The post's languages from options["langs"]: a list or a comma-separated string."""
    value = options.get("langs")
    if value in (None, "", []):
        return []
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
        raise UsageError("bluesky langs must be language tags, e.g. en or pt-BR")
    tags = [v.strip() for v in items if v.strip()]
    if len(tags) > MAX_LANGS:
        raise UsageError(f"bluesky takes at most {MAX_LANGS} languages per post")
    bad = [t for t in tags if not _LANG.match(t)]
    if bad:
        raise UsageError(f"not a language tag: {bad[0]!r} (e.g. en, de, pt-BR)")
    return tags


def _check_image(item: Media) -> ImageInfo:
    path = Path(item.path).expanduser()
    try:
        size = path.stat().st_size
        info = read_image_info(path) if path.is_file() else None
    except OSError as exc:
        raise UsageError(f"{item.path}: {exc.strerror}") from None
    if info is None:
        raise UsageError(f"{item.path}: bluesky takes PNG, JPEG, GIF or WebP images")
    if size > MAX_IMAGE_BYTES:
        raise UsageError(f"{item.path} is {size:,} bytes; bluesky allows "
                         f"{MAX_IMAGE_BYTES:,} per image")
    return info


def _session(body: dict[str, Any]) -> Refreshed:
    access = body.get("accessJwt")
    if not access or not body.get("refreshJwt"):
        raise PlatformError(ErrorKind.SERVER, "bluesky: the session answer has no tokens")
    creds = {"access_jwt": access, "refresh_jwt": body["refreshJwt"],
             "did": body.get("did"), "handle": body.get("handle")}
    return Refreshed({k: v for k, v in creds.items() if v}, jwt_expiry(access))


def _pick(body: Any) -> str | None:
    if isinstance(body, dict):
        parts = [body.get("error"), body.get("message")]
        text = ": ".join(p for p in parts if isinstance(p, str) and p)
        return text or None
    return None


def _timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and a Z, as the lexicon's datetime prefers."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


ADAPTER = BlueskyAdapter
