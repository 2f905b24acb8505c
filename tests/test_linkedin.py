"""The LinkedIn adapter against the local fake LinkedIn (tests/fakes/linkedin_server.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from autopost.config import PlatformPolicy, load_settings
from autopost.errors import ConfigError, UsageError
from autopost.models import Account, ErrorKind, Job, JobStatus, Media
from autopost.platforms.base import Verdict
from autopost.platforms.linkedin import (
    DEFAULT_VERSION,
    LinkedInAdapter,
    escape,
    next_midnight_utc,
    unescape,
)
from autopost.policy import decide_reconcile
from autopost.timeparse import format_utc
from tests import images
from tests.adapterkit import Refs, raises
from tests.fakes.linkedin_server import FakeLinkedIn, render_little

TOKEN = "li-token-ada"
SUB = "Xy12ab"
ME = f"urn:li:person:{SUB}"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def make_job(text: str = "Hello LinkedIn", **kw: Any) -> Job:
    defaults: dict[str, Any] = dict(id="j1", account="ada", platform="linkedin", text=text,
                                    scheduled_at=NOW, next_attempt_at=NOW,
                                    idempotency_key="key-j1", max_attempts=3)
    defaults.update(kw)
    return Job(**defaults)


@pytest.fixture
def fake():
    with FakeLinkedIn() as server:
        server.add_member(TOKEN, SUB, scopes=("openid", "profile", "w_member_social",
                                               "w_organization_social"),
                          organizations=("5515715",))
        yield server


def adapter_for(fake: FakeLinkedIn, *, token: str = TOKEN, version: str | None = None,
                **creds: Any) -> LinkedInAdapter:
    account = Account(name="ada", platform="linkedin", base_url=fake.base_url)
    credentials = {"access_token": token, "author": ME, **creds}
    return LinkedInAdapter(account, credentials, httpx.Client(timeout=10),
                           policy=PlatformPolicy(api_version=version))


def picture(tmp_path, name: str = "a.png", width: int = 3) -> str:
    path = tmp_path / name
    path.write_bytes(images.png(width, 2))
    return str(path)


# -- the little format ------------------------------------------------------------------

def test_reserved_characters_are_escaped_and_shown_as_written():
    text = r"50% off (today) #launch @team [x] {y} <b> a*b_c~d | back\slash"
    assert render_little(escape(text)) == text
    assert unescape(escape(text)) == text
    # Unescaped, the same text is cut short at the first reserved character.
    assert render_little(text) == "50% off "


@given(st.text(max_size=200))
def test_escaping_round_trips_any_text(text):
    assert render_little(escape(text)) == text
    assert unescape(escape(text)) == text


# -- posting ------------------------------------------------------------------------------

def test_text_post_with_the_required_headers_and_fields(fake):
    text = "Launch (v2) is out! #shipit @everyone <3 ~ 100% *bold* _it_"
    refs = Refs(on_save=lambda ref: pytest.fail("created before the ref was saved")
                if fake.ledger() else None)
    published = adapter_for(fake).publish(make_job(text), refs)
    [post] = fake.ledger()
    assert post.shown == text  # nothing cut off by an unescaped character
    assert post.author == ME and post.visibility == "PUBLIC"
    assert post.body["distribution"] == {"feedDistribution": "MAIN_FEED",
                                         "targetEntities": [],
                                         "thirdPartyDistributionChannels": []}
    assert post.body["lifecycleState"] == "PUBLISHED"
    assert published.post_id == post.urn
    assert published.url == f"https://www.linkedin.com/feed/update/{post.urn}"
    [req] = fake.seen("POST", "/rest/posts")
    assert req.header("linkedin-version") == DEFAULT_VERSION
    assert req.header("x-restli-protocol-version") == "2.0.0"
    assert refs.last["sends"] == 1 and refs.last["author"] == ME
    assert "first_sent_at" in refs.last


def test_the_version_setting_is_sent(fake):
    adapter_for(fake, version="202601").publish(make_job(), Refs())
    assert fake.seen("POST", "/rest/posts")[0].header("linkedin-version") == "202601"


def test_the_fake_refuses_requests_without_the_headers(fake):
    with httpx.Client() as c:
        bare = c.post(fake.base_url + "/rest/posts", json={},
                      headers={"Authorization": f"Bearer {TOKEN}",
                               "LinkedIn-Version": DEFAULT_VERSION})
        assert bare.status_code == 400
        old = c.post(fake.base_url + "/rest/posts", json={},
                     headers={"Authorization": f"Bearer {TOKEN}", "LinkedIn-Version": "202401",
                              "X-Restli-Protocol-Version": "2.0.0"})
        assert old.status_code == 426 and old.json()["code"] == "NONEXISTENT_VERSION"
        missing = c.post(fake.base_url + "/rest/posts",
                         json={"author": ME, "visibility": "PUBLIC"},
                         headers={"Authorization": f"Bearer {TOKEN}",
                                  "LinkedIn-Version": DEFAULT_VERSION,
                                  "X-Restli-Protocol-Version": "2.0.0"})
        assert missing.status_code == 422 and "/commentary" in missing.json()["message"]
    assert fake.ledger() == []


def test_a_retired_version_is_a_configuration_error_naming_the_setting(fake):
    error = raises(ErrorKind.INVALID,
                   lambda: adapter_for(fake, version="202401").publish(make_job(), Refs()))
    assert error.http_status == 426 and error.code == "NONEXISTENT_VERSION"
    assert "api_version" in error.message and "AUTOPOST_LINKEDIN_API_VERSION" in error.message
    assert fake.ledger() == []


def test_organization_page_author(fake):
    org = "urn:li:organization:5515715"
    adapter_for(fake, author=org).publish(make_job(options={"visibility": "public"}), Refs())
    assert fake.ledger()[0].author == org
    error = raises(ErrorKind.INVALID, lambda: adapter_for(
        fake, author="urn:li:organization:999").publish(make_job("other"), Refs()))
    assert error.http_status == 403


def test_visibility_and_reshare_options(fake):
    adapter_for(fake).publish(make_job(options={"linkedin": {
        "visibility": "connections", "disable_reshare": True}}), Refs())
    [post] = fake.ledger()
    assert post.visibility == "CONNECTIONS" and post.body["isReshareDisabledByAuthor"] is True


# -- images ---------------------------------------------------------------------------------

def test_one_image_with_alt_text(fake, tmp_path):
    path = picture(tmp_path)
    adapter_for(fake).publish(make_job(media=(Media(path, "A red square"),)), Refs())
    [post] = fake.ledger()
    urn = post.content["media"]["id"]
    assert post.content == {"media": {"id": urn, "altText": "A red square"}}
    image = fake.images[urn]
    assert image["data"] == open(path, "rb").read()  # the whole file in one PUT
    assert image["puts"] == 1 and image["owner"] == ME
    assert image["content_type"] == "image/png"
    [init] = fake.seen("POST", "/rest/images")
    assert init.raw_query == "action=initializeUpload"
    assert init.json() == {"initializeUploadRequest": {"owner": ME}}
    assert init.header("linkedin-version") == DEFAULT_VERSION
    # The upload URL named www.linkedin.com; --base-url sent the PUT to the fake.
    [put] = fake.seen("PUT", "/dms-uploads/")
    assert put.header("authorization") == f"Bearer {TOKEN}"


def test_several_images_make_a_multi_image_post(fake, tmp_path):
    media = tuple(Media(picture(tmp_path, f"{i}.png", width=i + 1), f"alt {i}" if i else None)
                  for i in range(3))
    adapter_for(fake).publish(make_job(media=media), Refs())
    [post] = fake.ledger()
    items = post.content["multiImage"]["images"]
    assert [i.get("altText") for i in items] == [None, "alt 1", "alt 2"]
    assert [fake.images[i["id"]]["data"] for i in items] == [
        open(m.path, "rb").read() for m in media]


def test_add_time_checks():
    LinkedInAdapter.validate("x" * 3000, (), {})
    with pytest.raises(UsageError, match="3000"):
        LinkedInAdapter.validate("x" * 3001, (), {})
    with pytest.raises(UsageError, match="visibility"):
        LinkedInAdapter.validate("hi", (), {"visibility": "friends"})


def test_media_must_be_images_by_content(tmp_path):
    fake_png = tmp_path / "fake.png"
    fake_png.write_bytes(b"not an image at all")
    with pytest.raises(UsageError, match="JPEG, PNG or GIF"):
        LinkedInAdapter.validate("hi", (Media(str(fake_png)),), {})
    ok = picture(tmp_path)
    LinkedInAdapter.validate("hi", tuple(Media(ok) for _ in range(20)), {})
    with pytest.raises(UsageError, match="at most 20"):
        LinkedInAdapter.validate("hi", tuple(Media(ok) for _ in range(21)), {})


# -- errors ---------------------------------------------------------------------------------

def test_429_blocks_until_midnight_utc_or_the_retry_after(fake):
    fake.inject(status=429, path="/rest/posts", body={"status": 429, "message": "Too Many"})
    adapter = adapter_for(fake)
    error = raises(ErrorKind.RATE_LIMITED, lambda: adapter.publish(make_job(), Refs()))
    assert error.retry_at is not None and error.retry_at > datetime.now(UTC)
    assert error.retry_at == next_midnight_utc(adapter.clock()) or \
        error.retry_at - next_midnight_utc(datetime.now(UTC)) < timedelta(seconds=5)
    fake.inject(status=429, path="/rest/posts", headers={"Retry-After": "120"})
    error = raises(ErrorKind.RATE_LIMITED, lambda: adapter.publish(make_job(), Refs()))
    assert timedelta(seconds=100) < error.retry_at - datetime.now(UTC) < timedelta(seconds=130)
    assert next_midnight_utc(NOW) == datetime(2026, 12, 2, 0, 1, tzinfo=UTC)


def test_401_is_an_expired_token_naming_login(fake):
    error = raises(ErrorKind.AUTH_EXPIRED,
                   lambda: adapter_for(fake, token="wrong").publish(make_job(), Refs()))
    assert error.http_status == 401 and "autopost accounts login ada" in error.message
    fake.members[TOKEN].revoked = True
    raises(ErrorKind.AUTH_EXPIRED, lambda: adapter_for(fake).publish(make_job(), Refs()))
    # Most apps have no refresh token: the refresh says to log in again.
    error = raises(ErrorKind.AUTH_REVOKED, lambda: adapter_for(fake).refresh())
    assert "autopost accounts login ada" in error.message


def test_a_partner_apps_refresh_token_is_used(fake):
    fake.add_client("cid", "csecret", partner=True)
    fake.approver = TOKEN
    fake.refresh_tokens["AQX-old"] = fake.members[TOKEN]
    adapter = adapter_for(fake, refresh_token="AQX-old", client_id="cid",
                          client_secret="csecret")
    fresh = adapter.refresh()
    assert fresh.credentials["access_token"] in fake.members
    assert fresh.credentials["refresh_token"].startswith("AQX")
    assert fresh.token_expires_at is not None
    wrong = adapter_for(fake, refresh_token="AQX-unknown", client_id="cid",
                        client_secret="csecret")
    error = raises(ErrorKind.AUTH_REVOKED, wrong.refresh)
    assert "invalid_grant" in error.message and "AQX-unknown" not in error.message


def test_5xx_on_the_create_is_ambiguous(fake):
    fake.inject(status=503, path="/rest/posts", method="POST")
    raises(ErrorKind.AMBIGUOUS, lambda: adapter_for(fake).publish(make_job(), Refs()))


def test_duplicate_of_someone_elses_post_fails(fake):
    adapter = adapter_for(fake)
    adapter.publish(make_job("Same words", id="other"), Refs())
    refs = Refs()
    job = make_job("Same words")
    error = raises(ErrorKind.DUPLICATE, lambda: adapter.publish(job, refs))
    existing = fake.ledger()[0].urn
    assert existing in error.message and error.http_status == 422
    assert refs.last["duplicate_of"] == existing and refs.last["sends"] == 1
    found = adapter.reconcile(make_job("Same words", ref=refs.last,
                                       last_error_kind=ErrorKind.DUPLICATE, attempts=1))
    assert found.verdict is Verdict.NOT_POSTED
    decision = decide_reconcile(found, job=make_job(last_error_kind=ErrorKind.DUPLICATE),
                                now=NOW)
    assert decision.status is JobStatus.FAILED
    assert len(fake.ledger()) == 1


def test_duplicate_of_this_jobs_earlier_send_is_posted(fake):
    adapter = adapter_for(fake)
    first = adapter.publish(make_job("Mine"), Refs())
    ref = {"first_sent_at": format_utc(datetime.now(UTC)), "sends": 1, "author": ME}
    again = adapter.publish(make_job("Mine", ref=ref), Refs())
    assert again.post_id == first.post_id and "duplicate" in again.note
    assert len(fake.ledger()) == 1


# -- reconcile ------------------------------------------------------------------------------

def test_dropped_answer_then_reconcile_finds_the_post(fake):
    fake.members[TOKEN].scopes.add("r_member_social")
    fake.inject("drop", path="/rest/posts", method="POST")
    adapter = adapter_for(fake)
    refs = Refs()
    raises(ErrorKind.AMBIGUOUS, lambda: adapter.publish(make_job("Did it go? (yes)"), refs))
    [post] = fake.ledger()
    found = adapter.reconcile(make_job("Did it go? (yes)", ref=refs.last))
    assert found.verdict is Verdict.POSTED and found.published.post_id == post.urn
    [finder] = fake.seen("GET", "/rest/posts")
    assert "author=urn%3Ali%3Aperson%3A" in finder.raw_query


def test_reconcile_not_posted_when_the_read_covers_the_window(fake):
    fake.members[TOKEN].scopes.add("r_member_social")
    fake.inject("reset", path="/rest/posts", method="POST")
    adapter = adapter_for(fake)
    refs = Refs()
    raises(ErrorKind.AMBIGUOUS, lambda: adapter.publish(make_job("Lost"), refs))
    assert fake.ledger() == []
    found = adapter.reconcile(make_job("Lost", ref=refs.last))
    assert found.verdict is Verdict.NOT_POSTED


def test_reconcile_cannot_tell_without_the_read_permission(fake):
    fake.inject("drop", path="/rest/posts", method="POST")
    adapter = adapter_for(fake)
    refs = Refs()
    raises(ErrorKind.AMBIGUOUS, lambda: adapter.publish(make_job("Unknown"), refs))
    found = adapter.reconcile(make_job("Unknown", ref=refs.last))
    assert found.verdict is Verdict.CANNOT_TELL
    assert "r_member_social" in found.message
    assert len(fake.seen("GET", "/rest/posts")) == 1  # read once, no loop


def test_reconcile_ignores_a_post_older_than_the_first_send(fake):
    fake.members[TOKEN].scopes.add("r_member_social")
    adapter = adapter_for(fake)
    adapter.publish(make_job("Old words"), Refs())
    fake.advance(3600)
    later = format_utc(datetime.now(UTC) + timedelta(seconds=3600))
    found = adapter.reconcile(make_job("Old words", ref={"first_sent_at": later, "sends": 1,
                                                         "author": ME}))
    assert found.verdict is Verdict.NOT_POSTED


# -- account setup, check and status ----------------------------------------------------------

def test_setup_finds_the_member_and_keeps_the_expiry(fake):
    creds, expires = LinkedInAdapter.prepare_credentials(
        {"access_token": TOKEN, "expires_at": "2027-01-30T00:00:00Z"})
    assert expires == datetime(2027, 1, 30, tzinfo=UTC) and creds == {"access_token": TOKEN}
    account = Account(name="ada", platform="linkedin", base_url=fake.base_url,
                      credentials=creds, token_expires_at=expires)
    adapter = LinkedInAdapter(account, dict(creds), httpx.Client())
    fresh = adapter.setup()
    assert fresh.credentials == {"access_token": TOKEN, "author": ME}
    info = adapter.check()
    assert ME in info.display
    # Before a login there is no token to ask with: nothing to set up.
    app = Account(name="ada", platform="linkedin", base_url=fake.base_url,
                  credentials={"client_id": "cid", "client_secret": "s"})
    assert LinkedInAdapter(app, dict(app.credentials), httpx.Client()).setup() is None


def test_credentials_are_checked():
    LinkedInAdapter.check_credentials({"access_token": "t", "author": ME})
    for bad in ({"access_token": "t", "author": "person:1"},
                {"access_token": "t", "expires_at": "soon"},
                {"author": ME}, {"client_id": "cid"}):
        with pytest.raises(UsageError):
            LinkedInAdapter.check_credentials(bad)


def test_status_warns_about_an_old_version_and_an_expiring_token():
    account = Account(name="ada", platform="linkedin", credentials={"access_token": "t"},
                      token_expires_at=NOW + timedelta(days=3))
    fresh = PlatformPolicy(api_version="202611")
    warnings = LinkedInAdapter.status_warnings(account, fresh, NOW)
    assert len(warnings) == 1 and "autopost accounts login ada" in warnings[0]
    assert "in 3 day(s)" in warnings[0]
    old = LinkedInAdapter.status_warnings(
        Account(name="ada", platform="linkedin"), PlatformPolicy(api_version="202601"), NOW)
    assert len(old) == 1 and "202601" in old[0] and "api_version" in old[0]
    assert LinkedInAdapter.status_warnings(
        Account(name="ada", platform="linkedin"), PlatformPolicy(api_version="202603"),
        NOW) == []
    refreshable = Account(name="ada", platform="linkedin",
                          credentials={"access_token": "t", "refresh_token": "r"},
                          token_expires_at=NOW + timedelta(days=1))
    assert LinkedInAdapter.status_warnings(refreshable, fresh, NOW) == []


def test_api_version_setting(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[platforms.linkedin]\napi_version = "202602"\n')
    assert load_settings(str(config), env={}).policy("linkedin").api_version == "202602"
    env = load_settings(str(config), env={"AUTOPOST_LINKEDIN_API_VERSION": "202603"})
    assert env.policy("linkedin").api_version == "202603"
    for text in ('[platforms.linkedin]\napi_version = "2026-03"\n',
                 '[platforms.linkedin]\napi_version = "202613"\n',
                 '[platforms.mastodon]\napi_version = "202603"\n'):
        config.write_text(text)
        with pytest.raises(ConfigError):
            load_settings(str(config), env={})


# -- through the CLI ----------------------------------------------------------------------

def test_cli_add_run_due_and_status(proc, fake, tmp_path):
    creds = json.dumps({"access_token": TOKEN})
    out = proc("accounts", "add", "ada", "--platform", "linkedin", "--base-url",
               fake.base_url, "--credentials", "-", input=creds)
    assert out.code == 0, out.stderr
    image = picture(tmp_path)
    out = proc("add", "Hello from cron (really) #1", "--account", "ada", "--at", "now",
               "--media", image, "--alt", "A red square")
    assert out.code == 0, out.stderr
    out = proc("run-due")
    assert out.code == 0, out.stderr + out.stdout
    [post] = fake.ledger()
    assert post.shown == "Hello from cron (really) #1" and post.author == ME
    assert post.content["media"]["altText"] == "A red square"
    listed = json.loads(proc("list", "--json").stdout)
    assert [(j["status"], j["platform_post_id"]) for j in listed] == [("posted", post.urn)]
    assert TOKEN not in out.stdout + out.stderr
    status = proc("status", env={"AUTOPOST_LINKEDIN_API_VERSION": "202501"})
    assert status.code == 1
    assert "LinkedIn-Version 202501" in status.stdout and "api_version" in status.stdout
    assert TOKEN not in status.stdout + status.stderr


def test_cli_retired_version_fails_the_job_loudly(proc, fake):
    creds = json.dumps({"access_token": TOKEN, "author": ME})
    assert proc("accounts", "add", "ada", "--platform", "linkedin", "--base-url",
                fake.base_url, "--credentials", "-", input=creds).code == 0
    assert proc("add", "Versioned", "--account", "ada", "--at", "now").code == 0
    out = proc("run-due", env={"AUTOPOST_LINKEDIN_API_VERSION": "202401"})
    assert out.code == 1
    assert "426" in out.stdout + out.stderr and "api_version" in out.stdout + out.stderr
    assert fake.ledger() == []


# -- login through the CLI ------------------------------------------------------------------

def test_cli_login_as_the_member_then_post(proc, fake):
    from urllib.parse import parse_qs, urlsplit

    from tests.oauthkit import login_through_browser

    fake.add_client("li-client", "li-secret")
    fake.approver = TOKEN
    creds = json.dumps({"client_id": "li-client", "client_secret": "li-secret"})
    out = proc("accounts", "add", "ada", "--platform", "linkedin", "--base-url",
               fake.base_url, "--credentials", "-", input=creds)
    assert out.code == 0, out.stderr
    assert "autopost accounts login ada" in out.stdout
    code, stdout, stderr, url = login_through_browser(proc.db, "ada")
    assert code == 0, stdout + stderr
    query = parse_qs(urlsplit(url).query)
    assert urlsplit(url).path == "/oauth/v2/authorization"
    assert query["scope"] == ["openid profile w_member_social"]
    assert "logged in ada (linkedin)" in stdout and ME in stdout
    assert fake.exchanges == 1
    assert "li-secret" not in stdout + stderr
    issued = [t for t, m in fake.members.items() if t != TOKEN]
    assert issued and all(t not in stdout + stderr for t in issued)
    rows = json.loads(proc("accounts", "list", "--json").stdout)
    assert rows[0]["state"] == "ok"
    assert proc("add", "After login (it works)", "--account", "ada", "--at", "now").code == 0
    run = proc("run-due")
    assert run.code == 0, run.stdout + run.stderr
    [post] = fake.ledger()
    assert post.author == ME and post.shown == "After login (it works)"
    assert post.token in issued
    status = proc("status")
    assert "LinkedIn token" not in status.stdout  # 60 days left: nothing to warn about yet


def test_cli_login_for_a_company_page(proc, fake):
    from tests.oauthkit import login_through_browser

    fake.add_client("li-client", "li-secret")
    fake.approver = TOKEN
    creds = json.dumps({"client_id": "li-client", "client_secret": "li-secret"})
    assert proc("accounts", "add", "page", "--platform", "linkedin", "--base-url",
                fake.base_url, "--credentials", "-", input=creds).code == 0
    code, stdout, stderr, url = login_through_browser(proc.db, "page", "--organization",
                                                      "999")
    assert code == 2 and "does not administer urn:li:organization:999" in stderr
    assert "access_token" not in json.loads(proc("accounts", "list", "--json").stdout)[0][
        "credentials"]
    code, stdout, stderr, url = login_through_browser(proc.db, "page", "--organization",
                                                      "5515715")
    assert code == 0, stdout + stderr
    assert "w_organization_social" in url
    assert proc("add", "Page news", "--account", "page", "--at", "now").code == 0
    assert proc("run-due").code == 0
    assert fake.ledger()[0].author == "urn:li:organization:5515715"


def test_cli_status_warns_before_the_token_expires(proc, fake):
    soon = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    creds = json.dumps({"access_token": TOKEN, "author": ME, "expires_at": soon})
    assert proc("accounts", "add", "ada", "--platform", "linkedin", "--base-url",
                fake.base_url, "--credentials", "-", input=creds).code == 0
    status = proc("status")
    assert status.code == 1
    assert "LinkedIn token expires" in status.stdout
    assert "autopost accounts login ada" in status.stdout
