"""The Adapter interface every platform implements, and what adapters return or raise.

An adapter turns one job into one post on one platform. It never touches the database
and never decides about retries: it reports what happened (Published, or PlatformError
with an ErrorKind read from status codes, headers and body codes) and the engine decides.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from autopost.errors import UsageError
from autopost.models import Account, ErrorKind, Job, Media
from autopost.platforms.options import Option

if TYPE_CHECKING:
    import httpx

    from autopost.config import Settings


@dataclass(frozen=True)
class Published:
    post_id: str
    url: str | None = None
    # Something the operator should know about a post that did go out (a thumbnail that
    # could not be set, say); recorded with the attempt.
    note: str | None = None


class PlatformError(Exception):
    """A failed platform call, classified. `message` must never contain a secret."""

    def __init__(self, kind: ErrorKind, message: str, *, http_status: int | None = None,
                 retry_at: datetime | None = None, code: str | None = None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.http_status = http_status
        self.retry_at = retry_at
        self.code = code

    def __str__(self) -> str:
        return self.message


class Verdict(StrEnum):
    """A reconcile's answer.

    POSTED: the post exists. NOT_POSTED: the platform showed that it does not exist.
    RESEND: the platform cannot be asked, but it deduplicates a resend of this job (an
    idempotency key inside its window, a fixed record key), so sending again settles the
    question without risk of a second post. CANNOT_TELL: no safe way to know."""

    POSTED = "posted"
    NOT_POSTED = "not_posted"
    RESEND = "resend"
    CANNOT_TELL = "cannot_tell"


@dataclass(frozen=True)
class Reconciled:
    verdict: Verdict
    published: Published | None = None
    message: str = ""


@dataclass(frozen=True)
class AccountInfo:
    """What `accounts check` shows: who the credentials belong to."""

    display: str
    url: str | None = None
    token_expires_at: datetime | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Refreshed:
    """New credentials from a token refresh; merged over the stored ones."""

    credentials: dict[str, Any]
    token_expires_at: datetime | None = None


SaveRef = Callable[[dict[str, Any]], None]


def utcnow() -> datetime:
    return datetime.now(UTC)


def platform_options(options: dict[str, Any], platform: str) -> dict[str, Any]:
    """A job's options for one platform: those nested under its name win over the rest."""
    merged = {k: v for k, v in options.items() if k != platform}
    nested = options.get(platform)
    if isinstance(nested, dict):
        merged.update(nested)
    return merged


# A token nothing renews is announced by `status` this long before it expires.
TOKEN_WARN_AHEAD = timedelta(days=7)


def _time_left(seconds: float) -> str:
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            return f"in {round(seconds / size)} {unit}(s)"
    return "in under a minute"


def read_media(item: Media, what: str = "cannot read") -> tuple[Path, bytes]:
    """A local media file's path and bytes, for an upload. A file that cannot be read
    raises PlatformError(INVALID): "<what> <path>: <reason>"."""
    path = Path(item.path).expanduser()
    try:
        return path, path.read_bytes()
    except OSError as exc:
        raise PlatformError(ErrorKind.INVALID, f"{what} {item.path}: {exc.strerror}") from None


_PLACEHOLDERS = {
    "changeme", "changethis", "replaceme", "yourtoken", "yourtokenhere", "tokenhere",
    "yourkey", "yourapikey", "yoursecret", "yourpassword", "yourapppassword",
    "yourwebhookurl", "token", "accesstoken", "bottoken", "secret", "password", "apikey",
    "placeholder", "todo", "tbd", "fixme", "none", "null", "undefined", "redacted",
    "example", "insertyourtoken", "inserttokenhere", "puttokenhere", "dummy", "fake",
}


def looks_like_placeholder(value: str) -> bool:
    """A secret value that is obviously not real: empty, '...', 'xxxx', '<token>',
    'YOUR_TOKEN_HERE', '${TOKEN}' and the like."""
    text = value.strip()
    if len(text) < 4:
        return True
    if (text[0], text[-1]) in (("<", ">"), ("[", "]"), ("{", "}")) or text.startswith("$"):
        return True
    letters = "".join(ch for ch in text.lower() if ch.isalnum())
    return not letters or len(set(letters)) == 1 or letters in _PLACEHOLDERS


