"""Telegram adapter: requests, answers, the error table of platforms.md section 9, add-time
limits, and the bot token never leaking. No test reaches the internet: httpx.MockTransport,
or a tiny HTTP server on 127.0.0.1."""

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
from autopost.platforms.telegram import TelegramAdapter, post_url, visible_length
from tests.adapterkit import PNG, TRANSPORT_ERRORS, closed_port, multipart, raiser
from tests.fakes.httpfake import LocalServer, QuietHandler
from tests.leakcheck import texts_of

TOKEN = "7012345678:AAHf3kSecretPartOfTheBotToken_x-yZ"
SECRET_PART = TOKEN.split(":", 1)[1]
CHAT = "-1001234567890"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def account(base_url: str | None = None) -> Account:
    return Account(name="tg", platform="telegram", base_url=base_url,
                   credentials={"bot_token": TOKEN, "chat_id": CHAT})


def adapter(handler, *, base_url: str | None = None, client: httpx.Client | None = None):
    if client is None:
        client = httpx.Client(transport=httpx.MockTransport(handler))
    acct = account(base_url)
    return TelegramAdapter(acct, acct.credentials, client, clock=lambda: NOW)


def job(text: str = "hello channel", *, media=(), options=None, job_id: str = "j1") -> Job:
    return Job(id=job_id, account="tg", platform="telegram", text=text, scheduled_at=NOW,
               next_attempt_at=NOW, media=tuple(media), options=dict(options or {}))


def ok_message(message_id: int = 42, *, chat_id: int = int(CHAT), username: str | None = None):
    chat = {"id": chat_id, "type": "channel", "title": "My Channel"}
    if username:
        chat["username"] = username
    return {"ok": True, "result": {"message_id": message_id, "chat": chat, "date": 1740830400,
                                   "text": "hello channel"}}


def fail(code: int, description: str, **parameters) -> httpx.Response:
    body = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return httpx.Response(code, json=body)


# -- posting -----------------------------------------------------------------------------

def test_text_post_sends_json_to_sendmessage():
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, json=ok_message(42, username="mychan"))

    published = adapter(handler).publish(job("hello channel"), lambda ref: None)
    assert published.post_id == f"{CHAT}:42"
    assert published.url == "https://t.me/mychan/42"
    [request] = seen
    assert request.method == "POST"
    assert request.url.host == "api.telegram.org"
    assert request.url.path == f"/bot{TOKEN}/sendMessage"
    assert json.loads(request.content) == {"chat_id": CHAT, "text": "hello channel"}


def test_text_post_options():
    seen = []

    def handler(request):
        seen.append(json.loads(request.content))
        return httpx.Response(200, json=ok_message())

    opts = {"parse_mode": "html", "disable_notification": True, "link_preview": False}
    adapter(handler).publish(job("<b>hi</b>", options=opts), lambda ref: None)
    adapter(handler).publish(
        job("x", options={"telegram": {"link_preview_options": {"prefer_small_media": True}}}),
        lambda ref: None)
    assert seen[0] == {"chat_id": CHAT, "text": "<b>hi</b>", "parse_mode": "HTML",
                       "disable_notification": True,
                       "link_preview_options": {"is_disabled": True}}
    assert seen[1]["link_preview_options"] == {"prefer_small_media": True}


def test_image_post_is_multipart_sendphoto_with_caption(tmp_path):
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, json=ok_message(7))

    item = Media(path=str(image), alt="a cat")
    published = adapter(handler).publish(
        job("look", media=[item], options={"parse_mode": "MarkdownV2",
                                            "disable_notification": True}),
        lambda ref: None)
    assert published.post_id == f"{CHAT}:7"
    [request] = seen
    assert request.url.path == f"/bot{TOKEN}/sendPhoto"
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    parts = multipart(request)
    assert set(parts) == {"chat_id", "caption", "photo", "parse_mode", "disable_notification"}
    assert parts["photo"] == ("cat.png", "image/png", PNG)
    assert parts["caption"][2] == b"look"
    assert parts["chat_id"][2] == CHAT.encode()
    assert parts["parse_mode"][2] == b"MarkdownV2"
    assert parts["disable_notification"][2] == b"true"


def test_image_post_without_text_has_no_caption(tmp_path):
    image = tmp_path / "a.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0 jpeg-ish")
    seen = []

    def handler(request):
        seen.append(multipart(request))
        return httpx.Response(200, json=ok_message())

    adapter(handler).publish(job("", media=[Media(str(image))]), lambda ref: None)
    assert set(seen[0]) == {"chat_id", "photo"}
    assert seen[0]["photo"][:2] == ("a.jpg", "image/jpeg")


