"""OAuth 2.0 machinery: the authorize URL (PKCE S256, state), the redirect check, the code
exchange, refresh with rotation, the login flow over the loopback redirect and --paste,
and the refresh lock that makes overlapping refreshes spend a rotating token once."""

from __future__ import annotations

import base64
import hashlib
import threading
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from autopost import oauth
from autopost.accounts import refresh_account, resolve_credentials
from autopost.errors import UsageError
from autopost.models import Account, AccountState, ErrorKind, Job
from autopost.oauth import OAuthAdapter, OAuthPlatform
from autopost.platforms import registry
from autopost.platforms.base import AccountInfo, PlatformError, Published, Reconciled, Verdict
from autopost.store.sqlite import SqliteStore

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SPEC = OAuthPlatform(authorize_url="https://auth.example.com/oauth2/authorize",
                     token_url="https://api.example.com/oauth2/token",
                     scopes=("read", "write", "offline.access"), rotating_refresh=True)


class DemoAdapter(OAuthAdapter):
    platform = "demooauth"
    default_base_url = "https://api.example.com"
    oauth = SPEC

    def publish(self, job: Job, save_ref) -> Published:
        response = self.client.post(self.url("/post"), headers=self.bearer(),
                                    json={"text": job.text})
        if response.status_code == 401:
            raise PlatformError(ErrorKind.AUTH_EXPIRED, "expired", http_status=401)
        return Published(response.json()["id"])

    def reconcile(self, job: Job) -> Reconciled:
        return Reconciled(Verdict.CANNOT_TELL)

    def check(self) -> AccountInfo:
        response = self.client.get(self.url("/me"), headers=self.bearer())
        if response.status_code == 401:
            raise PlatformError(ErrorKind.AUTH_EXPIRED, "expired", http_status=401)
        return AccountInfo(display="@" + response.json()["username"])


@pytest.fixture(autouse=True)
def _registered():
    registry.register("demooauth", DemoAdapter)
    yield
    registry.unregister("demooauth")


