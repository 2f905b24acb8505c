"""Secrets out of anything autopost stores or prints that a platform wrote.

A platform's error may quote what it was sent (a token in an echoed header, a password
in a login error). Before such a message becomes an attempt row, a job's last error, an
account's state reason or a run-due line, every secret of the account is replaced. The
adapters redact what they know as well; this is the last net, for every platform.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

REDACTED = "[redacted]"
# Credential fields whose values are secret even where an adapter does not say so.
_SECRET_NAME = re.compile(r"(?i)token|secret|passw|jwt|key|auth|cookie|session|webhook")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")


def account_secrets(credentials: Mapping[str, Any], secret_fields: Iterable[str] = (),
                    base_url: str | None = None) -> list[str]:
    """The values to hide for one account, longest first, also percent-encoded."""
    fields = set(secret_fields)
    values: list[str] = []
    for name, value in credentials.items():
        if isinstance(value, str) and (name in fields or _SECRET_NAME.search(name)):
            values.append(value)
    if base_url:
        try:
            password = urlsplit(base_url).password
        except ValueError:
            password = None
        if password:
            values.append(password)
    out: set[str] = set()
    for value in values:
        if len(value) >= 4:
            out.add(value)
            out.add(quote(value, safe=""))
    return sorted(out, key=len, reverse=True)


def scrub(text: str | None, secrets: Iterable[str]) -> str | None:
    if text is None:
        return None
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return _BEARER.sub(r"\1" + REDACTED, text)


def safe_url(url: str | None) -> str | None:
    """A URL for display: a user name and password in it become [redacted]."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        if parts.username is None and parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host += f":{parts.port}"
    except ValueError:
        return REDACTED
    return parts._replace(netloc=f"{REDACTED}@{host}").geturl()
