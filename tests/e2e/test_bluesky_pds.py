"""The Bluesky adapter against the real AT Protocol reference PDS on 127.0.0.1.

Everything is read back from the PDS itself (listRecords / getRecord / getBlob), never
from what the adapter says it did.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from autopost.accounts import refresh_account
from autopost.errors import UsageError
from autopost.models import Account, ErrorKind, Job, Media
from autopost.platforms.atproto import job_record_key, jwt_expiry
from autopost.platforms.base import PlatformError, Verdict
from autopost.platforms.bluesky import BlueskyAdapter
from autopost.store.sqlite import SqliteStore
from tests.e2e.pds_fixture import Pds, PdsAccount
from tests.images import gif, png

T0 = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)


class Recorder:
    """An httpx client that remembers which XRPC methods were called."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.client = httpx.Client(timeout=30.0, event_hooks={"request": [self._record]})

    def _record(self, request: httpx.Request) -> None:
        self.calls.append(request.url.path.removeprefix("/xrpc/"))


def adapter_for(pds: Pds, credentials: dict, recorder: Recorder | None = None,
                name: str = "bsky") -> BlueskyAdapter:
    account = Account(name=name, platform="bluesky", base_url=pds.url, credentials=credentials)
    client = (recorder or Recorder()).client
    return BlueskyAdapter(account, credentials, client)


def set_up(pds: Pds, who: PdsAccount, recorder: Recorder | None = None) -> BlueskyAdapter:
    """An adapter holding what `accounts add` stores."""
    fresh = adapter_for(pds, who.credentials(), recorder).setup()
    return adapter_for(pds, fresh.credentials, recorder)


def make_job(text: str, *, media: tuple[Media, ...] = (), options: dict | None = None,
             scheduled_at: datetime = T0) -> Job:
    return Job(id=secrets.token_hex(4), account="bsky", platform="bluesky", text=text,
               scheduled_at=scheduled_at, next_attempt_at=scheduled_at, media=media,
               options=options or {}, idempotency_key=secrets.token_hex(16), created_at=T0)


def rkey_of(uri: str) -> str:
    return uri.rsplit("/", 1)[1]


def refs() -> tuple[list[dict], callable]:
    saved: list[dict] = []
    return saved, saved.append


# -- session ------------------------------------------------------------------------

def test_setup_creates_a_session_and_keeps_the_operators_fields(pds, pds_account):
    who = pds_account()
    recorder = Recorder()
    fresh = adapter_for(pds, who.credentials(), recorder).setup()

    creds = fresh.credentials
    assert creds["identifier"] == who.handle and creds["password"] == who.password
    assert creds["did"] == who.did and creds["handle"] == who.handle
    assert recorder.calls == ["com.atproto.server.createSession"]
    # The token works, and its expiry is the JWT's (120 min on the reference PDS).
    session = pds.ok("GET", "com.atproto.server.getSession", token=creds["access_jwt"])
    assert session["did"] == who.did
    assert fresh.token_expires_at == jwt_expiry(creds["access_jwt"])
    remaining = fresh.token_expires_at - datetime.now(UTC)
    assert timedelta(minutes=100) < remaining <= timedelta(minutes=121)


def test_check_shows_the_handle_and_token_expiry(pds, pds_account):
    who = pds_account()
    adapter = set_up(pds, who)
    info = adapter.check()
    assert info.display == who.handle
    assert info.details["did"] == who.did
    assert info.token_expires_at == jwt_expiry(adapter.credentials["access_jwt"])


# -- posts --------------------------------------------------------------------------

def test_text_post_is_in_the_repo_under_the_jobs_record_key(pds, pds_account):
    who = pds_account()
    adapter = set_up(pds, who)
    job = make_job("Bonjour, Bluesky ☀️", options={"langs": ["fr", "en"]})
    saved, save_ref = refs()

    published = adapter.publish(job, save_ref)

    rkey = job_record_key(job)
    assert published.post_id == f"at://{who.did}/app.bsky.feed.post/{rkey}"
    assert published.url == f"https://bsky.app/profile/{who.handle}/post/{rkey}"
    assert saved and saved[-1]["rkey"] == rkey
    records = pds.list_posts(who.did)
    assert [r["uri"] for r in records] == [published.post_id]
    value = records[0]["value"]
    assert value["text"] == "Bonjour, Bluesky ☀️"
    assert value["langs"] == ["fr", "en"]
    assert value["createdAt"] == saved[-1]["created_at"]
    assert "facets" not in value and "embed" not in value


