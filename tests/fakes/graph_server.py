"""A stateful fake of Meta's Graph API on 127.0.0.1: Facebook Pages, Instagram content
publishing and Threads, in the shapes platforms.md (sections 5-7) documents.

One server answers for graph.facebook.com (/{version}/...), www.facebook.com's login
dialog, graph.threads.net (/v1.0/..., /oauth/..., /access_token, /refresh_access_token)
and threads.net's authorize page: an account's --base-url sends all of them here.

What it keeps and enforces:
- tokens -> who they are (a user, a Page, an Instagram user, a Threads user); an unknown
  or revoked token answers 190 (subcode 463 once expired);
- Pages: /feed (message, link, attached_media), /photos (multipart `source` or `url`,
  published=false for the photos of a multi-photo post), /published_posts (since, limit,
  fields), 506 for the same message twice in a row, post nodes with permalink_url;
- containers (Instagram /media, Threads /threads): IN_PROGRESS until `polls_to_finish`
  status reads, then FINISHED; ERROR when the media cannot be fetched or on request;
  EXPIRED 24 h after creation (server clock); PUBLISHED once published. Publishing too
  early answers 9007/2207027 (Instagram) or 24/4279009 "Media Not Found" (Threads,
  also `media_not_found` more times on request, the race Meta has);
- media URLs are fetched by the server itself (image_url, video_url, /photos url), so
  an unreachable media host fails as it does at Meta (Instagram 9004/2207052);
- publishing limits: 50 (Instagram) and 250 (Threads) per moving 24 h, read through
  content_publishing_limit / threads_publishing_limit, refused past the cap (9/2207042);
- usage headers X-App-Usage and X-Business-Use-Case-Usage (settable), code/subcode
  faults, dropped answers, held answers;
- login: the dialog redirects straight back with a code (the test plays the browser),
  code exchange (once), fb_exchange_token, /me/accounts, th_exchange_token and
  th_refresh_token.

Every request is logged with its parameter names; `param_check` (set by tests) is
called for each and what it returns is kept in `violations`.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import itertools
import json
import secrets
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.fakes.httpfake import LocalServer, QuietHandler

DAY = timedelta(hours=24)
IG_CAP, THREADS_CAP = 50, 250


def fb_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


@dataclass
class Fault:
    kind: str = "error"       # error | drop (do the work, close) | reset | hold | hold_after
    path: str | None = None   # a substring of the request path (".../media_publish")
    method: str | None = None
    count: int = 1
    status: int = 400
    code: int = 1
    subcode: int | None = None
    message: str = "An unknown error occurred"
    error_type: str = "OAuthException"
    headers: dict[str, str] = field(default_factory=dict)

    def matches(self, method: str, path: str) -> bool:
        return (self.count > 0 and (self.path is None or self.path in path)
                and (self.method is None or self.method.upper() == method))


class GraphFailure(Exception):
    def __init__(self, status: int, code: int, message: str, subcode: int | None = None,
                 error_type: str = "OAuthException", user_msg: str | None = None):
        super().__init__(message)
        self.status, self.code, self.subcode = status, code, subcode
        self.message, self.error_type, self.user_msg = message, error_type, user_msg

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.error_type,
                                 "code": self.code, "fbtrace_id": secrets.token_hex(6)}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.user_msg:
            error["error_user_msg"] = self.user_msg
        return {"error": error}


def _bad_token() -> GraphFailure:
    return GraphFailure(400, 190, "Invalid OAuth access token - Cannot parse access token")


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client killed mid-request (the crash tests do that on purpose)


class FakeGraph(LocalServer):
    def __init__(self, *, version: str = "v26.0", threads_version: str = "v1.0",
                 polls_to_finish: int = 1, fetch_media: bool = True,
                 clock: Callable[[], datetime] | None = None, port: int = 0):
        self.version, self.threads_version = version, threads_version
        self.polls_to_finish = polls_to_finish
        self.fetch_media = fetch_media
        self.media_not_found = 0          # extra 24/4279009 answers on threads_publish
        self.app_usage: dict[str, Any] | None = None
        self.buc_usage: dict[str, Any] | None = None
        self.param_check: Callable[[str, str, str | None, dict[str, Any]], list[str]] | None \
            = None
        self.violations: list[str] = []
        self.requests: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self._clock = clock or (lambda: datetime.now(UTC))
        self._offset = timedelta()
        self._lock = threading.RLock()
        self._ids = itertools.count(17_841_400_000_000_001)
        self._seen: dict[str, threading.Event] = {}
        self.tokens: dict[str, dict[str, Any]] = {}        # token -> {"kind", "id", ...}
        self.users: dict[str, dict[str, Any]] = {}         # Facebook users
        self.pages: dict[str, dict[str, Any]] = {}
        self.ig_users: dict[str, dict[str, Any]] = {}
        self.threads_users: dict[str, dict[str, Any]] = {}
        self.posts: dict[str, dict[str, Any]] = {}         # Page posts by id
        self.photos: dict[str, dict[str, Any]] = {}
        self.containers: dict[str, dict[str, Any]] = {}
        self.media: dict[str, dict[str, Any]] = {}         # published IG / Threads media
        self.apps: dict[str, str] = {}                     # client id -> secret
        self.app_platform: dict[str, str] = {}             # client id -> facebook/threads
        self.codes: dict[str, dict[str, Any]] = {}         # authorization codes
        self.refreshes: list[str] = []
        super().__init__(_Handler, port, server_class=_Server)

    # -- test controls --------------------------------------------------------------------
    def now(self) -> datetime:
        return self._clock() + self._offset

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._offset += timedelta(seconds=seconds)
        return self.now()

    def _id(self) -> str:
        return str(next(self._ids))

    def add_user(self, token: str, name: str = "Operator") -> str:
        with self._lock:
            user_id = self._id()
            self.users[user_id] = {"id": user_id, "name": name, "pages": []}
            self.tokens[token] = {"kind": "user", "id": user_id, "long": False}
            return user_id

    def add_page(self, token: str, name: str = "Test Page", *, user: str | None = None,
                 ig_username: str | None = None, ig_token: str | None = None) -> str:
        """A Page whose Page token is `token`; with ig_username, an Instagram professional
        account linked to it (usable with the Page token, or `ig_token`)."""
        with self._lock:
            page_id = self._id()
            page = {"id": page_id, "name": name, "last_message": None, "ig": None}
            self.pages[page_id] = page
            self.tokens[token] = {"kind": "page", "id": page_id}
            if user is not None:
                self.users[user]["pages"].append((page_id, token))
            if ig_username:
                page["ig"] = self.add_ig_user(ig_token, ig_username, page_id=page_id)
            return page_id

    def add_ig_user(self, token: str | None, username: str, *, page_id: str | None = None
                    ) -> str:
        with self._lock:
            ig_id = self._id()
            self.ig_users[ig_id] = {"id": ig_id, "username": username, "page": page_id,
                                    "published": []}
            if token:
                self.tokens[token] = {"kind": "ig", "id": ig_id}
            return ig_id

    def add_threads_user(self, token: str, username: str = "threader", *,
                         expires_in: float | None = None) -> str:
        with self._lock:
            user_id = self._id()
            self.threads_users[user_id] = {"id": user_id, "username": username,
                                           "published": []}
            self._threads_token(token, user_id, expires_in=expires_in)
            return user_id

    def _threads_token(self, token: str, user_id: str, *, expires_in: float | None,
                       long: bool = True) -> None:
        expires = self.now() + timedelta(seconds=expires_in) if expires_in else None
        self.tokens[token] = {"kind": "threads", "id": user_id, "long": long,
                              "expires": expires, "issued": self.now()}

    def add_app(self, client_id: str, secret: str, platform: str = "facebook") -> None:
        self.apps[client_id] = secret
        self.app_platform[client_id] = platform

    def revoke(self, token: str) -> None:
        with self._lock:
            self.tokens.pop(token, None)

    def inject(self, kind: str = "error", **options: Any) -> Fault:
        fault = Fault(kind=kind, **options)
        with self._lock:
            self.faults.append(fault)
        return fault

    def seen(self, fragment: str) -> threading.Event:
        """An event set when a request whose path ends with `fragment` arrives."""
        with self._lock:
            return self._seen.setdefault(fragment, threading.Event())

    def release(self) -> None:
        """Let every held request go on."""
        self._stop.set()

    def expire(self, container_id: str) -> None:
        with self._lock:
            self.containers[container_id]["expires"] = self.now() - timedelta(seconds=1)

    def fail_container(self, container_id: str, message: str) -> None:
        with self._lock:
            self.containers[container_id]["error"] = message

    def published(self, owner: str | None = None) -> list[dict[str, Any]]:
        """Everything that went live: Page posts, Instagram and Threads media."""
        with self._lock:
            live = [p for p in self.posts.values() if p.get("published", True)]
            live += list(self.media.values())
            return [dict(p) for p in live if owner is None or p["owner"] == owner]

    # -- plumbing -------------------------------------------------------------------------
    def take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.count -= 1
                    self.faults = [f for f in self.faults if f.count > 0]
                    return fault
        return None

    def note(self, method: str, path: str, params: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append({"method": method, "path": path,
                                  "params": sorted(params)})
            for fragment, event in self._seen.items():
                if path.endswith(fragment):
                    event.set()

    def check_params(self, method: str, kind: str, edge: str | None,
                     params: dict[str, Any]) -> None:
        if self.param_check is None:
            return
        problems = self.param_check(method, kind, edge, params)
        with self._lock:
            self.violations += problems

    def usage_headers(self) -> dict[str, str]:
        headers = {}
        if self.app_usage is not None:
            headers["X-App-Usage"] = json.dumps(self.app_usage)
        if self.buc_usage is not None:
            headers["X-Business-Use-Case-Usage"] = json.dumps(self.buc_usage)
        return headers

    def who(self, token: str | None) -> dict[str, Any]:
        entry = self.tokens.get(token or "")
        if entry is None:
            raise _bad_token()
        expires = entry.get("expires")
        if expires is not None and expires <= self.now():
            raise GraphFailure(400, 190, "Error validating access token: Session has "
                               "expired", subcode=463)
        return entry

    def fetch(self, url: str) -> bytes | None:
        """GET a media URL as Meta does; None when it cannot be fetched."""
        if not self.fetch_media:
            return b"\xff\xd8\xff"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310
                if response.status != 200:
                    return None
                return response.read()
        except (OSError, ValueError):
            return None

    # -- Facebook Pages -------------------------------------------------------------------
    def page_of(self, entry: dict[str, Any], page_id: str) -> dict[str, Any]:
        page = self.pages.get(page_id)
        if page is None:
            raise GraphFailure(400, 100, "Unsupported request - Object does not exist")
        if entry["kind"] != "page" or entry["id"] != page_id:
            raise GraphFailure(403, 200, "(#200) The user hasn't authorized the application "
                               "to perform this action", error_type="OAuthException")
        return page

    def page_feed(self, page: dict[str, Any], form: dict[str, Any]) -> dict[str, Any]:
        message = form.get("message", "")
        attached = form.get("attached_media")
        media_ids = []
        if attached:
            items = json.loads(attached) if isinstance(attached, str) else attached
            for item in items:
                item = json.loads(item) if isinstance(item, str) else item
                fbid = str(item.get("media_fbid"))
                photo = self.photos.get(fbid)
                if photo is None or photo["page"] != page["id"] or photo["published"]:
                    raise GraphFailure(400, 100, "(#100) Invalid attached_media")
                media_ids.append(fbid)
        if not message and not form.get("link") and not media_ids:
            raise GraphFailure(400, 100, "(#100) Missing message or attachment")
        with self._lock:
            if message and message == page["last_message"]:
                raise GraphFailure(400, 506, "(#506) Duplicate status message")
            post = self._page_post(page, message, form.get("link"), media_ids)
            for fbid in media_ids:
                self.photos[fbid]["post"] = post["id"]
            return {"id": post["id"]}

    def _page_post(self, page: dict[str, Any], message: str, link: str | None,
                   photos: list[str]) -> dict[str, Any]:
        post_id = f"{page['id']}_{self._id()}"
        post = {"id": post_id, "owner": page["id"], "platform": "facebook",
                "message": message, "link": link, "photos": photos,
                "created": self.now(), "published": True,
                "permalink_url": f"https://www.facebook.com/{post_id.replace('_', '/posts/')}"}
        self.posts[post_id] = post
        page["last_message"] = message or page["last_message"]
        return post

    def page_photo(self, page: dict[str, Any], form: dict[str, Any],
                   files: dict[str, tuple[str | None, bytes]]) -> dict[str, Any]:
        if "source" in files:
            data = files["source"][1]
        elif form.get("url"):
            data = self.fetch(form["url"])
            if data is None:
                raise GraphFailure(400, 324, "(#324) Missing or invalid image file")
        else:
            raise GraphFailure(400, 324, "(#324) Requires upload file")
        if not data:
            raise GraphFailure(400, 324, "(#324) Missing or invalid image file")
        published = form.get("published", "true") != "false"
        with self._lock:
            photo_id = self._id()
            photo = {"id": photo_id, "page": page["id"], "bytes": len(data),
                     "sha": hashlib.sha256(data).hexdigest(), "published": published,
                     "alt": form.get("alt_text_custom"), "post": None}
            self.photos[photo_id] = photo
            if not published:
                return {"id": photo_id}
            post = self._page_post(page, form.get("caption", form.get("message", "")), None,
                                   [photo_id])
            photo["post"] = post["id"]
            return {"id": photo_id, "post_id": post["id"]}

    def page_posts(self, page: dict[str, Any], query: dict[str, Any]) -> dict[str, Any]:
        since = int(query["since"]) if query.get("since") else None
        limit = int(query.get("limit", 25))
        fields = _fields(query, "id,message,created_time")
        with self._lock:
            found = [p for p in self.posts.values() if p["owner"] == page["id"]
                     and (since is None or p["created"].timestamp() >= since)]
        found.sort(key=lambda p: p["created"], reverse=True)
        return {"data": [self._post_json(p, fields) for p in found[:limit]]}

    def _post_json(self, post: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        full = {"id": post["id"], "message": post["message"],
                "created_time": fb_time(post["created"]),
                "permalink_url": post["permalink_url"]}
        return {k: v for k, v in full.items() if k in fields and v not in (None, "")}

    # -- containers (Instagram and Threads) ----------------------------------------------
    def create_container(self, platform: str, owner: str, form: dict[str, Any]) -> str:
        media_type = (form.get("media_type") or ("IMAGE" if form.get("image_url") else
                      "TEXT" if platform == "threads" else "")).upper()
        carousel_item = form.get("is_carousel_item") in ("true", "1", True)
        children = _children(form.get("children"))
        text_key = "text" if platform == "threads" else "caption"
        text = form.get(text_key, "")
        if platform == "threads" and len(text) > 500:
            raise GraphFailure(400, 100, "Param text must be at most 500 characters long.")
        if platform == "instagram" and len(text) > 2200:
            raise GraphFailure(400, 100, "The caption is too long", subcode=2207010)
        fetched_ok = True
        url = form.get("image_url") or form.get("video_url")
        if media_type == "CAROUSEL":
            if not 2 <= len(children) <= (10 if platform == "instagram" else 20):
                raise GraphFailure(400, 100, "Carousel must have between 2 and 10 items",
                                   subcode=2207064 if platform == "instagram" else None)
            with self._lock:
                for child in children:
                    item = self.containers.get(child)
                    if item is None or item["owner"] != owner or not item["carousel_item"]:
                        raise GraphFailure(400, 100, "(#100) Invalid children")
        elif media_type in ("IMAGE", "VIDEO", "REELS"):
            if not url:
                raise GraphFailure(400, 100, "(#100) The parameter image_url is required")
            fetched_ok = self.fetch(url) is not None
            if not fetched_ok and platform == "instagram":
                raise GraphFailure(400, 9004, "Only photo or video can be accepted as "
                                   "media type.", subcode=2207052,
                                   user_msg="The media could not be fetched from this uri")
        elif media_type == "TEXT" and platform == "threads":
            if not text:
                raise GraphFailure(400, 100, "(#100) Param text is required for TEXT posts")
        else:
            raise GraphFailure(400, 100, f"(#100) Invalid media_type {media_type!r}")
        reply_to = form.get("reply_to_id")
        if reply_to is not None and platform == "threads":
            with self._lock:  # a reply names a Threads post that exists
                parent = self.media.get(str(reply_to))
            if parent is None or parent["platform"] != "threads":
                raise GraphFailure(400, 100, "(#100) Invalid parameter: reply_to_id "
                                   f"{reply_to!r} is not a Threads post")
        with self._lock:
            cid = self._id()
            self.containers[cid] = {
                "id": cid, "platform": platform, "owner": owner, "type": media_type,
                "text": text, "url": url, "carousel_item": carousel_item,
                "children": children, "alt": form.get("alt_text"),
                "reply_control": form.get("reply_control"), "reply_to": reply_to,
                "polls": 0, "created": self.now(), "expires": self.now() + DAY,
                "error": None if fetched_ok else "UNKNOWN", "published_as": None}
            return cid

    def container_status(self, container: dict[str, Any]) -> str:
        if container["published_as"]:
            return "PUBLISHED"
        if container["error"]:
            return "ERROR"
        if self.now() >= container["expires"]:
            return "EXPIRED"
        if container["polls"] < self.polls_to_finish:
            return "IN_PROGRESS"
        return "FINISHED"

    def container_json(self, container: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        with self._lock:
            state = self.container_status(container)
            container["polls"] += 1
        out: dict[str, Any] = {"id": container["id"]}
        if container["platform"] == "instagram":
            if "status_code" in fields:
                out["status_code"] = state
            if "status" in fields:
                out["status"] = (f"Error: {container['error']}" if state == "ERROR"
                                 else state.title().replace("_", " "))
        else:
            if "status" in fields:
                out["status"] = state
            if "error_message" in fields and state == "ERROR":
                out["error_message"] = container["error"]
        return out

    def publish(self, platform: str, owner: str, creation_id: str | None) -> dict[str, Any]:
        cap = IG_CAP if platform == "instagram" else THREADS_CAP
        with self._lock:
            container = self.containers.get(str(creation_id))
            if container is None or container["owner"] != owner:
                raise GraphFailure(400, 100, "(#100) Param creation_id is not valid")
            if platform == "threads" and self.media_not_found > 0:
                self.media_not_found -= 1
                raise GraphFailure(400, 24, "Media Not Found", subcode=4279009,
                                   user_msg="The requested resource does not exist")
            state = self.container_status(container)
            kids = [self.containers[c] for c in container["children"]]
            if state == "PUBLISHED":
                raise GraphFailure(400, 100, "(#100) The media has already been published",
                                   subcode=2207006)
            if state == "EXPIRED":
                raise GraphFailure(400, 100, "The container has expired", subcode=2207008)
            if state == "ERROR":
                raise GraphFailure(400, 100, "The media could not be published",
                                   subcode=2207001)
            if state == "IN_PROGRESS" or any(self.container_status(k) == "IN_PROGRESS"
                                             for k in kids):
                if platform == "threads":
                    raise GraphFailure(400, 24, "Media Not Found", subcode=4279009)
                raise GraphFailure(400, 9007, "Media ID is not available", subcode=2207027,
                                   user_msg="The media is not ready to be published. "
                                            "Please wait a moment.")
            user = (self.ig_users if platform == "instagram" else self.threads_users)[owner]
            recent = [t for t in user["published"] if t > self.now() - DAY]
            if len(recent) >= cap:
                raise GraphFailure(400, 9, "Application request limit reached",
                                   subcode=2207042, user_msg="You reached the maximum "
                                   "number of posts allowed in 24 hours.")
            media_id = self._id()
            user["published"].append(self.now())
            container["published_as"] = media_id
            host = "instagram.com/p" if platform == "instagram" else \
                f"threads.net/@{user['username']}/post"
            self.media[media_id] = {
                "id": media_id, "owner": owner, "platform": platform,
                "message": container["text"], "type": container["type"],
                "children": len(kids), "container": container["id"],
                "reply_to": container.get("reply_to"), "created": self.now(), "permalink": f"https://www.{host}/{media_id}"}
            return {"id": media_id}

    def publishing_limit(self, platform: str, owner: str) -> dict[str, Any]:
        users = self.ig_users if platform == "instagram" else self.threads_users
        with self._lock:
            recent = [t for t in users[owner]["published"] if t > self.now() - DAY]
        cap = IG_CAP if platform == "instagram" else THREADS_CAP
        return {"data": [{"quota_usage": len(recent),
                          "config": {"quota_total": cap, "quota_duration": 86400}}]}

    def media_list(self, platform: str, owner: str, query: dict[str, Any]) -> dict[str, Any]:
        fields = _fields(query, "id")
        since = int(query["since"]) if query.get("since") else None
        with self._lock:
            found = [m for m in self.media.values() if m["owner"] == owner
                     and m["platform"] == platform
                     and (since is None or m["created"].timestamp() >= since)]
        found.sort(key=lambda m: m["created"], reverse=True)
        limit = int(query.get("limit", 25))
        return {"data": [self.media_json(m, fields) for m in found[:limit]]}

    def media_json(self, media: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        text_key = "text" if media["platform"] == "threads" else "caption"
        full = {"id": media["id"], text_key: media["message"],
                "permalink": media["permalink"], "timestamp": fb_time(media["created"]),
                "media_type": media["type"]}
        return {k: v for k, v in full.items() if k in fields or k == "id"}

    # -- login ------------------------------------------------------------------------------
    def authorize(self, query: dict[str, Any]) -> str:
        """The login dialog: the operator says yes at once; a redirect with a code."""
        client_id = query.get("client_id")
        if client_id not in self.apps:
            raise GraphFailure(400, 101, "Error validating application. Invalid "
                               "application ID.")
        code = secrets.token_urlsafe(16)
        with self._lock:
            self.codes[code] = {"client_id": client_id, "redirect_uri": query.get("redirect_uri"),
                                "challenge": query.get("code_challenge"),
                                "method": query.get("code_challenge_method"),
                                "scope": query.get("scope"), "used": False}
        target = query.get("redirect_uri", "")
        sep = "&" if "?" in target else "?"
        return target + sep + urlencode({"code": code, "state": query.get("state", "")})

    def exchange_code(self, form: dict[str, Any], platform: str) -> dict[str, Any]:
        code = self.codes.get(form.get("code", ""))
        client_id = form.get("client_id")
        if client_id not in self.apps or self.apps[client_id] != form.get("client_secret"):
            raise GraphFailure(400, 1, "Error validating client secret.")
        if code is None or code["used"] or code["client_id"] != client_id:
            raise GraphFailure(400, 100, "This authorization code has been used.",
                               subcode=36009)
        if code["redirect_uri"] != form.get("redirect_uri"):
            raise GraphFailure(400, 100, "Error validating verification code. Please make "
                               "sure your redirect_uri is identical", subcode=36008)
        if code["challenge"]:
            verifier = form.get("code_verifier", "")
            import base64

            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            if digest.rstrip(b"=").decode() != code["challenge"]:
                raise GraphFailure(400, 100, "Invalid code verifier")
        code["used"] = True
        token = secrets.token_urlsafe(24)
        with self._lock:
            if platform == "threads":
                user_id = next(iter(self.threads_users), None) or self.add_threads_user(
                    "unused-" + token, "threader")
                self._threads_token(token, user_id, expires_in=3600, long=False)
                return {"access_token": token, "user_id": int(user_id)}
            user_id = next(iter(self.users))
            self.tokens[token] = {"kind": "user", "id": user_id, "long": False}
            return {"access_token": token, "token_type": "bearer", "expires_in": 3600}

    def exchange_long(self, query: dict[str, Any], grant: str) -> dict[str, Any]:
        with self._lock:
            if grant == "fb_exchange_token":
                client_id = query.get("client_id")
                if self.apps.get(client_id or "") != query.get("client_secret"):
                    raise GraphFailure(400, 1, "Error validating client secret.")
                entry = self.who(query.get("fb_exchange_token"))
                token = secrets.token_urlsafe(24)
                self.tokens[token] = {**entry, "long": True}
                return {"access_token": token, "token_type": "bearer",
                        "expires_in": 60 * 86400}
            entry = self.who(query.get("access_token"))
            if grant == "th_exchange_token":
                if query.get("client_secret") not in self.apps.values():
                    raise GraphFailure(400, 1, "Error validating client secret.")
            elif grant == "th_refresh_token":
                if not entry.get("long"):
                    raise GraphFailure(400, 190, "A short-lived token cannot be refreshed")
                if self.now() - entry["issued"] < timedelta(hours=24):
                    raise GraphFailure(400, 190, "The token is too new to be refreshed")
                self.refreshes.append(query.get("access_token", ""))
            token = secrets.token_urlsafe(24)
            self._threads_token(token, entry["id"], expires_in=60 * 86400)
            return {"access_token": token, "token_type": "bearer", "expires_in": 60 * 86400}

    def accounts(self, entry: dict[str, Any], query: dict[str, Any]) -> dict[str, Any]:
        if entry["kind"] != "user":
            raise GraphFailure(400, 100, "(#100) Tried accessing nonexisting field (accounts)")
        data = []
        for page_id, token in self.users[entry["id"]]["pages"]:
            page = self.pages[page_id]
            item: dict[str, Any] = {"id": page_id, "name": page["name"], "access_token": token}
            if page["ig"]:
                ig = self.ig_users[page["ig"]]
                item["instagram_business_account"] = {"id": ig["id"],
                                                      "username": ig["username"]}
            data.append(item)
        return {"data": data}

    # -- routing ----------------------------------------------------------------------------
    def route(self, method: str, path: str, params: dict[str, Any],
              files: dict[str, tuple[str | None, bytes]]) -> tuple[int, Any, dict[str, str]]:
        parts = [p for p in path.split("/") if p]
        if parts[:1] and parts[0].startswith("v") and parts[0][1:2].isdigit():
            version, parts = parts[0], parts[1:]
        else:
            version = None
        if parts[:2] == ["dialog", "oauth"] or parts[:2] == ["oauth", "authorize"]:
            return 302, self.authorize(params), {}
        if parts == ["oauth", "access_token"] and params.get("grant_type") in (
                None, "authorization_code") and "code" in params:
            platform = self.app_platform.get(params.get("client_id", ""), "facebook")
            return 200, self.exchange_code(params, platform), {}
        if parts in (["oauth", "access_token"], ["access_token"], ["refresh_access_token"]):
            grant = params.get("grant_type", "")
            if grant not in ("fb_exchange_token", "th_exchange_token", "th_refresh_token"):
                raise GraphFailure(400, 100, f"Unsupported grant_type {grant!r}")
            return 200, self.exchange_long(params, grant), {}
        if version not in (self.version, self.threads_version):
            raise GraphFailure(400, 2635, f"(#2635) You are calling a deprecated version of "
                               f"the Graph API ({version})", error_type="OAuthException")
        entry = self.who(params.get("access_token"))
        if not parts:
            raise GraphFailure(400, 100, "Unsupported request")
        node = parts[0]
        if node == "me":
            node = entry["id"]
        edge = parts[1] if len(parts) > 1 else None
        kind = self._kind(node)
        checked = kind
        if kind == "container":
            checked = ("ig" if self.containers[node]["platform"] == "instagram"
                       else "threads") + "_container"
        elif kind == "media":
            checked = ("ig" if self.media[node]["platform"] == "instagram"
                       else "threads") + "_media"
        self.check_params(method, checked, edge, {**params, **{k: None for k in files}})
        headers = self.usage_headers()
        if kind == "page":
            page = self.page_of(entry, node)
            if (method, edge) == ("POST", "feed"):
                return 200, self.page_feed(page, params), headers
            if (method, edge) == ("POST", "photos"):
                return 200, self.page_photo(page, params, files), headers
            if (method, edge) in (("GET", "published_posts"), ("GET", "feed")):
                return 200, self.page_posts(page, params), headers
            if (method, edge) == ("GET", None):
                fields = _fields(params, "id,name")
                full = {"id": page["id"], "name": page["name"],
                        "link": f"https://www.facebook.com/{page['id']}"}
                return 200, {k: v for k, v in full.items() if k in fields}, headers
        if kind == "post" and (method, edge) == ("GET", None):
            post = self.posts[node]
            self.page_of(entry, post["owner"])
            return 200, self._post_json(post, _fields(params, "id")), headers
        if kind == "user" and method == "GET":
            if edge == "accounts":
                return 200, self.accounts(entry, params), headers
            if edge is None:
                return 200, {"id": node, "name": self.users[node]["name"]}, headers
        if kind in ("ig", "threads"):
            platform = "instagram" if kind == "ig" else "threads"
            self._may_act(entry, kind, node)
            users = self.ig_users if kind == "ig" else self.threads_users
            create_edge = "media" if kind == "ig" else "threads"
            if (method, edge) == ("POST", create_edge):
                return 200, {"id": self.create_container(platform, node, params)}, headers
            if (method, edge) == ("POST", f"{create_edge}_publish"):
                return 200, self.publish(platform, node, params.get("creation_id")), headers
            if (method, edge) == ("GET", f"{'content' if kind == 'ig' else 'threads'}"
                                         "_publishing_limit"):
                return 200, self.publishing_limit(platform, node), headers
            if (method, edge) == ("GET", create_edge):
                return 200, self.media_list(platform, node, params), headers
            if (method, edge) == ("GET", None):
                user = users[node]
                fields = _fields(params, "id")
                full = {"id": node, "username": user["username"], "name": user["username"]}
                return 200, {k: v for k, v in full.items() if k in fields or k == "id"}, \
                    headers
        if kind == "container" and (method, edge) == ("GET", None):
            container = self.containers[node]
            self._may_act(entry, "ig" if container["platform"] == "instagram" else "threads",
                          container["owner"])
            return 200, self.container_json(container, _fields(params, "id")), headers
        if kind == "media" and (method, edge) == ("GET", None):
            media = self.media[node]
            fields = _fields(params, "id")
            if media["platform"] == "threads" and "status" in fields:
                raise GraphFailure(400, 100, "(#100) Tried accessing nonexisting field "
                                   "(status) on node type (ThreadsMedia)")
            return 200, self.media_json(media, fields), headers
        raise GraphFailure(400, 100, f"Unsupported {method} request. Object with ID "
                           f"'{parts[0]}' does not exist or does not support this operation")

    def _kind(self, node: str) -> str:
        for kind, table in (("page", self.pages), ("post", self.posts), ("user", self.users),
                            ("ig", self.ig_users), ("threads", self.threads_users),
                            ("container", self.containers), ("media", self.media)):
            if node in table:
                return kind
        raise GraphFailure(400, 100, f"Unsupported request. Object with ID '{node}' does not "
                           "exist")

    def _may_act(self, entry: dict[str, Any], kind: str, owner: str) -> None:
        if kind == "ig":
            page = self.ig_users[owner]["page"]
            if entry["kind"] == "ig" and entry["id"] == owner:
                return
            if entry["kind"] == "page" and entry["id"] == page:
                return
        elif entry["kind"] == "threads" and entry["id"] == owner:
            return
        raise GraphFailure(403, 10, "(#10) Application does not have permission for this "
                           "action")


def _fields(query: dict[str, Any], default: str) -> list[str]:
    return [f.strip() for f in str(query.get("fields") or default).split(",") if f.strip()]


def _children(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, str) and value.startswith("["):
        return [str(v) for v in json.loads(value)]
    return [v.strip() for v in str(value).split(",") if v.strip()]


class _Handler(QuietHandler):
    server_version = "FakeGraph/1.0"
    json_type = "application/json; charset=UTF-8"

    def handle_method(self, method: str) -> None:
        fake: FakeGraph = self.server.fake  # type: ignore[attr-defined]
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        params: dict[str, Any] = {k: v[-1] for k, v in parse_qs(url.query).items()}
        files: dict[str, tuple[str | None, bytes]] = {}
        ctype = self.headers.get("Content-Type", "")
        if ctype.startswith("multipart/form-data"):
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw)
            for part in message.iter_parts() if message.is_multipart() else []:
                name = str(part.get_param("name", header="content-disposition"))
                payload = part.get_payload(decode=True) or b""
                if part.get_filename():
                    files[name] = (part.get_content_type(), payload)
                else:
                    params[name] = payload.decode()
        elif raw:
            params.update({k: v[-1] for k, v in parse_qs(raw.decode(),
                                                          keep_blank_values=True).items()})
        fake.note(method, url.path, {**params, **{k: None for k in files}})
        fault = fake.take_fault(method, url.path)
        if fault is not None and fault.kind == "reset":
            self.close_connection = True
            return
        if fault is not None and fault.kind == "hold":
            fake._stop.wait(120)
            self.close_connection = True
            return
        if fault is not None and fault.kind == "error":
            failure = GraphFailure(fault.status, fault.code, fault.message, fault.subcode,
                                   fault.error_type)
            self.send_json(fault.status, failure.body(), {**fake.usage_headers(), **fault.headers})
            return
        try:
            status, body, headers = fake.route(method, url.path, params, files)
        except GraphFailure as failure:
            status, body, headers = failure.status, failure.body(), fake.usage_headers()
        except (KeyError, ValueError, TypeError) as exc:
            status, body, headers = 400, GraphFailure(
                400, 100, f"(#100) Invalid parameter ({type(exc).__name__})").body(), {}
        if fault is not None and fault.kind == "drop":
            self.close_connection = True
            return
        if fault is not None and fault.kind == "hold_after":
            fake._stop.wait(120)
            self.close_connection = True
            return
        if status == 302:
            self.send_body(302, b"", headers={"Location": body})
            return
        self.send_json(status, body, headers)
