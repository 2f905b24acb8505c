"""Facebook Pages against the fake Graph API (every request checked against the
facebook-business SDK's parameter tables)."""

from __future__ import annotations

import hashlib

import pytest

from autopost.errors import UsageError
from autopost.models import ErrorKind, Media
from autopost.platforms.base import Verdict
from autopost.platforms.meta.facebook import FacebookAdapter
from tests import metakit
from tests.images import gif, jpeg, png
from tests.metakit import Refs, adapter, make_job, raises, settings, with_ref

fake = metakit.fake

TOKEN = "page-token-secret-123"


@pytest.fixture
def page(fake):
    return fake.add_page(TOKEN, "Bakery")


@pytest.fixture
def fb(fake, page):
    return adapter(FacebookAdapter, fake, {"page_id": page, "access_token": TOKEN})


def test_text_post_goes_to_the_feed_with_its_link(fake, fb, page):
    job = make_job("Fresh bread at 7", options={"link": "https://example.org/bread"})
    refs = Refs()
    done = fb.publish(job, refs)
    [post] = fake.published(page)
    assert post["message"] == "Fresh bread at 7" and post["link"] == "https://example.org/bread"
    assert done.post_id == post["id"] and done.url == post["permalink_url"]
    assert "since" in refs.ref
    feed = [r for r in fake.requests if r["path"].endswith("/feed")]
    assert feed[0]["path"] == f"/v26.0/{page}/feed"
    assert "access_token" in feed[0]["params"]


def test_one_photo_is_uploaded_with_its_caption_and_alt_text(fake, fb, page, tmp_path):
    photo = tmp_path / "loaf.jpg"
    photo.write_bytes(jpeg(40, 30))
    done = fb.publish(make_job("A loaf", media=(Media(str(photo), "a round loaf"),)), Refs())
    [post] = fake.published(page)
    assert post["message"] == "A loaf" and done.post_id == post["id"]
    [stored] = fake.photos.values()
    assert stored["sha"] == hashlib.sha256(photo.read_bytes()).hexdigest()
    assert stored["alt"] == "a round loaf" and stored["published"]


def test_several_photos_become_one_feed_post(fake, fb, page, tmp_path):
    files = []
    for i, data in enumerate((png(4, 4), gif(3, 3), jpeg(5, 5))):
        path = tmp_path / f"p{i}.img"
        path.write_bytes(data)
        files.append(Media(str(path), f"alt {i}"))
    done = fb.publish(make_job("Three", media=tuple(files)), Refs())
    [post] = fake.published(page)
    assert post["id"] == done.post_id and len(post["photos"]) == 3
    assert all(not p["published"] and p["post"] == post["id"] for p in fake.photos.values())
    assert sorted(p["alt"] for p in fake.photos.values()) == ["alt 0", "alt 1", "alt 2"]


def test_dropped_answer_is_ambiguous_and_reconcile_finds_the_post(fake, fb, page):
    job = make_job("Maybe posted")
    refs = Refs()
    fake.inject("drop", path="/feed", method="POST")
    raises(ErrorKind.AMBIGUOUS, lambda: fb.publish(job, refs))
    [post] = fake.published(page)
    found = fb.reconcile(with_ref(job, refs))
    assert found.verdict == Verdict.POSTED and found.published.post_id == post["id"]
    assert found.published.url == post["permalink_url"]
    assert len(fake.published(page)) == 1


def test_reset_before_the_post_reconciles_as_not_posted(fake, fb, page):
    job = make_job("Never arrived")
    refs = Refs()
    fake.inject("reset", path="/feed", method="POST")
    raises(ErrorKind.AMBIGUOUS, lambda: fb.publish(job, refs))
    assert fb.reconcile(with_ref(job, refs)).verdict == Verdict.NOT_POSTED
    assert fake.published(page) == []


def test_reconcile_does_not_take_an_older_post_with_the_same_text(fake, fb, page):
    job = make_job("Same words")
    fb.publish(job, Refs())
    fake.advance(3600)
    refs = Refs()
    fake.page_feed(fake.pages[page], {"message": "something else"})
    fake.inject("reset", path="/feed", method="POST")
    raises(ErrorKind.AMBIGUOUS, lambda: fb.publish(job, refs))
    assert fb.reconcile(with_ref(job, refs)).verdict == Verdict.NOT_POSTED


def test_duplicate_message_is_classified_duplicate(fake, fb):
    fb.publish(make_job("twice"), Refs())
    err = raises(ErrorKind.DUPLICATE, lambda: fb.publish(make_job("twice"), Refs()))
    assert err.code == "506"


