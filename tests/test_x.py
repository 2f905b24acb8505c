"""The X adapter against the fake X server (tests/fakes/x_server.py). Every request the
adapter sends is validated by the fake against X's official OpenAPI description; each
test ends by asserting that nothing was refused (and that the fake's own answers kept
to the spec)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from autopost.errors import UsageError
from autopost.models import Account, ErrorKind, Job, Media
from autopost.platforms import x as xmod
from autopost.platforms.base import PlatformError, Verdict
from autopost.platforms.x import XAdapter, comparable, weighted_length
from tests.fakes.x_server import FakeX
from tests.images import png as png_bytes


@pytest.fixture(scope="module")
def server():
    with FakeX() as fake:
        yield fake


@pytest.fixture
def fake(server):
    """The module's server, reset to a clean state for each test."""
    fresh = FakeX()
    keep = server._server
    server.__dict__.update({k: v for k, v in fresh.__dict__.items() if k != "_server"})
    server._server = keep
    yield server
    assert server.violations == [], server.violations
    assert server.response_violations == [], server.response_violations


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def adapter(fake: FakeX, *, creds: dict | None = None, sleeps: Sleeps | None = None
            ) -> XAdapter:
    tokens = creds if creds is not None else fake.issue()
    credentials = {"client_id": "cid", "access_token": tokens["access_token"]}
    if tokens.get("refresh_token"):
        credentials["refresh_token"] = tokens["refresh_token"]
    account = Account("xa", "x", base_url=fake.base_url, credentials=credentials)
    client = httpx.Client(timeout=10)
    return XAdapter(account, credentials, client,
                    sleep=Sleeps() if sleeps is None else sleeps)


def job(text: str = "hello X", media: tuple[Media, ...] = (), **kw) -> Job:
    now = datetime.now(UTC)
    return Job(id=kw.pop("id", "job00001"), account="xa", platform="x", text=text,
               scheduled_at=now, next_attempt_at=now, media=media, **kw)


class Refs(dict):
    def __call__(self, ref: dict) -> None:
        self.update(ref)


# -- counting and checks at add time --------------------------------------------------------

def test_weighted_counting_matches_x():
    assert weighted_length("hello") == 5
    assert weighted_length("https://example.com/" + "a" * 200) == 23
    assert weighted_length("日本語") == 6  # CJK weighs 2
    assert weighted_length("👨‍👩‍👧") == 2  # one emoji sequence
    assert weighted_length("é") == 1
    XAdapter.validate("a" * 280, (), {})
    XAdapter.validate("日" * 140, (), {})
    with pytest.raises(UsageError, match="282 characters; x allows 280"):
        XAdapter.validate("日" * 141, (), {})
    XAdapter.validate("x " * 100 + "https://example.com/" + "z" * 300, (), {})


def test_media_mix_and_limits_are_refused_at_add_time(tmp_path):
    png = tmp_path / "a.png"
    png.write_bytes(png_bytes(4, 4))
    mp4 = tmp_path / "v.mp4"
    mp4.write_bytes(b"\x00" * 10)
    XAdapter.validate("four", tuple(Media(str(png)) for _ in range(4)), {})
    with pytest.raises(UsageError, match="at most 4"):
        XAdapter.validate("five", tuple(Media(str(png)) for _ in range(5)), {})
    with pytest.raises(UsageError, match="one GIF or one video"):
        XAdapter.validate("mix", (Media(str(png)), Media(str(mp4))), {})
    with pytest.raises(UsageError, match="alt text is 1001"):
        XAdapter.validate("alt", (Media(str(png), "a" * 1001),), {})
    with pytest.raises(UsageError, match="x takes images"):
        XAdapter.validate("doc", (Media(str(tmp_path / "a.pdf")),), {})
    assert XAdapter.check_options({"reply_settings": "following"}) == {
        "reply_settings": "following"}
    with pytest.raises(UsageError, match="option 'quote_tweet_id'"):
        XAdapter.check_options({"quote_tweet_id": "abc"})


# -- publishing -----------------------------------------------------------------------------

def test_text_post_is_created_and_the_dispatch_time_saved_first(fake):
    refs = Refs()
    a = adapter(fake)
    published = a.publish(job("hello X"), refs)
    [post] = fake.timeline()
    assert published.post_id == post.id and post.text == "hello X"
    assert published.url == f"https://x.com/i/web/status/{post.id}"
    assert "first_sent_at" in refs and refs["media_count"] == 0