def test_missing_media_file_is_invalid_and_nothing_is_sent(tmp_path):
    def handler(request):  # pragma: no cover - must not be called
        raise AssertionError("no request may be sent")

    with pytest.raises(PlatformError) as info:
        adapter(handler).publish(job("x", media=[Media(str(tmp_path / "gone.png"))]),
                                 lambda ref: None)
    assert info.value.kind == ErrorKind.INVALID
    assert "gone.png" in info.value.message


@pytest.mark.parametrize(("chat_id", "username", "expected"), [
    (-1001234567890, "mychan", "https://t.me/mychan/5"),
    (-1001234567890, None, "https://t.me/c/1234567890/5"),
    ("-1009876", None, "https://t.me/c/9876/5"),
    (-4567, None, None),           # a basic group: no link
    (98765, None, None),           # a private chat: no link
    (98765, "someone", "https://t.me/someone/5"),
])
def test_post_url(chat_id, username, expected):
    assert post_url(chat_id, username, 5) == expected


def test_post_id_uses_the_chat_id_telegram_answers(tmp_path):
    acct = Account(name="tg", platform="telegram",
                   credentials={"bot_token": TOKEN, "chat_id": "@mychan"})

    def handler(request):
        return httpx.Response(200, json=ok_message(9, chat_id=-100555, username="mychan"))

    client = httpx.Client(transport=httpx.MockTransport(handler))
    published = TelegramAdapter(acct, acct.credentials, client).publish(job(), lambda r: None)
    assert published.post_id == "-100555:9"
    assert published.url == "https://t.me/mychan/9"


def test_ok_answer_without_message_id_is_ambiguous():
    def handler(request):
        return httpx.Response(200, json={"ok": True, "result": {}})

    with pytest.raises(PlatformError) as info:
        adapter(handler).publish(job(), lambda ref: None)
    assert info.value.kind == ErrorKind.AMBIGUOUS


def test_unreadable_success_answer_is_ambiguous():
    def handler(request):
        return httpx.Response(200, text="<html>proxy says hi</html>")

    with pytest.raises(PlatformError) as info:
        adapter(handler).publish(job(), lambda ref: None)
    assert info.value.kind == ErrorKind.AMBIGUOUS


def test_registry_finds_the_adapter():
    assert registry.adapter_class("telegram") is TelegramAdapter
    assert TelegramAdapter.can_reconcile is False
    assert TelegramAdapter.secret_fields == ("bot_token",)


# -- the error table (platforms.md section 9) ----------------------------------------------

ERROR_ROWS = [
    # (status, description, parameters, expected kind, text the message must contain)
    (400, "Bad Request: chat not found", {}, ErrorKind.INVALID, "chat not found"),
    (400, "Bad Request: message is too long", {}, ErrorKind.INVALID, "message is too long"),
    (400, "Bad Request: can't parse entities: Unsupported start tag \"q\" at byte offset 0",
     {}, ErrorKind.INVALID, "can't parse entities"),
    (400, "Bad Request: group chat was upgraded to a supergroup chat",
     {"migrate_to_chat_id": -1009999999999}, ErrorKind.INVALID, "-1009999999999"),
    (401, "Unauthorized", {}, ErrorKind.AUTH_REVOKED, "@BotFather"),
    (401, "Unauthorized: invalid token specified", {}, ErrorKind.AUTH_REVOKED,
     "invalid token specified"),
    (404, "Not Found", {}, ErrorKind.AUTH_REVOKED, "not recognised"),
    (403, "Forbidden: bot is not a member of the channel chat", {}, ErrorKind.AUTH_REVOKED,
     "admin"),
    (403, "Forbidden: bot was kicked from the channel chat", {}, ErrorKind.AUTH_REVOKED,
     "bot was kicked"),
    (429, "Too Many Requests: retry after 35", {"retry_after": 35}, ErrorKind.RATE_LIMITED,
     "retry after 35"),
    (500, "Internal Server Error", {}, ErrorKind.AMBIGUOUS, "Internal Server Error"),
    (502, "Bad Gateway", {}, ErrorKind.AMBIGUOUS, "Bad Gateway"),
]