class TokenServer:
    """A token endpoint with single-use rotating refresh tokens (a MockTransport handler)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.valid_refresh = {"rt.0"}
        self.codes: dict[str, str] = {}  # code -> the challenge it was issued for
        self.generation = 0
        self.refreshes = 0
        self.reused = 0
        self.exchanges = 0
        self.forms: list[dict[str, str]] = []
        self.headers: list[httpx.Headers] = []
        self.answer_refresh = True

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/me":
            token = request.headers.get("authorization", "")
            if token != f"Bearer at.{self.generation}":
                return httpx.Response(401, json={"detail": "Unauthorized"})
            return httpx.Response(200, json={"username": "alice"})
        if request.url.path == "/post":
            return httpx.Response(201, json={"id": "1"})
        assert request.url.path == "/oauth2/token"
        form = dict(urllib.parse.parse_qsl(request.content.decode()))
        with self.lock:
            self.forms.append(form)
            self.headers.append(request.headers)
            if form["grant_type"] == "authorization_code":
                challenge = self.codes.pop(form.get("code", ""), None)
                verifier = form.get("code_verifier", "")
                digest = base64.urlsafe_b64encode(
                    hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                if challenge is None or digest != challenge:
                    return httpx.Response(400, json={"error": "invalid_grant"})
                self.exchanges += 1
            else:
                token = form.get("refresh_token")
                if token not in self.valid_refresh:
                    self.reused += 1
                    return httpx.Response(400, json={"error": "invalid_grant",
                                                     "error_description": "bad token"})
                self.valid_refresh.discard(token)
                self.refreshes += 1
            self.generation += 1
            body: dict[str, Any] = {"access_token": f"at.{self.generation}",
                                    "token_type": "bearer", "expires_in": 7200}
            if self.answer_refresh:
                body["refresh_token"] = f"rt.{self.generation}"
                self.valid_refresh.add(body["refresh_token"])
            else:
                body["refresh_token"] = ""
            return httpx.Response(200, json=body)


@pytest.fixture
def tokens() -> TokenServer:
    return TokenServer()


def client_for(server) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(server))


def make_store(tmp_path, **creds) -> SqliteStore:
    store = SqliteStore(tmp_path / "a.db")
    credentials = {"client_id": "cid", **creds}
    store.add_account(Account("acct", "demooauth", credentials=credentials,
                              token_expires_at=NOW - timedelta(minutes=1)), now=NOW)
    return store


# -- the authorize URL and the redirect ------------------------------------------------

def test_authorize_url_carries_pkce_s256_state_and_scopes():
    auth = oauth.new_authorization(SPEC, "cid", "http://127.0.0.1:8765/callback")
    parts = urllib.parse.urlsplit(auth.url)
    q = dict(urllib.parse.parse_qsl(parts.query))
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "auth.example.com",
                                                        "/oauth2/authorize")
    assert q["response_type"] == "code" and q["client_id"] == "cid"
    assert q["redirect_uri"] == "http://127.0.0.1:8765/callback"
    assert q["scope"] == "read write offline.access"
    assert q["state"] == auth.state and len(auth.state) >= 32
    assert q["code_challenge_method"] == "S256"
    expected = base64.urlsafe_b64encode(
        hashlib.sha256(auth.verifier.encode()).digest()).rstrip(b"=").decode()
    assert q["code_challenge"] == expected
    assert 43 <= len(auth.verifier) <= 128
    # Two logins never share a state or a verifier.
    again = oauth.new_authorization(SPEC, "cid", "http://127.0.0.1:8765/callback")
    assert again.state != auth.state and again.verifier != auth.verifier


def test_base_url_moves_every_endpoint_to_one_origin_keeping_paths():
    auth = oauth.new_authorization(SPEC, "cid", "http://127.0.0.1:1/callback",
                                   base_url="http://127.0.0.1:4011")
    assert auth.url.startswith("http://127.0.0.1:4011/oauth2/authorize?")
    assert oauth.rebase("https://api.example.com/2/tweets?x=1", "http://h:9/proxy/") \
        == "http://h:9/proxy/2/tweets?x=1"
    assert oauth.rebase("https://api.example.com/2/tweets", None) \
        == "https://api.example.com/2/tweets"
    account = Account("a", "demooauth", base_url="http://127.0.0.1:5000")
    adapter = DemoAdapter(account, {}, None)
    assert adapter.url("/post") == "http://127.0.0.1:5000/post"
    assert adapter.url("https://upload.example.com/up") == "http://127.0.0.1:5000/up"


def test_redirect_with_another_state_is_refused():
    auth = oauth.new_authorization(SPEC, "cid", "http://127.0.0.1:1/callback")
    with pytest.raises(UsageError, match="state does not match"):
        oauth.code_from_redirect("http://127.0.0.1:1/callback?code=c&state=evil", auth)
    with pytest.raises(UsageError, match="state does not match"):
        oauth.code_from_redirect("http://127.0.0.1:1/callback?code=c", auth)
    with pytest.raises(UsageError, match="access_denied"):
        oauth.code_from_redirect(
            f"http://127.0.0.1:1/callback?error=access_denied&state={auth.state}", auth)
    with pytest.raises(UsageError, match="not the redirected URL"):
        oauth.code_from_redirect("hello", auth)
    assert oauth.code_from_redirect(
        f"http://127.0.0.1:1/callback?code=abc&state={auth.state}", auth) == "abc"


# -- the token endpoint ------------------------------------------------------------------

def test_exchange_sends_the_verifier_and_public_client_id(tokens):
    auth = oauth.new_authorization(SPEC, "cid", "http://127.0.0.1:1/callback")
    challenge = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(auth.url).query))[
        "code_challenge"]
    tokens.codes["c1"] = challenge
    with client_for(tokens) as client:
        fresh = oauth.exchange_code(client, SPEC, {"client_id": "cid"}, "c1", auth,
                                    base_url=None, now=NOW)
    form = tokens.forms[-1]
    assert form == {"grant_type": "authorization_code", "code": "c1",
                    "redirect_uri": "http://127.0.0.1:1/callback",
                    "code_verifier": auth.verifier, "client_id": "cid"}
    assert "authorization" not in tokens.headers[-1]
    assert fresh.credentials == {"access_token": "at.1", "refresh_token": "rt.1"}
    assert fresh.token_expires_at == NOW + timedelta(hours=2)


def test_confidential_client_authenticates_with_basic(tokens):
    with client_for(tokens) as client:
        oauth.refresh_tokens(client, SPEC, {"client_id": "cid", "client_secret": "s3cret",
                                            "refresh_token": "rt.0"},
                             account="acct", base_url=None, now=NOW)
    basic = tokens.headers[-1]["authorization"]
    assert basic == "Basic " + base64.b64encode(b"cid:s3cret").decode()
    assert "client_secret" not in tokens.forms[-1] and "client_id" not in tokens.forms[-1]
    body_spec = OAuthPlatform(SPEC.authorize_url, SPEC.token_url, SPEC.scopes,
                              token_auth="body")
    with client_for(tokens) as client:
        oauth.refresh_tokens(client, body_spec, {"client_id": "cid", "client_secret": "s",
                                                 "refresh_token": "rt.1"},
                             account="acct", base_url=None, now=NOW)
    assert tokens.forms[-1]["client_secret"] == "s" and tokens.forms[-1]["client_id"] == "cid"


def test_refused_refresh_is_revoked_and_names_the_login_command(tokens):
    with client_for(tokens) as client, pytest.raises(PlatformError) as err:
        oauth.refresh_tokens(client, SPEC, {"client_id": "cid", "refresh_token": "stale"},
                             account="acct", base_url=None, now=NOW)
    assert err.value.kind == ErrorKind.AUTH_REVOKED
    assert "autopost accounts login acct" in err.value.message
    assert "stale" not in err.value.message
    with client_for(tokens) as client, pytest.raises(PlatformError) as err:
        oauth.refresh_tokens(client, SPEC, {"client_id": "cid"}, account="acct",
                             base_url=None, now=NOW)
    assert err.value.kind == ErrorKind.AUTH_REVOKED and "no refresh token" in err.value.message


@pytest.mark.parametrize("status,kind", [(429, ErrorKind.RATE_LIMITED),
                                         (503, ErrorKind.SERVER),
                                         (401, ErrorKind.AUTH_REVOKED)])
def test_token_endpoint_errors_are_classified(status, kind):
    def handler(request):
        return httpx.Response(status, json={"error": "x"},
                              headers={"x-rate-limit-reset": str(int(NOW.timestamp()) + 60)})

    with client_for(handler) as client, pytest.raises(PlatformError) as err:
        oauth.refresh_tokens(client, SPEC, {"client_id": "c", "refresh_token": "r"},
                             account="a", base_url=None, now=NOW)
    assert err.value.kind == kind


def test_lost_answer_to_a_refresh_is_a_network_error_not_revoked():
    def handler(request):
        raise httpx.ReadTimeout("timed out", request=request)

    with client_for(handler) as client, pytest.raises(PlatformError) as err:
        oauth.refresh_tokens(client, SPEC, {"client_id": "c", "refresh_token": "r"},
                             account="a", base_url=None, now=NOW)
    assert err.value.kind == ErrorKind.NETWORK


# -- storage rules ---------------------------------------------------------------------------

def test_empty_refresh_token_in_an_answer_never_replaces_the_stored_one(tmp_path, tokens):
    tokens.answer_refresh = False
    store = make_store(tmp_path, access_token="at.0", refresh_token="rt.0")
    with client_for(tokens) as client:
        account = store.get_account("acct")
        adapter = DemoAdapter(account, resolve_credentials(account), client, clock=lambda: NOW)
        after = refresh_account(store, adapter, account.credentials, "run1", clock=lambda: NOW)
    assert after.credentials["access_token"] == "at.1"
    assert after.credentials["refresh_token"] == "rt.0"
    assert after.token_expires_at == NOW + timedelta(hours=2)
    store.close()


def test_overlapping_refreshes_spend_a_rotating_token_once(tmp_path, tokens):
    """Eight workers, each with its own connection, all see the same expired pair."""
    store = make_store(tmp_path, access_token="at.0", refresh_token="rt.0")
    seen = store.get_account("acct").credentials
    store.close()
    barrier = threading.Barrier(8)
    results, errors = [], []

    def worker(i: int) -> None:
        s = SqliteStore(tmp_path / "a.db")
        try:
            with client_for(tokens) as client:
                account = s.get_account("acct")
                adapter = DemoAdapter(account, resolve_credentials(account), client,
                                      clock=lambda: NOW)
                barrier.wait()
                refresh_account(s, adapter, seen, f"run{i}", clock=lambda: NOW)
                results.append(adapter.credentials["access_token"])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            s.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert tokens.refreshes == 1 and tokens.reused == 0
    assert results == ["at.1"] * 8


def test_expires_at_in_credentials_becomes_the_token_expiry():
    creds, expires = DemoAdapter.prepare_credentials(
        {"access_token": "t", "expires_at": "2026-12-01T10:00:00Z"})
    assert creds == {"access_token": "t"}
    assert expires == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    with pytest.raises(UsageError, match="expires_at"):
        DemoAdapter.check_credentials({"access_token": "t", "expires_at": "soon"})
    with pytest.raises(UsageError, match="client_id"):
        DemoAdapter.check_credentials({"refresh_token": "r"})
    DemoAdapter.check_credentials({"client_id": "c"})


# -- login ---------------------------------------------------------------------------------

class Browser:
    """Plays the user's browser: reads the authorize URL, 'approves', follows the redirect."""

    def __init__(self, tokens: TokenServer, *, state: str | None = None):
        self.tokens, self.state = tokens, state
        self.redirected: str | None = None

    def approve(self, url: str) -> str:
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        assert q["code_challenge_method"] == "S256"
        self.tokens.codes["code-1"] = q["code_challenge"]
        state = self.state if self.state is not None else q["state"]
        return f"{q['redirect_uri']}?code=code-1&state={state}"

    def open(self, url: str) -> None:
        target = self.approve(url)

        def go() -> None:
            self.redirected = httpx.get(target).text

        threading.Thread(target=go, daemon=True).start()