class Adapter(ABC):
    """One platform. Subclasses set the class attributes and implement publish/reconcile."""

    platform: ClassVar[str]
    default_base_url: ClassVar[str | None] = None
    required_fields: ClassVar[tuple[str, ...]] = ()
    optional_fields: ClassVar[tuple[str, ...]] = ()
    secret_fields: ClassVar[tuple[str, ...]] = ()
    text_limit: ClassVar[int | None] = None
    max_media: ClassVar[int] = 4
    needs_http: ClassVar[bool] = True
    # False where the platform gives no way to tell after a crash (Telegram, Discord):
    # an ambiguous outcome then waits for the operator.
    can_reconcile: ClassVar[bool] = True
    # True where the platform's tokens expire and can be refreshed.
    refreshable: ClassVar[bool] = False
    # True where a post can reply to an earlier one, so threads can be posted. A thread
    # part after the first reaches publish() with job.reply set: job.reply.parent is the
    # part before it and job.reply.root the first part, each a PostRef with the
    # platform's post id (Published.post_id), URL and the job's ref as stored when it was
    # posted. The adapter sends the reply field its platform has (Mastodon
    # in_reply_to_id, Bluesky reply.root/parent, X reply.in_reply_to_tweet_id, Threads
    # reply_to_id). Platforms left False refuse threads at add time.
    supports_replies: ClassVar[bool] = False
    # True where there is no default API root (every Mastodon instance is its own).
    needs_base_url: ClassVar[bool] = False
    # True where the account logs in through the browser (`autopost accounts login`).
    logs_in: ClassVar[bool] = False
    # The options a job may carry on this platform (`add --option KEY=VALUE`).
    options: ClassVar[tuple[Option, ...]] = ()
    # How long before its expiry a token is refreshed (None: the engine's default).
    refresh_ahead: ClassVar[timedelta | None] = None
    # True where media may be given as an https:// URL (passed on to the platform).
    media_urls: ClassVar[bool] = False
    # True where the platform fetches media by URL itself, so a local file needs the
    # media host ([media] in config.toml).
    fetches_media: ClassVar[bool] = False

    def __init__(self, account: Account, credentials: dict[str, Any],
                 client: httpx.Client | None, *, clock: Callable[[], datetime] = utcnow,
                 sleep: Callable[[float], None] | None = None, policy: Any = None,
                 settings: Settings | None = None):
        if settings is None:
            from autopost.config import Settings

            settings = Settings()
        self.settings = settings
        self.account = account
        self.credentials = dict(credentials)
        self.client = client
        self.clock = clock
        # The platform's settings (config.PlatformPolicy) where the caller has them.
        self.policy = policy
        if sleep is None:
            import time

            sleep = time.sleep
        self.sleep = sleep

    @property
    def base_url(self) -> str:
        url = self.account.base_url or self.default_base_url
        if not url:
            raise UsageError(f"account {self.account.name!r} needs --base-url")
        return url.rstrip("/")

    def _client(self) -> httpx.Client:
        """The run's shared client; one of the adapter's own when it was given none."""
        if self.client is None:
            from autopost.platforms.http import make_client

            self.client = make_client()
        return self.client

    # -- checks at add time (no network) --------------------------------------------
    @classmethod
    def text_length(cls, text: str) -> int:
        """The platform's own way of counting; code points unless overridden."""
        return len(text)

    @classmethod
    def text_length_at_most(cls, text: str) -> int:
        """A cheap upper bound of text_length(text) (validate counts exactly only texts
        that may be too long); text_length itself unless a platform knows a cheaper one."""
        return cls.text_length(text)

    @classmethod
    def validate(cls, text: str, media: tuple[Media, ...], options: dict[str, Any]) -> None:
        """Raise UsageError for content the platform is known to refuse."""
        if cls.text_limit is not None and cls.text_length_at_most(text) > cls.text_limit:
            n = cls.text_length(text)
            if n > cls.text_limit:
                raise UsageError(
                    f"text is {n} characters; {cls.platform} allows {cls.text_limit}")
        if len(media) > cls.max_media:
            raise UsageError(f"{cls.platform} takes at most {cls.max_media} media files")
        if not text.strip() and not media:
            raise UsageError("empty post: give some text or --media")

    # Options a reply (a thread's part after the first) cannot carry, each with why.
    reply_refuses: ClassVar[dict[str, str]] = {}

    @classmethod
    def validate_reply(cls, options: dict[str, Any]) -> None:
        """Raise UsageError for options a reply (a thread's later part) cannot carry."""
        for key, why in cls.reply_refuses.items():
            if options.get(key):
                raise UsageError(f"{cls.platform}: {why} ({key})")

    @classmethod
    def check_credentials(cls, credentials: dict[str, Any]) -> None:
        """Raise UsageError when fields are missing or unknown (values are not shown)."""
        missing = [f for f in cls.required_fields if f not in credentials]
        if missing:
            raise UsageError(f"{cls.platform} credentials need: {', '.join(missing)}")
        known = set(cls.required_fields) | set(cls.optional_fields)
        unknown = sorted(set(credentials) - known)
        if unknown:
            raise UsageError(
                f"unknown {cls.platform} credential field(s): {', '.join(unknown)} "
                f"(expected {', '.join(sorted(known))})")

    @classmethod
    def status_warnings(cls, account: Account, policy: Any, now: datetime) -> list[str]:
        """What `autopost status` should say about this account before it breaks
        (a token about to expire, an API version about to be retired). By default: a
        token that expires within a week and nothing renews (no refresh token), and a
        long-lived token renewed ahead of its expiry (refresh_ahead) that half of that
        time has passed without renewing (runs renew it only when they post for it)."""
        expires = account.token_expires_at
        if expires is None:
            return []
        name, stamp = account.name, expires.strftime("%Y-%m-%dT%H:%M:%SZ")
        login = f"run 'autopost accounts login {name}'"
        oauth = getattr(cls, "oauth", None)
        by_refresh_token = oauth is not None and getattr(oauth, "issues_refresh_token", False)
        renews = cls.refreshable and (not by_refresh_token
                                      or bool(account.credentials.get("refresh_token")))
        if expires <= now:
            return [] if renews and cls.refresh_ahead is None else [
                f"account {name}: the {cls.platform} token expired {stamp}; {login}"]
        left = _time_left((expires - now).total_seconds())
        if not renews and expires - now <= TOKEN_WARN_AHEAD:
            return [f"account {name}: the {cls.platform} token expires {stamp} ({left}) "
                    f"and nothing renews it; {login}"]
        if renews and cls.refresh_ahead is not None and expires - now <= cls.refresh_ahead / 2:
            return [f"account {name}: the {cls.platform} token expires {stamp} ({left}) "
                    f"and has not been renewed; 'autopost accounts check {name}' renews it"]
        return []

    @classmethod
    def check_options(cls, raw: dict[str, Any], platforms: tuple[str, ...] = ()
                      ) -> dict[str, Any]:
        """This platform's checked options out of what `add`/`import` was given."""
        from autopost.config import PLATFORMS
        from autopost.platforms.options import for_platform

        return for_platform(raw, cls.platform, cls.options, (*PLATFORMS, *platforms))

    @classmethod
    def prepare_credentials(cls, credentials: dict[str, Any]
                            ) -> tuple[dict[str, Any], datetime | None]:
        """The credentials to store and the token expiry they state (no network)."""
        return credentials, None

    # -- at `accounts add` ----------------------------------------------------------
    @classmethod
    def check_secrets(cls, credentials: dict[str, Any]) -> None:
        """Refuse values that cannot work: a control character (a pasted line break), or
        a secret that is obviously a placeholder. Values are never shown."""
        for name, value in credentials.items():
            if not isinstance(value, str):
                continue
            if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
                raise UsageError(f"{cls.platform} credential field {name!r}: holds a line "
                                 "break or another control character")
            if name in cls.secret_fields and looks_like_placeholder(value):
                raise UsageError(f"{cls.platform} credential field {name!r}: looks like a "
                                 "placeholder, not a real secret (nothing was stored)")

    def setup(self) -> Refreshed | None:
        """Exchange what the operator gave for what runs need (e.g. a session).
        Returns credentials to store, or None to store them as given."""
        return None

    # -- during a run ------------------------------------------------------------
    @abstractmethod
    def publish(self, job: Job, save_ref: SaveRef) -> Published:
        """Post the job. Call save_ref(...) before any step that cannot be undone if
        reconcile needs to know about it. Raise PlatformError on failure."""

    @abstractmethod
    def reconcile(self, job: Job) -> Reconciled:
        """After an unknown outcome: was this job posted?"""

    @abstractmethod
    def check(self) -> AccountInfo:
        """A cheap call proving the credentials work."""

    def refresh(self) -> Refreshed:
        """Get new tokens. Raise PlatformError(AUTH_REVOKED) when that is impossible."""
        raise PlatformError(ErrorKind.AUTH_REVOKED,
                            f"{self.platform} tokens cannot be refreshed; re-add the account")

    def use_credentials(self, credentials: dict[str, Any]) -> None:
        self.credentials = dict(credentials)