@pytest.mark.parametrize(("status", "description", "parameters", "kind", "needle"), ERROR_ROWS)
def test_error_table_on_send(status, description, parameters, kind, needle):
    def handler(request):
        return fail(status, description, **parameters)

    with pytest.raises(PlatformError) as info:
        adapter(handler).publish(job(), lambda ref: None)
    err = info.value
    assert err.kind == kind
    assert err.http_status == status
    assert needle in err.message
    assert err.code == str(status)


def test_migrated_group_names_the_new_chat_id():
    def handler(request):
        return fail(400, "Bad Request: group chat was upgraded to a supergroup chat",
                    migrate_to_chat_id=-1001112223334)

    with pytest.raises(PlatformError) as info:
        adapter(handler).publish(job(), lambda ref: None)
    assert "set the account's chat_id to -1001112223334" in info.value.message


def test_429_retry_at_comes_from_the_body():
    def handler(request):
        return fail(429, "Too Many Requests: retry after 35", retry_after=35)

    with pytest.raises(PlatformError) as info:
        adapter(handler).publish(job(), lambda ref: None)
    assert info.value.kind == ErrorKind.RATE_LIMITED
    assert info.value.retry_at == NOW + timedelta(seconds=35)


def test_429_without_retry_after_has_no_retry_at():
    def handler(request):
        return fail(429, "Too Many Requests")

    with pytest.raises(PlatformError) as info:
        adapter(handler).publish(job(), lambda ref: None)
    assert info.value.kind == ErrorKind.RATE_LIMITED
    assert info.value.retry_at is None


def test_5xx_without_json_on_send_is_ambiguous():
    def handler(request):
        return httpx.Response(502, text="<html><h1>502 Bad Gateway</h1></html>")

    with pytest.raises(PlatformError) as info:
        adapter(handler).publish(job(), lambda ref: None)
    assert info.value.kind == ErrorKind.AMBIGUOUS
    assert info.value.http_status == 502


def test_5xx_on_check_is_server_not_ambiguous():
    def handler(request):
        return fail(500, "Internal Server Error")

    with pytest.raises(PlatformError) as info:
        adapter(handler).check()
    assert info.value.kind == ErrorKind.SERVER


@pytest.mark.parametrize(("exc_type", "kind"), TRANSPORT_ERRORS)
def test_transport_errors_on_send(exc_type, kind):
    with pytest.raises(PlatformError) as info:
        adapter(raiser(exc_type)).publish(job(), lambda ref: None)
    assert info.value.kind == kind
    assert TOKEN not in info.value.message and SECRET_PART not in info.value.message
    assert "[redacted]" in info.value.message


def test_timeout_on_check_is_network():
    with pytest.raises(PlatformError) as info:
        adapter(raiser(httpx.ReadTimeout)).check()
    assert info.value.kind == ErrorKind.NETWORK


# -- a real socket on 127.0.0.1 -------------------------------------------------------------

class FakeBotApi(LocalServer):
    """A tiny Bot API on 127.0.0.1: answers, hangs up after reading, or stalls (until
    the server stops, 5 s at most)."""

    def __init__(self):
        self.requests: list[tuple[str, bytes]] = []
        self.mode = "ok"
        super().__init__(_BotApiHandler)


class _BotApiHandler(QuietHandler):
    def handle_method(self, method):
        fake = self.server.fake
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        fake.requests.append((self.path, body))
        if fake.mode == "hangup":
            self.close_connection = True
        elif fake.mode == "stall":
            fake.wait(5)
            self.close_connection = True
        else:
            self.send_json(200, ok_message(77, username="loopchan"))


@pytest.fixture
def bot_api():
    with FakeBotApi() as fake:
        yield fake


def test_local_server_round_trip_uses_base_url(bot_api):
    with httpx.Client(timeout=5) as client:
        published = adapter(None, base_url=bot_api.base_url, client=client).publish(
            job(), lambda ref: None)
    assert published.post_id == f"{CHAT}:77"
    assert published.url == "https://t.me/loopchan/77"
    [(path, body)] = bot_api.requests
    assert path == f"/bot{TOKEN}/sendMessage"
    assert json.loads(body)["text"] == "hello channel"


def test_unreadable_media_is_invalid_and_nothing_is_sent(tmp_path):
    seen = []
    missing = tmp_path / "gone.png"
    with pytest.raises(PlatformError) as info:
        adapter(seen.append).publish(job("x", media=[Media(str(missing))]), lambda ref: None)
    assert info.value.kind == ErrorKind.INVALID
    assert info.value.message.startswith(f"cannot read {missing}: ")
    assert seen == []


