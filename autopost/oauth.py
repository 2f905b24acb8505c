"""OAuth 2.0 for every platform that uses it: authorization code with PKCE (S256) and a
`state` check, the loopback redirect (or a pasted URL), the code exchange, and refresh.

How a platform plugs in
-----------------------
Its adapter subclasses `OAuthAdapter` and declares one `OAuthPlatform`:

    class XAdapter(OAuthAdapter):
        platform = "x"
        oauth = OAuthPlatform(
            authorize_url="https://x.com/i/oauth2/authorize",
            token_url="https://api.x.com/2/oauth2/token",
            scopes=("tweet.read", "tweet.write", "users.read", "offline.access"),
            rotating_refresh=True)

and calls `self.bearer()` for the Authorization header and `self.url(...)` for every URL
it builds (so an account's --base-url reaches the API, upload, authorize and token
endpoints alike, keeping their paths). A 401 that means "expired" is raised as
PlatformError(AUTH_EXPIRED); the run then refreshes through `OAuthAdapter.refresh`.
Quirks are fields of OAuthPlatform: a confidential client (client_secret required),
how the client authenticates at the token endpoint (HTTP Basic or form fields), refresh
tokens that rotate (single use) or that are never issued, extra authorize parameters
(e.g. Google's access_type=offline), scope separators, a default token lifetime.

Credentials: client_id (and client_secret for confidential clients) from `accounts add`;
access_token, refresh_token and expires_at (ISO 8601) either written by `accounts login`
or given directly by a script. expires_at moves to the account's token_expires_at.

What is ours, not the library's (authlib builds the URLs and parses the redirect):
- tokens are stored before they are used (accounts.refresh_account commits the merged
  pair, then hands the adapter the new access token);
- an empty or missing refresh_token in an answer never replaces the stored one;
- one process refreshes an account at a time (the store's refresh lock, then a re-read:
  if another process rotated the pair meanwhile, its pair is used and no second refresh
  is sent, so a single-use refresh token is spent once);
- a refused refresh (invalid_grant and friends) is AUTH_REVOKED: the account becomes
  needs_reauth and the message names `autopost accounts login NAME`;
- a refresh whose answer was lost may have spent a rotating token; the next refresh
  then fails with invalid_grant and says so, rather than guessing.
"""

from __future__ import annotations

import base64
import hmac
import http.server
import queue
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from autopost.errors import UsageError
from autopost.models import ErrorKind, Job
from autopost.platforms.base import Adapter, PlatformError, Refreshed

if TYPE_CHECKING:
    import httpx

    from autopost.store.base import Store

DEFAULT_PORT = 8765
CALLBACK_PATH = "/callback"
LOGIN_TIMEOUT = 300.0
TOKEN_FIELDS = ("access_token", "refresh_token", "expires_at")
# Error codes of RFC 6749 §5.2 that mean the grant or the client is no good: only a new
# login helps.
REFUSED = frozenset({"invalid_grant", "invalid_client", "unauthorized_client",
                     "invalid_request", "invalid_scope", "unsupported_grant_type"})


@dataclass(frozen=True)
class OAuthPlatform:
    """One platform's OAuth 2.0 facts."""

    authorize_url: str
    token_url: str
    scopes: tuple[str, ...]
    scope_separator: str = " "
    pkce: bool = True
    # "public": client_id only; "confidential": client_secret required; "either".
    client: Literal["public", "confidential", "either"] = "either"
    # How a client with a secret authenticates at the token endpoint.
    token_auth: Literal["basic", "body"] = "basic"
    # A refresh answer carries a new refresh token and the old one is spent.
    rotating_refresh: bool = False
    # False where the platform never issues refresh tokens (log in again on expiry).
    issues_refresh_token: bool = True
    # Seconds an access token lives when the answer has no expires_in.
    default_lifetime: int | None = None
    extra_authorize: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Authorization:
    """One login attempt: the URL to open and what the redirect must match."""

    url: str
    state: str
    verifier: str
    redirect_uri: str


def rebase(url: str, base_url: str | None) -> str:
    """`url` sent to `base_url`'s origin (and path prefix), keeping its own path and query."""
    if not base_url:
        return url
    base = urllib.parse.urlsplit(base_url.rstrip("/"))
    own = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((base.scheme, base.netloc, base.path + own.path,
                                    own.query, ""))


