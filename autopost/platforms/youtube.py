"""YouTube: one video per job, uploaded with videos.insert's resumable protocol.

Credentials: the Google OAuth client's "client_id" and "client_secret", then `autopost
accounts login NAME` (oauth.py: PKCE, offline access, scopes youtube.upload and
youtube.readonly) stores the tokens; a script may give "access_token", "refresh_token"
and "expires_at" directly.
Google access tokens last about an hour and are refreshed with the refresh token; an
answer without a refresh token keeps the stored one. A refused refresh (invalid_grant)
means the grant was revoked, unused for six months, or given to an app whose OAuth
consent screen is in "Testing", where refresh tokens die after 7 days: the message says so.

Upload (platforms.md section 8):
  1. POST /upload/youtube/v3/videos?uploadType=resumable&part=snippet,status with the
     metadata; the session URI comes back in `Location`.
  2. The session URI is saved in the job's ref (committed: it is the job's dispatch
     mark for the upload) before the first byte is sent.
  3. PUT the file in chunks (CHUNK, a multiple of 256 KiB), each with
     `Content-Range: bytes FIRST-LAST/TOTAL`; 308 + `Range` says how much the server has.
  4. The answer to the last chunk (200/201) is the video resource: its id is the post id.
A broken connection is resumed by asking the session what it has (an empty PUT with
`Content-Range: bytes */TOTAL`: 308 + Range, or 200/201 with the video). The same
question starts every later attempt and every reconcile, so a run killed mid-upload
leaves a job that the next run resumes from the server's offset, never from zero, and a
session that already completed gives its video, exactly once. YouTube creates the video
only when the last byte arrives, so an unfinished session never left a video behind,
and going on with it cannot make a second one: the reconcile's verdict for it is RESEND
(settling, not an attempt, so a long upload killed many times still finishes). An
expired session (404/410) starts a new upload. Progress is saved every few seconds,
which also renews the job's lease while a long upload runs.

Options: title (default: the text's first line), description (default: the rest of the
text), tags (comma-separated), category (a category id, default 22), privacy
(public|unlisted|private, default public), publish_at (YouTube publishes the private
video at that time), made_for_kids (true|false), thumbnail (a JPEG or PNG file, set
with thumbnails.set after the upload).

Quota: each videos.insert (a session start; a resumed session costs nothing more) comes
out of its own daily bucket (100 per project); other calls spend the 10,000 daily units
(thumbnails.set 50, a list 1). `quotaExceeded` blocks the account until midnight Pacific
time, when Google resets quotas; `uploadLimitExceeded` (the channel's own cap) for 24 h.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

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

GRANULE = 256 * 1024
CHUNK = 32 * GRANULE              # 8 MiB
TITLE_LIMIT = 100
DESCRIPTION_LIMIT = 5000          # bytes
TAGS_LIMIT = 500
THUMBNAIL_LIMIT = 2 * 1024 * 1024
PRIVACY = ("public", "unlisted", "private")
DEFAULT_CATEGORY = "22"           # People & Blogs
PACIFIC = ZoneInfo("America/Los_Angeles")
WATCH_URL = "https://www.youtube.com/watch?v="
TOKEN_URL = "https://oauth2.googleapis.com/token"
LARGE = 16 * 1024 * 1024          # a progress bar on a terminal from this size
# Quota costs (units of the 10,000 a day; videos.insert has its own bucket of 100).
COST = {"thumbnails.set": 50, "channels.list": 1, "playlistItems.list": 1}

OPTIONS = ("title", "description", "tags", "category", "privacy", "publish_at",
           "made_for_kids", "thumbnail")


# -- add-time checks ----------------------------------------------------------------------

def video_type(path: str) -> str | None:
    """The MIME type of a video file, from its first bytes; None if it is not one."""
    from autopost.media import HEAD, sniff

    with open(path, "rb") as fh:
        found = sniff(fh.read(HEAD))
    return found[1] if found is not None and found[0] == "video" else None


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise UsageError(f"youtube {name} must be true or false")


def _time(value: Any) -> datetime:
    try:
        stamp = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError("youtube publish_at must be an ISO 8601 time, e.g. "
                         "2027-01-05T09:00:00Z") from None
    if stamp.tzinfo is None:
        raise UsageError("youtube publish_at needs a time zone (e.g. a trailing Z)")
    return stamp.astimezone(UTC)


def _tags(value: Any) -> list[str]:
    if value in (None, ""):
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    tags = [str(t).strip() for t in items if str(t).strip()]
    # YouTube counts a tag with a space as if quoted, and a comma between tags.
    total = sum(len(t) + (2 if " " in t else 0) for t in tags) + max(0, len(tags) - 1)
    if total > TAGS_LIMIT:
        raise UsageError(f"youtube tags are {total} characters together; YouTube allows "
                         f"{TAGS_LIMIT}")
    if any(c in t for t in tags for c in "<>"):
        raise UsageError("youtube tags cannot contain < or >")
    return tags


def metadata(text: str, options: dict[str, Any]) -> dict[str, Any]:
    """The video resource sent when the upload starts. UsageError for what YouTube
    refuses (checked at add time and again before the upload)."""
    opts = platform_options(options or {}, "youtube")
    lines = (text or "").strip().splitlines()
    title = str(opts.get("title") or (lines[0].strip() if lines else "")).strip()
    if not title:
        raise UsageError("youtube needs a title: the text's first line, or the title option")
    if len(title) > TITLE_LIMIT:
        raise UsageError(f"youtube title is {len(title)} characters; YouTube allows "
                         f"{TITLE_LIMIT}")
    if "description" in opts:
        description = str(opts.get("description") or "")
    else:
        description = "\n".join(lines[1:]).strip() if not opts.get("title") else \
            (text or "").strip()
    if len(description.encode()) > DESCRIPTION_LIMIT:
        raise UsageError(f"youtube description is {len(description.encode())} bytes; "
                         f"YouTube allows {DESCRIPTION_LIMIT}")
    for name, value in (("title", title), ("description", description)):
        if "<" in value or ">" in value:
            raise UsageError(f"youtube {name} cannot contain < or >")
    category = str(opts.get("category") or DEFAULT_CATEGORY).strip()
    if not category.isdigit():
        raise UsageError("youtube category must be a numeric category id (22 = People & "
                         "Blogs)")
    privacy = opts.get("privacy")
    if privacy not in (None, "") and str(privacy).lower() not in PRIVACY:
        raise UsageError(f"youtube privacy must be one of {', '.join(PRIVACY)}")
    status: dict[str, Any] = {}
    if opts.get("publish_at") not in (None, ""):
        if privacy not in (None, "") and str(privacy).lower() != "private":
            raise UsageError("youtube publish_at needs privacy private (YouTube makes the "
                             "video public at that time)")
        status["publishAt"] = _time(opts["publish_at"]).strftime("%Y-%m-%dT%H:%M:%SZ")
        privacy = "private"
    status["privacyStatus"] = str(privacy or "public").lower()
    if opts.get("made_for_kids") not in (None, ""):
        status["selfDeclaredMadeForKids"] = _bool(opts["made_for_kids"], "made_for_kids")
    snippet: dict[str, Any] = {"title": title, "description": description,
                               "categoryId": category}
    tags = _tags(opts.get("tags"))
    if tags:
        snippet["tags"] = tags
    return {"snippet": snippet, "status": status}


def _thumbnail(opts: dict[str, Any]) -> tuple[str, str] | None:
    path = opts.get("thumbnail")
    if path in (None, ""):
        return None
    path = str(Path(str(path)).expanduser())
    try:
        size = os.path.getsize(path)
        info = read_image_info(path)
    except OSError:
        raise UsageError(f"youtube thumbnail {path}: no such readable file") from None
    if info is None or info.mime not in ("image/jpeg", "image/png"):
        raise UsageError(f"youtube thumbnail {Path(path).name}: must be a JPEG or PNG image "
                         "(checked by content)")
    if size > THUMBNAIL_LIMIT:
        raise UsageError(f"youtube thumbnail {Path(path).name} is {size} bytes; YouTube "
                         f"takes at most {THUMBNAIL_LIMIT}")
    return path, info.mime


def next_midnight_pacific(now: datetime) -> datetime:
    local = now.astimezone(PACIFIC)
    day = local.date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=PACIFIC).astimezone(UTC) + \
        timedelta(minutes=1)


def _fingerprint(path: str) -> dict[str, Any]:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


class Progress:
    """A one-line progress bar on stderr, shown only on a terminal."""

    def __init__(self, name: str, total: int, stream: Any):
        self.name, self.total, self.stream = name, total, stream
        self.shown = -1.0

    def update(self, done: int, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.shown < 0.5:
            return
        self.shown = now
        share = done / self.total if self.total else 1.0
        bar = "#" * int(share * 30)
        self.stream.write(f"\ryoutube: {self.name} [{bar:<30}] {share:4.0%} "
                          f"{done / 2**20:.0f}/{self.total / 2**20:.0f} MiB")
        if final:
            self.stream.write("\n")
        self.stream.flush()


class Incomplete(Exception):
    """The session holds `offset` bytes; the upload goes on from there."""

    def __init__(self, offset: int):
        self.offset = offset


class Expired(Exception):
    """The upload session is gone (404/410): a new one must start."""


SCOPES = ("https://www.googleapis.com/auth/youtube.upload",
          # channels.list and playlistItems.list: who is logged in, and the uploads a
          # reconcile may read
          "https://www.googleapis.com/auth/youtube.readonly")
TESTING_NOTE = ("Google refused the refresh token: access was revoked, the token went unused "
                "for six months, or the app's OAuth consent screen is in \"Testing\", where "
                "Google lets refresh tokens expire after 7 days (publish the app in the Google "
                "Cloud console to stop that)")


class YouTubeAdapter(OAuthAdapter):
    platform = "youtube"
    default_base_url = "https://www.googleapis.com"
    oauth = OAuthPlatform(
        authorize_url="https://accounts.google.com/o/oauth2/v2/auth",
        token_url=TOKEN_URL, scopes=SCOPES, client="confidential", token_auth="body",
        # offline: a refresh token; consent: one on every login, not only the first.
        extra_authorize={"access_type": "offline", "prompt": "consent"})
    text_limit = None
    max_media = 1
    options = (
        Option("title", "text", "the video's title (default: the text's first line)"),
        Option("description", "text", "the description (default: the rest of the text)"),
        Option("category", "text", "numeric category id (22 = People & Blogs)",
               pattern=r"[0-9]+"),
        Option("privacy", "choice", "who can watch", choices=PRIVACY),
        Option("publish_at", "text", "ISO 8601 time YouTube makes a private video public"),
        Option("made_for_kids", "bool", "self-declared made for kids"),
        Option("tags", "list", "comma-separated tags"),
        Option("thumbnail", "text", "a JPEG or PNG file for the thumbnail"),
    )

    chunk_size: ClassVar[int] = CHUNK
    # Broken connections survived within one attempt (each followed by a probe).
    max_breaks: ClassVar[int] = 5
    break_delay: ClassVar[float] = 2.0
    # Progress is saved (and the lease renewed) at most this often during an upload.
    progress_every: ClassVar[float] = 2.0
    upload_timeout: ClassVar[httpx.Timeout] = httpx.Timeout(120.0, connect=10.0)

    def __init__(self, *args: Any, progress: Any = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if progress is None:
            progress = sys.stderr if sys.stderr is not None and sys.stderr.isatty() else False
        self.progress_stream = progress or None

    # -- add time -------------------------------------------------------------------
    @classmethod
    def validate(cls, text: str, media: tuple[Media, ...], options: dict[str, Any]) -> None:
        if len(media) != 1:
            raise UsageError("youtube takes exactly one video file (--media VIDEO)")
        try:
            kind = video_type(media[0].path)
        except OSError as exc:
            raise UsageError(f"media {media[0].path}: cannot read ({exc.strerror})") from None
        if kind is None:
            raise UsageError(f"media {Path(media[0].path).name}: not a video file (MP4, "
                             "MOV or WebM, judged by its content)")
        opts = platform_options(options or {}, "youtube")
        metadata(text, options)
        _thumbnail(opts)

    # -- HTTP -----------------------------------------------------------------------
    def _secrets(self) -> list[str]:
        return self.secrets()

    def _auth(self) -> dict[str, str]:
        return self.bearer()

    def _session_url(self, url: str) -> str:
        """The session URI as Google gave it, sent to --base-url's origin if there is one."""
        return self.url(url)

    def _send(self, method: str, url: str, *, is_create: bool = False,
              timeout: httpx.Timeout | None = None, **kwargs: Any) -> httpx.Response:
        url = self.url(url)
        headers = {**self._auth(), **(kwargs.pop("headers", None) or {})}
        client = self._client()
        request = client.build_request(method, url, headers=headers,
                                       timeout=timeout or http.TIMEOUT, **kwargs)
        return http.send(client, request, is_create=is_create, redact=self._secrets())

    def _error(self, response: httpx.Response, *, is_create: bool = False) -> PlatformError:
        status = response.status_code
        body = http.json_body(response)
        error = body.get("error") if isinstance(body, dict) else None
        reasons: list[str] = []
        text = ""
        if isinstance(error, dict):
            text = str(error.get("message") or "")
            for item in error.get("errors") or []:
                if isinstance(item, dict) and item.get("reason"):
                    reasons.append(str(item["reason"]))
        reason = reasons[0] if reasons else None
        message = f"youtube: HTTP {status}" + (f" {reason}" if reason else "") + \
            (f": {' '.join(text.split())[:300]}" if text else "")
        if not text and not reason:
            message = f"youtube: {http.error_message(response)}"
        kind = http.classify_status(status, is_create=is_create)
        retry = None
        now = self.clock()
        if reason in ("quotaExceeded", "dailyLimitExceeded"):
            kind = ErrorKind.QUOTA_EXCEEDED
            retry = next_midnight_pacific(now)
            message += " (the project's daily YouTube quota is spent; it resets at " \
                       "midnight Pacific time)"
        elif reason == "uploadLimitExceeded":
            kind = ErrorKind.QUOTA_EXCEEDED
            retry = now + timedelta(hours=24)
            message += " (the channel's upload limit; YouTube lifts it within 24 h)"
        elif reason in ("rateLimitExceeded", "userRateLimitExceeded") or status == 429:
            kind = ErrorKind.RATE_LIMITED
            retry = http.retry_at(response, now) or now + timedelta(minutes=5)
        elif reason == "youtubeSignupRequired":
            kind = ErrorKind.AUTH_REVOKED
            message += " (the Google account has no YouTube channel: create one, then " \
                       f"run 'autopost accounts login {self.account.name}')"
        elif status == 401:
            kind = ErrorKind.AUTH_EXPIRED
        elif status in (403, 404) or 400 <= status < 500:
            kind = ErrorKind.INVALID
        elif status < 400:
            kind = ErrorKind.INVALID
            message += " (unexpected answer; check the account's --base-url)"
        return PlatformError(kind, http.redacted(message, self._secrets()), http_status=status,
                             retry_at=retry, code=reason)

    def _read(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        response = self._send("GET", path, params=params)
        if response.status_code != 200:
            raise self._error(response)
        body = http.json_body(response)
        if not isinstance(body, dict):
            raise PlatformError(ErrorKind.SERVER, f"youtube: unreadable answer to {path}")
        return body

    # -- publish ------------------------------------------------------------------------
    def publish(self, job: Job, save_ref: SaveRef) -> Published:
        if len(job.media) != 1:
            raise PlatformError(ErrorKind.INVALID, "youtube: a job needs exactly one video")
        path = job.media[0].path
        opts = platform_options(job.options or {}, "youtube")
        try:
            body = metadata(job.text, job.options)
            thumb = _thumbnail(opts)
            mime = video_type(path)
            fingerprint = _fingerprint(path)
        except UsageError as exc:
            raise PlatformError(ErrorKind.INVALID, f"youtube: {exc}") from None
        except OSError as exc:
            raise PlatformError(ErrorKind.INVALID, f"youtube: cannot read {path}: "
                                                   f"{exc.strerror}") from None
        if mime is None:
            raise PlatformError(ErrorKind.INVALID, f"youtube: {path} is not a video file")
        ref = dict(job.ref)
        video = None
        uri = ref.get("upload_uri")
        offset = 0
        if uri and ref.get("file") == fingerprint:
            try:
                video = self._probe(uri, fingerprint["size"])
            except Incomplete as state:
                offset = state.offset
            except Expired:
                video = self._after_expiry(job, ref)
                uri = None
        else:
            uri = None
        if video is None:
            if uri is None:
                uri = self._start(body, fingerprint["size"], mime)
                ref = {**ref, "upload_uri": uri, "file": fingerprint,
                       "started_at": format_utc(self.clock()), "sent": 0}
                ref.pop("final_sent_at", None)
                self._save(save_ref, ref)
            video = self._upload(job, path, uri, offset, fingerprint["size"], ref, save_ref)
        return self._published(video, thumb)

    def _save(self, save_ref: SaveRef, ref: dict[str, Any]) -> None:
        try:
            save_ref(ref)
        except Exception:
            # Not recorded: stop before sending a byte that nothing would remember.
            raise PlatformError(ErrorKind.NETWORK, "youtube: could not record the upload "
                                                   "session; the upload stops here") from None

    def _start(self, body: dict[str, Any], size: int, mime: str) -> str:
        response = self._send(
            "POST", "/upload/youtube/v3/videos",
            params={"uploadType": "resumable", "part": "snippet,status"}, json=body,
            headers={"X-Upload-Content-Length": str(size), "X-Upload-Content-Type": mime})
        if response.status_code != 200:
            raise self._error(response)
        location = response.headers.get("location")
        if not location:
            raise PlatformError(ErrorKind.SERVER, "youtube: the upload session has no "
                                                  "Location", http_status=response.status_code)
        return location

    def _probe(self, uri: str, total: int) -> dict[str, Any]:
        """Ask the session what it has: the video (done), or raise Incomplete/Expired."""
        response = self._send("PUT", self._session_url(uri), content=b"",
                              headers={"Content-Range": f"bytes */{total}"})
        return self._chunk_answer(response)

    def _chunk_answer(self, response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        if status in (200, 201):
            body = http.json_body(response)
            if not isinstance(body, dict) or not body.get("id"):
                raise PlatformError(ErrorKind.AMBIGUOUS, "youtube: the finished upload "
                                                         "answered without a video id",
                                    http_status=status)
            return body
        if status == 308:
            return self._incomplete(response)
        if status in (404, 410):
            raise Expired()
        raise self._error(response)

    @staticmethod
    def _incomplete(response: httpx.Response) -> Any:
        got = response.headers.get("range", "")
        offset = 0
        if got.startswith("bytes="):
            try:
                offset = int(got.split("-", 1)[1]) + 1
            except (IndexError, ValueError):
                raise PlatformError(ErrorKind.SERVER,
                                    f"youtube: unreadable Range {got!r}") from None
        raise Incomplete(offset)

    def _upload(self, job: Job, path: str, uri: str, offset: int, total: int,
                ref: dict[str, Any], save_ref: SaveRef) -> dict[str, Any]:
        url = self._session_url(uri)
        bar = Progress(Path(path).name, total, self.progress_stream) \
            if self.progress_stream is not None and total >= LARGE else None
        saved_at = time.monotonic()
        breaks = 0
        restarted = False
        with open(path, "rb") as fh:
            while True:
                if bar:
                    bar.update(offset)
                if time.monotonic() - saved_at >= self.progress_every:
                    ref = {**ref, "sent": offset}
                    self._save(save_ref, ref)
                    saved_at = time.monotonic()
                fh.seek(offset)
                data = fh.read(self.chunk_size)
                last = offset + len(data) >= total
                if last and not ref.get("final_sent_at"):
                    ref = {**ref, "sent": offset, "final_sent_at": format_utc(self.clock())}
                    self._save(save_ref, ref)
                    saved_at = time.monotonic()
                end = offset + len(data) - 1
                try:
                    response = self._send(
                        "PUT", url, content=data, timeout=self.upload_timeout,
                        headers={"Content-Range": f"bytes {offset}-{end}/{total}"
                                 if data else f"bytes */{total}"})
                    video = self._chunk_answer(response)
                except Incomplete as state:
                    if state.offset <= offset:
                        # Nothing accepted (or every byte there and still no video).
                        breaks += 1
                        if breaks > self.max_breaks:
                            raise PlatformError(ErrorKind.SERVER, (
                                f"youtube: the upload session stays at {state.offset} of "
                                f"{total} bytes")) from None
                        self.sleep(self.break_delay * breaks)
                    else:
                        breaks = 0
                    offset = state.offset
                    continue
                except Expired:
                    if restarted:
                        raise PlatformError(ErrorKind.SERVER, "youtube: new upload sessions "
                                                              "keep expiring") from None
                    restarted = True
                    uri = self._start(metadata(job.text, job.options), total,
                                      video_type(path) or "application/octet-stream")
                    url = self._session_url(uri)
                    ref = {**ref, "upload_uri": uri, "started_at": format_utc(self.clock()),
                           "sent": 0}
                    ref.pop("final_sent_at", None)
                    self._save(save_ref, ref)
                    offset = 0
                    continue
                except PlatformError as exc:
                    if exc.kind not in (ErrorKind.NETWORK, ErrorKind.AMBIGUOUS,
                                        ErrorKind.SERVER) or breaks >= self.max_breaks:
                        if exc.kind is ErrorKind.AMBIGUOUS:
                            # The session remembers: the next attempt asks it first.
                            exc.kind = ErrorKind.NETWORK
                        raise
                    breaks += 1
                    self.sleep(self.break_delay * breaks)
                    try:
                        video = self._probe(uri, total)
                    except Incomplete as state:
                        offset = state.offset
                        continue
                    except PlatformError as again:
                        if again.kind is ErrorKind.AMBIGUOUS:
                            again.kind = ErrorKind.NETWORK
                        if again.kind in (ErrorKind.NETWORK, ErrorKind.SERVER) and \
                                breaks < self.max_breaks:
                            continue
                        raise
                if bar:
                    bar.update(total, final=True)
                return video

    def _after_expiry(self, job: Job, ref: dict[str, Any]) -> dict[str, Any] | None:
        """The saved session is gone. If the last byte had been sent, the video may exist:
        look for it among the channel's uploads; otherwise none was ever made."""
        if not ref.get("final_sent_at"):
            return None
        found = self._find_upload(job, ref)
        if found is None:
            raise PlatformError(ErrorKind.AMBIGUOUS, "youtube: the upload session expired "
                                "after its last byte was sent, and the video is not among "
                                "the channel's uploads yet")
        return found

    def _published(self, video: dict[str, Any], thumb: tuple[str, str] | None) -> Published:
        video_id = str(video["id"])
        note = None
        if thumb is not None:
            note = self._set_thumbnail(video_id, *thumb)
        return Published(post_id=video_id, url=WATCH_URL + video_id, note=note)

    def _set_thumbnail(self, video_id: str, path: str, mime: str) -> str | None:
        """thumbnails.set; a failure is a note on a video that is live, never an error."""
        try:
            data = Path(path).read_bytes()
            response = self._send("POST", "/upload/youtube/v3/thumbnails/set",
                                  params={"videoId": video_id, "uploadType": "media"},
                                  content=data, headers={"Content-Type": mime})
        except OSError as exc:
            return f"thumbnail not set: cannot read {path} ({exc.strerror})"
        except PlatformError as exc:
            return f"thumbnail not set: {exc.message}"
        if response.status_code != 200:
            return f"thumbnail not set: {self._error(response).message}"
        return None

    # -- reconcile ------------------------------------------------------------------------
    def reconcile(self, job: Job) -> Reconciled:
        ref = job.ref or {}
        uri = ref.get("upload_uri")
        if not uri:
            return Reconciled(Verdict.NOT_POSTED, None, "no upload session was started")
        total = int((ref.get("file") or {}).get("size") or 0)
        try:
            video = self._probe(uri, total)
        except Incomplete as state:
            # Going on with the same session cannot make a second video: YouTube makes
            # one per session, at its last byte. So resuming settles it, whatever the
            # attempts spent.
            return Reconciled(Verdict.RESEND, None, (
                f"the upload session has {state.offset} of {total} bytes and no video yet; "
                "resuming it makes at most one"))
        except Expired:
            if not ref.get("final_sent_at"):
                return Reconciled(Verdict.NOT_POSTED, None,
                                  "the upload session expired before its last byte")
            found = self._find_upload(job, ref)
            if found is None:
                return Reconciled(Verdict.CANNOT_TELL, None, (
                    "the upload session expired after its last byte was sent and the video "
                    "is not among the channel's recent uploads"))
            video = found
        video_id = str(video["id"])
        return Reconciled(Verdict.POSTED, Published(video_id, WATCH_URL + video_id),
                          f"the upload session finished as video {video_id}")

    def _find_upload(self, job: Job, ref: dict[str, Any]) -> dict[str, Any] | None:
        """The job's video among the channel's uploads since the session started."""
        channels = self._read("/youtube/v3/channels",
                              {"part": "contentDetails", "mine": "true"})
        items = channels.get("items") or []
        try:
            playlist = items[0]["contentDetails"]["relatedPlaylists"]["uploads"]
        except (IndexError, KeyError, TypeError):
            return None
        listing = self._read("/youtube/v3/playlistItems",
                             {"part": "snippet", "playlistId": playlist, "maxResults": "50"})
        started = http.parse_time(ref.get("started_at"))
        title = metadata(job.text, job.options)["snippet"]["title"]
        for item in listing.get("items") or []:
            snippet = item.get("snippet") if isinstance(item, dict) else None
            if not isinstance(snippet, dict) or snippet.get("title") != title:
                continue
            published = http.parse_time(snippet.get("publishedAt"))
            if started is not None and published is not None and \
                    published < started - timedelta(minutes=5):
                continue
            video_id = (snippet.get("resourceId") or {}).get("videoId")
            if video_id:
                return {"id": video_id}
        return None

    # -- accounts check -------------------------------------------------------------------
    def check(self) -> AccountInfo:
        body = self._read("/youtube/v3/channels", {"part": "snippet", "mine": "true"})
        items = body.get("items") or []
        if not items:
            raise PlatformError(ErrorKind.AUTH_REVOKED, (
                "youtube: the Google account has no YouTube channel; create one, then run "
                f"'autopost accounts login {self.account.name}'"))
        channel = items[0]
        title = (channel.get("snippet") or {}).get("title") or channel.get("id")
        return AccountInfo(display=f"{title} (channel {channel.get('id')})",
                           url=f"https://www.youtube.com/channel/{channel.get('id')}",
                           token_expires_at=http.parse_time(self.credentials.get("expires_at")),
                           details={"channel": channel.get("id")})

    def refresh(self) -> Refreshed:
        """Google's refresh (the stored refresh token is kept when the answer has none);
        a refusal says why Google refuses them, the 7-day "Testing" rule included."""
        try:
            return super().refresh()
        except PlatformError as exc:
            if exc.kind is ErrorKind.AUTH_REVOKED and exc.code in ("invalid_grant", None) \
                    and self.credentials.get("refresh_token"):
                raise PlatformError(ErrorKind.AUTH_REVOKED, (
                    f"youtube: {TESTING_NOTE}; run 'autopost accounts login "
                    f"{self.account.name}'"), http_status=exc.http_status,
                    code=exc.code) from None
            raise

    @classmethod
    def check_options(cls, raw: dict[str, Any], platforms: tuple[str, ...] = ()
                      ) -> dict[str, Any]:
        """The declared options, with the thumbnail as an absolute path (cron runs in
        another folder) and publish_at in UTC."""
        options = super().check_options(raw, platforms)
        if options.get("thumbnail"):
            options["thumbnail"] = str(Path(options["thumbnail"]).expanduser().absolute())
        if options.get("publish_at"):
            options["publish_at"] = _time(options["publish_at"]).strftime("%Y-%m-%dT%H:%M:%SZ")
        return options

    @classmethod
    def status_warnings(cls, account: Account, policy: Any, now: datetime) -> list[str]:
        creds = account.credentials
        if account.token_expires_at is not None and account.token_expires_at <= now and \
                not creds.get("refresh_token"):
            return [f"account {account.name}: the Google token expired and there is no "
                    f"refresh token; run 'autopost accounts login {account.name}'"]
        return []

ADAPTER = YouTubeAdapter