def test_images_go_up_in_one_request_each_with_alt_text(fake, tmp_path):
    files = []
    for i in range(2):
        path = tmp_path / f"i{i}.png"
        path.write_bytes(png_bytes(8 + i, 8))
        files.append(Media(str(path), f"picture {i}"))
    published = adapter(fake).publish(job("two pictures", tuple(files)), Refs())
    [post] = fake.timeline()
    assert post.id == published.post_id and len(post.media_keys) == 2
    items = [fake.media[k.removeprefix("3_")] for k in post.media_keys]
    assert [m["alt"] for m in items] == ["picture 0", "picture 1"]
    assert [m["category"] for m in items] == ["tweet_image"] * 2
    paths = [p for m, p in fake.requests if m == "POST"]
    assert paths.count("/2/media/upload") == 2 and paths.count("/2/media/metadata") == 2


@pytest.mark.parametrize("name,category", [("clip.mp4", "tweet_video"),
                                           ("anim.gif", "tweet_gif")])
def test_video_and_gif_go_up_in_chunks_and_wait_for_processing(fake, tmp_path, monkeypatch,
                                                               name, category):
    monkeypatch.setattr(xmod, "CHUNK", 1000)
    data = bytes(range(256)) * 10  # 2560 bytes: 3 chunks
    path = tmp_path / name
    path.write_bytes(data)
    fake.processing_polls = 3
    sleeps = Sleeps()
    published = adapter(fake, sleeps=sleeps).publish(job("moving", (Media(str(path)),)),
                                                     Refs())
    [post] = fake.timeline()
    assert post.id == published.post_id
    item = fake.media[post.media_keys[0].removeprefix("3_")]
    assert item["category"] == category and item["state"] == "succeeded"
    assert b"".join(item["chunks"][i] for i in sorted(item["chunks"])) == data
    appends = [p for m, p in fake.requests if p.endswith("/append")]
    assert len(appends) == 3
    polls = [p for m, p in fake.requests if m == "GET" and p == "/2/media/upload"]
    assert len(polls) == 3 and sleeps == [1.0, 1.0, 1.0]  # check_after_secs honoured


def test_media_that_fails_processing_fails_the_job_and_posts_nothing(fake, tmp_path):
    path = tmp_path / "v.mp4"
    path.write_bytes(b"\x01" * 50)
    original = fake.media_status

    def failing(item):
        if item["state"] == "pending":
            item["state"] = "failed"
        return original(item)

    fake.media_status = failing
    with pytest.raises(PlatformError) as err:
        adapter(fake).publish(job("broken video", (Media(str(path)),)), Refs())
    assert err.value.kind == ErrorKind.INVALID and fake.timeline() == []


def test_options_reach_the_create(fake):
    first = adapter(fake).publish(job("original"), Refs())
    a = adapter(fake)
    a.publish(job("a reply", options={"in_reply_to_tweet_id": first.post_id,
                                       "reply_settings": "following"}), Refs())
    post = fake.timeline()[-1]
    assert post.text == "a reply"
    assert post.extra == {"reply": {"in_reply_to_tweet_id": first.post_id},
                          "reply_settings": "following"}


def test_a_thread_part_replies_to_the_part_before(fake):
    from autopost.models import PostRef, Reply

    first = adapter(fake).publish(job("1/ a thread"), Refs())
    root = PostRef(first.post_id, first.url, {})
    # The thread's reply wins over an in_reply_to_tweet_id option (that is part 1's).
    adapter(fake).publish(job("2/ goes on", reply=Reply(parent=root, root=root),
                              options={"in_reply_to_tweet_id": "1"}), Refs())
    post = fake.timeline()[-1]
    assert post.text == "2/ goes on"
    assert post.extra == {"reply": {"in_reply_to_tweet_id": first.post_id}}
    # The part before is gone: X refuses (403), for good.
    gone = PostRef("1999999999999999999", None, {})
    with pytest.raises(PlatformError) as err:
        adapter(fake).publish(job("3/ lost", reply=Reply(parent=gone, root=root)), Refs())
    assert err.value.kind == ErrorKind.INVALID and err.value.http_status == 403
    assert XAdapter.supports_replies
    with pytest.raises(UsageError, match="cannot quote"):
        XAdapter.validate_reply({"quote_tweet_id": "123"})


# -- errors -------------------------------------------------------------------------------------

def _raises(fake, **fault) -> PlatformError:
    path = fault.pop("path", "/2/tweets")
    fake.inject(fault.pop("kind", "status"), path, **fault)
    with pytest.raises(PlatformError) as err:
        adapter(fake).publish(job("errors"), Refs())
    return err.value


def test_rate_limit_uses_the_reset_header_even_when_remaining_is_positive(fake):
    reset = int((datetime.now(UTC) + timedelta(minutes=9)).timestamp())
    err = _raises(fake, status=429, body={"errors": [{"code": 88, "message": "Rate limit "
                                                      "exceeded"}]},
                  headers={"x-rate-limit-remaining": "7", "x-rate-limit-reset": str(reset)})
    assert err.kind == ErrorKind.RATE_LIMITED
    assert err.retry_at == datetime.fromtimestamp(reset, UTC)


