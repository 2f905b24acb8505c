"""The YouTube adapter against the local resumable fake (tests/fakes/youtube_server.py),
whose every request is checked against the discovery document shipped in
google-api-python-client; and the official client driving the same fake once, so the
fake speaks the protocol Google's own uploader speaks."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from autopost.errors import UsageError
from autopost.models import Account, ErrorKind, Job, Media
from autopost.platforms import youtube
from autopost.platforms.base import PlatformError, Verdict
from autopost.platforms.youtube import (
    GRANULE,
    YouTubeAdapter,
    metadata,
    next_midnight_pacific,
    video_type,
)
from tests import images
from tests.adapterkit import Refs, Sleeper, raises

try:  # the discovery document ships with google-api-python-client (the test extra)
    import googleapiclient  # noqa: F401
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("google-api-python-client is not installed", allow_module_level=True)

from tests.fakes import youtube_discovery as discovery  # noqa: E402
from tests.fakes.youtube_server import FakeYouTube  # noqa: E402

TOKEN = "ya29.ada"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def mp4(path, size: int) -> str:
    """A file that starts like an MP4 (an ftyp box) followed by `size` bytes in all."""
    head = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
    body = hashlib.shake_256(str(path).encode()).digest(max(0, size - len(head)))
    path.write_bytes(head + body)
    return str(path)


def sha(path: str) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def make_job(video: str, text: str = "My first video\nWhat it is about.", **kw: Any) -> Job:
    defaults: dict[str, Any] = dict(id="j1", account="ada", platform="youtube", text=text,
                                    scheduled_at=NOW, next_attempt_at=NOW,
                                    media=(Media(video),), idempotency_key="k", max_attempts=3)
    defaults.update(kw)
    return Job(**defaults)


@pytest.fixture
def fake():
    with FakeYouTube() as server:
        server.add_channel(TOKEN)
        yield server
        assert server.violations == []


def adapter_for(fake: FakeYouTube, *, token: str = TOKEN, chunk: int = GRANULE,
                progress: Any = False, **creds: Any) -> YouTubeAdapter:
    account = Account(name="ada", platform="youtube", base_url=fake.base_url)
    adapter = YouTubeAdapter(account, {"access_token": token, **creds},
                             httpx.Client(timeout=10), sleep=Sleeper(), progress=progress)
    adapter.chunk_size = chunk
    return adapter


def chunk_puts(fake: FakeYouTube) -> list[str]:
    return [r.header("content-range") for r in fake.seen("PUT", "/upload/youtube/v3/videos")]


# -- the discovery document and the official client ------------------------------------------

def test_discovery_schema_rejects_what_youtube_rejects():
    assert discovery.body_errors("Video", {"snippet": {"title": "ok"},
                                           "status": {"privacyStatus": "private"}}) == []
    errors = discovery.body_errors("Video", {"snippet": {"title": 5},
                                             "status": {"privacyStatus": "secret"}})
    assert len(errors) == 2
    assert discovery.query_errors("videos", "insert", {"part": ["snippet"],
                                                       "uploadType": ["resumable"]}) == []
    assert discovery.query_errors("videos", "insert", {"notifySubscribers": ["maybe"]}) == [
        "notifySubscribers: 'maybe' is not a boolean", "part: required by videos.insert"]
    assert discovery.accepts("videos", "insert", "video/mp4")
    assert not discovery.accepts("videos", "insert", "image/png")


def test_the_official_client_uploads_to_the_fake(fake, tmp_path):
    httplib2 = pytest.importorskip("httplib2")
    from googleapiclient.discovery import build_from_document
    from googleapiclient.http import MediaFileUpload

    doc = copy.deepcopy(discovery.document())
    doc["rootUrl"] = fake.base_url + "/"

    class Authorized(httplib2.Http):
        def request(self, uri, method="GET", body=None, headers=None, **kw):
            headers = {**(headers or {}), "authorization": f"Bearer {TOKEN}"}
            return super().request(uri, method, body=body, headers=headers, **kw)

    http = Authorized()
    http.redirect_codes = http.redirect_codes - {308}
    client = build_from_document(doc, http=http)
    path = mp4(tmp_path / "ref.mp4", 700 * 1024)
    request = client.videos().insert(
        part="snippet,status",
        body={"snippet": {"title": "Reference", "tags": ["a b"], "categoryId": "22"},
              "status": {"privacyStatus": "unlisted"}},
        media_body=MediaFileUpload(path, mimetype="video/mp4", chunksize=GRANULE,
                                   resumable=True))
    response = None
    while response is None:
        _, response = request.next_chunk()
    [video] = fake.ledger()
    assert response["id"] == video.id and video.sha256 == sha(path)
    assert chunk_puts(fake) == ["bytes 0-262143/716800", "bytes 262144-524287/716800",
                                "bytes 524288-716799/716800"]
    [start] = fake.seen("POST", "/upload/youtube/v3/videos")
    assert start.query["uploadType"] == ["resumable"]
    assert start.header("x-upload-content-length") == "716800"


# -- uploading ------------------------------------------------------------------------------

def test_upload_in_chunks_with_the_session_saved_before_the_first_byte(fake, tmp_path):
    path = mp4(tmp_path / "v.mp4", 3 * GRANULE + 1000)

    def on_save(ref: dict[str, Any]) -> None:
        if len(refs.saved) == 0:
            assert ref["upload_uri"] and chunk_puts(fake) == []  # nothing sent yet

    refs = Refs(on_save)
    published = adapter_for(fake).publish(make_job(path), refs)
    [video] = fake.ledger()
    assert published.post_id == video.id
    assert published.url == f"https://www.youtube.com/watch?v={video.id}"
    assert video.sha256 == sha(path)
    total = 3 * GRANULE + 1000
    assert chunk_puts(fake) == [f"bytes {i * GRANULE}-{(i + 1) * GRANULE - 1}/{total}"
                                for i in range(3)] + [f"bytes {3 * GRANULE}-{total - 1}/{total}"]
    snippet = video.resource["snippet"]
    assert (snippet["title"], snippet["description"]) == ("My first video", "What it is about.")
    assert video.resource["status"]["privacyStatus"] == "public"
    assert refs.saved[0]["file"]["size"] == total
    [start] = fake.seen("POST", "/upload/youtube/v3/videos")
    assert start.header("x-upload-content-type") == "video/mp4"


def test_default_chunks_are_multiples_of_256_kib():
    assert youtube.CHUNK % GRANULE == 0 and YouTubeAdapter.chunk_size == youtube.CHUNK


def test_options_reach_the_video(fake, tmp_path):
    path = mp4(tmp_path / "v.mp4", GRANULE)
    options = {"title": "Custom", "description": "Long text", "tags": "one, two words",
               "category": "10", "publish_at": "2027-01-05T09:00:00Z",
               "made_for_kids": "false"}
    adapter_for(fake).publish(make_job(path, options=options), Refs())
    [video] = fake.ledger()
    assert video.resource["snippet"]["title"] == "Custom"
    assert video.resource["snippet"]["tags"] == ["one", "two words"]
    assert video.resource["snippet"]["categoryId"] == "10"
    status = video.resource["status"]
    assert status["privacyStatus"] == "private"  # publishAt needs it
    assert status["publishAt"] == "2027-01-05T09:00:00Z"
    assert status["selfDeclaredMadeForKids"] is False


def test_thumbnail_is_set_after_the_upload(fake, tmp_path):
    path = mp4(tmp_path / "v.mp4", GRANULE)
    thumb = tmp_path / "t.png"
    thumb.write_bytes(images.png(8, 8))
    published = adapter_for(fake).publish(make_job(path, options={"thumbnail": str(thumb)}),
                                          Refs())
    [video] = fake.ledger()
    assert video.thumbnail == thumb.read_bytes() and published.note is None
    fake.inject(status=403, path="/upload/youtube/v3/thumbnails/set", body={"error": {
        "code": 403, "message": "no", "errors": [{"reason": "forbidden"}]}})
    again = adapter_for(fake).publish(make_job(mp4(tmp_path / "w.mp4", GRANULE), options={
        "thumbnail": str(thumb)}), Refs())
    assert again.post_id and "thumbnail not set" in again.note  # the video is live anyway


def test_a_broken_connection_is_resumed_from_the_servers_offset(fake, tmp_path):
    size = 6 * GRANULE
    path = mp4(tmp_path / "v.mp4", size)
    fake.inject("reset", path="/upload/youtube/v3/videos", method="PUT", skip=2)
    fake.inject(status=503, path="/upload/youtube/v3/videos", method="PUT", skip=3)
    adapter = adapter_for(fake)
    adapter.publish(make_job(path), Refs())
    [video] = fake.ledger()
    assert video.sha256 == sha(path)
    probes = [c for c in chunk_puts(fake) if c.startswith("bytes */")]
    assert len(probes) == 2
    assert fake.bytes_received < 1.3 * size


def test_a_later_attempt_resumes_the_saved_session(fake, tmp_path):
    size = 8 * GRANULE
    path = mp4(tmp_path / "v.mp4", size)
    fake.inject(status=503, path="/upload/youtube/v3/videos", method="PUT", skip=3, count=100)
    adapter = adapter_for(fake)
    refs = Refs()
    raises(ErrorKind.SERVER, lambda: adapter.publish(make_job(path), refs))
    assert fake.ledger() == [] and fake.received() == 3 * GRANULE
    fake.faults.clear()
    before = fake.bytes_received
    adapter_for(fake).publish(make_job(path, ref=refs.last), Refs())
    [video] = fake.ledger()
    assert video.sha256 == sha(path)
    assert len(fake.seen("POST", "/upload/youtube/v3/videos")) == 1  # one videos.insert
    assert fake.bytes_received - before == size - 3 * GRANULE  # from the server's offset


def test_an_expired_session_starts_a_new_upload(fake, tmp_path):
    path = mp4(tmp_path / "v.mp4", 4 * GRANULE)
    fake.inject(status=503, path="/upload/youtube/v3/videos", method="PUT", skip=1, count=100)
    refs = Refs()
    raises(ErrorKind.SERVER, lambda: adapter_for(fake).publish(make_job(path), refs))
    fake.faults.clear()
    fake.expire_sessions()
    new_refs = Refs()
    adapter_for(fake).publish(make_job(path, ref=refs.last), new_refs)
    assert len(fake.ledger()) == 1
    assert new_refs.saved[0]["upload_uri"] != refs.last["upload_uri"]


def test_dropped_answer_after_the_final_chunk_the_probe_finds_the_video(fake, tmp_path):
    path = mp4(tmp_path / "v.mp4", 3 * GRANULE)
    fake.inject("drop", path="/upload/youtube/v3/videos", method="PUT", skip=2)
    published = adapter_for(fake).publish(make_job(path), Refs())
    [video] = fake.ledger()
    assert published.post_id == video.id
    assert chunk_puts(fake)[-1] == f"bytes */{3 * GRANULE}"


def test_reconcile_asks_the_session(fake, tmp_path):
    path = mp4(tmp_path / "v.mp4", 3 * GRANULE)
    adapter = adapter_for(fake)
    assert adapter.reconcile(make_job(path)).verdict is Verdict.NOT_POSTED
    # Every answer after the last chunk is lost: the attempt ends without knowing.
    fake.inject("drop", path="/upload/youtube/v3/videos", method="PUT", skip=2, count=50)
    refs = Refs()
    with pytest.raises(PlatformError):
        adapter.publish(make_job(path), refs)
    fake.faults.clear()
    found = adapter.reconcile(make_job(path, ref=refs.last))
    [video] = fake.ledger()
    assert found.verdict is Verdict.POSTED and found.published.post_id == video.id
    # A session that expired after its last byte: the uploads listing tells.
    fake.expire_sessions()
    found = adapter.reconcile(make_job(path, ref=refs.last))
    assert found.verdict is Verdict.POSTED and found.published.post_id == video.id
    other = adapter.reconcile(make_job(path, text="Another title", ref=refs.last))
    assert other.verdict is Verdict.CANNOT_TELL


def test_reconcile_of_an_unfinished_session_resends(fake, tmp_path):
    path = mp4(tmp_path / "v.mp4", 4 * GRANULE)
    fake.inject(status=503, path="/upload/youtube/v3/videos", method="PUT", skip=2, count=100)
    refs = Refs()
    with pytest.raises(PlatformError):
        adapter_for(fake).publish(make_job(path), refs)
    fake.faults.clear()
    found = adapter_for(fake).reconcile(make_job(path, ref=refs.last))
    assert found.verdict is Verdict.RESEND and str(2 * GRANULE) in found.message
    fake.expire_sessions()
    assert adapter_for(fake).reconcile(make_job(path, ref=refs.last)).verdict \
        is Verdict.NOT_POSTED


# -- errors and quota ------------------------------------------------------------------------

def test_quota_exceeded_waits_for_midnight_pacific(fake, tmp_path):
    fake.inserts_left = 0
    path = mp4(tmp_path / "v.mp4", GRANULE)
    adapter = adapter_for(fake)
    error = raises(ErrorKind.QUOTA_EXCEEDED, lambda: adapter.publish(make_job(path), Refs()))
    assert error.retry_at == next_midnight_pacific(adapter.clock()) or \
        abs(error.retry_at - next_midnight_pacific(datetime.now(UTC))) < timedelta(seconds=5)
    assert "midnight Pacific" in error.message


def test_midnight_pacific():
    # 12:00 UTC on 1 Dec is 04:00 PST; the next midnight is 08:00 UTC on 2 Dec.
    assert next_midnight_pacific(NOW) == datetime(2026, 12, 2, 8, 1, tzinfo=UTC)
    summer = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)  # PDT, UTC-7
    assert next_midnight_pacific(summer) == datetime(2026, 7, 2, 7, 1, tzinfo=UTC)


def test_upload_limit_waits_a_day(fake, tmp_path):
    fake.channels[fake.tokens[TOKEN]].upload_limit = 0
    error = raises(ErrorKind.QUOTA_EXCEEDED, lambda: adapter_for(fake).publish(
        make_job(mp4(tmp_path / "v.mp4", GRANULE)), Refs()))
    assert error.code == "uploadLimitExceeded"
    assert timedelta(hours=23) < error.retry_at - datetime.now(UTC) <= timedelta(hours=24)


def test_expired_token_is_auth_expired(fake, tmp_path):
    error = raises(ErrorKind.AUTH_EXPIRED, lambda: adapter_for(fake, token="old").publish(
        make_job(mp4(tmp_path / "v.mp4", GRANULE)), Refs()))
    assert error.http_status == 401 and "old" not in error.message


def test_metadata_refused_by_youtube_is_invalid(fake, tmp_path):
    fake.inject(status=400, path="/upload/youtube/v3/videos", method="POST", body={"error": {
        "code": 400, "message": "bad", "errors": [{"reason": "invalidCategoryId"}]}})
    error = raises(ErrorKind.INVALID, lambda: adapter_for(fake).publish(
        make_job(mp4(tmp_path / "v.mp4", GRANULE)), Refs()))
    assert error.code == "invalidCategoryId"


# -- add time ---------------------------------------------------------------------------------

def test_add_time_checks(tmp_path):
    video = mp4(tmp_path / "v.mp4", 1000)
    assert video_type(video) == "video/mp4"
    YouTubeAdapter.validate("Title", (Media(video),), {})
    picture = tmp_path / "p.png"
    picture.write_bytes(images.png(2, 2))
    cases = [
        ("Title", (), {}, "exactly one video"),
        ("Title", (Media(video), Media(video)), {}, "exactly one video"),
        ("Title", (Media(str(picture)),), {}, "not a video"),
        ("", (Media(video),), {}, "title"),
        ("x" * 101, (Media(video),), {}, "100"),
        ("a <b>", (Media(video),), {}, "< or >"),
        ("T", (Media(video),), {"privacy": "secret"}, "privacy"),
        ("T", (Media(video),), {"publish_at": "2027-01-01T00:00:00Z", "privacy": "public"},
         "private"),
        ("T", (Media(video),), {"publish_at": "soon"}, "ISO 8601"),
        ("T", (Media(video),), {"made_for_kids": "perhaps"}, "true or false"),
        ("T", (Media(video),), {"category": "music"}, "category"),
        ("T", (Media(video),), {"tags": ",".join(["t" * 50] * 10)}, "tags"),
        ("T", (Media(video),), {"thumbnail": video}, "JPEG or PNG"),
        ("T", (Media(video),), {"thumbnail": str(tmp_path / "none.png")}, "no such"),
        ("T", (Media(video),), {"description": "x" * 5001}, "5000"),
    ]
    for text, media, options, message in cases:
        with pytest.raises(UsageError, match=message):
            YouTubeAdapter.validate(text, media, options)


def test_signatures_of_other_video_containers(tmp_path):
    samples = {b"\x1a\x45\xdf\xa3\x01\x00\x00\x00webm": "video/webm",
               b"\x00\x00\x00\x08wide\x00\x00": "video/quicktime",
               b"\x00\x00\x00\x14ftypqt  ": "video/quicktime",
               b"\x00\x00\x00\x14ftypheic": None, b"\x89PNG\r\n\x1a\n": None}
    for head, mime in samples.items():
        path = tmp_path / "x"
        path.write_bytes(head + b"\x00" * 200)
        assert video_type(str(path)) == mime, head
    path.write_bytes(b"just text " * 40)
    assert video_type(str(path)) is None


def test_metadata_defaults():
    body = metadata("Title line\n\nMore words", {})
    assert body == {"snippet": {"title": "Title line", "description": "More words",
                                "categoryId": "22"}, "status": {"privacyStatus": "public"}}
    assert discovery.body_errors("Video", body) == []


# -- progress ----------------------------------------------------------------------------------

def test_progress_bar_only_when_asked_and_large(fake, tmp_path, monkeypatch):
    monkeypatch.setattr(youtube, "LARGE", 2 * GRANULE)
    stream = io.StringIO()
    adapter_for(fake, progress=stream).publish(make_job(mp4(tmp_path / "v.mp4", 3 * GRANULE)),
                                               Refs())
    assert "100%" in stream.getvalue() and stream.getvalue().endswith("\n")
    small = io.StringIO()
    adapter_for(fake, progress=small).publish(make_job(mp4(tmp_path / "s.mp4", GRANULE)),
                                              Refs())
    assert small.getvalue() == ""
    account = Account(name="ada", platform="youtube", base_url=fake.base_url)
    assert YouTubeAdapter(account, {"access_token": TOKEN}, None).progress_stream is None


def test_json_of_a_reconciled_job_is_plain(fake, tmp_path):
    path = mp4(tmp_path / "v.mp4", GRANULE)
    refs = Refs()
    adapter_for(fake).publish(make_job(path), refs)
    assert json.loads(json.dumps(refs.last))["file"]["size"] == GRANULE


# -- Google tokens ------------------------------------------------------------------------------

def test_refresh_keeps_the_stored_refresh_token_when_google_omits_it(fake, tmp_path):
    from autopost.accounts import refresh_account
    from autopost.store.sqlite import SqliteStore

    fake.add_client("gid", "gsecret")
    fake.refresh_tokens["1//keep"] = {"channel": fake.tokens[TOKEN], "testing": False,
                                      "at": fake.now()}
    store = SqliteStore(tmp_path / "a.db")
    creds = {"access_token": "ya29.stale", "refresh_token": "1//keep", "client_id": "gid",
             "client_secret": "gsecret"}
    account = Account(name="ada", platform="youtube", base_url=fake.base_url,
                      credentials=creds)
    store.add_account(account, now=NOW)
    adapter = YouTubeAdapter(account, dict(creds), httpx.Client(), progress=False,
                             clock=lambda: NOW)
    raises(ErrorKind.AUTH_EXPIRED, adapter.check)
    stored = refresh_account(store, adapter, creds, "run-1", clock=lambda: NOW)
    assert stored.credentials["refresh_token"] == "1//keep"
    assert stored.credentials["access_token"] != "ya29.stale"
    assert stored.token_expires_at == NOW + timedelta(seconds=3599)
    assert adapter.check().display.startswith("Ada's channel")
    assert fake.refreshes == ["1//keep"]
    store.close()


def test_a_testing_apps_refresh_token_dies_after_7_days_and_the_message_says_so(fake):
    fake.add_client("gid", "gsecret", testing=True)
    fake.refresh_tokens["1//weekly"] = {"channel": fake.tokens[TOKEN], "testing": True,
                                        "at": fake.now()}
    adapter = adapter_for(fake, token="ya29.stale", refresh_token="1//weekly",
                          client_id="gid", client_secret="gsecret")
    assert adapter.refresh().credentials["access_token"]
    fake.advance(8 * 86400)
    error = raises(ErrorKind.AUTH_REVOKED, adapter.refresh)
    assert '"Testing"' in error.message and "7 days" in error.message
    assert "autopost accounts login ada" in error.message
    assert "1//weekly" not in error.message and "gsecret" not in error.message