def test_local_server_hangup_after_send_is_ambiguous(bot_api, tmp_path):
    bot_api.mode = "hangup"
    image = tmp_path / "p.png"
    image.write_bytes(PNG)
    with httpx.Client(timeout=5) as client:
        with pytest.raises(PlatformError) as info:
            adapter(None, base_url=bot_api.base_url, client=client).publish(
                job("x", media=[Media(str(image))]), lambda ref: None)
    assert info.value.kind == ErrorKind.AMBIGUOUS
    assert len(bot_api.requests) == 1  # it did arrive: the outcome is really unknown
    assert PNG in bot_api.requests[0][1]


def test_local_server_timeout_after_send_is_ambiguous(bot_api):
    bot_api.mode = "stall"
    with httpx.Client(timeout=httpx.Timeout(0.5, connect=2)) as client:
        with pytest.raises(PlatformError) as info:
            adapter(None, base_url=bot_api.base_url, client=client).publish(job(), lambda r: None)
    assert info.value.kind == ErrorKind.AMBIGUOUS
    assert TOKEN not in info.value.message


def test_connection_refused_is_network():
    port = closed_port()
    with httpx.Client(timeout=2) as client:
        with pytest.raises(PlatformError) as info:
            adapter(None, base_url=f"http://127.0.0.1:{port}", client=client).publish(
                job(), lambda ref: None)
    assert info.value.kind == ErrorKind.NETWORK


# -- add time --------------------------------------------------------------------------------

def test_text_limit_4096():
    TelegramAdapter.validate("a" * 4096, (), {})
    with pytest.raises(UsageError, match="4097 characters; telegram allows 4096"):
        TelegramAdapter.validate("a" * 4097, (), {})


def test_limit_counts_code_points_not_utf16_units():
    # Each emoji is 2 UTF-16 code units but 1 code point.
    TelegramAdapter.validate("\U0001F600" * 4096, (), {})
    with pytest.raises(UsageError):
        TelegramAdapter.validate("\U0001F600" * 4097, (), {})


def test_caption_limit_1024_with_an_image(tmp_path):
    image = tmp_path / "p.png"
    image.write_bytes(PNG)
    media = (Media(str(image)),)
    TelegramAdapter.validate("c" * 1024, media, {})
    with pytest.raises(UsageError, match="caption is 1025 characters; telegram allows 1024"):
        TelegramAdapter.validate("c" * 1025, media, {})


def test_markup_is_not_counted_with_a_parse_mode():
    html_text = "<b>" + "a" * 4096 + "</b>"
    TelegramAdapter.validate(html_text, (), {"parse_mode": "HTML"})
    with pytest.raises(UsageError):
        TelegramAdapter.validate(html_text, (), {})
    assert visible_length("<a href=\"https://x.y\">ab</a> &amp;", "HTML") == 4
    assert visible_length("*bold* [link](https://example.com/a) \\.", "MarkdownV2") == 11