def redirect_uri(port: int = DEFAULT_PORT) -> str:
    return f"http://127.0.0.1:{port}{CALLBACK_PATH}"


def new_authorization(spec: OAuthPlatform, client_id: str, redirect: str, *,
                      base_url: str | None = None) -> Authorization:
    from authlib.common.security import generate_token
    from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
    from authlib.oauth2.rfc7636 import create_s256_code_challenge

    state = generate_token(32)
    verifier = generate_token(64)  # 43..128 characters of the unreserved set (RFC 7636)
    extra: dict[str, str] = dict(spec.extra_authorize)
    if spec.pkce:
        extra.update(code_challenge=create_s256_code_challenge(verifier),
                     code_challenge_method="S256")
    url = prepare_grant_uri(rebase(spec.authorize_url, base_url), client_id, "code",
                            redirect_uri=redirect, scope=spec.scope_separator.join(spec.scopes),
                            state=state, **extra)
    return Authorization(url, state, verifier, redirect)


def code_from_redirect(url: str, auth: Authorization) -> str:
    """The authorization code from the URL the platform redirected to; UsageError when
    the login was refused, the URL is not the redirect, or its state does not match."""
    parts = urllib.parse.urlsplit(url.strip())
    params = dict(urllib.parse.parse_qsl(parts.query))
    if not parts.query:
        raise UsageError("that is not the redirected URL (it has no ?code=...&state=...)")
    given = params.get("state", "")
    if not hmac.compare_digest(given.encode(), auth.state.encode()):
        raise UsageError("login refused: the redirect's state does not match this login "
                         "(start again with 'autopost accounts login')")
    if "error" in params:
        detail = params.get("error_description") or params["error"]
        raise UsageError(f"the platform did not authorise autopost: {detail[:200]}")
    code = params.get("code")
    if not code:
        raise UsageError("the redirect carries no authorization code")
    return code


# -- token endpoint -------------------------------------------------------------------

def _client_auth(spec: OAuthPlatform, creds: dict[str, Any]
                 ) -> tuple[dict[str, str], dict[str, str]]:
    """(headers, form fields) that identify the client at the token endpoint."""
    client_id = str(creds.get("client_id") or "")
    secret = creds.get("client_secret")
    if secret and spec.token_auth == "basic":
        raw = f"{urllib.parse.quote(client_id, safe='')}:{urllib.parse.quote(str(secret), safe='')}"
        return {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}, {}
    form = {"client_id": client_id}
    if secret:
        form["client_secret"] = str(secret)
    return {}, form


def _token_request(client: httpx.Client, spec: OAuthPlatform, creds: dict[str, Any],
                   form: dict[str, str], *, base_url: str | None, now: datetime,
                   what: str) -> Refreshed:
    from autopost.platforms import http

    headers, auth_form = _client_auth(spec, creds)
    headers["Accept"] = "application/json"
    request = client.build_request("POST", rebase(spec.token_url, base_url),
                                   data={**form, **auth_form}, headers=headers)
    hidden = [v for v in (*form.values(), *auth_form.values(), creds.get("client_secret"))
              if v and v != creds.get("client_id")]
    response = http.send(client, request, is_create=False, redact=hidden)
    body = http.json_body(response)
    if response.status_code == 429:
        raise PlatformError(ErrorKind.RATE_LIMITED, f"{what}: rate limited",
                            http_status=429, retry_at=http.retry_at(response, now))
    if response.status_code >= 500:
        raise PlatformError(ErrorKind.SERVER, f"{what}: HTTP {response.status_code}",
                            http_status=response.status_code)
    error = body.get("error") if isinstance(body, dict) else None
    if response.status_code >= 400 or error:
        code = error if isinstance(error, str) else f"HTTP {response.status_code}"
        kind = ErrorKind.AUTH_REVOKED if (code in REFUSED or response.status_code in (400, 401)
                                           ) else ErrorKind.SERVER
        raise PlatformError(kind, http.redacted(f"{what} refused ({code})", hidden),
                            http_status=response.status_code, code=code)
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str) \
            or not body["access_token"]:
        raise PlatformError(ErrorKind.SERVER, f"{what}: the answer has no access_token",
                            http_status=response.status_code)
    fresh: dict[str, Any] = {"access_token": body["access_token"]}
    if isinstance(body.get("refresh_token"), str) and body["refresh_token"]:
        fresh["refresh_token"] = body["refresh_token"]
    lifetime = body.get("expires_in", spec.default_lifetime)
    expires = None
    try:
        if lifetime is not None and float(lifetime) > 0:
            expires = now + timedelta(seconds=float(lifetime))
    except (TypeError, ValueError):
        expires = None
    if isinstance(body.get("scope"), str):
        fresh["scope"] = body["scope"]
    return Refreshed(fresh, expires)


