"""Credentials at run time: environment references, and token refresh with one refresher
per account across processes.

A credential value may be {"env": "VAR"}: it is read from the environment when a run
needs it, so no secret rests in the database. Tokens a refresh returns are stored in the
database (they change; an environment variable cannot be rewritten).

Refresh protocol (promise: two overlapping runs never both spend a rotating refresh
token):
  1. take the account's refresh lock (a lease row in the store);
  2. re-read the stored credentials: if they differ from the ones that failed, another
     process refreshed meanwhile, so use those;
  3. otherwise call the platform, merge the answer over the stored credentials (a field
     the answer lacks, such as a refresh token that was not rotated, is kept), commit,
     and only then hand the new token to the adapter;
  4. release the lock. A process that finds the lock taken waits for it and re-reads.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from autopost.models import Account, ErrorKind
from autopost.platforms.base import Adapter, PlatformError, Refreshed
from autopost.store.base import Store

REFRESH_LOCK_TTL = 60.0
REFRESH_WAIT = 45.0
# Refresh proactively when the token expires within this margin.
REFRESH_AHEAD = timedelta(minutes=5)


class MissingSecret(PlatformError):
    def __init__(self, account: str, variable: str):
        super().__init__(
            ErrorKind.AUTH_REVOKED,
            f"account {account!r}: environment variable {variable} is not set")


def resolve_credentials(account: Account, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Fill {"env": "VAR"} references from the environment."""
    env = os.environ if env is None else env
    out: dict[str, Any] = {}
    for key, value in account.credentials.items():
        if isinstance(value, dict) and set(value) == {"env"}:
            var = str(value["env"])
            if var not in env:
                raise MissingSecret(account.name, var)
            out[key] = env[var]
        else:
            out[key] = value
    return out


def merge_refreshed(stored: dict[str, Any], fresh: Refreshed) -> dict[str, Any]:
    """New values win; empty or missing ones never erase what is stored."""
    merged = dict(stored)
    for key, value in fresh.credentials.items():
        if value not in (None, ""):
            merged[key] = value
    return merged


def needs_proactive_refresh(account: Account, adapter: Adapter, now: datetime) -> bool:
    ahead = adapter.refresh_ahead or REFRESH_AHEAD
    return (adapter.refreshable and account.token_expires_at is not None
            and account.token_expires_at <= now + ahead)


def refresh_account(store: Store, adapter: Adapter, seen: dict[str, Any], owner: str, *,
                    clock: Callable[[], datetime], sleep: Callable[[float], None] = time.sleep,
                    wait: float = REFRESH_WAIT) -> Account:
    """Refresh the adapter's account once, serialised across processes.

    `seen` is the stored credentials the adapter was using when its token failed.
    Returns the account as stored afterwards; the adapter already uses the new tokens.
    Raises PlatformError(AUTH_REVOKED) when the platform refuses to refresh.
    """
    name = adapter.account.name
    deadline = clock() + timedelta(seconds=wait)
    while not store.acquire_refresh_lock(name, owner, now=clock(), ttl=REFRESH_LOCK_TTL):
        if clock() >= deadline:
            raise PlatformError(ErrorKind.NETWORK,
                                f"account {name!r}: another process holds the refresh lock")
        sleep(0.1)
    try:
        current = store.get_account(name)
        if current.credentials != seen:
            adapter.use_credentials(resolve_credentials(current))
            return current
        fresh = adapter.refresh()
        merged = merge_refreshed(current.credentials, fresh)
        expires = fresh.token_expires_at or current.token_expires_at
        store.save_credentials(name, merged, expires, now=clock())
        updated = store.get_account(name)
        adapter.use_credentials(resolve_credentials(updated))
        return updated
    finally:
        store.release_refresh_lock(name, owner)