def test_login_over_the_loopback_redirect_stores_tokens_and_prints_none(tmp_path, tokens):
    store = make_store(tmp_path)
    said: list[str] = []
    browser = Browser(tokens)
    with client_for(tokens) as client:
        done = oauth.login(store, "acct", client=client, port=0, open_browser=browser.open,
                           say=said.append, timeout=30, clock=lambda: NOW)
    account = store.get_account("acct")
    assert account.credentials == {"client_id": "cid", "access_token": "at.1",
                                   "refresh_token": "rt.1"}
    assert account.token_expires_at == NOW + timedelta(hours=2)
    assert account.state == AccountState.OK
    assert done.who == "@alice" and done.refresh_token
    assert tokens.exchanges == 1
    assert any(line.startswith("https://auth.example.com/oauth2/authorize?") for line in said)
    joined = "\n".join(said)
    assert "at.1" not in joined and "rt.1" not in joined and "code-1" not in joined
    store.close()


def test_login_with_paste_and_a_wrong_state_changes_nothing(tmp_path, tokens):
    store = make_store(tmp_path, refresh_token="old")
    before = store.get_account("acct")
    browser = Browser(tokens, state="forged")
    said: list[str] = []
    with client_for(tokens) as client, pytest.raises(UsageError, match="state"):
        oauth.login(store, "acct", client=client, paste=True, say=said.append,
                    read_line=lambda: browser.approve(said[1]), clock=lambda: NOW)
    assert store.get_account("acct") == before
    assert tokens.exchanges == 0
    store.close()