def exchange_code(client: httpx.Client, spec: OAuthPlatform, creds: dict[str, Any],
                  code: str, auth: Authorization, *, base_url: str | None,
                  now: datetime) -> Refreshed:
    form = {"grant_type": "authorization_code", "code": code,
            "redirect_uri": auth.redirect_uri}
    if spec.pkce:
        form["code_verifier"] = auth.verifier
    return _token_request(client, spec, creds, form, base_url=base_url, now=now,
                          what="code exchange")


def refresh_tokens(client: httpx.Client, spec: OAuthPlatform, creds: dict[str, Any], *,
                   account: str, base_url: str | None, now: datetime) -> Refreshed:
    token = creds.get("refresh_token")
    login = f"run 'autopost accounts login {account}'"
    if not token:
        raise PlatformError(ErrorKind.AUTH_REVOKED,
                            f"the access token expired and there is no refresh token; {login}")
    try:
        return _token_request(client, spec, creds, {"grant_type": "refresh_token",
                                                    "refresh_token": str(token)},
                              base_url=base_url, now=now, what="token refresh")
    except PlatformError as exc:
        if exc.kind == ErrorKind.AUTH_REVOKED:
            spent = (" (the grant was revoked, or its single-use refresh token was "
                     "already spent)" if spec.rotating_refresh else "")
            raise PlatformError(ErrorKind.AUTH_REVOKED, f"{exc.message}{spent}; {login}",
                                http_status=exc.http_status, code=exc.code) from None
        raise


def parse_expiry(value: Any) -> datetime:
    """expires_at as given in credentials: ISO 8601 (a naive time is UTC)."""
    try:
        stamp = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError("credential field 'expires_at': expected an ISO 8601 time, e.g. "
                         "2026-12-01T09:00:00Z") from None
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


# -- the adapter side -------------------------------------------------------------------

class OAuthAdapter(Adapter):
    """An adapter whose account logs in with OAuth 2.0 (see the module docstring)."""

    oauth: ClassVar[OAuthPlatform]
    required_fields: ClassVar[tuple[str, ...]] = ()
    optional_fields: ClassVar[tuple[str, ...]] = ("client_id", "client_secret", *TOKEN_FIELDS,
                                                  "scope")
    secret_fields: ClassVar[tuple[str, ...]] = ("client_secret", "access_token",
                                                "refresh_token")
    refreshable: ClassVar[bool] = True
    logs_in: ClassVar[bool] = True

    @classmethod
    def check_credentials(cls, credentials: dict[str, Any]) -> None:
        super().check_credentials(credentials)
        if "client_id" not in credentials and "access_token" not in credentials:
            raise UsageError(f"{cls.platform} credentials need client_id (then 'autopost "
                             "accounts login NAME'), or access_token")
        if cls.oauth.client == "confidential" and "client_id" in credentials \
                and "client_secret" not in credentials:
            raise UsageError(f"{cls.platform} credentials need client_secret with client_id")
        if "expires_at" in credentials:
            parse_expiry(credentials["expires_at"])

    @classmethod
    def prepare_credentials(cls, credentials: dict[str, Any]
                            ) -> tuple[dict[str, Any], datetime | None]:
        creds = dict(credentials)
        raw = creds.pop("expires_at", None)
        return creds, parse_expiry(raw) if raw is not None else None

    def url(self, url: str) -> str:
        """A platform URL (absolute, or a path on default_base_url) through --base-url."""
        if url.startswith("/"):
            url = (self.default_base_url or "").rstrip("/") + url
        return rebase(url, self.account.base_url)

    @property
    def base_url(self) -> str:
        return self.url(self.default_base_url or "").rstrip("/")

    def bearer(self) -> dict[str, str]:
        token = self.credentials.get("access_token")
        if not token:
            raise PlatformError(ErrorKind.AUTH_REVOKED,
                                f"account {self.account.name!r} is not logged in; run "
                                f"'autopost accounts login {self.account.name}'")
        return {"Authorization": f"Bearer {token}"}

    def secrets(self) -> list[str]:
        return [str(self.credentials[f]) for f in self.secret_fields
                if self.credentials.get(f)]

    def refresh(self) -> Refreshed:
        if self.client is None:  # pragma: no cover - OAuth adapters always get a client
            raise PlatformError(ErrorKind.NETWORK, "no HTTP client")
        if not self.oauth.issues_refresh_token:
            raise PlatformError(ErrorKind.AUTH_REVOKED,
                                f"{self.platform} tokens cannot be refreshed; run "
                                f"'autopost accounts login {self.account.name}'")
        return refresh_tokens(self.client, self.oauth, self.credentials,
                              account=self.account.name, base_url=self.account.base_url,
                              now=self.clock())

    @classmethod
    def login_spec(cls, options: dict[str, str]) -> OAuthPlatform:
        """The OAuth facts for one login; a platform may ask more scopes for an option."""
        if options:
            raise UsageError(f"{cls.platform} login takes no "
                             f"{', '.join('--' + k for k in sorted(options))}")
        return cls.oauth

    def after_login(self, options: dict[str, str]) -> dict[str, Any] | Refreshed:
        """Credentials to store beside new tokens (e.g. whom posts go out as); {} here.
        Called with the new tokens before anything is stored; raise to change nothing.
        A Refreshed replaces the tokens and their expiry too (a platform that trades the
        login's token for a longer-lived one)."""
        return {}

    def whoami(self) -> str:
        """Who the token belongs to, for `accounts login` (override: one cheap call)."""
        return self.check().display

    def reconcile(self, job: Job):  # pragma: no cover - every subclass implements it
        raise NotImplementedError  # abstract