def test_links_mentions_and_tags_become_facets_with_byte_offsets(pds, pds_account):
    who, friend = pds_account(), pds_account(prefix="friend")
    adapter = set_up(pds, who)
    text = (f"Grüße 👋🏽 an @{friend.handle}: lies https://example.org/ü?q=1 und "
            "@nobody-here.test #Straße")
    published = adapter.publish(make_job(text), lambda ref: None)

    value = pds.get_post(who.did, rkey_of(published.post_id))["value"]
    raw = value["text"].encode("utf-8")
    by_kind = {}
    for f in value["facets"]:
        feature = f["features"][0]
        piece = raw[f["index"]["byteStart"]:f["index"]["byteEnd"]].decode("utf-8")
        by_kind[feature["$type"].split("#")[1]] = (piece, feature)
    assert by_kind["mention"] == (f"@{friend.handle}", {
        "$type": "app.bsky.richtext.facet#mention", "did": friend.did})
    assert by_kind["link"][0] == "https://example.org/ü?q=1"
    assert by_kind["link"][1]["uri"] == "https://example.org/ü?q=1"
    assert by_kind["tag"] == ("#Straße", {"$type": "app.bsky.richtext.facet#tag",
                                           "tag": "Straße"})
    # A handle that does not resolve gets no facet (3 facets, not 4).
    assert len(value["facets"]) == 3


def test_image_post_with_alt_text_and_aspect_ratio(pds, pds_account, tmp_path: Path):
    who = pds_account()
    adapter = set_up(pds, who)
    first, second = tmp_path / "red.png", tmp_path / "blue.gif"
    first.write_bytes(png(40, 30))
    second.write_bytes(gif(9, 16))
    media = (Media(str(first), "a red rectangle"), Media(str(second), None))
    BlueskyAdapter.validate("two pictures", media, {})

    published = adapter.publish(make_job("two pictures", media=media), lambda ref: None)

    value = pds.get_post(who.did, rkey_of(published.post_id))["value"]
    embed = value["embed"]
    assert embed["$type"] == "app.bsky.embed.images"
    one, two = embed["images"]
    assert one["alt"] == "a red rectangle" and two["alt"] == ""
    assert one["aspectRatio"] == {"width": 40, "height": 30}
    assert two["aspectRatio"] == {"width": 9, "height": 16}
    assert one["image"]["mimeType"] == "image/png" and two["image"]["mimeType"] == "image/gif"
    assert pds.get_blob(who.did, one["image"]["ref"]["$link"]) == first.read_bytes()
    assert pds.get_blob(who.did, two["image"]["ref"]["$link"]) == second.read_bytes()


def test_the_grapheme_limit_agrees_with_the_pds(pds, pds_account):
    who = pds_account()
    adapter = set_up(pds, who)
    unit = "🇫🇷e\u0301👍🏽"  # a flag, a combining accent, a skin tone: 3 graphemes
    fits, too_long = unit * 100, unit * 100 + "!"
    assert BlueskyAdapter.text_length(fits) == 300

    BlueskyAdapter.validate(fits, (), {})
    assert adapter.publish(make_job(fits), lambda ref: None)
    with pytest.raises(UsageError, match="301 graphemes"):
        BlueskyAdapter.validate(too_long, (), {})
    with pytest.raises(PlatformError) as refused:  # the PDS counts the same way
        adapter.publish(make_job(too_long), lambda ref: None)
    assert refused.value.kind == ErrorKind.INVALID
    assert "301" in refused.value.message


def test_an_image_over_the_lexicon_limit_is_refused_at_add_time(tmp_path: Path):
    big = tmp_path / "big.png"
    big.write_bytes(png(4, 4) + b"\x00" * 1_000_000)
    with pytest.raises(UsageError, match="1,000,000"):
        BlueskyAdapter.validate("big", (Media(str(big)),), {})


# -- never twice --------------------------------------------------------------------

def test_reconcile_before_and_after_the_create(pds, pds_account):
    who = pds_account()
    adapter = set_up(pds, who)
    job = make_job("posted exactly once")

    before = adapter.reconcile(job)
    assert before.verdict == Verdict.NOT_POSTED

    published = adapter.publish(job, lambda ref: None)
    after = adapter.reconcile(job)
    assert after.verdict == Verdict.POSTED
    assert after.published == published


def test_a_second_create_on_the_same_key_is_ambiguous_not_a_second_post(pds, pds_account):
    who = pds_account()
    adapter = set_up(pds, who)
    job = make_job("only one of me")
    adapter.publish(job, lambda ref: None)

    with pytest.raises(PlatformError) as dup:
        adapter.publish(job, lambda ref: None)
    assert dup.value.kind == ErrorKind.AMBIGUOUS
    assert dup.value.http_status == 500
    assert len(pds.list_posts(who.did)) == 1
    assert adapter.reconcile(job).verdict == Verdict.POSTED


def test_reconcile_does_not_claim_a_record_with_another_text(pds, pds_account):
    who = pds_account()
    adapter = set_up(pds, who)
    job = make_job("mine")
    pds.ok("POST", "com.atproto.repo.createRecord", token=adapter.credentials["access_jwt"],
           json={"repo": who.did, "collection": "app.bsky.feed.post",
                 "rkey": job_record_key(job),
                 "record": {"$type": "app.bsky.feed.post", "text": "not mine",
                            "createdAt": "2026-11-28T09:30:00.000Z"}})
    assert adapter.reconcile(job).verdict == Verdict.CANNOT_TELL


# -- tokens -------------------------------------------------------------------------

