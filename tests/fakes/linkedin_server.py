"""A local LinkedIn (Posts API, Images API, userinfo) on 127.0.0.1, for tests.

It behaves as platforms.md section 4 and platforms-testing.md section 6 describe,
including the ugly parts:
- every /rest/ request must carry `LinkedIn-Version` (an active YYYYMM, else 426
  NONEXISTENT_VERSION) and `X-Restli-Protocol-Version: 2.0.0` (else 400);
- a bearer token per member; an unknown token answers 401 (serviceErrorCode 65600), a
  revoked one 401 (65601);
- POST /rest/posts checks the documented body fields (422 naming a missing or unknown
  field), the author (the member, or a page the member administers: else 403) and the
  scope, answers 201 with an empty body and the URN in `x-restli-id`;
- commentary is read as "little" text: an escaped reserved character shows as itself,
  an unescaped one silently cuts the post short there (the API still says 201);
- the same text by the same author again answers 422 DUPLICATE_POST naming the post;
- images: initializeUpload gives an upload URL on www.linkedin.com (rewritten to this
  server by --base-url) and an image URN; a PUT stores the file (a second PUT replaces
  it: LinkedIn keeps only the last); a post may refer only to uploaded images of its
  author, one (`content.media`) or 2-20 (`content.multiImage`);
- GET /rest/posts?q=author lists the author's posts, newest first, only with the read
  scope (r_member_social / r_organization_social) and a percent-encoded URN;
- GET /rest/organizationAcls?q=roleAssignee lists the pages the member administers;
- OAuth: GET /oauth/v2/authorization (the member `approver` approves at once: 302 to the
  redirect URI with a code and the state), POST /oauth/v2/accessToken (client secret in
  the form, code single-use and bound to its redirect URI; 60-day tokens; a refresh
  token only for clients marked as approved partners).
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode

from tests.fakes.httpfake import FakeServer, Reply, Request

ACTIVE_VERSIONS = ("202510", "202511", "202601", "202602", "202603")
RESERVED = set("\\|{}@[]()<>#*_~")
POST_FIELDS = {"author", "commentary", "visibility", "distribution", "lifecycleState",
               "isReshareDisabledByAuthor", "content", "contentLandingPage",
               "contentCallToActionLabel", "adContext", "reshareContext"}
REQUIRED = ("author", "commentary", "visibility", "distribution", "lifecycleState")
_MENTION = re.compile(r"@\[([^\]\\]*)\]\((urn:li:(?:person|organization):[\w-]+)\)")
_HASHTAG = re.compile(r"\{hashtag\|\\#\|([^}\\]+)\}")


def render_little(commentary: str) -> str:
    """What LinkedIn shows for a commentary: escapes resolved, templates rendered, and
    the text cut at the first unescaped reserved character."""
    out = []
    i = 0
    while i < len(commentary):
        c = commentary[i]
        if c == "\\" and i + 1 < len(commentary):
            out.append(commentary[i + 1])
            i += 2
            continue
        if c == "@" and (m := _MENTION.match(commentary, i)):
            out.append(m.group(1))
            i = m.end()
            continue
        if c == "{" and (m := _HASHTAG.match(commentary, i)):
            out.append("#" + m.group(1))
            i = m.end()
            continue
        if c in RESERVED:
            break  # observed: the rest of the post silently disappears
        out.append(c)
        i += 1
    return "".join(out)


@dataclass
class Member:
    token: str
    sub: str
    name: str
    scopes: set[str]
    organizations: set[str] = field(default_factory=set)   # org ids administered
    revoked: bool = False

    @property
    def urn(self) -> str:
        return f"urn:li:person:{self.sub}"


@dataclass
class Post:
    urn: str
    author: str
    commentary: str
    shown: str
    visibility: str
    content: dict[str, Any] | None
    created_at: int
    token: str
    body: dict[str, Any]


def _error(status: int, message: str, code: str | None = None,
           service: int | None = None) -> Reply:
    body: dict[str, Any] = {"status": status, "message": message}
    if code:
        body["code"] = code
    if service is not None:
        body["serviceErrorCode"] = service
    return Reply(status, body)


class FakeLinkedIn(FakeServer):
    def __init__(self, *, port: int = 0, versions: tuple[str, ...] = ACTIVE_VERSIONS):
        super().__init__(port)
        self.versions = set(versions)
        self.members: dict[str, Member] = {}
        self.posts: list[Post] = []
        self.images: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(7_100_000_000_000_000_001)
        self._clock_offset = 0.0
        self.clients: dict[str, dict[str, Any]] = {}   # client id -> {secret, partner}
        self.codes: dict[str, dict[str, Any]] = {}
        self.refresh_tokens: dict[str, Member] = {}
        self.exchanges = 0
        self.approver: str | None = None               # token of the member who approves

    def add_client(self, client_id: str, secret: str, *, partner: bool = False) -> None:
        with self.lock:
            self.clients[client_id] = {"secret": secret, "partner": partner}

    # -- test controls ------------------------------------------------------------------
    def add_member(self, token: str, sub: str, name: str = "Ada Lovelace", *,
                   scopes: tuple[str, ...] = ("openid", "profile", "w_member_social"),
                   organizations: tuple[str, ...] = ()) -> Member:
        member = Member(token, sub, name, set(scopes), set(organizations))
        with self.lock:
            self.members[token] = member
        return member

    def now_ms(self) -> int:
        return int((time.time() + self._clock_offset) * 1000)

    def advance(self, seconds: float) -> None:
        with self.lock:
            self._clock_offset += seconds

    def ledger(self) -> list[Post]:
        with self.lock:
            return list(self.posts)

    # -- routing ------------------------------------------------------------------------
    def route(self, request: Request) -> Reply:
        path = request.path
        if path == "/oauth/v2/authorization" and request.method == "GET":
            return self._authorize(request)
        if path == "/oauth/v2/accessToken" and request.method == "POST":
            return self._token(request)
        if path.startswith("/dms-uploads/"):
            return self._put_image(request)
        member = self._member(request)
        if isinstance(member, Reply):
            return member
        if path == "/v2/userinfo" and request.method == "GET":
            return Reply(200, {"sub": member.sub, "name": member.name,
                               "given_name": member.name.split()[0], "email_verified": True})
        if not path.startswith("/rest/"):
            return _error(404, f"No resource found for {path}")
        version = request.header("linkedin-version")
        if version not in self.versions:
            return Reply(426, {"status": 426, "code": "NONEXISTENT_VERSION",
                               "message": f"Requested version {version} is not active"})
        if request.header("x-restli-protocol-version") != "2.0.0":
            return _error(400, "X-Restli-Protocol-Version 2.0.0 is required for the "
                               "versioned APIs", "ILLEGAL_ARGUMENT")
        if path == "/rest/posts" and request.method == "POST":
            return self._create_post(member, request)
        if path == "/rest/posts" and request.method == "GET":
            return self._find_posts(member, request)
        if path == "/rest/organizationAcls" and request.method == "GET":
            orgs = sorted(member.organizations)
            return Reply(200, {"elements": [
                {"organization": f"urn:li:organization:{o}", "role": "ADMINISTRATOR",
                 "roleAssignee": member.urn, "state": "APPROVED"} for o in orgs]})
        if path == "/rest/images" and request.method == "POST":
            if request.query.get("action") != ["initializeUpload"]:
                return _error(400, "unknown action", "ILLEGAL_ARGUMENT")
            return self._initialize_upload(member, request)
        return _error(404, f"No resource found for {request.method} {path}")

    # -- OAuth ----------------------------------------------------------------------------
    def _authorize(self, request: Request) -> Reply:
        q = {k: v[-1] for k, v in request.query.items()}
        client = self.clients.get(q.get("client_id", ""))
        redirect = q.get("redirect_uri", "")
        if client is None or q.get("response_type") != "code" or \
                not redirect.startswith("http://127.0.0.1:"):
            return _error(400, "invalid authorization request")
        member = self.members.get(self.approver or "")
        if member is None:
            return _error(400, "nobody is logged in to approve")
        scopes = set(q.get("scope", "").split())
        if not scopes or not scopes <= member.scopes | {"openid", "profile", "email"}:
            return Reply(302, None, {"Location": redirect + "?" + urlencode({
                "error": "unauthorized_scope_error", "state": q.get("state", "")})})
        code = f"AQ{next(self._ids)}"
        with self.lock:
            self.codes[code] = {"client": q["client_id"], "redirect": redirect,
                                "member": member, "scopes": scopes}
        return Reply(302, None, {"Location": redirect + "?" + urlencode(
            {"code": code, "state": q.get("state", "")})})

    def _token(self, request: Request) -> Reply:
        form = {k: v[-1] for k, v in parse_qs(request.body.decode()).items()}
        client = self.clients.get(form.get("client_id", ""))
        if client is None or form.get("client_secret") != client["secret"]:
            return Reply(401, {"error": "invalid_client",
                               "error_description": "Client authentication failed"})
        grant = form.get("grant_type")
        with self.lock:
            if grant == "authorization_code":
                entry = self.codes.pop(form.get("code", ""), None)
                if entry is None or entry["redirect"] != form.get("redirect_uri") or \
                        entry["client"] != form["client_id"]:
                    return Reply(400, {"error": "invalid_request", "error_description":
                                       "Unable to retrieve access token: appid/redirect "
                                       "uri/code verifier does not match authorization code"})
                member = entry["member"]
                self.exchanges += 1
            elif grant == "refresh_token":
                member = self.refresh_tokens.get(form.get("refresh_token", ""))
                if member is None or not client["partner"]:
                    return Reply(400, {"error": "invalid_grant", "error_description":
                                       "The provided authorization grant is invalid"})
            else:
                return Reply(400, {"error": "unsupported_grant_type"})
            token = f"AQV{secrets.token_urlsafe(16)}"
            self.members[token] = member
            body: dict[str, Any] = {"access_token": token, "expires_in": 5_184_000,
                                    "scope": ",".join(sorted(member.scopes))}
            if client["partner"]:
                refresh = f"AQX{secrets.token_urlsafe(16)}"
                self.refresh_tokens[refresh] = member
                body.update(refresh_token=refresh, refresh_token_expires_in=31_536_000)
        return Reply(200, body)

    def _member(self, request: Request) -> Member | Reply:
        auth = request.header("authorization") or ""
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        member = self.members.get(token)
        if member is None:
            return _error(401, "Invalid access token", "INVALID_ACCESS_TOKEN", 65600)
        if member.revoked:
            return _error(401, "The token used in the request has been revoked by the user",
                          "REVOKED_ACCESS_TOKEN", 65601)
        return member

    def _may_act_as(self, member: Member, urn: str, action: str) -> Reply | None:
        scope = {"write": ("w_member_social", "w_organization_social"),
                 "read": ("r_member_social", "r_organization_social")}[action]
        if urn == member.urn:
            if scope[0] not in member.scopes:
                return _error(403, f"Not enough permissions to access: {scope[0]}",
                              "ACCESS_DENIED", 100)
            return None
        m = re.fullmatch(r"urn:li:organization:(\w+)", urn or "")
        if m and m.group(1) in member.organizations:
            if scope[1] not in member.scopes:
                return _error(403, f"Not enough permissions to access: {scope[1]}",
                              "ACCESS_DENIED", 100)
            return None
        return _error(403, "Unpermitted fields present in PARAMETER: Data Processing "
                           "Exception while processing fields [/author]", "ACCESS_DENIED", 100)

    def _create_post(self, member: Member, request: Request) -> Reply:
        if not (request.header("content-type") or "").startswith("application/json"):
            return _error(415, "Unsupported Media Type")
        try:
            body = request.json()
        except ValueError:
            return _error(400, "Could not parse the request body as JSON", "ILLEGAL_ARGUMENT")
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object", "ILLEGAL_ARGUMENT")
        for key in body:
            if key not in POST_FIELDS:
                return _error(422, f"ERROR :: /{key} :: unrecognized field found but not "
                                   "allowed", "UNPROCESSABLE_ENTITY")
        for key in REQUIRED:
            if key not in body:
                return _error(422, f"ERROR :: /{key} :: field is required but not found",
                              "UNPROCESSABLE_ENTITY")
        author = body["author"]
        denied = self._may_act_as(member, author if isinstance(author, str) else "", "write")
        if denied:
            return denied
        if body["visibility"] not in ("PUBLIC", "CONNECTIONS", "LOGGED_IN"):
            return _error(422, "ERROR :: /visibility :: invalid enum value")
        if author.startswith("urn:li:organization:") and body["visibility"] != "PUBLIC":
            return _error(422, "ERROR :: /visibility :: organization posts must be PUBLIC")
        dist = body["distribution"]
        if not isinstance(dist, dict) or dist.get("feedDistribution") not in ("MAIN_FEED",
                                                                             "NONE"):
            return _error(422, "ERROR :: /distribution/feedDistribution :: field is "
                               "required but not found")
        if body["lifecycleState"] != "PUBLISHED":
            return _error(422, "ERROR :: /lifecycleState :: invalid enum value")
        commentary = body["commentary"]
        if not isinstance(commentary, str):
            return _error(422, "ERROR :: /commentary :: expected a string")
        content = body.get("content")
        if content is not None:
            problem = self._check_content(author, content)
            if problem:
                return problem
        with self.lock:
            for post in self.posts:
                if post.author == author and post.commentary == commentary and commentary:
                    text = f"Content is a duplicate of {post.urn}"
                    return Reply(422, {
                        "errorDetailType": "com.linkedin.common.error.BadRequest",
                        "message": f"ERROR :: /commentary :: {text}",
                        "errorDetails": {"inputErrors": [{
                            "description": text, "code": "DUPLICATE_POST",
                            "input": {"inputPath": {"fieldPath": "/commentary"}}}]},
                        "status": 422})
            urn = f"urn:li:share:{next(self._ids)}"
            used = (request.header("authorization") or "")[7:].strip()
            self.posts.append(Post(urn, author, commentary, render_little(commentary),
                                   body["visibility"], content, self.now_ms(), used, body))
        return Reply(201, None, {"x-restli-id": urn, "x-linkedin-id": urn})

    def _check_content(self, author: str, content: Any) -> Reply | None:
        if not isinstance(content, dict) or len(content) != 1:
            return _error(422, "ERROR :: /content :: exactly one content type is allowed")
        if "media" in content:
            items = [content["media"]]
            where = "/content/media"
        elif "multiImage" in content:
            images = (content["multiImage"] or {}).get("images")
            if not isinstance(images, list) or not 2 <= len(images) <= 20:
                return _error(422, "ERROR :: /content/multiImage/images :: a multi-image "
                                   "post takes 2 to 20 images")
            items = images
            where = "/content/multiImage/images"
        else:
            return _error(422, f"ERROR :: /content/{next(iter(content))} :: not supported "
                               "by this fake")
        for item in items:
            if not isinstance(item, dict) or set(item) - {"id", "altText", "title"}:
                return _error(422, f"ERROR :: {where} :: unrecognized field")
            image = self.images.get(str(item.get("id")))
            if image is None or image["owner"] != author:
                return _error(422, f"ERROR :: {where}/id :: {item.get('id')} does not exist "
                                   "or is not owned by the author")
            if image["data"] is None:
                return _error(422, f"ERROR :: {where}/id :: {item['id']} has not been "
                                   "uploaded")
            alt = item.get("altText")
            if alt is not None and (not isinstance(alt, str) or len(alt) > 4086):
                return _error(422, f"ERROR :: {where}/altText :: at most 4086 characters")
        return None

    def _initialize_upload(self, member: Member, request: Request) -> Reply:
        try:
            owner = request.json()["initializeUploadRequest"]["owner"]
        except (ValueError, KeyError, TypeError):
            return _error(422, "ERROR :: /initializeUploadRequest/owner :: field is required "
                               "but not found")
        denied = self._may_act_as(member, owner, "write")
        if denied:
            return denied
        with self.lock:
            image_id = f"D4E{next(self._ids)}"
            urn = f"urn:li:image:{image_id}"
            self.images[urn] = {"owner": owner, "data": None, "puts": 0,
                                "content_type": None}
        upload = (f"https://www.linkedin.com/dms-uploads/sp/{image_id}/uploaded-image/0"
                  f"?ca=vector_feedshare&cn=uploads&m=AQ&app=201&sync=0&v=beta")
        return Reply(200, {"value": {"uploadUrlExpiresAt": self.now_ms() + 86_400_000,
                                     "uploadUrl": upload, "image": urn}})

    def _put_image(self, request: Request) -> Reply:
        member = self._member(request)
        if isinstance(member, Reply):
            return member
        if request.method != "PUT":
            return _error(405, "Method Not Allowed")
        m = re.match(r"/dms-uploads/sp/([^/]+)/uploaded-image/0$", request.path)
        urn = f"urn:li:image:{m.group(1)}" if m else ""
        with self.lock:
            image = self.images.get(urn)
            if image is None:
                return _error(404, "No upload for this URL")
            image["data"] = request.body  # only the last PUT is kept
            image["puts"] += 1
            image["content_type"] = request.header("content-type")
        return Reply(201, None)

    def _find_posts(self, member: Member, request: Request) -> Reply:
        if request.query.get("q") != ["author"]:
            return _error(400, "q=author is the supported finder", "ILLEGAL_ARGUMENT")
        raw = re.search(r"(?:^|&)author=([^&]*)", request.raw_query)
        if raw is None or ":" in raw.group(1):
            return _error(400, "Invalid value for param 'author': URNs must be encoded",
                          "ILLEGAL_ARGUMENT")
        author = unquote(raw.group(1))
        denied = self._may_act_as(member, author, "read")
        if denied:
            return denied
        count = int(request.query.get("count", ["10"])[0])
        with self.lock:
            found = [p for p in self.posts if p.author == author]
        found.sort(key=lambda p: p.created_at, reverse=True)
        elements = [{"id": p.urn, "author": p.author, "commentary": p.commentary,
                     "visibility": p.visibility, "createdAt": p.created_at,
                     "lastModifiedAt": p.created_at, "lifecycleState": "PUBLISHED",
                     **({"content": p.content} if p.content else {})}
                    for p in found[:count]]
        return Reply(200, {"elements": elements,
                           "paging": {"start": 0, "count": count, "links": []}})