def test_at_most_one_image(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(PNG)
    b.write_bytes(PNG)
    with pytest.raises(UsageError, match="at most 1 image"):
        TelegramAdapter.validate("x", (Media(str(a)), Media(str(b))), {})


def test_only_images_and_not_over_10_mb(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 10)
    with pytest.raises(UsageError, match="images only"):
        TelegramAdapter.validate("x", (Media(str(video)),), {})
    big = tmp_path / "big.png"
    with big.open("wb") as fh:
        fh.truncate(10 * 1000 * 1000 + 1)
    with pytest.raises(UsageError, match="10 MB"):
        TelegramAdapter.validate("x", (Media(str(big)),), {})


def test_empty_post_and_bad_parse_mode_are_refused():
    with pytest.raises(UsageError, match="empty"):
        TelegramAdapter.validate("   ", (), {})
    with pytest.raises(UsageError, match="parse_mode"):
        TelegramAdapter.validate("x", (), {"parse_mode": "rtf"})


def test_credentials_fields():
    TelegramAdapter.check_credentials({"bot_token": TOKEN, "chat_id": CHAT})
    with pytest.raises(UsageError, match="chat_id"):
        TelegramAdapter.check_credentials({"bot_token": TOKEN})


# -- reconcile and check -----------------------------------------------------------------------

def test_reconcile_cannot_tell_and_says_what_to_do():
    def handler(request):  # pragma: no cover - must not be called
        raise AssertionError("reconcile has nothing to ask")

    found = adapter(handler).reconcile(job(job_id="k7"))
    assert found.verdict == Verdict.CANNOT_TELL
    assert found.published is None
    assert "autopost resolve k7 --posted URL" in found.message
    assert "--not-posted" in found.message


def check_handler(member_status="administrator", can_post=True, chat=None):
    calls = []

    def handler(request):
        method = request.url.path.rsplit("/", 1)[1]
        calls.append(method)
        if method == "getMe":
            return httpx.Response(200, json={"ok": True, "result": {
                "id": 7012345678, "is_bot": True, "first_name": "Poster",
                "username": "poster_bot"}})
        if method == "getChat":
            assert json.loads(request.content) == {"chat_id": CHAT}
            return httpx.Response(200, json={"ok": True, "result": chat or {
                "id": int(CHAT), "type": "channel", "title": "My Channel",
                "username": "mychan"}})
        if method == "getChatMember":
            assert json.loads(request.content) == {"chat_id": CHAT, "user_id": 7012345678}
            member = {"status": member_status, "user": {"id": 7012345678}}
            if member_status == "administrator":
                member["can_post_messages"] = can_post
            return httpx.Response(200, json={"ok": True, "result": member})
        raise AssertionError(method)

    return handler, calls


def test_check_shows_bot_and_chat():
    handler, calls = check_handler()
    info = adapter(handler).check()
    assert isinstance(info, AccountInfo)
    assert info.display == "@poster_bot -> My Channel"
    assert info.url == "https://t.me/mychan"
    assert info.details["bot_status"] == "administrator"
    assert calls == ["getMe", "getChat", "getChatMember"]


@pytest.mark.parametrize(("status", "can_post"), [
    ("member", None), ("left", None), ("kicked", None), ("administrator", False)])
def test_check_refuses_a_bot_that_cannot_post_to_the_channel(status, can_post):
    handler, _ = check_handler(status, can_post)
    with pytest.raises(PlatformError) as info:
        adapter(handler).check()
    assert info.value.kind == ErrorKind.AUTH_REVOKED
    assert "@poster_bot -> My Channel" in info.value.message


def test_check_with_a_revoked_token():
    with pytest.raises(PlatformError) as info:
        adapter(lambda request: fail(401, "Unauthorized")).check()
    assert info.value.kind == ErrorKind.AUTH_REVOKED


# -- the token never leaks ------------------------------------------------------------------

def test_token_never_appears_in_errors_reprs_account_info_or_logs(caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    image = tmp_path / "p.png"
    image.write_bytes(PNG)
    texts: list[str] = []
    handlers = [lambda r, row=row: fail(row[0], f"{row[1]} for {r.url}", **row[2])
                for row in ERROR_ROWS]
    handlers += [raiser(t) for t in (httpx.ConnectError, httpx.ReadTimeout,
                                     httpx.RemoteProtocolError, httpx.ReadError,
                                     httpx.UnsupportedProtocol, httpx.ProxyError,
                                     httpx.DecodingError)]
    handlers += [lambda r: httpx.Response(502, text=f"upstream {r.url} failed"),
                 lambda r: httpx.Response(200, text=f"weird {r.url}")]
    for handler in handlers:
        for call in ("text", "photo", "check"):
            a = adapter(handler)
            texts.append(repr(a))
            try:
                if call == "check":
                    a.check()
                else:
                    media = [Media(str(image))] if call == "photo" else []
                    a.publish(job(media=media), lambda ref: None)
            except PlatformError as err:
                texts += texts_of(err)
            else:  # pragma: no cover - every handler here fails
                raise AssertionError("expected a failure")
    handler, _ = check_handler()
    info = adapter(handler).check()
    texts += [repr(info), info.display, str(info.url), json.dumps(info.details)]
    texts.append(adapter(handler).reconcile(job()).message)
    # httpx logs every request URL at INFO: the log filter must have scrubbed them.
    ok = adapter(lambda r: httpx.Response(200, json=ok_message()))
    texts.append(repr(ok.publish(job(), lambda ref: None)))
    assert any("HTTP Request" in rec.getMessage() for rec in caplog.records)
    texts += [rec.getMessage() for rec in caplog.records]
    texts.append(caplog.text)
    assert len(texts) > 100
    leaks = [t for t in texts if TOKEN in t or SECRET_PART in t]
    assert leaks == []
    assert any("[redacted]" in t for t in texts)
