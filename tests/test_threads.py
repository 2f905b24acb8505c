"""Threads containers, the publish wait, the "Media Not Found" race and token refresh,
against the fake Graph API."""

from __future__ import annotations

from datetime import timedelta

import pytest

from autopost.errors import UsageError
from autopost.models import ErrorKind, Media
from autopost.platforms.base import Verdict
from autopost.platforms.meta.threads import ThreadsAdapter, threads_length
from tests import metakit
from tests.images import gif, jpeg
from tests.metakit import Refs, adapter, make_job, raises, settings, with_ref

fake = metakit.fake
media_host = metakit.media_host
TOKEN = "threads-token-0000222"


@pytest.fixture
def user(fake):
    return fake.add_threads_user(TOKEN, "poster", expires_in=60 * 86400)


@pytest.fixture
def th(fake, user, media_host):
    folder, url = media_host
    return adapter(ThreadsAdapter, fake, {"threads_user_id": user, "access_token": TOKEN},
                   config=settings(folder, url, publish_wait=30))


def test_text_post_waits_before_publishing(fake, th, user):
    refs = Refs()
    done = th.publish(make_job("hello threads", platform="threads"), refs)
    [post] = fake.published(user)
    assert post["message"] == "hello threads" and post["type"] == "TEXT"
    assert done.post_id == post["id"] and done.url == post["permalink"]
    made = fake.containers[refs.ref["container"]]["created"]
    assert (post["created"] - made).total_seconds() >= 30
    assert [r["path"] for r in fake.requests if "threads" in r["path"]][0] == \
        f"/v1.0/{user}/threads_publishing_limit"


def test_media_not_found_right_after_creation_is_retried_on_the_same_container(
        fake, th, user):
    fake.media_not_found = 3
    th.publish(make_job("racy", platform="threads"), Refs())
    assert len(fake.containers) == 1 and len(fake.published(user)) == 1
    assert th.sleep.calls.count(th.not_ready_wait) == 3


def test_media_not_found_that_persists_keeps_the_container_for_the_next_attempt(
        fake, th, user):
    fake.media_not_found = 10
    job = make_job("persistent", platform="threads")
    refs = Refs()
    err = raises(ErrorKind.SERVER, lambda: th.publish(job, refs))
    assert "same container" in err.message
    fake.media_not_found = 0
    th.publish(with_ref(job, refs, ErrorKind.SERVER), refs)
    assert len(fake.containers) == 1 and len(fake.published(user)) == 1


def test_image_and_carousel(fake, th, user, tmp_path):
    a, b = tmp_path / "a.jpg", tmp_path / "b.gif"
    a.write_bytes(jpeg(8, 8))
    b.write_bytes(gif(4, 4))
    refs = Refs()
    th.publish(make_job("one", platform="threads", media=(Media(str(a), "alt a"),)), refs)
    single = fake.containers[refs.ref["container"]]
    assert single["type"] == "IMAGE" and single["alt"] == "alt a"
    with pytest.raises(UsageError, match="JPEG or PNG"):
        ThreadsAdapter.validate("x", (Media(str(b)),), {})
    c = tmp_path / "c.jpg"
    c.write_bytes(jpeg(9, 9))
    refs = Refs()
    th.publish(make_job("two", platform="threads", media=(Media(str(a)), Media(str(c)))),
               refs)
    parent = fake.containers[refs.ref["container"]]
    assert parent["type"] == "CAROUSEL" and len(parent["children"]) == 2
    assert len(fake.published(user)) == 2


def test_dropped_publish_reconciles_by_the_container(fake, th, user):
    job = make_job("did it go", platform="threads")
    refs = Refs()
    fake.inject("drop", path="/threads_publish", method="POST")
    raises(ErrorKind.AMBIGUOUS, lambda: th.publish(job, refs))
    found = th.reconcile(with_ref(job, refs))
    [post] = fake.published(user)
    assert found.verdict == Verdict.POSTED and found.published.post_id == post["id"]


def test_failed_download_says_the_url_must_be_reachable(fake, th, user):
    job = make_job("x", platform="threads", media=(Media("https://127.0.0.1:9/a.jpg"),))
    err = raises(ErrorKind.INVALID, lambda: th.publish(job, Refs()))
    assert "reachable from the internet" in err.message
    assert fake.published(user) == []


def test_text_length_counts_emoji_by_their_utf8_bytes():
    assert threads_length("abc") == 3
    assert threads_length("\U0001F600") == 4
    assert threads_length("\u00e9t\u00e9") == 3  # accented letters are one character each
    ThreadsAdapter.validate("a" * 496 + "\U0001F600", (), {})
    with pytest.raises(UsageError, match="500"):
        ThreadsAdapter.validate("a" * 497 + "\U0001F600", (), {})


def test_refresh_gives_a_new_60_day_token(fake, th, user):
    fake.advance(2 * 86400)
    fresh = th.refresh()
    assert fresh.credentials["access_token"] != TOKEN
    assert fake.refreshes == [TOKEN]
    left = fresh.token_expires_at - fake.now()
    assert timedelta(days=59) < left <= timedelta(days=60)
    th.use_credentials({**th.credentials, **fresh.credentials})
    th.publish(make_job("after refresh", platform="threads"), Refs())
    assert len(fake.published(user)) == 1


def test_an_expired_token_cannot_be_refreshed(fake, th):
    fake.advance(61 * 86400)
    err = raises(ErrorKind.AUTH_EXPIRED, lambda: th.publish(make_job("x", platform="threads"),
                                                          Refs()))
    assert TOKEN not in err.message
    err = raises(ErrorKind.AUTH_REVOKED, th.refresh)
    assert "accounts login acct" in err.message


def test_check_names_the_user(th):
    assert th.check().display == "@poster"


def test_reply_control_option_goes_on_the_container(fake, th, user):
    options = ThreadsAdapter.check_options({"reply_control": "mentioned_only"})
    refs = Refs()
    th.publish(make_job("quiet", platform="threads", options=options), refs)
    assert fake.containers[refs.ref["container"]]["reply_control"] == "mentioned_only"
    with pytest.raises(UsageError, match="reply_control"):
        ThreadsAdapter.check_options({"reply_control": "nobody"})


def test_a_thread_part_replies_to_the_part_before(fake, th, user):
    from autopost.models import PostRef, Reply

    first = th.publish(make_job("1/ a thread", platform="threads"), Refs())
    root = PostRef(first.post_id, first.url, {})
    refs = Refs()
    second = th.publish(make_job("2/ goes on", platform="threads", id="job00002",
                                 reply=Reply(parent=root, root=root)), refs)
    assert fake.containers[refs.ref["container"]]["reply_to"] == first.post_id
    posted = {p["id"]: p for p in fake.published(user)}
    assert posted[second.post_id]["reply_to"] == first.post_id
    assert posted[first.post_id]["reply_to"] is None
    # A part whose parent is gone is refused for good (not retried, not unknown).
    gone = PostRef("999999999", None, {})
    raises(ErrorKind.INVALID, lambda: th.publish(
        make_job("3/ lost", platform="threads", id="job00003",
                 reply=Reply(parent=gone, root=root)), Refs()))
    assert ThreadsAdapter.supports_replies