def test_the_24_hour_user_limit_wins_when_it_is_spent(fake):
    soon = int((datetime.now(UTC) + timedelta(minutes=5)).timestamp())
    later = int((datetime.now(UTC) + timedelta(hours=20)).timestamp())
    err = _raises(fake, status=429, headers={
        "x-rate-limit-remaining": "50", "x-rate-limit-reset": str(soon),
        "x-user-limit-24hour-remaining": "0", "x-user-limit-24hour-reset": str(later)})
    assert err.kind == ErrorKind.RATE_LIMITED
    assert err.retry_at == datetime.fromtimestamp(later, UTC)


def test_the_fakes_own_limit_gives_429_with_headers(fake):
    fake.rate_limit = 1
    a = adapter(fake)
    a.publish(job("one"), Refs())
    with pytest.raises(PlatformError) as err:
        a.publish(job("two"), Refs())
    assert err.value.kind == ErrorKind.RATE_LIMITED
    assert err.value.retry_at > datetime.now(UTC) + timedelta(minutes=14)


@pytest.mark.parametrize("fault,kind", [
    (dict(status=429, body={"type": "https://api.x.com/2/problems/usage-capped",
                            "title": "Usage cap exceeded", "detail": "Monthly cap"}),
     ErrorKind.QUOTA_EXCEEDED),
    (dict(status=402, body={"title": "Payment Required", "detail": "No credits"}),
     ErrorKind.QUOTA_EXCEEDED),
    (dict(status=401, body={"title": "Unauthorized", "type": "about:blank", "status": 401,
                            "detail": "Unauthorized"}), ErrorKind.AUTH_EXPIRED),
    (dict(status=403, body={"type": "https://api.x.com/2/problems/client-forbidden",
                            "title": "Client Forbidden", "reason": "client-not-enrolled",
                            "detail": "When authenticating requests..."}),
     ErrorKind.AUTH_REVOKED),
    (dict(status=403, body={"title": "Forbidden", "detail": "You are not permitted to "
                            "perform this action."}), ErrorKind.INVALID),
    (dict(status=400, body={"errors": [{"message": "bad"}], "title": "Invalid Request"}),
     ErrorKind.INVALID),
    (dict(status=404, body={"title": "Not Found Error"}), ErrorKind.INVALID),
    (dict(status=503), ErrorKind.AMBIGUOUS),
    (dict(kind="drop"), ErrorKind.AMBIGUOUS),
    (dict(kind="reset"), ErrorKind.AMBIGUOUS),
])
def test_error_table(fake, fault, kind):
    assert _raises(fake, **fault).kind == kind


def test_duplicate_content_is_duplicate_and_the_message_has_no_token(fake):
    a = adapter(fake)
    a.publish(job("same words"), Refs())
    with pytest.raises(PlatformError) as err:
        a.publish(job("same words"), Refs())
    assert err.value.kind == ErrorKind.DUPLICATE and err.value.http_status == 403
    assert a.credentials["access_token"] not in str(err.value)


def test_upload_errors_are_retryable_not_ambiguous(fake, tmp_path):
    path = tmp_path / "i.png"
    path.write_bytes(png_bytes(4, 4))
    fake.inject("status", "/2/media/upload", status=503)
    with pytest.raises(PlatformError) as err:
        adapter(fake).publish(job("pic", (Media(str(path)),)), Refs())
    assert err.value.kind == ErrorKind.SERVER and fake.timeline() == []
    fake.inject("reset", "/2/media/upload")
    with pytest.raises(PlatformError) as err:
        adapter(fake).publish(job("pic", (Media(str(path)),)), Refs())
    assert err.value.kind == ErrorKind.NETWORK


def test_expired_token_is_auth_expired_and_refresh_rotates(fake):
    tokens = fake.issue(lifetime=0)
    a = adapter(fake, creds=tokens)
    with pytest.raises(PlatformError) as err:
        a.publish(job("late"), Refs())
    assert err.value.kind == ErrorKind.AUTH_EXPIRED
    fresh = a.refresh()
    assert fresh.credentials["refresh_token"] != tokens["refresh_token"]
    assert fresh.token_expires_at is not None
    a.use_credentials({**a.credentials, **fresh.credentials})
    a.publish(job("late"), Refs())
    # The spent refresh token is refused, counted, and revokes (login needed).
    stale = adapter(fake, creds=tokens)
    with pytest.raises(PlatformError) as err:
        stale.refresh()
    assert err.value.kind == ErrorKind.AUTH_REVOKED
    assert "autopost accounts login xa" in err.value.message
    assert fake.reused_refresh == 1 and fake.refreshes == 1


