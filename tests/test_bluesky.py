"""The Bluesky adapter over httpx.MockTransport: request shapes, facets, grapheme counting,
record keys, the error table of platforms.md section 2, token refresh and redaction.
The same behaviour against the real reference PDS is in tests/e2e/test_bluesky_pds.py."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from autopost.accounts import refresh_account
from autopost.errors import UsageError
from autopost.models import Account, ErrorKind, Job, Media
from autopost.platforms import registry
from autopost.platforms.atproto import (
    TID_PATTERN,
    find_spans,
    grapheme_count,
    job_record_key,
    jwt_expiry,
    tid_decode,
    tid_encode,
)
from autopost.platforms.base import PlatformError, Verdict
from autopost.platforms.bluesky import BlueskyAdapter
from autopost.platforms.imageinfo import image_info, read_image_info
from autopost.store.sqlite import SqliteStore
from tests.images import gif, jpeg, png, webp_extended, webp_lossless, webp_lossy

NOW = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC)
BASE = "https://pds.example"
DID = "did:plc:alice123"
PASSWORD = "app-pass-abcd-efgh"


def jwt(exp: datetime, **claims: Any) -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    body = {"sub": DID, "exp": int(exp.timestamp()), **claims}
    return f"{part({'typ': 'at+jwt', 'alg': 'HS256'})}.{part(body)}.c2lnbmF0dXJl"


ACCESS = jwt(NOW + timedelta(hours=2), scope="com.atproto.access")
REFRESH = jwt(NOW + timedelta(days=90), scope="com.atproto.refresh", jti="r1")
SESSION = {"identifier": "alice.example.com", "password": PASSWORD, "access_jwt": ACCESS,
           "refresh_jwt": REFRESH, "did": DID, "handle": "alice.example.com"}


def err(status: int, code: str | None, message: str = "", **headers: str) -> httpx.Response:
    body = {"error": code, "message": message} if code else {"message": message}
    return httpx.Response(status, json=body, headers=headers)


def session_body(n: int) -> dict[str, Any]:
    return {"accessJwt": jwt(NOW + timedelta(hours=2), jti=f"a{n}"),
            "refreshJwt": jwt(NOW + timedelta(days=90), jti=f"r{n}"),
            "did": DID, "handle": "alice.example.com"}


class FakePds:
    """Scripted XRPC answers per method; the last answer of a method repeats."""

    def __init__(self) -> None:
        self.routes: dict[str, list[Any]] = {}
        self.requests: list[httpx.Request] = []

    def on(self, nsid: str, *answers: Any) -> FakePds:
        self.routes[nsid] = list(answers)
        return self

    def calls(self) -> list[str]:
        return [r.url.path.removeprefix("/xrpc/") for r in self.requests]

    def sent(self, nsid: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == f"/xrpc/{nsid}"]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        nsid = request.url.path.removeprefix("/xrpc/")
        answers = self.routes.get(nsid)
        if not answers:
            return err(501, "MethodNotImplemented", f"no answer scripted for {nsid}")
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer(request) if callable(answer) else answer


@pytest.fixture
def fake() -> FakePds:
    return FakePds()


def adapter(fake: FakePds, credentials: dict | None = None, *,
            stored: dict | None = None) -> BlueskyAdapter:
    creds = dict(SESSION if credentials is None else credentials)
    account = Account(name="bsky", platform="bluesky", base_url=BASE,
                      credentials=stored if stored is not None else creds)
    client = httpx.Client(transport=httpx.MockTransport(fake))
    return BlueskyAdapter(account, creds, client, clock=lambda: NOW)


def job(text: str = "hello", **kwargs: Any) -> Job:
    fields = dict(id="j1abcdef", account="bsky", platform="bluesky", text=text,
                  scheduled_at=NOW, next_attempt_at=NOW, idempotency_key="k" * 32,
                  created_at=NOW - timedelta(days=1))
    fields.update(kwargs)
    return Job(**fields)


def created(rkey: str = "3abc") -> httpx.Response:
    return httpx.Response(200, json={"uri": f"at://{DID}/app.bsky.feed.post/{rkey}",
                                     "cid": "bafyrei", "validationStatus": "valid"})


def record_of(request: httpx.Request) -> dict[str, Any]:
    return json.loads(request.content)


def test_registry_finds_the_adapter():
    assert registry.adapter_class("bluesky") is BlueskyAdapter
    assert BlueskyAdapter.refreshable and BlueskyAdapter.can_reconcile


# -- grapheme counting and limits ---------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("abc", 3),
    ("👨‍👩‍👧‍👦", 1),  # a ZWJ family
    ("🏳️‍🌈", 1),  # flag + variation selector + ZWJ + rainbow
    ("🇫🇷🇩🇪", 2),  # two regional-indicator flags
    ("e\u0301\u0323", 1),  # combining marks stay on their base
    ("👍🏽👍", 2),  # a skin tone modifier joins its emoji
    ("a\r\nb", 3),  # CR LF is one cluster
    ("\u1100\u1161\u11a8", 1),  # a Hangul syllable from conjoining jamo
    ("क्षि", 1),  # a Devanagari conjunct (Unicode 15.1)
    ("", 0),
])
def test_graphemes_are_counted_as_clusters(text, expected):
    assert grapheme_count(text) == expected
    assert BlueskyAdapter.text_length(text) == expected


def test_300_graphemes_fit_and_301_do_not():
    family = "👨‍👩‍👧"  # 18 bytes, 1 grapheme
    BlueskyAdapter.validate(family * 150 + "x" * 150, (), {})  # 2,850 bytes
    with pytest.raises(UsageError, match="301 graphemes; bluesky allows 300"):
        BlueskyAdapter.validate("é" * 301, (), {})


def test_the_3000_byte_limit_applies_even_under_300_graphemes():
    heavy = "e" + "\u0301" * 10  # 1 grapheme, 21 bytes
    with pytest.raises(UsageError, match="3150 bytes"):
        BlueskyAdapter.validate(heavy * 150, (), {})


def test_an_empty_post_needs_an_image(tmp_path: Path):
    with pytest.raises(UsageError, match="empty post"):
        BlueskyAdapter.validate("  ", (), {})
    image = tmp_path / "a.png"
    image.write_bytes(png(2, 2))
    BlueskyAdapter.validate("", (Media(str(image)),), {})


# -- facets -------------------------------------------------------------------------

def piece(text: str, start: int, end: int) -> str:
    return text.encode("utf-8")[start:end].decode("utf-8")


def test_facet_offsets_are_utf8_bytes():
    text = "Grüße 👋🏽 https://example.org/ü?q=1 @bob.test #Straße"
    spans = find_spans(text)
    assert [(s.kind, s.value) for s in spans] == [
        ("link", "https://example.org/ü?q=1"), ("mention", "bob.test"), ("tag", "Straße")]
    link = spans[0]
    assert link.byte_start == len("Grüße 👋🏽 ".encode()) == 17  # not 9 code points
    assert link.byte_end - link.byte_start == len("https://example.org/ü?q=1".encode())
    assert [piece(text, s.byte_start, s.byte_end) for s in spans] == [
        "https://example.org/ü?q=1", "@bob.test", "#Straße"]


@pytest.mark.parametrize("text, links", [
    ("see https://a.example/x.", ["https://a.example/x"]),
    ("(see https://a.example/x)", ["https://a.example/x"]),
    ("https://en.wikipedia.org/wiki/Set_(mathematics) ok", [
        "https://en.wikipedia.org/wiki/Set_(mathematics)"]),
    ("HTTP://A.EXAMPLE/Y!", ["HTTP://A.EXAMPLE/Y"]),
    ("a.example and ftp://a.example", []),
    ("xhttps://a.example", []),
])
def test_links_are_found_and_trailing_punctuation_left_out(text, links):
    assert [s.value for s in find_spans(text) if s.kind == "link"] == links


@pytest.mark.parametrize("text, handles", [
    ("hi @bob.test.", ["bob.test"]),
    ("(@carol.example.com)", ["carol.example.com"]),
    ("mail me: me@bob.test", []),
    ("@nodot and @-bad.test and @bob.123", []),
    ("https://x.example/@bob.test", []),
])
def test_mentions_are_handles_with_a_dot(text, handles):
    assert [s.value for s in find_spans(text) if s.kind == "mention"] == handles


@pytest.mark.parametrize("text, tags", [
    ("#one, #two! #3 #4ever", ["one", "two", "4ever"]),
    ("https://x.example/#frag a#b", []),
    ("#" + "a" * 65, []),
])
def test_tags(text, tags):
    assert [s.value for s in find_spans(text) if s.kind == "tag"] == tags


def test_publish_sends_facets_and_resolves_mentions_once(fake):
    fake.on("com.atproto.identity.resolveHandle",
            lambda r: httpx.Response(200, json={"did": "did:plc:bob"})
            if r.url.params["handle"] == "bob.test"
            else err(400, "InvalidRequest", "Unable to resolve handle"))
    fake.on("com.atproto.repo.createRecord", created())
    text = "ça va @bob.test? @BOB.test @ghost.test https://x.example"
    adapter(fake).publish(job(text), lambda ref: None)

    facets = record_of(fake.sent("com.atproto.repo.createRecord")[0])["record"]["facets"]
    found = [(piece(text, f["index"]["byteStart"], f["index"]["byteEnd"]),
              f["features"][0]) for f in facets]
    assert found == [
        ("@bob.test", {"$type": "app.bsky.richtext.facet#mention", "did": "did:plc:bob"}),
        ("@BOB.test", {"$type": "app.bsky.richtext.facet#mention", "did": "did:plc:bob"}),
        ("https://x.example", {"$type": "app.bsky.richtext.facet#link",
                               "uri": "https://x.example"}),
    ]
    asked = [r.url.params["handle"] for r in fake.sent("com.atproto.identity.resolveHandle")]
    assert asked == ["bob.test", "ghost.test"]


def test_a_failing_handle_lookup_stops_before_the_create(fake):
    fake.on("com.atproto.identity.resolveHandle", err(502, "UpstreamFailure"))
    with pytest.raises(PlatformError) as failed:
        adapter(fake).publish(job("hi @bob.test"), lambda ref: None)
    assert failed.value.kind == ErrorKind.SERVER
    assert "com.atproto.repo.createRecord" not in fake.calls()


# -- record keys --------------------------------------------------------------------

def test_tid_format_and_known_values():
    assert tid_encode(0, 0) == "2222222222222"
    assert tid_decode("3n3ejiximtk24") and tid_encode(*tid_decode("3n3ejiximtk24")) == (
        "3n3ejiximtk24")
    t = tid_encode(1_795_000_000_123_456, 1023)
    assert len(t) == 13 and TID_PATTERN.match(t)
    assert t[0] in "234567abcdefghij"  # the top bit is 0
    with pytest.raises(ValueError):
        tid_encode(2**53, 0)
    with pytest.raises(ValueError):
        tid_decode("my-post-1")


@given(st.integers(0, 2**53 - 1), st.integers(0, 1023),
       st.integers(0, 2**53 - 1), st.integers(0, 1023))
def test_tids_round_trip_and_sort_like_their_time(m1, c1, m2, c2):
    a, b = tid_encode(m1, c1), tid_encode(m2, c2)
    assert tid_decode(a) == (m1, c1)
    assert (a < b) == ((m1, c1) < (m2, c2))


def test_a_jobs_record_key_is_deterministic_and_within_its_second():
    one = job()
    again = job()  # another instance of the same job (a later run, another process)
    assert job_record_key(one) == job_record_key(again)
    micros, _clock = tid_decode(job_record_key(one))
    assert micros // 1_000_000 == int(NOW.timestamp())
    others = {job_record_key(job(id=f"j{n:07d}")) for n in range(2000)}
    assert len(others) == 2000  # same second, different jobs: different keys
    assert job_record_key(job(idempotency_key="x" * 32)) != job_record_key(one)


def test_publish_uses_the_jobs_key_and_saves_it_before_the_create(fake):
    order: list[str] = []
    fake.on("com.atproto.repo.createRecord", lambda r: order.append("create") or created())
    saved: list[dict] = []

    def save_ref(ref: dict) -> None:
        order.append("save")
        saved.append(ref)

    published = adapter(fake).publish(job("hello"), save_ref)

    body = record_of(fake.sent("com.atproto.repo.createRecord")[0])
    rkey = job_record_key(job())
    assert order == ["save", "create"]
    assert saved == [{"rkey": rkey, "created_at": "2026-11-28T10:00:00.000Z"}]
    assert body["rkey"] == rkey and body["repo"] == DID
    assert body["collection"] == "app.bsky.feed.post"
    assert body["record"] == {"$type": "app.bsky.feed.post", "text": "hello",
                              "createdAt": "2026-11-28T10:00:00.000Z"}
    assert published.post_id == f"at://{DID}/app.bsky.feed.post/3abc"
    assert published.url == f"https://bsky.app/profile/alice.example.com/post/{rkey}"
    assert fake.requests[0].headers["authorization"] == f"Bearer {ACCESS}"


def test_created_at_is_repeated_only_after_an_unknown_outcome(fake):
    fake.on("com.atproto.repo.createRecord", created())
    earlier = {"rkey": "3kaaaaaaaaaa2", "created_at": "2026-11-28T09:00:00.000Z"}
    a = adapter(fake)
    a.publish(job(ref=earlier, last_error_kind=ErrorKind.AMBIGUOUS), lambda ref: None)
    a.publish(job(ref=earlier, last_error_kind=ErrorKind.RATE_LIMITED), lambda ref: None)
    bodies = [record_of(r) for r in fake.sent("com.atproto.repo.createRecord")]
    assert [b["rkey"] for b in bodies] == ["3kaaaaaaaaaa2"] * 2  # a saved key wins
    assert [b["record"]["createdAt"] for b in bodies] == [
        "2026-11-28T09:00:00.000Z", "2026-11-28T10:00:00.000Z"]


def test_langs(fake):
    fake.on("com.atproto.repo.createRecord", created())
    adapter(fake).publish(job(options={"langs": "en, pt-BR"}), lambda ref: None)
    assert record_of(fake.requests[0])["record"]["langs"] == ["en", "pt-BR"]
    with pytest.raises(UsageError, match="at most 3"):
        BlueskyAdapter.validate("x", (), {"langs": ["en", "de", "fr", "it"]})
    with pytest.raises(UsageError, match="not a language tag"):
        BlueskyAdapter.validate("x", (), {"langs": ["english!"]})


# -- images -------------------------------------------------------------------------

@pytest.mark.parametrize("data, expected", [
    (png(40, 30), ("image/png", 40, 30)),
    (gif(7, 5), ("image/gif", 7, 5)),
    (jpeg(640, 480), ("image/jpeg", 640, 480)),
    (jpeg(64, 48, progressive=True), ("image/jpeg", 64, 48)),
    (jpeg(640, 480, orientation=6), ("image/jpeg", 480, 640)),  # shown rotated
    (jpeg(640, 480, orientation=3), ("image/jpeg", 640, 480)),  # upside down: same shape
    (webp_lossy(300, 200), ("image/webp", 300, 200)),
    (webp_lossless(301, 17), ("image/webp", 301, 17)),
    (webp_extended(4000, 3000), ("image/webp", 4000, 3000)),
])
def test_image_type_and_size_from_the_header(data, expected):
    info = image_info(data)
    assert (info.mime, info.width, info.height) == expected


def test_unknown_files_are_not_images(tmp_path: Path):
    assert image_info(b"%PDF-1.7 ...") is None
    assert image_info(b"") is None
    other = tmp_path / "a.txt"
    other.write_text("hello")
    assert read_image_info(other) is None


def test_image_rules_at_add_time(tmp_path: Path):
    def file(name: str, data: bytes) -> Media:
        (tmp_path / name).write_bytes(data)
        return Media(str(tmp_path / name))

    ok = file("ok.png", png(3, 3))
    BlueskyAdapter.validate("x", (ok,) * 4, {})
    with pytest.raises(UsageError, match="at most 4"):
        BlueskyAdapter.validate("x", (ok,) * 5, {})
    with pytest.raises(UsageError, match="1,000,001 bytes"):
        BlueskyAdapter.validate("x", (file("big.png", png(3, 3).ljust(1_000_001, b"\0")),), {})
    with pytest.raises(UsageError, match="PNG, JPEG, GIF or WebP"):
        BlueskyAdapter.validate("x", (file("doc.pdf", b"%PDF-1.7"),), {})
    with pytest.raises(UsageError, match="No such file"):
        BlueskyAdapter.validate("x", (Media(str(tmp_path / "missing.png")),), {})


def test_images_are_uploaded_as_blobs_with_alt_and_aspect_ratio(fake, tmp_path: Path):
    (tmp_path / "a.jpg").write_bytes(jpeg(1200, 800, orientation=8))
    (tmp_path / "b.png").write_bytes(png(10, 20))

    def upload(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"blob": {
            "$type": "blob", "ref": {"$link": f"bafk{len(request.content)}"},
            "mimeType": request.headers["content-type"], "size": len(request.content)}})

    fake.on("com.atproto.repo.uploadBlob", upload)
    fake.on("com.atproto.repo.createRecord", created())
    media = (Media(str(tmp_path / "a.jpg"), "a view"), Media(str(tmp_path / "b.png")))
    adapter(fake).publish(job("", media=media), lambda ref: None)

    uploads = fake.sent("com.atproto.repo.uploadBlob")
    assert [u.headers["content-type"] for u in uploads] == ["image/jpeg", "image/png"]
    assert uploads[0].content == (tmp_path / "a.jpg").read_bytes()
    embed = record_of(fake.sent("com.atproto.repo.createRecord")[0])["record"]["embed"]
    assert embed["$type"] == "app.bsky.embed.images"
    assert [(i["alt"], i["aspectRatio"]) for i in embed["images"]] == [
        ("a view", {"width": 800, "height": 1200}), ("", {"width": 10, "height": 20})]
    assert embed["images"][1]["image"]["mimeType"] == "image/png"


def test_a_refused_blob_reference_is_invalid(fake, tmp_path: Path):
    (tmp_path / "a.png").write_bytes(png(2, 2))
    fake.on("com.atproto.repo.uploadBlob", httpx.Response(200, json={"blob": {"ref": {}}}))
    fake.on("com.atproto.repo.createRecord", err(400, "BlobNotFound", "Could not find blob"))
    with pytest.raises(PlatformError) as failed:
        adapter(fake).publish(job(media=(Media(str(tmp_path / "a.png")),)), lambda ref: None)
    assert failed.value.kind == ErrorKind.INVALID
    assert "BlobNotFound: Could not find blob" in failed.value.message


# -- the error table ----------------------------------------------------------------

@pytest.mark.parametrize("answer, kind", [
    (err(400, "InvalidRequest", "Invalid app.bsky.feed.post record: Record/text must not "
         "be longer than 300 graphemes"), ErrorKind.INVALID),
    (err(400, "InvalidSwap", "Record was at bafyrei"), ErrorKind.INVALID),
    (err(400, "BlobNotFound", "Could not find blob"), ErrorKind.INVALID),
    (err(413, "PayloadTooLarge", "request entity too large"), ErrorKind.INVALID),
    (err(403, "AccountNotFound", "Account not found"), ErrorKind.INVALID),
    (err(400, "ExpiredToken", "Token has expired"), ErrorKind.AUTH_EXPIRED),
    (err(400, "InvalidToken", "Token could not be verified"), ErrorKind.AUTH_EXPIRED),
    (err(401, "AuthMissing", "Authentication Required"), ErrorKind.AUTH_EXPIRED),
    (err(401, "AuthenticationRequired", "Invalid identifier or password"),
     ErrorKind.AUTH_EXPIRED),
    (err(401, "AuthRequired", "Authentication Required"), ErrorKind.AUTH_EXPIRED),
    (err(400, "AccountTakedown", "Account has been taken down"), ErrorKind.AUTH_REVOKED),
    (err(401, "AccountDeactivated", "Account is deactivated"), ErrorKind.AUTH_REVOKED),
    (err(429, "RateLimitExceeded", "Rate Limit Exceeded"), ErrorKind.RATE_LIMITED),
    (err(500, "InternalServerError", "Internal Server Error"), ErrorKind.AMBIGUOUS),
    (err(502, "UpstreamFailure"), ErrorKind.AMBIGUOUS),
    (err(503, None, "Service Unavailable"), ErrorKind.AMBIGUOUS),
    (httpx.ReadTimeout("timed out"), ErrorKind.AMBIGUOUS),
    (httpx.RemoteProtocolError("peer closed connection"), ErrorKind.AMBIGUOUS),
    (httpx.ConnectError("connection refused"), ErrorKind.NETWORK),
])
def test_create_errors(fake, answer, kind):
    fake.on("com.atproto.repo.createRecord", answer)
    with pytest.raises(PlatformError) as failed:
        adapter(fake).publish(job(), lambda ref: None)
    assert failed.value.kind == kind
    if isinstance(answer, httpx.Response):
        assert failed.value.http_status == answer.status_code
        assert failed.value.code == answer.json().get("error")
        assert answer.json()["message"] in failed.value.message


@pytest.mark.parametrize("answer, kind", [
    (err(500, "InternalServerError"), ErrorKind.SERVER),
    (err(503, None, "Service Unavailable"), ErrorKind.SERVER),
    (httpx.ReadTimeout("timed out"), ErrorKind.NETWORK),
    (err(429, "RateLimitExceeded"), ErrorKind.RATE_LIMITED),
    (err(400, "InvalidRequest", "Could not locate record"), ErrorKind.INVALID),
])
def test_read_errors_are_never_ambiguous(fake, answer, kind):
    fake.on("com.atproto.repo.getRecord", answer)
    with pytest.raises(PlatformError) as failed:
        adapter(fake).reconcile(job())
    assert failed.value.kind == kind


def test_an_upload_5xx_is_a_server_error_not_ambiguous(fake, tmp_path: Path):
    (tmp_path / "a.png").write_bytes(png(2, 2))
    fake.on("com.atproto.repo.uploadBlob", err(503, None, "busy"))
    with pytest.raises(PlatformError) as failed:
        adapter(fake).publish(job(media=(Media(str(tmp_path / "a.png")),)), lambda ref: None)
    assert failed.value.kind == ErrorKind.SERVER
    assert "com.atproto.repo.createRecord" not in fake.calls()


def test_429_retry_at_from_ratelimit_reset_epoch_seconds(fake):
    reset = int((NOW + timedelta(seconds=217)).timestamp())
    fake.on("com.atproto.repo.createRecord", err(
        429, "RateLimitExceeded", "Rate Limit Exceeded", **{
            "RateLimit-Limit": "30", "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(reset), "RateLimit-Policy": "30;w=300"}))
    with pytest.raises(PlatformError) as limited:
        adapter(fake).publish(job(), lambda ref: None)
    assert limited.value.retry_at == datetime.fromtimestamp(reset, UTC)


def test_429_takes_the_later_of_reset_and_retry_after(fake):
    reset = int((NOW + timedelta(seconds=30)).timestamp())
    fake.on("com.atproto.repo.createRecord", err(
        429, "RateLimitExceeded", **{"RateLimit-Reset": str(reset), "Retry-After": "90"}))
    with pytest.raises(PlatformError) as limited:
        adapter(fake).publish(job(), lambda ref: None)
    assert limited.value.retry_at == NOW + timedelta(seconds=90)


@pytest.mark.parametrize("headers, expected", [
    ({"Retry-After": "120"}, NOW + timedelta(seconds=120)),
    ({"RateLimit-Policy": "3000;w=300"}, NOW + timedelta(seconds=300)),
    ({}, None),
])
def test_429_other_signals(fake, headers, expected):
    fake.on("com.atproto.repo.createRecord", err(429, "RateLimitExceeded", **headers))
    with pytest.raises(PlatformError) as limited:
        adapter(fake).publish(job(), lambda ref: None)
    assert limited.value.kind == ErrorKind.RATE_LIMITED
    assert limited.value.retry_at == expected


# -- reconcile ----------------------------------------------------------------------

def test_reconcile_reads_the_jobs_record_key(fake):
    the_job = job("posted?")
    rkey = job_record_key(the_job)
    fake.on("com.atproto.repo.getRecord",
            err(400, "RecordNotFound", f"Could not locate record: at://{DID}/x/{rkey}"),
            httpx.Response(200, json={"uri": f"at://{DID}/app.bsky.feed.post/{rkey}",
                                      "cid": "bafy", "value": {"text": "posted?"}}),
            httpx.Response(200, json={"uri": "at://x", "value": {"text": "other"}}))
    a = adapter(fake)
    assert a.reconcile(the_job).verdict == Verdict.NOT_POSTED
    found = a.reconcile(the_job)
    assert found.verdict == Verdict.POSTED
    assert found.published.post_id == f"at://{DID}/app.bsky.feed.post/{rkey}"
    assert found.published.url.endswith(f"/post/{rkey}")
    assert a.reconcile(the_job).verdict == Verdict.CANNOT_TELL
    params = fake.requests[0].url.params
    assert dict(params) == {"repo": DID, "collection": "app.bsky.feed.post", "rkey": rkey}
    assert "authorization" not in fake.requests[0].headers  # a public read


# -- sessions and refresh -----------------------------------------------------------

def test_setup_logs_in_once_and_keeps_env_references(fake):
    fake.on("com.atproto.server.createSession", httpx.Response(200, json=session_body(1)))
    operator = {"identifier": "alice.example.com", "password": {"env": "BSKY_PW"}}
    a = adapter(fake, {"identifier": "alice.example.com", "password": PASSWORD},
                stored=operator)
    fresh = a.setup()
    assert fake.calls() == ["com.atproto.server.createSession"]
    assert json.loads(fake.requests[0].content) == {"identifier": "alice.example.com",
                                                    "password": PASSWORD}
    assert fresh.credentials["password"] == {"env": "BSKY_PW"}  # no secret on disk
    assert fresh.credentials["access_jwt"] == session_body(1)["accessJwt"]
    assert fresh.credentials["refresh_jwt"] == session_body(1)["refreshJwt"]
    assert fresh.credentials["did"] == DID
    assert fresh.token_expires_at == NOW + timedelta(hours=2)


def test_refresh_rotates_both_tokens_without_logging_in(fake):
    fake.on("com.atproto.server.refreshSession", httpx.Response(200, json=session_body(2)))
    fresh = adapter(fake).refresh()
    assert fake.calls() == ["com.atproto.server.refreshSession"]
    assert fake.requests[0].headers["authorization"] == f"Bearer {REFRESH}"
    assert fresh.credentials == {"access_jwt": session_body(2)["accessJwt"],
                                 "refresh_jwt": session_body(2)["refreshJwt"],
                                 "did": DID, "handle": "alice.example.com"}


@pytest.mark.parametrize("refused", [
    err(400, "ExpiredToken", "Token has been revoked"),
    err(400, "InvalidToken", "Token could not be verified"),
    err(401, "AuthMissing", "Authentication Required"),
])
def test_a_refused_refresh_token_falls_back_to_the_password(fake, refused):
    fake.on("com.atproto.server.refreshSession", refused)
    fake.on("com.atproto.server.createSession", httpx.Response(200, json=session_body(3)))
    fresh = adapter(fake).refresh()
    assert fake.calls() == ["com.atproto.server.refreshSession",
                            "com.atproto.server.createSession"]
    assert fresh.credentials["refresh_jwt"] == session_body(3)["refreshJwt"]


@pytest.mark.parametrize("answer, kind", [
    (err(400, "AccountTakedown", "Account has been taken down"), ErrorKind.AUTH_REVOKED),
    (err(500, "InternalServerError"), ErrorKind.SERVER),
    (err(429, "RateLimitExceeded"), ErrorKind.RATE_LIMITED),
    (httpx.ConnectError("refused"), ErrorKind.NETWORK),
])
def test_other_refresh_failures_never_log_in(fake, answer, kind):
    fake.on("com.atproto.server.refreshSession", answer)
    with pytest.raises(PlatformError) as failed:
        adapter(fake).refresh()
    assert failed.value.kind == kind
    assert "com.atproto.server.createSession" not in fake.calls()


@pytest.mark.parametrize("answer, kind", [
    (err(401, "AuthenticationRequired", "Invalid identifier or password"),
     ErrorKind.AUTH_REVOKED),
    (err(400, "AccountTakedown", "Account has been taken down"), ErrorKind.AUTH_REVOKED),
    (err(401, "AuthFactorTokenRequired", "A sign in code has been sent"),
     ErrorKind.AUTH_REVOKED),
    (err(429, "RateLimitExceeded", **{"RateLimit-Reset": str(int(NOW.timestamp()) + 60)}),
     ErrorKind.RATE_LIMITED),
    (err(502, "UpstreamFailure"), ErrorKind.SERVER),
])
def test_when_the_login_fails_too(fake, answer, kind):
    fake.on("com.atproto.server.refreshSession", err(400, "ExpiredToken", "Token expired"))
    fake.on("com.atproto.server.createSession", answer)
    with pytest.raises(PlatformError) as failed:
        adapter(fake).refresh()
    assert failed.value.kind == kind
    assert fake.calls().count("com.atproto.server.createSession") == 1


def test_without_a_session_a_run_asks_for_a_login_first(fake):
    a = adapter(fake, {"identifier": "alice.example.com", "password": PASSWORD})
    with pytest.raises(PlatformError) as failed:
        a.publish(job(), lambda ref: None)
    assert failed.value.kind == ErrorKind.AUTH_EXPIRED
    assert fake.requests == []
    fake.on("com.atproto.server.createSession", httpx.Response(200, json=session_body(4)))
    assert a.refresh().credentials["access_jwt"] == session_body(4)["accessJwt"]


def test_no_password_means_reauth(fake):
    a = adapter(fake, {"identifier": "alice.example.com", "password": ""})
    with pytest.raises(PlatformError) as failed:
        a.refresh()
    assert failed.value.kind == ErrorKind.AUTH_REVOKED
    assert fake.requests == []


def test_refresh_through_the_store_merges_and_commits_before_use(fake, tmp_path: Path,
                                                                 monkeypatch):
    monkeypatch.setenv("BSKY_TEST_PW", PASSWORD)
    store = SqliteStore(tmp_path / "a.db")
    operator = {**SESSION, "password": {"env": "BSKY_TEST_PW"}}
    store.add_account(Account(name="bsky", platform="bluesky", base_url=BASE,
                              credentials=operator, token_expires_at=NOW), now=NOW)
    account = store.get_account("bsky")
    client = httpx.Client(transport=httpx.MockTransport(fake))
    a = BlueskyAdapter(account, SESSION, client, clock=lambda: NOW)
    fake.on("com.atproto.server.refreshSession", httpx.Response(200, json=session_body(5)))
    fake.on("com.atproto.repo.createRecord", created())

    updated = refresh_account(store, a, account.credentials, "run-1", clock=lambda: NOW)

    stored = store.get_account("bsky")
    assert stored == updated
    assert stored.credentials["password"] == {"env": "BSKY_TEST_PW"}
    assert stored.credentials["access_jwt"] == session_body(5)["accessJwt"]
    assert stored.credentials["refresh_jwt"] == session_body(5)["refreshJwt"]
    assert stored.token_expires_at == NOW + timedelta(hours=2)
    a.publish(job(), lambda ref: None)
    assert fake.sent("com.atproto.repo.createRecord")[0].headers["authorization"] == (
        f"Bearer {session_body(5)['accessJwt']}")
    store.close()


def test_jwt_expiry():
    assert jwt_expiry(ACCESS) == NOW + timedelta(hours=2)
    assert jwt_expiry("not a token") is None
    assert jwt_expiry("a.!!!.c") is None
    assert jwt_expiry(None) is None


# -- accounts check -----------------------------------------------------------------

def test_check(fake):
    fake.on("com.atproto.server.getSession", httpx.Response(200, json={
        "handle": "alice.example.com", "did": DID, "active": True}))
    info = adapter(fake).check()
    assert info.display == "alice.example.com"
    assert info.url == "https://bsky.app/profile/alice.example.com"
    assert info.token_expires_at == NOW + timedelta(hours=2)
    assert fake.requests[0].headers["authorization"] == f"Bearer {ACCESS}"


def test_check_of_an_inactive_account(fake):
    fake.on("com.atproto.server.getSession", httpx.Response(200, json={
        "handle": "alice.example.com", "did": DID, "active": False, "status": "takendown"}))
    with pytest.raises(PlatformError) as failed:
        adapter(fake).check()
    assert failed.value.kind == ErrorKind.AUTH_REVOKED
    assert "takendown" in failed.value.message


def test_check_with_an_expired_token(fake):
    fake.on("com.atproto.server.getSession", err(400, "ExpiredToken", "Token has expired"))
    with pytest.raises(PlatformError) as failed:
        adapter(fake).check()
    assert failed.value.kind == ErrorKind.AUTH_EXPIRED


# -- secrets ------------------------------------------------------------------------

def echo_secrets(request: httpx.Request) -> httpx.Response:
    """A server that repeats everything it was sent in its error message."""
    echoed = f"{request.headers.get('authorization')} {request.content.decode(errors='ignore')}"
    return err(400, "InvalidRequest", f"bad input: {echoed}")


@pytest.mark.parametrize("nsid, call", [
    ("com.atproto.repo.createRecord", lambda a: a.publish(job(), lambda ref: None)),
    ("com.atproto.server.refreshSession", lambda a: a.refresh()),
    ("com.atproto.server.createSession", lambda a: a.setup()),
    ("com.atproto.server.getSession", lambda a: a.check()),
])
def test_no_secret_in_any_message(fake, nsid, call):
    fake.on(nsid, echo_secrets)
    fake.on("com.atproto.server.refreshSession", err(400, "ExpiredToken", REFRESH))
    fake.on("com.atproto.server.createSession", echo_secrets)
    other_jwt = jwt(NOW, sub="did:plc:someone-else")
    if nsid == "com.atproto.server.getSession":
        fake.on(nsid, err(400, "InvalidRequest", f"token {other_jwt} is odd"))
    with pytest.raises(PlatformError) as failed:
        call(adapter(fake))
    text = f"{failed.value} {failed.value.message} {failed.value.args}"
    for secret in (PASSWORD, ACCESS, REFRESH, other_jwt):
        assert secret not in text
    assert "[redacted]" in text


def test_no_secret_in_transport_errors(fake):
    fake.on("com.atproto.repo.createRecord", httpx.ReadTimeout(f"timed out; sent {ACCESS}"))
    with pytest.raises(PlatformError) as failed:
        adapter(fake).publish(job(), lambda ref: None)
    assert ACCESS not in str(failed.value) and ACCESS not in repr(failed.value.args)
