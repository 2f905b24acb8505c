"""Instagram containers against the fake Graph API, with a local web server as the media
host (the fake fetches every image_url itself, as Meta does)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from autopost.errors import UsageError
from autopost.mediahost import CLAIMS, content_name
from autopost.models import ErrorKind, Media
from autopost.platforms.base import Verdict
from autopost.platforms.meta.instagram import InstagramAdapter
from tests import metakit
from tests.images import jpeg, png
from tests.metakit import Refs, adapter, make_job, raises, settings, with_ref

fake = metakit.fake
media_host = metakit.media_host
TOKEN = "ig-page-token-000111"


@pytest.fixture
def ig_user(fake):
    page = fake.add_page(TOKEN, "Shop", ig_username="shop")
    return fake.pages[page]["ig"]


@pytest.fixture
def ig(fake, ig_user, media_host):
    folder, url = media_host
    return adapter(InstagramAdapter, fake, {"ig_user_id": ig_user, "access_token": TOKEN},
                   config=settings(folder, url))


def _photo(tmp_path: Path, name: str = "a.jpg", size: int = 30) -> Path:
    path = tmp_path / name
    path.write_bytes(jpeg(size, size))
    return path


def test_local_image_goes_through_the_media_host_and_is_cleaned_up(fake, ig, ig_user,
                                                                    media_host, tmp_path):
    folder, url = media_host
    photo = _photo(tmp_path)
    job = make_job("Caption #one", platform="instagram",
                   media=(Media(str(photo), "a red square"),))

    def on_save(ref):  # the container id is committed before anything is published
        assert ref["container"] in fake.containers and fake.published(ig_user) == []
        assert (folder / content_name(photo)).read_bytes() == photo.read_bytes()

    refs = Refs(on_save)
    done = ig.publish(job, refs)
    [media] = fake.published(ig_user)
    assert done.post_id == media["id"] and done.url == media["permalink"]
    container = fake.containers[refs.ref["container"]]
    assert container["url"] == url + content_name(photo)
    assert container["alt"] == "a red square" and container["text"] == "Caption #one"
    assert refs.ref["media_urls"] == [container["url"]]
    assert not (folder / content_name(photo)).exists()  # no longer needed
    assert not (folder / CLAIMS).exists() or not any((folder / CLAIMS).iterdir())


def test_a_copy_shared_by_two_jobs_stays_until_both_are_done(fake, ig, media_host, tmp_path):
    folder, _ = media_host
    photo = _photo(tmp_path)
    first = make_job("one", id="jobaaaa1", platform="instagram", media=(Media(str(photo)),))
    second = replace(first, id="jobaaaa2", text="two")
    from autopost.mediahost import MediaHost

    host = MediaHost(ig.settings.media)
    host.publish(str(photo), second.id)  # the second job holds a claim already
    ig.publish(first, Refs())
    assert (folder / content_name(photo)).exists()
    ig.publish(second, Refs())
    assert not (folder / content_name(photo)).exists()


def test_release_finished_keeps_the_copies_of_jobs_still_in_progress(ig, tmp_path):
    """Claims of finished or vanished jobs go (and a copy with its last claim); those of
    jobs still pending, running or unknown stay, whatever their number."""
    from datetime import UTC, datetime

    from autopost.mediahost import MediaHost, release_finished
    from autopost.models import Account, JobStatus, NewJob
    from autopost.store.sqlite import SqliteStore

    folder = ig.settings.media.public_dir
    store = SqliteStore(tmp_path / "autopost.db")
    try:
        now = datetime.now(UTC)
        store.add_account(Account(name="o", platform="outbox", credentials={"path": "x"}),
                          now=now)
        made = [j for j, _ in store.add_jobs(
            [NewJob(account="o", platform="outbox", text=f"t{i}", scheduled_at=now)
             for i in range(3)], now=now)]
        host = MediaHost(ig.settings.media)
        photos = [_photo(tmp_path, f"d{i}.jpg", size=30 + i) for i in range(2)]
        kept = host.publish(str(photos[0]), made[0].id)     # pending: stays
        host.publish(str(photos[0]), made[1].id)            # cancelled below
        gone = host.publish(str(photos[1]), "notajob1")      # no such job (pruned)
        host.publish(str(photos[1]), made[2].id)            # cancelled below
        store.cancel_job(made[1].id, now=now)
        store.cancel_job(made[2].id, now=now)
        assert store.get_job(made[0].id).status == JobStatus.PENDING
        assert release_finished(ig.settings.media, store) == 1
        assert (folder / kept.rsplit("/", 1)[1]).exists()
        assert not (folder / gone.rsplit("/", 1)[1]).exists()
        assert [p.name for p in (folder / CLAIMS).iterdir()] == [kept.rsplit("/", 1)[1]]
        assert release_finished(ig.settings.media, store) == 0  # nothing more to do
    finally:
        store.close()


def test_https_url_is_passed_through(fake, ig, media_host):
    fake.fetch_media = False
    folder, _ = media_host
    job = make_job("remote", platform="instagram",
                   media=(Media("https://cdn.example.org/p.jpg"),))
    refs = Refs()
    ig.publish(job, refs)
    assert fake.containers[refs.ref["container"]]["url"] == "https://cdn.example.org/p.jpg"
    assert not folder.exists() or not any(folder.iterdir())


def test_a_url_meta_cannot_fetch_fails_saying_so(fake, ig, ig_user):
    job = make_job("x", platform="instagram",
                   media=(Media("https://127.0.0.1:9/unreachable.jpg"),))
    err = raises(ErrorKind.INVALID, lambda: ig.publish(job, Refs()))
    assert "9004/2207052" in err.message and "could not fetch the media" in err.message
    assert fake.published(ig_user) == []


def test_a_media_host_that_does_not_serve_fails_before_any_container(fake, ig_user, tmp_path):
    config = settings(tmp_path / "not-served", "http://127.0.0.1:9/media/")
    ig = adapter(InstagramAdapter, fake, {"ig_user_id": ig_user, "access_token": TOKEN},
                 config=config)
    job = make_job("x", platform="instagram", media=(Media(str(_photo(tmp_path))),))
    err = raises(ErrorKind.SERVER, lambda: ig.publish(job, Refs()))
    assert "media host" in err.message and "does not answer" in err.message
    assert fake.containers == {}


def test_carousel_items_then_the_carousel(fake, ig, ig_user, tmp_path):
    files = tuple(Media(str(_photo(tmp_path, f"{i}.jpg", 10 + i))) for i in range(3))
    refs = Refs()
    ig.publish(make_job("three", platform="instagram", media=files), refs)
    parent = fake.containers[refs.ref["container"]]
    assert parent["type"] == "CAROUSEL" and len(parent["children"]) == 3
    assert all(fake.containers[c]["carousel_item"] for c in parent["children"])
    [media] = fake.published(ig_user)
    assert media["children"] == 3


def test_video_is_a_reel_polled_until_finished(fake, ig, ig_user, tmp_path):
    fake.polls_to_finish = 4
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    refs = Refs()
    ig.publish(make_job("reel", platform="instagram", media=(Media(str(clip)),)), refs)
    assert fake.containers[refs.ref["container"]]["type"] == "REELS"
    assert len(ig.sleep.calls) == 4
    assert len(fake.published(ig_user)) == 1


def test_not_ready_on_publish_is_retried_on_the_same_container(fake, ig, ig_user, tmp_path):
    fake.inject("error", path="/media_publish", code=9007, subcode=2207027, count=2,
                message="Media ID is not available")
    refs = Refs()
    ig.publish(make_job("soon", platform="instagram", media=(Media(str(_photo(tmp_path))),)),
               refs)
    assert len(fake.containers) == 1 and len(fake.published(ig_user)) == 1
    assert ig.sleep.calls.count(ig.not_ready_wait) == 2


def test_a_container_still_in_progress_is_continued_by_the_next_attempt(fake, ig, ig_user,
                                                                        tmp_path):
    fake.polls_to_finish = 10_000
    job = make_job("slow", platform="instagram", media=(Media(str(_photo(tmp_path))),))
    refs = Refs()
    err = raises(ErrorKind.SERVER, lambda: ig.publish(job, refs))
    assert "still IN_PROGRESS" in err.message
    fake.polls_to_finish = 0
    ig.publish(with_ref(job, refs, ErrorKind.SERVER), refs)
    assert len(fake.containers) == 1 and len(fake.published(ig_user)) == 1


def test_container_error_ends_the_job_with_metas_reason(fake, ig, ig_user, tmp_path):
    job = make_job("bad", platform="instagram", media=(Media(str(_photo(tmp_path))),))
    fake.polls_to_finish = 2
    refs = Refs(lambda ref: fake.fail_container(ref["container"], "aspect ratio 2207009"))
    err = raises(ErrorKind.INVALID, lambda: ig.publish(job, refs))
    assert "aspect ratio 2207009" in err.message
    assert fake.published(ig_user) == []


def test_lost_answer_to_the_publish_reconciles_as_posted(fake, ig, ig_user, tmp_path):
    job = make_job("dropped", platform="instagram", media=(Media(str(_photo(tmp_path))),))
    refs = Refs()
    fake.inject("drop", path="/media_publish")
    raises(ErrorKind.AMBIGUOUS, lambda: ig.publish(job, refs))
    [media] = fake.published(ig_user)
    found = ig.reconcile(with_ref(job, refs))
    assert found.verdict == Verdict.POSTED
    assert found.published.post_id == media["id"] and found.published.url == media["permalink"]


def test_publish_that_never_arrived_is_resent_on_the_same_container(fake, ig, ig_user,
                                                                    tmp_path):
    job = make_job("retry me", platform="instagram", media=(Media(str(_photo(tmp_path))),))
    refs = Refs()
    fake.inject("reset", path="/media_publish")
    raises(ErrorKind.AMBIGUOUS, lambda: ig.publish(job, refs))
    again = with_ref(job, refs)
    assert ig.reconcile(again).verdict == Verdict.NOT_POSTED
    ig.publish(again, refs)
    assert len(fake.containers) == 1 and len(fake.published(ig_user)) == 1
    # and once published, the container says so: a further publish makes nothing new
    done = ig.publish(with_ref(job, refs), refs)
    assert len(fake.published(ig_user)) == 1 and done.post_id == fake.published(ig_user)[0]["id"]


def test_an_expired_container_is_replaced(fake, ig, ig_user, tmp_path):
    job = make_job("late", platform="instagram", media=(Media(str(_photo(tmp_path))),))
    refs = Refs()
    fake.inject("reset", path="/media_publish")
    raises(ErrorKind.AMBIGUOUS, lambda: ig.publish(job, refs))
    old = refs.ref["container"]
    fake.expire(old)
    assert ig.reconcile(with_ref(job, refs)).verdict == Verdict.NOT_POSTED
    ig.publish(with_ref(job, refs), refs)
    assert refs.ref["container"] != old
    [media] = fake.published(ig_user)
    assert media["container"] == refs.ref["container"]


def test_no_container_committed_means_not_posted(ig):
    found = ig.reconcile(make_job("x", platform="instagram"))
    assert found.verdict == Verdict.NOT_POSTED


def test_the_publishing_cap_is_the_daily_quota(fake, ig, ig_user, tmp_path):
    fake.ig_users[ig_user]["published"] = [fake.now()] * 50
    job = make_job("over", platform="instagram", media=(Media(str(_photo(tmp_path))),))
    err = raises(ErrorKind.QUOTA_EXCEEDED, lambda: ig.publish(job, Refs()))
    assert "50 of 50" in err.message and err.retry_at is not None
    assert fake.containers == {}


def test_the_cap_error_on_publish_is_quota_exceeded(fake, ig, tmp_path):
    fake.inject("error", path="/media_publish", code=9, subcode=2207042,
                message="Application request limit reached")
    job = make_job("capped", platform="instagram", media=(Media(str(_photo(tmp_path))),))
    raises(ErrorKind.QUOTA_EXCEEDED, lambda: ig.publish(job, Refs()))


def test_check_shows_the_account_and_its_publishing_usage(ig):
    info = ig.check()
    assert info.display == "@shop" and info.details["published_last_24h"] == "0 of 50"


def test_validation_at_add_time(tmp_path):
    photo = Media(str(_photo(tmp_path)))
    with pytest.raises(UsageError, match="no text-only"):
        InstagramAdapter.validate("just words", (), {})
    with pytest.raises(UsageError, match="2200"):
        InstagramAdapter.validate("x" * 2201, (photo,), {})
    with pytest.raises(UsageError, match="31 hashtags"):
        InstagramAdapter.validate(" ".join(f"#t{i}" for i in range(31)), (photo,), {})
    InstagramAdapter.validate(" ".join(f"#t{i}" for i in range(30)), (photo,), {})
    pic = tmp_path / "p.png"
    pic.write_bytes(png(3, 3))
    with pytest.raises(UsageError, match="JPEG images only"):
        InstagramAdapter.validate("x", (Media(str(pic)),), {})
    with pytest.raises(UsageError, match="at most 10"):
        InstagramAdapter.validate("x", (photo,) * 11, {})


def test_a_job_refused_for_good_leaves_no_media_copy(fake, ig, media_host, tmp_path):
    folder, _ = media_host
    photo = _photo(tmp_path)
    fake.inject("error", path=f"/{ig.credentials['ig_user_id']}/media", method="POST",
                code=100, subcode=2207026, message="Unsupported format")
    job = make_job("refused", platform="instagram", media=(Media(str(photo)),))
    raises(ErrorKind.INVALID, lambda: ig.publish(job, Refs()))
    assert not (folder / content_name(photo)).exists()
