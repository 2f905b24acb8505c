"""The Mastodon adapter, against a local fake server and against httpx.MockTransport."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autopost.errors import UsageError
from autopost.models import Account, ErrorKind, Job, Media
from autopost.platforms.base import PlatformError, Verdict
from autopost.platforms.mastodon import (
    MastodonAdapter,
    count_characters,
    normalise,
    plain_text,
)
from autopost.timeparse import format_utc
from tests.adapterkit import Refs, Sleeper, closed_port, raises
from tests.fakes.mastodon_server import FakeMastodon, control, fake_mastodon  # noqa: F401

TOKEN = "token-alice"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


# -- helpers ---------------------------------------------------------------------------

def make_job(text: str = "Hello fediverse", **kw: Any) -> Job:
    defaults: dict[str, Any] = dict(
        id="j1", account="alice", platform="mastodon", text=text, scheduled_at=NOW,
        next_attempt_at=NOW, idempotency_key="key-j1")
    defaults.update(kw)
    return Job(**defaults)


def adapter_for(base_url: str | None, *, token: str = TOKEN, client: httpx.Client | None = None,
                clock: Callable[[], datetime] | None = None,
                sleep: Callable[[float], None] | None = None) -> MastodonAdapter:
    account = Account(name="alice", platform="mastodon", base_url=base_url)
    return MastodonAdapter(account, {"access_token": token},
                           client or httpx.Client(timeout=5.0),
                           clock=clock or (lambda: datetime.now(UTC)), sleep=sleep or Sleeper())


@pytest.fixture
def fake(fake_mastodon: FakeMastodon) -> FakeMastodon:  # noqa: F811
    return fake_mastodon


@pytest.fixture
def adapter(fake: FakeMastodon) -> MastodonAdapter:
    a = adapter_for(fake.base_url, clock=fake.now)
    yield a
    a.client.close()


def posts(fake: FakeMastodon) -> list[dict[str, Any]]:
    return [r for r in fake.requests if (r["method"], r["path"]) == ("POST", "/api/v1/statuses")]


def mock_adapter(handler: Callable[[httpx.Request], httpx.Response], *,
                 token: str = TOKEN, clock: Callable[[], datetime] = lambda: NOW,
                 sleep: Callable[[float], None] | None = None) -> MastodonAdapter:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return adapter_for("https://social.example", token=token, client=client, clock=clock,
                       sleep=sleep)


INSTANCE = {"configuration": {"statuses": {"max_characters": 500,
                                           "characters_reserved_per_url": 23}}}


def status_json(i: str = "100", text: str = "Hello fediverse", created: datetime = NOW,
                ) -> dict[str, Any]:
    return {"id": i, "url": f"https://social.example/@alice/{i}", "created_at":
            created.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "content": f"<p>{text}</p>",
            "reblog": None, "media_attachments": []}


# -- publishing against the fake server ---------------------------------------------------

def test_text_post_is_created_once_with_the_jobs_idempotency_key(fake, adapter):
    refs = Refs(on_save=lambda ref: pytest.fail("posted before first_sent_at was saved")
                if fake.ledger() else None)
    published = adapter.publish(make_job(), refs)
    [row] = fake.ledger()
    assert (row.text, row.idempotency_key, row.token) == ("Hello fediverse", "key-j1", TOKEN)
    assert published.post_id == row.id
    assert published.url == f"{fake.base_url}/@alice/{row.id}"
    assert "first_sent_at" in refs.last


def test_resend_with_the_same_key_returns_the_same_status(fake, adapter):
    first = adapter.publish(make_job(), Refs())
    again = adapter.publish(make_job(ref={"first_sent_at": format_utc(fake.now())}), Refs())
    assert again == first
    assert len(fake.ledger()) == 1
    assert [r["idempotency_key"] for r in posts(fake)] == ["key-j1", "key-j1"]


def test_idempotency_is_per_account_and_expires_after_an_hour(fake):
    fake.add_account("token-bob", "bob")
    with FakeMastodon() as other:  # the fake itself: keys are per token and last one hour
        other.add_account("token-bob", "bob")
        form = {"status": ["hi"]}
        assert other.create_status(TOKEN, form, "k")[1]["id"] == \
            other.create_status(TOKEN, form, "k")[1]["id"]
        other.create_status("token-bob", form, "k")
        assert len(other.ledger()) == 2
        other.advance(3601)
        other.create_status(TOKEN, form, "k")
        assert len(other.ledger(TOKEN)) == 2


def test_options_are_sent_as_form_fields(fake, adapter):
    job = make_job(options={"visibility": "unlisted", "language": "de",
                            "spoiler_text": "cw: test"})
    adapter.publish(job, Refs())
    [row] = fake.ledger()
    assert (row.visibility, row.language, row.spoiler_text) == ("unlisted", "de", "cw: test")


def test_the_first_sent_time_is_kept_across_resends(fake, adapter):
    sent = format_utc(fake.now() - timedelta(minutes=10))
    refs = Refs()
    adapter.publish(make_job(ref={"first_sent_at": sent, "other": 1}), refs)
    assert refs.saved == []  # still inside the hour: the earliest send time stays


def test_media_with_alt_text_synchronous(fake, adapter, tmp_path):
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    adapter.publish(make_job(media=(Media(str(image), "A cat on a mat"),)), Refs())
    [row] = fake.ledger()
    [media_id] = row.media_ids
    assert fake.media[media_id]["description"] == "A cat on a mat"
    assert fake.media[media_id]["type"] == "image"
    assert fake.media[media_id]["_size"] == 108


def test_media_202_is_polled_until_it_has_a_url(fake, tmp_path):
    fake.configure(media_polls=3)
    sleeper = Sleeper()
    a = adapter_for(fake.base_url, clock=fake.now, sleep=sleeper)
    image = tmp_path / "dog.jpg"
    image.write_bytes(b"jpeg")
    a.publish(make_job(text="", media=(Media(str(image), "A dog"),)), Refs())
    polls = [r for r in fake.requests if r["path"].startswith("/api/v1/media/")]
    assert len(polls) == 3 and len(sleeper.calls) == 3
    [row] = fake.ledger()
    assert fake.media[row.media_ids[0]]["url"] is not None


def test_media_that_never_finishes_gives_up_within_the_max_wait(fake, tmp_path):
    fake.configure(media_polls=10_000)
    sleeper = Sleeper()
    a = adapter_for(fake.base_url, clock=fake.now, sleep=sleeper)
    a.media_max_wait = 20.0
    image = tmp_path / "big.gif"
    image.write_bytes(b"GIF89a")
    error = raises(ErrorKind.SERVER, lambda: a.publish(
        make_job(media=(Media(str(image)),)), Refs()))
    assert "still processing" in error.message
    assert sum(sleeper.calls) == pytest.approx(20.0)
    assert fake.ledger() == []


def test_missing_media_file_is_invalid_before_any_request(fake, adapter, tmp_path):
    job = make_job(media=(Media(str(tmp_path / "gone.png")),))
    error = raises(ErrorKind.INVALID, lambda: adapter.publish(job, Refs()))
    assert "gone.png" in error.message
    assert fake.requests == []


def test_unsupported_media_is_invalid_with_the_servers_message(fake, adapter, tmp_path):
    notes = tmp_path / "notes.unknownext"
    notes.write_text("not a picture")
    error = raises(ErrorKind.INVALID, lambda: adapter.publish(
        make_job(media=(Media(str(notes)),)), Refs()))
    assert "File content type is invalid" in error.message and error.http_status == 422
    assert fake.ledger() == []


def test_media_upload_5xx_is_a_server_error_not_ambiguous(fake, adapter, tmp_path):
    image = tmp_path / "x.png"
    image.write_bytes(b"png")
    fake.inject(status=500, path="/api/v2/media")
    raises(ErrorKind.SERVER, lambda: adapter.publish(make_job(media=(Media(str(image)),)),
                                                     Refs()))


# -- length -------------------------------------------------------------------------------

def test_instance_limit_is_respected_without_posting(fake, adapter):
    fake.configure(max_characters=50)
    error = raises(ErrorKind.INVALID, lambda: adapter.publish(make_job("x" * 51), Refs()))
    assert "51 characters" in error.message and "50" in error.message
    assert posts(fake) == []
    # a long link still counts 23, so this fits in 50
    adapter.publish(make_job("see https://example.com/" + "a" * 80), Refs())
    assert len(fake.ledger()) == 1
    instance_reads = [r for r in fake.requests if r["path"] == "/api/v2/instance"]
    assert len(instance_reads) == 1  # cached


def test_larger_instance_limit_allows_longer_posts(fake, adapter):
    fake.configure(max_characters=5000)
    adapter.publish(make_job("y" * 1200), Refs())
    assert len(fake.ledger()) == 1


def test_content_warning_counts_toward_the_limit(fake, adapter):
    fake.configure(max_characters=20)
    job = make_job("z" * 15, options={"spoiler_text": "spoilers"})
    raises(ErrorKind.INVALID, lambda: adapter.publish(job, Refs()))
    assert posts(fake) == []


def test_unknown_instance_limits_leave_the_decision_to_the_server(fake, adapter):
    fake.inject(status=500, path="/api/v2/instance")
    fake.configure(max_characters=10)
    error = raises(ErrorKind.INVALID, lambda: adapter.publish(make_job("w" * 11), Refs()))
    assert "Text character limit of 10 exceeded" in error.message


def test_counting_examples():
    assert count_characters("hello") == 5
    assert count_characters("go https://example.com/" + "p" * 200) == 3 + 23
    assert count_characters("hi @bob@mastodon.example.org") == len("hi @bob")
    assert count_characters("hi @bob") == 7
    assert count_characters("mail bob@example.org") == len("mail bob@example.org")
    assert count_characters("(https://example.com/x).") == 1 + 23 + 2
    assert count_characters("e\u0301t\u00e9 \U0001F44D\U0001F3FD \U0001F1EB\U0001F1F7") == 7
    assert count_characters("https://x.example", url_chars=30) == 30


words = st.text(alphabet="abcdefghij XYZ.,!", min_size=0, max_size=30)
hosts = st.from_regex(r"[a-z]{1,10}\.(org|social|example)", fullmatch=True)
paths = st.from_regex(r"(/[a-z0-9_]{0,12}){0,4}", fullmatch=True)
users = st.from_regex(r"[a-z0-9_]{1,15}", fullmatch=True)


@st.composite
def posts_with_entities(draw):
    parts, expected = [], 0
    for _ in range(draw(st.integers(0, 6))):
        choice = draw(st.sampled_from(["text", "url", "mention", "local"]))
        if choice == "text":
            piece = draw(words)
            expected += len(piece)
        elif choice == "url":
            piece = f"https://{draw(hosts)}{draw(paths)}"
            expected += 23
        elif choice == "mention":
            user = draw(users)
            piece = f"@{user}@{draw(hosts)}"
            expected += 1 + len(user)
        else:
            piece = f"@{draw(users)}"
            expected += len(piece)
        parts.append(piece)
    return " ".join(parts), expected + max(0, len(parts) - 1)


@settings(max_examples=300, deadline=None)
@given(posts_with_entities())
def test_counting_property(sample):
    text, expected = sample
    assert MastodonAdapter.text_length(text) == expected


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_counting_never_exceeds_code_points_without_links(text):
    if "://" not in text:
        assert count_characters(text) <= len(text)


edge = st.sampled_from(["http://", "HTTP://x", "https://a.", "http://.", "(http://b)",
                         "@u@h.example", "\r\n", "e\u0301", "\U0001F44D\U0001F3FD", "://"])


@settings(max_examples=300, deadline=None)
@given(st.one_of(posts_with_entities().map(lambda s: s[0]),
                 st.lists(st.one_of(edge, words), max_size=12).map("".join),
                 st.text(max_size=40)))
def test_the_cheap_bound_is_never_below_the_count(text):
    """validate counts exactly only when text_length_at_most is over the limit."""
    assert MastodonAdapter.text_length_at_most(text) >= MastodonAdapter.text_length(text)


def test_short_links_over_the_limit_are_refused():
    text = " ".join(["http://a"] * 21)  # 188 code points, 21 * 23 + 20 = 503 characters
    with pytest.raises(UsageError, match="503 characters"):
        MastodonAdapter.validate(text, (), {})
    MastodonAdapter.validate(" ".join(["http://a"] * 20), (), {})


def test_validate_at_add_time():
    MastodonAdapter.validate("a" * 500, (), {})
    MastodonAdapter.validate("b" * 400 + " https://example.com/" + "c" * 300, (), {})
    with pytest.raises(UsageError, match="501 characters"):
        MastodonAdapter.validate("a" * 501, (), {})
    with pytest.raises(UsageError, match="content warning"):
        MastodonAdapter.validate("a" * 495, (), {"spoiler_text": "123456"})
    with pytest.raises(UsageError, match="visibility"):
        MastodonAdapter.validate("hi", (), {"visibility": "everyone"})
    assert MastodonAdapter.text_limit == 500


def test_base_url_is_required():
    a = adapter_for(None)
    with pytest.raises(UsageError, match="--base-url"):
        a.publish(make_job(), Refs())


# -- the error table against the fake -------------------------------------------------------

def test_revoked_token_needs_reauthorisation(fake):
    a = adapter_for(fake.base_url, token="not-a-real-token", clock=fake.now)
    error = raises(ErrorKind.AUTH_REVOKED, lambda: a.publish(make_job(), Refs()))
    assert "re-authorise" in error.message and error.http_status == 401
    assert fake.ledger() == []


def test_401_fault_on_create_is_auth_revoked(fake, adapter):
    fake.inject(status=401, path="/api/v1/statuses")
    raises(ErrorKind.AUTH_REVOKED, lambda: adapter.publish(make_job(), Refs()))


@pytest.mark.parametrize("status,message", [
    (403, "This action is not allowed"),
    (404, "Record not found"),
    (422, "Validation failed: Text can't be blank"),
])
def test_client_errors_are_invalid_with_the_servers_message(fake, adapter, status, message):
    fake.inject(status=status, path="/api/v1/statuses", message=message)
    error = raises(ErrorKind.INVALID, lambda: adapter.publish(make_job(), Refs()))
    assert message in error.message and error.http_status == status


def test_429_reset_is_read_from_the_iso_header(fake, adapter):
    fake.inject(status=429, path="/api/v1/statuses", reset_in=600)
    error = raises(ErrorKind.RATE_LIMITED, lambda: adapter.publish(make_job(), Refs()))
    expected = fake.now() + timedelta(seconds=600)
    assert abs((error.retry_at - expected).total_seconds()) < 2


def test_429_takes_the_later_of_retry_after_and_reset(fake, adapter):
    fake.inject(status=429, path="/api/v1/statuses", reset_in=60, retry_after=900)
    error = raises(ErrorKind.RATE_LIMITED, lambda: adapter.publish(make_job(), Refs()))
    assert abs((error.retry_at - fake.now()).total_seconds() - 900) < 2


def test_enforced_rate_limit(fake, adapter):
    fake.configure(rate_limit=2, enforce_rate_limit=True)
    adapter.check()
    adapter.check()
    error = raises(ErrorKind.RATE_LIMITED, adapter.check)
    assert error.retry_at > fake.now() + timedelta(minutes=4)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_on_create_is_ambiguous(fake, adapter, status):
    fake.inject(status=status, path="/api/v1/statuses", method="POST")
    raises(ErrorKind.AMBIGUOUS, lambda: adapter.publish(make_job(), Refs()))


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_on_reads_is_a_server_error(fake, adapter, status):
    fake.inject(status=status, path="/api/v1/accounts/verify_credentials")
    raises(ErrorKind.SERVER, adapter.check)


def test_connection_refused_is_network():
    a = adapter_for(f"http://127.0.0.1:{closed_port()}")
    raises(ErrorKind.NETWORK, lambda: a.publish(make_job(), Refs()))


def test_create_then_drop_is_ambiguous_and_a_resend_does_not_duplicate(fake, adapter):
    refs = Refs()
    fake.inject("drop", path="/api/v1/statuses")
    raises(ErrorKind.AMBIGUOUS, lambda: adapter.publish(make_job(), refs))
    [row] = fake.ledger()
    job = make_job(ref=refs.last)
    verdict = adapter.reconcile(job)
    assert verdict.verdict is Verdict.RESEND
    assert "safe to resend with the same Idempotency-Key" in verdict.message
    published = adapter.publish(job, refs)
    assert published.post_id == row.id
    assert len(fake.ledger()) == 1


def test_drop_before_processing_then_resend_posts_once(fake, adapter):
    refs = Refs()
    fake.inject("reset", path="/api/v1/statuses")
    raises(ErrorKind.AMBIGUOUS, lambda: adapter.publish(make_job(), refs))
    assert fake.ledger() == []
    adapter.publish(make_job(ref=refs.last), refs)
    assert len(fake.ledger()) == 1


def test_timeout_after_send_is_ambiguous(fake):
    a = adapter_for(fake.base_url, client=httpx.Client(timeout=0.3), clock=fake.now)
    a.instance_limits()
    fake.inject("latency", seconds=1.5, path="/api/v1/statuses")
    raises(ErrorKind.AMBIGUOUS, lambda: a.publish(make_job(), Refs()))


# -- reconcile ---------------------------------------------------------------------------

def test_reconcile_never_sent(adapter, fake):
    verdict = adapter.reconcile(make_job())
    assert verdict.verdict is Verdict.NOT_POSTED
    assert fake.requests == []


def test_reconcile_inside_the_window_needs_no_request(adapter, fake):
    job = make_job(ref={"first_sent_at": format_utc(fake.now() - timedelta(minutes=50))})
    verdict = adapter.reconcile(job)
    assert verdict.verdict is Verdict.RESEND
    assert "safe to resend" in verdict.message
    assert fake.requests == []


def _post_other(fake: FakeMastodon, n: int, text: str = "another post") -> None:
    for i in range(n):
        fake.create_status(TOKEN, {"status": [f"{text} {i}"]}, None)


def test_reconcile_outside_the_window_finds_the_post(fake, adapter):
    fake.add_account("token-bob", "bob")
    fake.create_status("token-bob", {"status": ["Hello fediverse"]}, None)  # someone else
    refs = Refs()
    fake.inject("drop", path="/api/v1/statuses")
    raises(ErrorKind.AMBIGUOUS, lambda: adapter.publish(make_job(), refs))
    _post_other(fake, 70)  # pushes ours to the second page
    [ours] = fake.ledger(TOKEN)[:1]
    fake.advance(2 * 3600)
    verdict = adapter.reconcile(make_job(ref=refs.last))
    assert verdict.verdict is Verdict.POSTED
    assert verdict.published.post_id == ours.id
    assert verdict.published.url == f"{fake.base_url}/@alice/{ours.id}"
    reads = [r["path"] for r in fake.requests if r["path"].endswith("/statuses")
             and r["method"] == "GET"]
    assert len(reads) == 2


def test_reconcile_matches_rendered_html(fake, adapter):
    text = "Links & <tags>: https://example.com/a?b=1&c=2\n\nhi @carol@other.example #tag"
    refs = Refs()
    fake.inject("drop", path="/api/v1/statuses")
    raises(ErrorKind.AMBIGUOUS, lambda: adapter.publish(make_job(text), refs))
    fake.advance(3 * 3600)
    assert adapter.reconcile(make_job(text, ref=refs.last)).verdict is Verdict.POSTED


def test_reconcile_outside_the_window_not_found(fake, adapter):
    fake.create_status(TOKEN, {"status": ["Hello fediverse"]}, None)  # same text, but old
    fake.advance(3600)
    sent = fake.now()
    _post_other(fake, 3)
    fake.advance(2 * 3600)
    verdict = adapter.reconcile(make_job(ref={"first_sent_at": format_utc(sent)}))
    assert verdict.verdict is Verdict.NOT_POSTED


def test_reconcile_cannot_tell_when_the_read_back_runs_out(fake, adapter):
    sent = fake.now()
    _post_other(fake, 5)
    adapter.readback_pages, adapter.page_size = 2, 2
    fake.advance(2 * 3600)
    verdict = adapter.reconcile(make_job(ref={"first_sent_at": format_utc(sent)}))
    assert verdict.verdict is Verdict.CANNOT_TELL


def test_reconcile_read_failures_raise(fake, adapter):
    fake.inject(status=503, path="/api/v1/accounts")
    job = make_job(ref={"first_sent_at": format_utc(fake.now() - timedelta(hours=2))})
    raises(ErrorKind.SERVER, lambda: adapter.reconcile(job))


def test_late_resend_reads_back_first_and_does_not_duplicate(fake, adapter):
    refs = Refs()
    fake.inject("drop", path="/api/v1/statuses")
    raises(ErrorKind.AMBIGUOUS, lambda: adapter.publish(make_job(), refs))
    fake.advance(2 * 3600)  # the server has forgotten the key
    published = adapter.publish(make_job(ref=refs.last), refs)
    assert len(fake.ledger()) == 1
    assert published.post_id == fake.ledger()[0].id


def test_late_resend_when_nothing_was_posted_posts_and_restarts_the_window(fake, adapter):
    old = fake.now()
    fake.advance(2 * 3600)
    refs = Refs()
    adapter.publish(make_job(ref={"first_sent_at": format_utc(old)}), refs)
    assert len(fake.ledger()) == 1
    assert refs.last["first_sent_at"] == format_utc(fake.now())


# -- check ---------------------------------------------------------------------------------

def test_check(fake, adapter):
    info = adapter.check()
    assert info.display == "@alice"
    assert info.url == f"{fake.base_url}/@alice"


def test_check_with_a_revoked_token(fake):
    a = adapter_for(fake.base_url, token="revoked-token")
    raises(ErrorKind.AUTH_REVOKED, a.check)


# -- the HTTP control API (used by tests that drive the fake from other processes) -------------

def test_http_control_api(fake, adapter):
    control(fake.base_url, "/_fault", {"kind": "status", "status": 502, "count": 2,
                                       "path": "/api/v1/statuses"})
    raises(ErrorKind.AMBIGUOUS, lambda: adapter.publish(make_job(), Refs()))
    raises(ErrorKind.AMBIGUOUS, lambda: adapter.publish(make_job(), Refs()))
    adapter.publish(make_job(), Refs())
    [row] = control(fake.base_url, "/_ledger")["statuses"]
    assert (row["text"], row["idempotency_key"], row["token"]) == \
        ("Hello fediverse", "key-j1", TOKEN)
    control(fake.base_url, "/_fault", {"kind": "status", "status": 503, "count": 5})
    control(fake.base_url, "/_fault", method="DELETE")
    assert fake.faults == []
    before = fake.now()
    after = control(fake.base_url, "/_clock", {"advance": 3600})["now"]
    assert datetime.fromisoformat(after.replace("Z", "+00:00")) - before >= timedelta(hours=1)
    new_id = control(fake.base_url, "/_accounts", {"token": "token-zed", "username": "zed"})
    assert new_id["id"] == "2"
    control(fake.base_url, "/_config", {"latency": 0.0, "max_characters": 42})
    assert fake.max_characters == 42
    assert control(fake.base_url, "/_requests")["requests"]


# -- httpx.MockTransport ---------------------------------------------------------------------

def test_mock_text_post_wire_format():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/api/v2/instance":
            return httpx.Response(200, json=INSTANCE)
        return httpx.Response(200, json=status_json())

    a = mock_adapter(handler)
    published = a.publish(make_job(options={"visibility": "private", "sensitive": True}), Refs())
    assert published.post_id == "100"
    create = seen[-1]
    assert create.method == "POST" and create.url.path == "/api/v1/statuses"
    assert create.headers["Idempotency-Key"] == "key-j1"
    assert create.headers["Authorization"] == f"Bearer {TOKEN}"
    assert create.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = httpx.QueryParams(create.content.decode())
    assert form["status"] == "Hello fediverse" and form["visibility"] == "private"
    assert form["sensitive"] == "true"
    assert "authorization" not in seen[0].headers  # the instance read is anonymous


def test_mock_media_polling_and_media_ids(tmp_path):
    polls = {"n": 0}
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        path = request.url.path
        if path == "/api/v2/instance":
            return httpx.Response(200, json=INSTANCE)
        if path == "/api/v2/media":
            return httpx.Response(202, json={"id": "m1", "url": None})
        if path == "/api/v1/media/m1":
            polls["n"] += 1
            ready = polls["n"] >= 2
            return httpx.Response(200 if ready else 206,
                                  json={"id": "m1", "url": "https://x/m1" if ready else None})
        return httpx.Response(200, json=status_json())

    image = tmp_path / "pic.webp"
    image.write_bytes(b"RIFF....WEBP")
    sleeper = Sleeper()
    a = mock_adapter(handler, sleep=sleeper)
    a.publish(make_job(media=(Media(str(image), "alt words"),)), Refs())
    upload = next(r for r in seen if r.url.path == "/api/v2/media")
    body = upload.content
    assert b'name="description"' in body and b"alt words" in body
    assert b'filename="pic.webp"' in body and b"Content-Type: image/webp" in body
    assert httpx.QueryParams(seen[-1].content.decode()).get_list("media_ids[]") == ["m1"]
    assert polls["n"] == 2 and len(sleeper.calls) == 2


def test_mock_429_with_iso_reset_microseconds():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v2/instance":
            return httpx.Response(200, json=INSTANCE)
        return httpx.Response(429, json={"error": "Too many requests"}, headers={
            "X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": "2026-03-01T12:04:59.123456Z"})

    error = raises(ErrorKind.RATE_LIMITED, lambda: mock_adapter(handler).publish(
        make_job(), Refs()))
    assert error.retry_at == datetime(2026, 3, 1, 12, 4, 59, 123456, tzinfo=UTC)
    assert error.http_status == 429


def test_mock_429_with_retry_after_only():
    error = raises(ErrorKind.RATE_LIMITED, mock_adapter(
        lambda r: httpx.Response(429, headers={"Retry-After": "120"})).check)
    assert error.retry_at == NOW + timedelta(seconds=120)


@pytest.mark.parametrize("response", [
    httpx.Response(502, text="<html>Bad Gateway</html>"),
    httpx.Response(200, text="not json"),
    httpx.Response(200, json={"no": "id"}),
])
def test_mock_create_answers_that_hide_the_outcome_are_ambiguous(response):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v2/instance":
            return httpx.Response(200, json=INSTANCE)
        return response

    raises(ErrorKind.AMBIGUOUS, lambda: mock_adapter(handler).publish(make_job(), Refs()))


@pytest.mark.parametrize("exc,kind", [
    (httpx.ConnectError("connection refused"), ErrorKind.NETWORK),
    (httpx.ReadTimeout("timed out"), ErrorKind.AMBIGUOUS),
    (httpx.RemoteProtocolError("Server disconnected"), ErrorKind.AMBIGUOUS),
])
def test_mock_transport_errors_on_create(exc, kind):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v2/instance":
            return httpx.Response(200, json=INSTANCE)
        raise exc

    raises(kind, lambda: mock_adapter(handler).publish(make_job(), Refs()))


def test_mock_timeout_on_a_read_is_network():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out")

    raises(ErrorKind.NETWORK, mock_adapter(handler).check)


def test_mock_reconcile_read_back_pages_with_max_id():
    sent = NOW - timedelta(hours=3)
    seen: list[httpx.Request] = []
    page1 = [status_json(str(i), f"other {i}", NOW - timedelta(minutes=i)) for i in range(40)]
    page2 = [status_json("7", "Hello <b>fediverse</b>", sent + timedelta(seconds=3))]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("verify_credentials"):
            return httpx.Response(200, json={"id": "42", "acct": "alice"})
        return httpx.Response(200, json=page2 if request.url.params.get("max_id") else page1)

    verdict = mock_adapter(handler).reconcile(make_job(ref={"first_sent_at": format_utc(sent)}))
    assert verdict.verdict is Verdict.POSTED and verdict.published.post_id == "7"
    assert seen[1].url.path == "/api/v1/accounts/42/statuses"
    assert seen[1].url.params["limit"] == "40"
    assert seen[2].url.params["max_id"] == "39"


def test_mock_check():
    a = mock_adapter(lambda r: httpx.Response(200, json={
        "id": "9", "username": "alice", "acct": "alice", "url": "https://social.example/@alice"}))
    info = a.check()
    assert (info.display, info.url) == ("@alice", "https://social.example/@alice")


# -- secrets --------------------------------------------------------------------------------

SECRET = "s3cr3t-TOKEN-value-0123456789"


def _echo_token(status: int) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v2/instance":
            return httpx.Response(200, json=INSTANCE)
        # a hostile or buggy server that echoes the credentials back
        auth = request.headers.get("Authorization", "")
        return httpx.Response(status, json={"error": f"bad token {SECRET} ({auth})"},
                              headers={"Retry-After": "5"})
    return handler


@pytest.mark.parametrize("status", [401, 403, 404, 422, 429, 500, 503, 302])
def test_the_token_never_appears_in_errors(status):
    for call in ("publish", "check"):
        a = mock_adapter(_echo_token(status), token=SECRET)
        with pytest.raises(PlatformError) as info:
            a.publish(make_job(), Refs()) if call == "publish" else a.check()
        error = info.value
        for shown in (error.message, str(error), repr(error), repr(error.args)):
            assert SECRET not in shown
        assert "[redacted]" in error.message


@pytest.mark.parametrize("exc_type", [httpx.ConnectError, httpx.ReadTimeout])
def test_the_token_never_appears_in_transport_errors(exc_type):
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type(f"failed with {request.headers['Authorization']}")

    a = mock_adapter(handler, token=SECRET)
    with pytest.raises(PlatformError) as info:
        a.check()
    assert SECRET not in info.value.message and SECRET not in repr(info.value)


def test_the_token_is_not_in_messages_from_the_fake(fake):
    a = adapter_for(fake.base_url, token=SECRET)
    error = raises(ErrorKind.AUTH_REVOKED, a.check)
    assert SECRET not in error.message + repr(error)


# -- text helpers ------------------------------------------------------------------------------

def test_plain_text_and_normalise():
    html = ('<p>a &amp; b<br />c</p><p><span class="h-card"><a href="https://x/@d">@<span>d'
            '</span></a></span> <a href="https://e.example/f"><span class="invisible">'
            'https://</span><span class="">e.example/f</span></a></p>')
    assert plain_text(html) == "a & b\nc\n\n@d https://e.example/f"
    assert normalise(plain_text(html)) == normalise("a & b\nc\n\n@d@x.example https://e.example/f")


def test_fake_renders_like_mastodon():
    with FakeMastodon() as server:
        _, status = server.create_status(TOKEN, {"status": ["x <y> https://a.example/b"]}, None)
        assert json.dumps(status)  # serialisable
        assert normalise(plain_text(status["content"])) == "x <y> https://a.example/b"