def test_login_with_paste_replaces_the_old_grant(tmp_path, tokens):
    tokens.answer_refresh = False
    store = make_store(tmp_path, access_token="old-a", refresh_token="old-r")
    store.set_account_state("acct", AccountState.NEEDS_REAUTH, "refused", now=NOW)
    browser = Browser(tokens)
    said: list[str] = []
    with client_for(tokens) as client:
        done = oauth.login(store, "acct", client=client, paste=True, say=said.append,
                           read_line=lambda: browser.approve(said[1]), clock=lambda: NOW)
    account = store.get_account("acct")
    # No refresh token in this grant: the old one (of another grant) is not kept.
    assert account.credentials == {"client_id": "cid", "access_token": "at.1"}
    assert account.state == AccountState.OK and not done.refresh_token
    store.close()


def test_login_times_out_when_no_redirect_comes(tmp_path, tokens):
    store = make_store(tmp_path)
    with client_for(tokens) as client, pytest.raises(UsageError, match="no redirect"):
        oauth.login(store, "acct", client=client, port=0, say=lambda _l: None, timeout=0.3,
                    clock=lambda: NOW)
    store.close()


def test_login_of_a_platform_without_oauth_is_refused(tmp_path, tokens):
    store = SqliteStore(tmp_path / "b.db")
    store.add_account(Account("box", "outbox", credentials={"path": str(tmp_path)}), now=NOW)
    with client_for(tokens) as client, pytest.raises(UsageError, match="do not log in"):
        oauth.login(store, "box", client=client, paste=True, say=lambda _l: None)
    store.close()
