# ruff: noqa: F811  (fixtures imported from test_cli are parameters here)
"""What `status --notify` tells, each once: an account that needs re-auth, a token about to
expire, a job whose outcome waits for the operator (and not one a run will settle by
itself), status unhealthy; and when `status` warns about a token."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from autopost.models import Account, AccountState
from autopost.platforms.registry import adapter_class
from autopost.store.sqlite import SqliteStore
from autopost.store.timefmt import to_db
from tests.test_cli import add_job, demo, future  # noqa: F401  (demo is a fixture)
from tests.test_notify import configure, events, hook

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_status_tells_each_kind_once_and_not_what_a_run_settles(cli, tmp_path, demo):
    command, out = hook(tmp_path)
    config = configure(tmp_path, command=command)
    assert cli("--config", str(config), "run-due").code == 0
    waits = add_job(cli, "waits for the operator", "-a", demo, "--at", future(1))
    asks = add_job(cli, "a run asks again", "-a", demo, "--at", future(1))
    soon = datetime.now(UTC) + timedelta(days=3)
    with sqlite3.connect(cli.db) as c:
        c.execute("UPDATE jobs SET status = 'unknown', next_attempt_at = NULL WHERE id = ?",
                  (waits["id"],))
        c.execute("UPDATE jobs SET status = 'unknown', next_attempt_at = ? WHERE id = ?",
                  (to_db(datetime.now(UTC) + timedelta(minutes=5)), asks["id"]))
        c.execute("UPDATE accounts SET token_expires_at = ?", (to_db(soon),))
    store = SqliteStore(cli.db)
    try:
        store.add_account(Account(name="gone", platform="outbox",
                                  credentials={"path": str(tmp_path / "gone")}),
                          now=datetime.now(UTC))
        store.set_account_state("gone", AccountState.NEEDS_REAUTH, "token revoked",
                                now=datetime.now(UTC))
    finally:
        store.close()
    for _ in range(3):
        assert cli("--config", str(config), "status", "--notify").code == 1
    got = {(e["event"], e["job"], e["account"]) for e in events(out)}
    assert got == {("unknown", waits["id"], None), ("needs_reauth", None, "gone"),
                   ("expiring", None, demo)}
    assert len(events(out)) == 3
    expiring = next(e for e in events(out) if e["event"] == "expiring")
    assert "token expires" in expiring["message"] and "accounts login demo" in \
        expiring["message"]


def warnings_for(platform: str, expires: datetime | None, **credentials) -> list[str]:
    account = Account(name="acct", platform=platform, credentials=credentials,
                      token_expires_at=expires)
    cls = adapter_class(platform)
    return cls.status_warnings(account, None, NOW)


@pytest.mark.parametrize(("platform", "expires", "creds", "expect"), [
    # X with a refresh token: its two-hour tokens renew themselves.
    ("x", NOW + timedelta(hours=2), {"refresh_token": "r"}, None),
    ("x", NOW - timedelta(hours=2), {"refresh_token": "r"}, None),
    # X without one: the token dies and nothing renews it.
    ("x", NOW + timedelta(hours=2), {}, "expires 2026-12-01T11:00:00Z (in 2 hour(s)) and "
                                        "nothing renews it; run 'autopost accounts login acct'"),
    ("x", NOW - timedelta(hours=2), {}, "token expired 2026-12-01T07:00:00Z"),
    # Threads renews its 60-day token in the last week, but only when a run posts for it.
    ("threads", NOW + timedelta(days=5), {}, None),
    ("threads", NOW + timedelta(days=3), {}, "has not been renewed; 'autopost accounts check "
                                             "acct' renews it"),
    ("threads", NOW - timedelta(days=1), {}, "token expired"),
    # Bluesky sessions renew by themselves, expired access token or not.
    ("bluesky", NOW - timedelta(minutes=5), {}, None),
    ("mastodon", None, {}, None),
    ("outbox", NOW + timedelta(days=8), {}, None),
    ("outbox", NOW + timedelta(days=6), {}, "(in 6 day(s)) and nothing renews it"),
])
def test_status_warns_about_a_token_before_it_breaks(platform, expires, creds, expect):
    got = warnings_for(platform, expires, **creds)
    if expect is None:
        assert got == []
    else:
        (line,) = got
        assert line.startswith("account acct: the ") and expect in line, line



def test_an_event_names_the_host_as_runs_do(monkeypatch):
    from autopost.notify import Event

    monkeypatch.setenv("AUTOPOST_HOST", "web-3")
    assert Event("x", "failed", "m").to_dict(NOW)["host"] == "web-3"
    monkeypatch.delenv("AUTOPOST_HOST")
    import socket

    assert Event("x", "failed", "m").to_dict(NOW)["host"] == socket.gethostname()