# -- the loopback redirect --------------------------------------------------------------

class LoopbackReceiver:
    """A one-shot HTTP server on 127.0.0.1 that waits for the platform's redirect."""

    def __init__(self, port: int = DEFAULT_PORT):
        self._urls: queue.Queue[str] = queue.Queue()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                path = urllib.parse.urlsplit(self.path).path
                if path != CALLBACK_PATH:
                    self.send_error(404)
                    return
                body = (b"<!doctype html><title>autopost</title><p>Done. You can close "
                        b"this window and go back to the terminal.</p>")
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                receiver._urls.put(f"http://127.0.0.1:{receiver.port}{self.path}")

            def log_message(self, *args: Any) -> None:  # the query holds the code
                pass

        try:
            self.server = http.server.HTTPServer(("127.0.0.1", port), Handler)
        except OSError as exc:
            raise UsageError(f"--port {port}: cannot listen on 127.0.0.1 ({exc.strerror}); "
                             "choose another with --port (and register its redirect URI)"
                             ) from None
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                        name="oauth-loopback")
        self._thread.start()

    @property
    def redirect_uri(self) -> str:
        return redirect_uri(self.port)

    def wait(self, timeout: float) -> str | None:
        """The redirected URL, or None after `timeout` seconds. Waits in short steps so
        that Ctrl-C (KeyboardInterrupt in the main thread) is seen at once."""
        waited = 0.0
        while waited < timeout:
            step = min(0.2, timeout - waited)
            try:
                return self._urls.get(timeout=step)
            except queue.Empty:
                waited += step
        return None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()



# -- `autopost accounts login` ------------------------------------------------------------

@dataclass(frozen=True)
class LoggedIn:
    who: str | None
    token_expires_at: datetime | None
    refresh_token: bool
    problem: str | None = None