def stored_account(tmp_path: Path, pds: Pds, credentials: dict) -> tuple[SqliteStore, Account]:
    store = SqliteStore(tmp_path / "autopost.db")
    account = Account(name="bsky", platform="bluesky", base_url=pds.url,
                      credentials=credentials, token_expires_at=jwt_expiry(
                          credentials.get("access_jwt")))
    store.add_account(account, now=datetime.now(UTC))
    return store, store.get_account("bsky")


def test_expired_access_token_refreshes_and_rotates_both_tokens(pds, pds_account, tmp_path):
    who = pds_account()
    session = set_up(pds, who).credentials
    expired = pds.mint_access_token(who.did)
    credentials = {**session, "access_jwt": expired}
    store, account = stored_account(tmp_path, pds, credentials)
    recorder = Recorder()
    adapter = adapter_for(pds, credentials, recorder)
    job = make_job("after a refresh")

    with pytest.raises(PlatformError) as stale:
        adapter.publish(job, lambda ref: None)
    assert stale.value.kind == ErrorKind.AUTH_EXPIRED
    assert (stale.value.http_status, stale.value.code) == (400, "ExpiredToken")
    assert expired not in stale.value.message

    updated = refresh_account(store, adapter, account.credentials, "run-1",
                              clock=lambda: datetime.now(UTC))
    stored = updated.credentials
    # Both tokens are new. (An access token has no id: minted in the same second as the
    # session's first one it may equal it, so compare it with the expired one.)
    assert stored["access_jwt"] != expired
    assert jwt_expiry(stored["access_jwt"]) > datetime.now(UTC) + timedelta(minutes=100)
    assert stored["refresh_jwt"] != session["refresh_jwt"]
    assert stored["password"] == who.password and stored["did"] == who.did
    assert updated.token_expires_at == jwt_expiry(stored["access_jwt"])
    assert "com.atproto.server.createSession" not in recorder.calls
    assert recorder.calls.count("com.atproto.server.refreshSession") == 1

    published = adapter.publish(job, lambda ref: None)
    assert pds.get_post(who.did, rkey_of(published.post_id))["value"]["text"] == job.text
    store.close()


def test_a_revoked_refresh_token_falls_back_to_one_login(pds, pds_account):
    who = pds_account()
    session = set_up(pds, who).credentials
    revoke = pds.xrpc("POST", "com.atproto.server.deleteSession", token=session["refresh_jwt"])
    assert revoke.status_code == 200, revoke.text
    recorder = Recorder()
    adapter = adapter_for(pds, {**session, "access_jwt": pds.mint_access_token(who.did)},
                          recorder)

    fresh = adapter.refresh()

    assert recorder.calls == ["com.atproto.server.refreshSession",
                              "com.atproto.server.createSession"]
    assert fresh.credentials["refresh_jwt"] != session["refresh_jwt"]
    adapter.use_credentials({**adapter.credentials, **fresh.credentials})
    assert adapter.publish(make_job("after a new login"), lambda ref: None)


def test_a_wrong_password_after_a_revoked_refresh_token_needs_reauth(pds, pds_account):
    who = pds_account()
    session = set_up(pds, who).credentials
    pds.xrpc("POST", "com.atproto.server.deleteSession", token=session["refresh_jwt"])
    wrong = "wrong-password-1234"
    adapter = adapter_for(pds, {**session, "password": wrong})

    with pytest.raises(PlatformError) as revoked:
        adapter.refresh()
    assert revoked.value.kind == ErrorKind.AUTH_REVOKED
    assert revoked.value.http_status == 401
    for secret in (wrong, session["refresh_jwt"], session["access_jwt"]):
        assert secret not in revoked.value.message


def test_setup_with_a_wrong_password_needs_reauth(pds, pds_account):
    who = pds_account()
    with pytest.raises(PlatformError) as revoked:
        adapter_for(pds, {"identifier": who.handle, "password": "nope-nope-nope"}).setup()
    assert revoked.value.kind == ErrorKind.AUTH_REVOKED
    assert "nope-nope-nope" not in revoked.value.message


# -- rate limits --------------------------------------------------------------------

def test_too_many_logins_are_rate_limited_until_the_reset(pds_limited):
    who = pds_limited.create_account("limited")
    resets = []
    for _ in range(30):  # the account password: one scrypt check per login, not two
        r = pds_limited.xrpc("POST", "com.atproto.server.createSession",
                             json={"identifier": who.handle, "password": who.account_password})
        assert r.status_code == 200, r.text
        resets.append(int(r.headers["ratelimit-reset"]))
    before = datetime.now(UTC)

    with pytest.raises(PlatformError) as limited:
        adapter_for(pds_limited, who.credentials()).setup()

    err = limited.value
    assert err.kind == ErrorKind.RATE_LIMITED and err.http_status == 429
    assert err.code == "RateLimitExceeded"
    assert err.retry_at is not None
    assert before < err.retry_at <= before + timedelta(minutes=5, seconds=5)
    # The answer's RateLimit-Reset (epoch seconds) is the moment, to the second.
    assert int(err.retry_at.timestamp()) in range(min(resets), max(resets) + 2)
