"""Discord webhook adapter: requests, answers, the error table of platforms.md section 10,
add-time limits, and the webhook token never leaking. No test reaches the internet:
httpx.MockTransport, or a tiny HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from autopost.errors import UsageError
from autopost.models import Account, ErrorKind, Job, Media
from autopost.platforms import registry
from autopost.platforms.base import AccountInfo, PlatformError, Verdict
from autopost.platforms.discord import DiscordAdapter
from tests.adapterkit import PNG, TRANSPORT_ERRORS, closed_port, multipart, raiser
from tests.fakes.httpfake import LocalServer, QuietHandler
from tests.leakcheck import texts_of

HOOK_ID = "1311111111111111111"
HOOK_TOKEN = "Xy9_sEcReT-WebhookToken_0123456789abcdefGHIJKLMNOPqrstuvWXYZ-_"
HOOK_URL = f"https://discord.com/api/webhooks/{HOOK_ID}/{HOOK_TOKEN}"
GUILD = "900000000000000001"
CHANNEL = "900000000000000002"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def make(handler=None, *, credentials=None, base_url=None, client=None) -> DiscordAdapter:
    creds = {"webhook_url": HOOK_URL, **(credentials or {})}
    if client is None:
        client = httpx.Client(transport=httpx.MockTransport(handler))
    acct = Account(name="dc", platform="discord", base_url=base_url, credentials=creds)
    return DiscordAdapter(acct, creds, client, clock=lambda: NOW)


def job(text="hello server", *, media=(), options=None, job_id="j1") -> Job:
    return Job(id=job_id, account="dc", platform="discord", text=text, scheduled_at=NOW,
               next_attempt_at=NOW, media=tuple(media), options=dict(options or {}))


def message(message_id="1322222222222222222", channel_id=CHANNEL, **extra):
    return {"id": message_id, "type": 0, "content": "hello server", "channel_id": channel_id,
            "webhook_id": HOOK_ID, "attachments": [], **extra}


def webhook_object(**extra):
    return {"id": HOOK_ID, "type": 1, "name": "Announcer", "channel_id": CHANNEL,
            "guild_id": GUILD, "token": HOOK_TOKEN, **extra}


class Recorder:
    """A MockTransport handler: GET -> the webhook object, POST -> `post(request)`."""

    def __init__(self, post=None, get=None):
        self.requests: list[httpx.Request] = []
        self.post = post or (lambda request: httpx.Response(200, json=message()))
        self.get = get or (lambda request: httpx.Response(200, json=webhook_object()))

    def __call__(self, request):
        self.requests.append(request)
        return self.get(request) if request.method == "GET" else self.post(request)

    def posts(self):
        return [r for r in self.requests if r.method == "POST"]

    def gets(self):
        return [r for r in self.requests if r.method == "GET"]


def discord_error(status, code, message_text, **extra):
    return httpx.Response(status, json={"message": message_text, "code": code, **extra})


# -- posting -----------------------------------------------------------------------------

def test_text_post_with_wait_true_and_url_from_the_guild():
    rec = Recorder()
    published = make(rec).publish(job(), lambda ref: None)
    [post] = rec.posts()
    assert post.url.path == f"/api/webhooks/{HOOK_ID}/{HOOK_TOKEN}"
    assert post.url.params["wait"] == "true"
    assert post.headers["content-type"] == "application/json"
    assert json.loads(post.content) == {"content": "hello server"}
    assert published.post_id == "1322222222222222222"
    assert published.url == (
        f"https://discord.com/channels/{GUILD}/{CHANNEL}/1322222222222222222")
    [get] = rec.gets()
    assert str(get.url) == HOOK_URL


def test_guild_is_read_once_per_adapter():
    rec = Recorder()
    adapter = make(rec)
    for n in range(3):
        adapter.publish(job(job_id=f"j{n}"), lambda ref: None)
    assert len(rec.posts()) == 3
    assert len(rec.gets()) == 1


def test_guild_id_in_the_message_needs_no_lookup():
    rec = Recorder(post=lambda r: httpx.Response(200, json=message(guild_id="77")))
    published = make(rec).publish(job(), lambda ref: None)
    assert published.url == f"https://discord.com/channels/77/{CHANNEL}/1322222222222222222"
    assert rec.gets() == []


@pytest.mark.parametrize("get", [
    lambda r: httpx.Response(503, text="unavailable"),
    lambda r: discord_error(429, 0, "You are being rate limited.", retry_after=1.0),
    lambda r: httpx.Response(200, json={"id": HOOK_ID}),
])
def test_without_the_guild_the_post_keeps_its_id_and_has_no_url(get):
    published = make(Recorder(get=get)).publish(job(), lambda ref: None)
    assert published.post_id == "1322222222222222222"
    assert published.url is None


def test_a_failed_guild_lookup_is_tried_again_later():
    answers = [httpx.Response(503, text="down"), httpx.Response(200, json=webhook_object())]
    rec = Recorder(get=lambda r: answers.pop(0))
    adapter = make(rec)
    assert adapter.publish(job(), lambda ref: None).url is None
    assert adapter.publish(job(), lambda ref: None).url is not None


def test_options_map_to_the_payload():
    rec = Recorder()
    opts = {"discord": {"username": "Night shift", "avatar_url": "https://x.example/a.png",
                        "suppress_embeds": True, "silent": True}}
    make(rec).publish(job(options=opts), lambda ref: None)
    assert json.loads(rec.posts()[0].content) == {
        "content": "hello server", "username": "Night shift",
        "avatar_url": "https://x.example/a.png", "flags": 4 | 4096}


def test_credential_username_is_used():
    rec = Recorder()
    make(rec, credentials={"username": "Poster"}).publish(job(), lambda ref: None)
    assert json.loads(rec.posts()[0].content)["username"] == "Poster"


def test_thread_id_from_credentials_goes_into_the_query():
    rec = Recorder()
    make(rec, credentials={"thread_id": "555"}).publish(job(), lambda ref: None)
    params = rec.posts()[0].url.params
    assert params["thread_id"] == "555"
    assert params["wait"] == "true"


def test_existing_query_is_kept_and_wait_is_forced_true():
    rec = Recorder()
    make(rec, credentials={"webhook_url": HOOK_URL + "?thread_id=444&wait=false"}).publish(
        job(), lambda ref: None)
    params = rec.posts()[0].url.params
    assert params.get_list("wait") == ["true"]
    assert params["thread_id"] == "444"
    assert rec.posts()[0].url.path == f"/api/webhooks/{HOOK_ID}/{HOOK_TOKEN}"


def test_job_thread_id_overrides_the_account_one():
    rec = Recorder()
    make(rec, credentials={"thread_id": "555"}).publish(job(options={"thread_id": "666"}),
                                                         lambda ref: None)
    assert rec.posts()[0].url.params["thread_id"] == "666"


def test_image_post_is_multipart_with_files0_and_payload_json(tmp_path):
    image = tmp_path / "chart.png"
    image.write_bytes(PNG)
    rec = Recorder()
    published = make(rec).publish(
        job("the numbers", media=[Media(str(image), alt="a rising line")]), lambda ref: None)
    assert published.post_id == "1322222222222222222"
    [post] = rec.posts()
    assert post.url.params["wait"] == "true"
    assert post.headers["content-type"].startswith("multipart/form-data; boundary=")
    parts = multipart(post)
    assert set(parts) == {"payload_json", "files[0]"}
    assert parts["files[0]"] == ("chart.png", "image/png", PNG)
    assert parts["payload_json"][0] is None
    assert json.loads(parts["payload_json"][2]) == {
        "content": "the numbers",
        "attachments": [{"id": 0, "filename": "chart.png", "description": "a rising line"}]}


def test_image_without_alt_or_text(tmp_path):
    image = tmp_path / "x.gif"
    image.write_bytes(b"GIF89a")
    rec = Recorder()
    make(rec).publish(job("", media=[Media(str(image))]), lambda ref: None)
    parts = multipart(rec.posts()[0])
    assert json.loads(parts["payload_json"][2]) == {
        "attachments": [{"id": 0, "filename": "x.gif"}]}
    assert parts["files[0]"][:2] == ("x.gif", "image/gif")


def test_missing_media_file_is_invalid_and_nothing_is_sent(tmp_path):
    rec = Recorder()
    with pytest.raises(PlatformError) as info:
        make(rec).publish(job(media=[Media(str(tmp_path / "gone.png"))]), lambda ref: None)
    assert info.value.kind == ErrorKind.INVALID
    assert rec.requests == []


@pytest.mark.parametrize("answer", [
    lambda r: httpx.Response(204),
    lambda r: httpx.Response(200, json={"content": "no id"}),
    lambda r: httpx.Response(200, text="<html>not json</html>"),
])
def test_success_without_the_message_is_ambiguous(answer):
    with pytest.raises(PlatformError) as info:
        make(Recorder(post=answer)).publish(job(), lambda ref: None)
    assert info.value.kind == ErrorKind.AMBIGUOUS


def test_registry_and_class_attributes():
    assert registry.adapter_class("discord") is DiscordAdapter
    assert DiscordAdapter.can_reconcile is False
    assert DiscordAdapter.secret_fields == ("webhook_url",)
    assert DiscordAdapter.max_media == 1


# -- the error table (platforms.md section 10) ---------------------------------------------

ERROR_ROWS = [
    # (response, expected kind, text the message must contain)
    (lambda r: discord_error(400, 50035, "Invalid Form Body", errors={"content": {"_errors": [
        {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]}}),
     ErrorKind.INVALID, "content: Must be 2000 or fewer in length."),
    (lambda r: discord_error(400, 50006, "Cannot send an empty message"),
     ErrorKind.INVALID, "Cannot send an empty message"),
    (lambda r: discord_error(413, 40005, "Request entity too large"),
     ErrorKind.INVALID, "Request entity too large"),
    (lambda r: httpx.Response(413, text="<html>413 Request Entity Too Large</html>"),
     ErrorKind.INVALID, "413"),
    (lambda r: discord_error(401, 50027, "Invalid Webhook Token"),
     ErrorKind.AUTH_REVOKED, "Invalid Webhook Token"),
    (lambda r: discord_error(401, 0, "401: Unauthorized"), ErrorKind.AUTH_REVOKED,
     "webhook_url"),
    (lambda r: discord_error(404, 10015, "Unknown Webhook"), ErrorKind.AUTH_REVOKED,
     "the webhook was deleted"),
    (lambda r: httpx.Response(404, text="404: Not Found"), ErrorKind.AUTH_REVOKED,
     "the webhook was deleted"),
    (lambda r: discord_error(403, 50013, "Missing Permissions"), ErrorKind.INVALID,
     "Missing Permissions"),
    (lambda r: discord_error(403, 50001, "Missing Access"), ErrorKind.INVALID,
     "Missing Access"),
    (lambda r: discord_error(429, 0, "You are being rate limited.", retry_after=2.5,
                             **{"global": False}),
     ErrorKind.RATE_LIMITED, "rate limited"),
    (lambda r: httpx.Response(500, json={"message": "500: Internal Server Error", "code": 0}),
     ErrorKind.AMBIGUOUS, "Internal Server Error"),
    (lambda r: httpx.Response(502, text="<html>502 Bad Gateway</html>"),
     ErrorKind.AMBIGUOUS, "502"),
    (lambda r: httpx.Response(503, text="upstream connect error"),
     ErrorKind.AMBIGUOUS, "503"),
]


@pytest.mark.parametrize(("answer", "kind", "needle"), ERROR_ROWS)
def test_error_table_on_execute(answer, kind, needle):
    with pytest.raises(PlatformError) as info:
        make(Recorder(post=answer)).publish(job(), lambda ref: None)
    err = info.value
    assert err.kind == kind
    assert needle in err.message
    assert err.http_status == answer(None).status_code


def test_unknown_channel_for_the_account_thread_waits_for_the_operator():
    answer = lambda r: discord_error(404, 10003, "Unknown Channel")  # noqa: E731
    with pytest.raises(PlatformError) as info:
        make(Recorder(post=answer), credentials={"thread_id": "5"}).publish(job(),
                                                                           lambda ref: None)
    assert info.value.kind == ErrorKind.AUTH_REVOKED
    assert "thread_id" in info.value.message
    with pytest.raises(PlatformError) as info:
        make(Recorder(post=answer)).publish(job(options={"thread_id": "6"}), lambda r: None)
    assert info.value.kind == ErrorKind.INVALID


def test_429_retry_at_from_the_retry_after_header():
    answer = lambda r: httpx.Response(  # noqa: E731
        429, headers={"Retry-After": "30", "X-RateLimit-Reset-After": "2.5"},
        json={"message": "You are being rate limited.", "retry_after": 1.25, "global": False})
    with pytest.raises(PlatformError) as info:
        make(Recorder(post=answer)).publish(job(), lambda ref: None)
    assert info.value.kind == ErrorKind.RATE_LIMITED
    assert info.value.retry_at == NOW + timedelta(seconds=30)


def test_429_retry_at_from_the_body_float():
    answer = lambda r: httpx.Response(  # noqa: E731
        429, headers={"Retry-After": "1", "X-RateLimit-Reset-After": "0.5"},
        json={"message": "You are being rate limited.", "retry_after": 64.57, "global": True})
    with pytest.raises(PlatformError) as info:
        make(Recorder(post=answer)).publish(job(), lambda ref: None)
    assert info.value.retry_at == NOW + timedelta(seconds=64.57)
    assert "global" in info.value.message


def test_429_retry_at_from_reset_after():
    answer = lambda r: httpx.Response(  # noqa: E731
        429, headers={"X-RateLimit-Reset-After": "12.75", "X-RateLimit-Scope": "user"},
        json={"message": "You are being rate limited.", "retry_after": 3.0, "global": False})
    with pytest.raises(PlatformError) as info:
        make(Recorder(post=answer)).publish(job(), lambda ref: None)
    assert info.value.retry_at == NOW + timedelta(seconds=12.75)
    assert "scope: user" in info.value.message


def test_429_from_cloudflare_without_json():
    answer = lambda r: httpx.Response(429, headers={"Retry-After": "600"},  # noqa: E731
                                      text="error code: 1015")
    with pytest.raises(PlatformError) as info:
        make(Recorder(post=answer)).publish(job(), lambda ref: None)
    assert info.value.kind == ErrorKind.RATE_LIMITED
    assert info.value.retry_at == NOW + timedelta(seconds=600)


def test_5xx_on_check_is_server():
    rec = Recorder(get=lambda r: httpx.Response(502, text="bad gateway"))
    with pytest.raises(PlatformError) as info:
        make(rec).check()
    assert info.value.kind == ErrorKind.SERVER


@pytest.mark.parametrize(("exc_type", "kind"), TRANSPORT_ERRORS)
def test_transport_errors_on_execute(exc_type, kind):
    with pytest.raises(PlatformError) as info:
        make(raiser(exc_type)).publish(job(), lambda ref: None)
    assert info.value.kind == kind
    assert HOOK_TOKEN not in info.value.message
    assert f"/webhooks/{HOOK_ID}/[redacted]" in info.value.message


def test_timeout_on_check_is_network():
    with pytest.raises(PlatformError) as info:
        make(raiser(httpx.ReadTimeout)).check()
    assert info.value.kind == ErrorKind.NETWORK


# -- a real socket on 127.0.0.1 -------------------------------------------------------------

class FakeDiscord(LocalServer):
    """GET answers the webhook object, POST a message; mode "hangup": a POST is read,
    then the connection closes without an answer."""

    def __init__(self):
        self.requests: list[tuple[str, str, bytes]] = []
        self.mode = "ok"
        super().__init__(_DiscordHandler)


class _DiscordHandler(QuietHandler):
    def handle_method(self, method):
        fake = self.server.fake
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        fake.requests.append((method, self.path, body))
        if method == "GET":
            self.send_json(200, webhook_object())
        elif fake.mode == "hangup":
            self.close_connection = True
        else:
            self.send_json(200, message("1399"))


@pytest.fixture
def fake_discord():
    with FakeDiscord() as fake:
        yield fake


def test_local_server_round_trip_through_base_url(fake_discord):
    with httpx.Client(timeout=5) as client:
        adapter = make(base_url=fake_discord.base_url, client=client,
                       credentials={"thread_id": "31"})
        published = adapter.publish(job(), lambda ref: None)
    assert published.post_id == "1399"
    assert published.url == f"https://discord.com/channels/{GUILD}/{CHANNEL}/1399"
    (method, path, body), (get_method, get_path, _) = fake_discord.requests
    assert (method, get_method) == ("POST", "GET")
    assert path.startswith(f"/api/webhooks/{HOOK_ID}/{HOOK_TOKEN}?")
    assert "wait=true" in path and "thread_id=31" in path
    assert json.loads(body) == {"content": "hello server"}
    assert get_path == f"/api/webhooks/{HOOK_ID}/{HOOK_TOKEN}"


def test_unreadable_media_is_invalid_and_nothing_is_sent(tmp_path):
    rec = Recorder()
    missing = tmp_path / "gone.png"
    with pytest.raises(PlatformError) as info:
        make(rec).publish(job(media=[Media(str(missing))]), lambda ref: None)
    assert info.value.kind == ErrorKind.INVALID
    assert info.value.message.startswith(f"cannot read {missing}: ")
    assert rec.posts() == []


def test_local_server_hangup_after_send_is_ambiguous(fake_discord, tmp_path):
    fake_discord.mode = "hangup"
    image = tmp_path / "p.png"
    image.write_bytes(PNG)
    with httpx.Client(timeout=5) as client:
        with pytest.raises(PlatformError) as info:
            make(base_url=fake_discord.base_url, client=client).publish(
                job(media=[Media(str(image), alt="dot")]), lambda ref: None)
    assert info.value.kind == ErrorKind.AMBIGUOUS
    assert len(fake_discord.requests) == 1
    assert PNG in fake_discord.requests[0][2]
    assert HOOK_TOKEN not in info.value.message


def test_connection_refused_is_network():
    port = closed_port()
    with httpx.Client(timeout=2) as client:
        with pytest.raises(PlatformError) as info:
            make(base_url=f"http://127.0.0.1:{port}", client=client).publish(
                job(), lambda ref: None)
    assert info.value.kind == ErrorKind.NETWORK


# -- add time --------------------------------------------------------------------------------

def test_content_limit_2000():
    DiscordAdapter.validate("a" * 2000, (), {})
    with pytest.raises(UsageError, match="2001 characters; discord allows 2000"):
        DiscordAdapter.validate("a" * 2001, (), {})


def test_at_most_one_file_and_alt_text_limit(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(PNG)
    b.write_bytes(PNG)
    DiscordAdapter.validate("", (Media(str(a), alt="x" * 1024),), {})
    with pytest.raises(UsageError, match="at most 1 file"):
        DiscordAdapter.validate("x", (Media(str(a)), Media(str(b))), {})
    with pytest.raises(UsageError, match="alt text is 1025 characters"):
        DiscordAdapter.validate("x", (Media(str(a), alt="x" * 1025),), {})


def test_file_size_limit(tmp_path):
    big = tmp_path / "big.png"
    with big.open("wb") as fh:
        fh.truncate(10 * 1024 * 1024 + 1)
    with pytest.raises(UsageError, match="10 MiB"):
        DiscordAdapter.validate("x", (Media(str(big)),), {})


def test_empty_post_and_bad_options_are_refused():
    with pytest.raises(UsageError, match="empty"):
        DiscordAdapter.validate(" ", (), {})
    with pytest.raises(UsageError, match="clyde"):
        DiscordAdapter.validate("x", (), {"username": "My Discord Bot"})
    with pytest.raises(UsageError, match="thread_id"):
        DiscordAdapter.validate("x", (), {"thread_id": "general"})


def test_credentials_check_never_echoes_the_url():
    DiscordAdapter.check_credentials({"webhook_url": HOOK_URL, "thread_id": "1"})
    DiscordAdapter.check_credentials({"webhook_url": {"env": "DISCORD_HOOK"}})
    bad = f"https://discord.com/api/hooks/{HOOK_ID}/{HOOK_TOKEN}"
    with pytest.raises(UsageError) as info:
        DiscordAdapter.check_credentials({"webhook_url": bad})
    assert HOOK_TOKEN not in str(info.value)
    with pytest.raises(UsageError, match="webhook_url"):
        DiscordAdapter.check_credentials({})
    with pytest.raises(UsageError, match="unknown"):
        DiscordAdapter.check_credentials({"webhook_url": HOOK_URL, "token": "x"})


# -- reconcile and check -----------------------------------------------------------------------

def test_reconcile_cannot_tell_and_says_what_to_do():
    rec = Recorder()
    found = make(rec).reconcile(job(job_id="q9"))
    assert found.verdict == Verdict.CANNOT_TELL
    assert found.published is None
    assert "autopost resolve q9 --posted URL" in found.message
    assert "--not-posted" in found.message
    assert rec.requests == []


def test_check_shows_the_webhook_name_and_channel():
    rec = Recorder()
    info = make(rec).check()
    assert isinstance(info, AccountInfo)
    assert info.display == f"Announcer -> channel {CHANNEL}"
    assert info.url == f"https://discord.com/channels/{GUILD}/{CHANNEL}"
    assert info.details["guild_id"] == GUILD
    assert "token" not in info.details
    [get] = rec.requests
    assert get.method == "GET" and str(get.url) == HOOK_URL


def test_check_with_a_deleted_webhook():
    rec = Recorder(get=lambda r: discord_error(404, 10015, "Unknown Webhook"))
    with pytest.raises(PlatformError) as info:
        make(rec).check()
    assert info.value.kind == ErrorKind.AUTH_REVOKED


# -- the token never leaks ------------------------------------------------------------------

def test_webhook_token_never_appears_in_errors_reprs_account_info_or_logs(caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    image = tmp_path / "p.png"
    image.write_bytes(PNG)
    texts: list[str] = []
    echo = [  # error bodies that quote the request URL back
        lambda r: discord_error(400, 50035, f"Invalid Form Body at {r.url}"),
        lambda r: httpx.Response(502, text=f"upstream {r.url} failed"),
        lambda r: httpx.Response(429, text=f"slow down {r.url}"),
    ]
    answers = [row[0] for row in ERROR_ROWS] + echo
    answers += [raiser(t) for t in (httpx.ConnectError, httpx.ReadTimeout,
                                    httpx.RemoteProtocolError, httpx.ReadError,
                                    httpx.UnsupportedProtocol, httpx.ProxyError,
                                    httpx.DecodingError)]
    for answer in answers:
        for call in ("text", "file", "check"):
            adapter = make(Recorder(post=answer, get=answer))
            texts.append(repr(adapter))
            try:
                if call == "check":
                    adapter.check()
                else:
                    media = [Media(str(image), alt="alt")] if call == "file" else []
                    adapter.publish(job(media=media), lambda ref: None)
            except PlatformError as err:
                texts += texts_of(err)
            else:  # pragma: no cover - every answer here fails
                raise AssertionError("expected a failure")
    ok = make(Recorder())
    info = ok.check()
    texts += [repr(info), info.display, str(info.url), json.dumps(info.details)]
    texts.append(repr(ok.publish(job(), lambda ref: None)))
    texts.append(ok.reconcile(job()).message)
    texts.append(repr(ok))
    assert any("HTTP Request" in rec.getMessage() for rec in caplog.records)
    texts += [rec.getMessage() for rec in caplog.records]
    texts.append(caplog.text)
    assert len(texts) > 100
    leaks = [t for t in texts if HOOK_TOKEN in t]
    assert leaks == []
    assert any(f"/webhooks/{HOOK_ID}/[redacted]" in t for t in texts)