def login(store: Store, name: str, *, client: httpx.Client, port: int = DEFAULT_PORT,
          paste: bool = False, open_browser: Callable[[str], Any] | None = None,
          read_line: Callable[[], str] = input, say: Callable[[str], None] = print,
          timeout: float = LOGIN_TIMEOUT, clock: Callable[[], datetime] | None = None,
          owner: str = "login", options: dict[str, str] | None = None) -> LoggedIn:
    """Log account `name` in: open the authorize URL, take the redirect (loopback or
    pasted), exchange the code once, store the tokens (under the refresh lock, so a run
    refreshing at the same moment cannot overwrite them), and ask who is logged in.
    `options` are the platform's own login options (LinkedIn's organization)."""
    from autopost.accounts import MissingSecret, resolve_credentials
    from autopost.platforms.registry import adapter_class

    clock = clock or (lambda: datetime.now(UTC))
    account = store.get_account(name)
    cls = adapter_class(account.platform)
    if not (isinstance(cls, type) and issubclass(cls, OAuthAdapter)):
        raise UsageError(f"{account.platform} accounts do not log in with OAuth; give their "
                         "credentials with 'autopost accounts add NAME --update'")
    try:
        creds = resolve_credentials(account)
    except MissingSecret as exc:
        raise UsageError(exc.message) from None
    if not creds.get("client_id"):
        raise UsageError(f"account {name!r} has no client_id: add it first with 'autopost "
                         f"accounts add {name} --platform {account.platform} --update "
                         "--credentials -' and {\"client_id\": ...}")
    options = dict(options or {})
    spec = cls.login_spec(options)
    receiver = None if paste else LoopbackReceiver(port)
    try:
        redirect = receiver.redirect_uri if receiver else redirect_uri(port)
        auth = new_authorization(spec, str(creds["client_id"]), redirect,
                                 base_url=account.base_url)
        say("Open this URL in a browser and allow autopost:")
        say(auth.url)
        if paste:
            say(f"Then paste the URL the browser was sent to (it starts with {redirect}):")
            got = read_line().strip()
            if not got:
                raise UsageError("no URL pasted; nothing changed")
        else:
            if open_browser is not None:
                open_browser(auth.url)
            got = receiver.wait(timeout)  # type: ignore[union-attr]
            if got is None:
                raise UsageError(f"no redirect to {redirect} within {int(timeout)} s; "
                                 "nothing changed (try --paste on a machine without a "
                                 "browser)")
    finally:
        if receiver is not None:
            receiver.close()
    code = code_from_redirect(got, auth)
    try:
        fresh = exchange_code(client, spec, creds, code, auth, base_url=account.base_url,
                              now=clock())
    except PlatformError as exc:
        if exc.kind == ErrorKind.AUTH_REVOKED:
            raise UsageError(f"{account.platform} refused the login: {exc.message}; "
                             "nothing changed") from None
        from autopost.errors import EnvironmentTrouble

        raise EnvironmentTrouble(f"login to {account.platform} failed: {exc.message}; "
                                 "nothing changed") from None
    # What the platform keeps beside the tokens (who posts), asked before anything is stored.
    probe = cls(account, {**creds, **fresh.credentials}, client, clock=clock)
    try:
        extra = probe.after_login(options)
    except PlatformError as exc:
        raise UsageError(f"logged in to {account.platform}, but {exc.message}; nothing "
                         "changed") from None
    if isinstance(extra, Refreshed):  # the platform traded the tokens for others (Meta)
        fresh = Refreshed({**fresh.credentials, **extra.credentials}, extra.token_expires_at)
    elif extra:
        fresh = Refreshed({**fresh.credentials, **extra}, fresh.token_expires_at)
    _store_login(store, name, fresh, owner=owner, clock=clock)
    stored = store.get_account(name)
    adapter = cls(stored, resolve_credentials(stored), client, clock=clock)
    try:
        who, problem = adapter.whoami(), None
    except PlatformError as exc:
        who, problem = None, exc.message
    # Renewable: a refresh token came, or the platform renews its tokens without one.
    renewable = "refresh_token" in fresh.credentials or (
        cls.refreshable and not cls.oauth.issues_refresh_token)
    return LoggedIn(who, fresh.token_expires_at, renewable, problem)


def _store_login(store: Store, name: str, fresh: Refreshed, *, owner: str,
                 clock: Callable[[], datetime], wait: float = 45.0) -> None:
    import time

    from autopost.models import AccountState

    deadline = time.monotonic() + wait
    while not store.acquire_refresh_lock(name, owner, now=clock(), ttl=60.0):
        if time.monotonic() > deadline:
            from autopost.errors import EnvironmentTrouble

            raise EnvironmentTrouble(f"account {name!r}: another process holds its refresh "
                                     "lock; try again")
        time.sleep(0.1)
    try:
        current = store.get_account(name)
        # A new grant replaces the old one whole: no refresh token from it is kept.
        kept = {k: v for k, v in current.credentials.items()
                if k not in (*TOKEN_FIELDS, "scope")}
        store.save_credentials(name, {**kept, **fresh.credentials}, fresh.token_expires_at,
                               now=clock())
        store.set_account_state(name, AccountState.OK, None, now=clock())
    finally:
        store.release_refresh_lock(name, owner)