# -- reconcile --------------------------------------------------------------------------------

def test_reconcile_finds_a_post_whose_answer_was_lost(fake, tmp_path):
    path = tmp_path / "i.png"
    path.write_bytes(png_bytes(4, 4))
    text = "Fish & chips <3 https://example.com/a?b=c"
    refs = Refs()
    fake.inject("drop", "/2/tweets")
    with pytest.raises(PlatformError) as err:
        adapter(fake).publish(job(text, (Media(str(path)),)), refs)
    assert err.value.kind == ErrorKind.AMBIGUOUS
    [post] = fake.timeline()
    # X gives the text back with t.co links, &<> escaped, and a link for the media.
    shown = fake.rendered(post)
    assert "&amp;" in shown and "https://t.co/" in shown and "example.com" not in shown
    found = adapter(fake).reconcile(job(text, (Media(str(path)),), ref=dict(refs)))
    assert found.verdict == Verdict.POSTED and found.published.post_id == post.id


def test_reconcile_says_not_posted_only_after_reading_the_whole_window(fake):
    for i in range(12):
        fake.seed(f"filler {i}")
    since = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    found = adapter(fake).reconcile(job("never sent", ref={"first_sent_at": since}))
    assert found.verdict == Verdict.NOT_POSTED
    found = adapter(fake).reconcile(job("filler 0", ref={"first_sent_at": since}))
    assert found.verdict == Verdict.POSTED
    # Text alone is not enough: the media count must match too.
    found = adapter(fake).reconcile(job("filler 1", (Media("/x.png"),),
                                        ref={"first_sent_at": since}))
    assert found.verdict == Verdict.NOT_POSTED


def test_reconcile_pages_through_the_timeline(fake, monkeypatch):
    fake.seed("the old one")
    for i in range(150):
        fake.seed(f"newer {i}")
    since = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    found = adapter(fake).reconcile(job("the old one", ref={"first_sent_at": since}))
    assert found.verdict == Verdict.POSTED
    monkeypatch.setattr(XAdapter, "readback_pages", 1)
    found = adapter(fake).reconcile(job("the old one", ref={"first_sent_at": since}))
    assert found.verdict == Verdict.CANNOT_TELL


def test_reconcile_that_cannot_read_raises_so_the_job_stays_unknown(fake):
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    fake.inject("status", "/2/users/", method="GET", status=429,
                headers={"x-rate-limit-remaining": "0", "x-rate-limit-reset":
                         str(int(datetime.now(UTC).timestamp()) + 600)})
    with pytest.raises(PlatformError) as err:
        adapter(fake).reconcile(job("x", ref={"first_sent_at": since}))
    assert err.value.kind == ErrorKind.RATE_LIMITED
    fake.inject("status", "/2/users/", method="GET", status=403,
                body={"title": "Forbidden", "detail": "no"})
    found = adapter(fake).reconcile(job("x", ref={"first_sent_at": since}))
    assert found.verdict == Verdict.CANNOT_TELL


def test_reconcile_without_a_recorded_send_is_not_posted(fake):
    assert adapter(fake).reconcile(job("x")).verdict == Verdict.NOT_POSTED
    assert not [r for r in fake.requests if r[1].startswith("/2/users")]


def test_comparable_texts():
    assert comparable("a &amp; b https://t.co/x") == comparable("a & b https://example.com")
    assert comparable("one  two") == comparable("one two")
    assert comparable("a") != comparable("b")


# -- check, and the spec check itself -------------------------------------------------------------

def test_check_shows_the_user(fake):
    info = adapter(fake).check()
    assert info.display == "@alice (Alice)" and info.url == "https://x.com/alice"


def test_the_fake_refuses_requests_the_spec_rejects(fake):
    token = fake.issue()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    bad = [
        ("POST", "/2/tweets", {"json": {"txt": "typo"}}),
        ("POST", "/2/tweets", {"json": {"text": "x", "media": {"media_ids": ["1"] * 5}}}),
        ("POST", "/2/media/upload", {"files": {"media": ("a.png", b"x", "image/png")},
                                     "data": {"media_category": "bogus"}}),
        ("GET", "/2/users/1/tweets", {"params": {"max_results": 1000}}),
    ]
    for method, path, kw in bad:
        response = httpx.request(method, fake.base_url + path, headers=headers, **kw)
        assert response.status_code == 400, (path, response.text)
    assert len(fake.violations) == len(bad)
    fake.violations.clear()
    assert json.loads(httpx.post(fake.base_url + "/2/tweets", headers=headers,
                                 json={"text": "fine"}).text)["data"]["text"] == "fine"
