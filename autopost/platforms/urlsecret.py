"""For platforms whose credential is part of the request URL: Telegram (the bot token is
in the path, /bot<TOKEN>/sendMessage) and Discord webhooks (/webhooks/<id>/<token>).

httpx writes the URL into its INFO log line for every request, into the repr of its
Request objects, and into the text of some exceptions. Everything here makes sure none
of that leaves an adapter:

- `scrub()` removes the given secrets, and anything shaped like a bot token or a webhook
  token, from a text;
- `request()` builds and sends a request like `http.send()`, but every failure comes out
  as a PlatformError whose message is scrubbed and which carries no chained httpx
  exception (its `__context__` would hold the Request, and so the URL);
- `install_log_filter()` scrubs httpx's own log records.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import httpx

from autopost.models import ErrorKind
from autopost.platforms import http
from autopost.platforms.base import PlatformError

REDACTED = "[redacted]"

# Shapes of URL-borne secrets, for texts where the exact value is not at hand (log lines).
_PATTERNS = (
    # Telegram: /bot123456789:AA...  (the numeric part is the bot's public id; the rest is
    # the secret, but the whole token is removed).
    (re.compile(r"/bot\d+:[A-Za-z0-9_-]+"), "/bot" + REDACTED),
    # Discord: /webhooks/<id>/<token>  (the id alone cannot post; the token can).
    (re.compile(r"(/webhooks/\d+/)[A-Za-z0-9._~-]+"), r"\g<1>" + REDACTED),
)


def secret_variants(secrets: Iterable[Any]) -> list[str]:
    """Each secret as given and percent-encoded (a URL may carry either form)."""
    out: list[str] = []
    for secret in secrets:
        if not secret:
            continue
        value = str(secret)
        for variant in (value, quote(value, safe="")):
            if variant not in out:
                out.append(variant)
    # Longest first, so a secret that contains another is removed whole.
    return sorted(out, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[Any] = ()) -> str:
    text = http.redacted(str(text), secret_variants(secrets))
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def request(client: httpx.Client, method: str, url: str, *, is_create: bool,
            secrets: Iterable[Any], **kwargs: Any) -> httpx.Response:
    """Build and send one request. Transport failures are classified as in http.send():
    nothing sent -> network; sent but no answer -> ambiguous for a create."""
    secrets = list(secrets)
    failure: PlatformError | None = None
    try:
        req = client.build_request(method, url, **kwargs)
        return http.send(client, req, is_create=is_create, redact=secret_variants(secrets))
    except PlatformError as exc:
        failure = PlatformError(exc.kind, scrub(exc.message, secrets),
                                http_status=exc.http_status, retry_at=exc.retry_at,
                                code=exc.code)
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        # A malformed base URL or credential: never sent, and retrying will not help.
        failure = PlatformError(ErrorKind.INVALID, scrub(f"bad request URL: {exc}", secrets))
    except (httpx.ProxyError, httpx.LocalProtocolError) as exc:
        failure = PlatformError(ErrorKind.NETWORK, scrub(f"cannot send: {exc}", secrets))
    except httpx.HTTPError as exc:
        # Anything else went wrong during or after sending (decoding the answer, ...).
        kind = ErrorKind.AMBIGUOUS if is_create else ErrorKind.NETWORK
        failure = PlatformError(kind, scrub(
            f"request failed after it was sent: {type(exc).__name__}: {exc}", secrets))
    # Raised here, outside the handlers, so no httpx exception is chained to it.
    raise failure


class _LogScrubber(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to fix
            return True
        clean = scrub(message)
        if clean != message:
            record.msg = clean
            record.args = None
        return True


def install_log_filter() -> None:
    """Scrub URL-borne secrets from httpx's request log lines (idempotent). httpcore's
    debug lines name only the host and the method, never the path."""
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _LogScrubber) for f in logger.filters):
        logger.addFilter(_LogScrubber())