@pytest.mark.parametrize(("code", "subcode", "kind"), [
    (190, None, ErrorKind.AUTH_REVOKED),
    (190, 460, ErrorKind.AUTH_REVOKED),
    (190, 463, ErrorKind.AUTH_EXPIRED),
    (10, None, ErrorKind.AUTH_REVOKED),
    (200, None, ErrorKind.AUTH_REVOKED),
    (4, None, ErrorKind.RATE_LIMITED),
    (17, None, ErrorKind.RATE_LIMITED),
    (32, None, ErrorKind.RATE_LIMITED),
    (613, None, ErrorKind.RATE_LIMITED),
    (80001, None, ErrorKind.RATE_LIMITED),
    (368, None, ErrorKind.RATE_LIMITED),
    (100, None, ErrorKind.INVALID),
    (1609005, None, ErrorKind.INVALID),
    (1, None, ErrorKind.AMBIGUOUS),
    (2, None, ErrorKind.AMBIGUOUS),
])
def test_error_codes_are_classified(fake, fb, code, subcode, kind):
    fake.inject("error", path="/feed", code=code, subcode=subcode, message="(#x) nope")
    err = raises(kind, lambda: fb.publish(make_job("classified"), Refs()))
    assert TOKEN not in err.message
    if kind == ErrorKind.RATE_LIMITED:
        assert err.retry_at is not None and err.retry_at > fake.now()
    if code == 368:
        assert (err.retry_at - fake.now()).total_seconds() >= 23 * 3600


def test_a_read_that_fails_with_code_1_is_a_server_error(fake, fb):
    fake.inject("error", path="/published_posts", code=1)
    raises(ErrorKind.SERVER, lambda: fb.reconcile(make_job("x", ref={"since": 1})))


def test_rate_limit_waits_for_the_estimate_in_the_buc_header(fake, fb, page):
    buc = {page: [{"type": "pages", "call_count": 100, "total_cputime": 10,
                   "total_time": 10, "estimated_time_to_regain_access": 17}]}
    fake.inject("error", path="/feed", code=32, message="Page request limit reached",
                headers={"X-Business-Use-Case-Usage": __import__("json").dumps(buc)})
    err = raises(ErrorKind.RATE_LIMITED, lambda: fb.publish(make_job("limited"), Refs()))
    assert abs((err.retry_at - fake.now()).total_seconds() - 17 * 60) < 5


def test_high_app_usage_backs_off_before_the_next_call(fake, fb, page):
    fake.app_usage = {"call_count": 95, "total_cputime": 3, "total_time": 4}
    fb.publish(make_job("first"), Refs())
    sent = len(fake.requests)
    err = raises(ErrorKind.RATE_LIMITED, lambda: fb.publish(make_job("second"), Refs()))
    assert len(fake.requests) == sent  # nothing sent while the app cools down
    assert "not sent" in err.message
    assert len(fake.published(page)) == 1


def test_usage_below_the_limit_does_not_back_off(fake, fb, page):
    fake.app_usage = {"call_count": 60, "total_cputime": 3, "total_time": 4}
    fake.buc_usage = {page: [{"type": "pages", "call_count": 50,
                              "estimated_time_to_regain_access": 0}]}
    fb.publish(make_job("one"), Refs())
    fb.publish(make_job("two"), Refs())
    assert len(fake.published(page)) == 2


def test_the_graph_version_is_a_setting(fake, page):
    old = adapter(FacebookAdapter, fake, {"page_id": page, "access_token": TOKEN},
                  config=settings(version="v19.0"))
    err = raises(ErrorKind.INVALID, lambda: old.publish(make_job("old"), Refs()))
    assert "2635" in err.message and "v19.0" in err.message


def test_a_revoked_token_says_how_to_log_in_again(fake, fb):
    fake.revoke(TOKEN)
    err = raises(ErrorKind.AUTH_REVOKED, lambda: fb.check())
    assert "autopost accounts login acct" in err.message and TOKEN not in err.message


def test_check_names_the_page(fb):
    info = fb.check()
    assert info.display == "Page Bakery" and info.url.startswith("https://www.facebook.com/")


def test_validation_at_add_time(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    with pytest.raises(UsageError, match="not videos"):
        FacebookAdapter.validate("x", (Media(str(clip)),), {})
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(UsageError, match="not a PNG"):
        FacebookAdapter.validate("x", (Media(str(text)),), {})
    with pytest.raises(UsageError, match="link"):
        FacebookAdapter.validate("x", (), {"link": "ftp://example.org"})
    with pytest.raises(UsageError, match="at most 10"):
        FacebookAdapter.validate("x", tuple(Media(f"https://e.org/{i}.jpg")
                                            for i in range(11)), {})
    FacebookAdapter.validate("fine", (Media("https://example.org/a.jpg"),), {})
