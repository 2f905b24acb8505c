"""Token refresh: new tokens are stored before they are used, an empty answer never erases
a stored token, and one process at a time refreshes an account (without any platform
server: a rotating fake adapter and a file ledger of refresh calls)."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from autopost.accounts import refresh_account
from autopost.models import Account, ErrorKind
from autopost.platforms.base import AccountInfo, Adapter, PlatformError, Refreshed
from autopost.store.sqlite import SqliteStore

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


class Rotating(Adapter):
    """Each refresh spends the current refresh token and hands out a new pair; a spent
    refresh token is refused, as rotating OAuth servers do."""

    platform = "rotating"
    needs_http = False
    refreshable = True
    answer: dict | None = None  # a fixed answer instead of rotating
    events: list | None = None

    def publish(self, job, save_ref):  # pragma: no cover - not used here
        raise NotImplementedError

    def reconcile(self, job):  # pragma: no cover - not used here
        raise NotImplementedError

    def check(self):  # pragma: no cover - not used here
        return AccountInfo("rotating")

    def refresh(self) -> Refreshed:
        if self.answer is not None:
            return Refreshed(dict(self.answer))
        ledger = Path(self.credentials["ledger"])
        spent = ledger.read_text().split() if ledger.exists() else []
        current = self.credentials["refresh"]
        if current in spent:
            raise PlatformError(ErrorKind.AUTH_REVOKED, "refresh token already used")
        with ledger.open("a") as fh:
            fh.write(current + "\n")
        wait_for = self.credentials.get("wait_for")
        if wait_for:  # hold the refresh until every rival process is trying too
            n, folder = wait_for.split(":", 1)
            deadline = time.monotonic() + 60
            while len(list(Path(folder).glob("ready-*"))) < int(n):
                assert time.monotonic() < deadline, "rivals never started"
                time.sleep(0.01)
        n = len(spent) + 1
        return Refreshed({"access": f"access-{n}", "refresh": f"refresh-{n}"})

    def use_credentials(self, credentials):
        if self.events is not None:
            self.events.append(("use", credentials.get("access")))
        super().use_credentials(credentials)


class Recording(SqliteStore):
    def __init__(self, path, events):
        super().__init__(path)
        self.events = events

    def save_credentials(self, name, credentials, token_expires_at, *, now):
        super().save_credentials(name, credentials, token_expires_at, now=now)
        self.events.append(("saved", credentials.get("access")))


def _account(store, folder: Path, **extra) -> Account:
    creds = {"access": "access-0", "refresh": "refresh-0", "ledger": str(folder / "ledger"),
             **extra}
    return store.add_account(Account(name="r", platform="rotating", credentials=creds),
                             now=NOW)


def _adapter(account: Account, **kw) -> Rotating:
    adapter = Rotating(account, dict(account.credentials), None, clock=lambda: NOW)
    for key, value in kw.items():
        setattr(adapter, key, value)
    return adapter


def test_new_tokens_are_stored_before_the_adapter_uses_them(tmp_path):
    events: list = []
    store = Recording(tmp_path / "a.db", events)
    account = _account(store, tmp_path)
    adapter = _adapter(account, events=events)
    refresh_account(store, adapter, account.credentials, "run-1", clock=lambda: NOW)
    assert events == [("saved", "access-1"), ("use", "access-1")]
    assert adapter.credentials["access"] == "access-1"


class Crash(BaseException):
    pass


def test_a_crash_right_after_the_refresh_loses_no_rotated_token(tmp_path):
    store = SqliteStore(tmp_path / "a.db")
    account = _account(store, tmp_path)
    adapter = _adapter(account)

    def crash(credentials):
        raise Crash  # the process dies the moment it would use the new token

    adapter.use_credentials = crash
    with pytest.raises(Crash):
        refresh_account(store, adapter, account.credentials, "run-1", clock=lambda: NOW)
    after = SqliteStore(tmp_path / "a.db")  # the next process
    stored = after.get_account("r").credentials
    assert (stored["access"], stored["refresh"]) == ("access-1", "refresh-1")
    # It refreshes with the rotated token, which the platform still accepts.
    fresh = _adapter(after.get_account("r"))
    updated = refresh_account(after, fresh, stored, "run-2", clock=lambda: NOW)
    assert updated.credentials["refresh"] == "refresh-2"
    assert (tmp_path / "ledger").read_text().split() == ["refresh-0", "refresh-1"]
    store.close()
    after.close()


@pytest.mark.parametrize("answer", [
    {"access": "access-9", "refresh": ""},
    {"access": "access-9", "refresh": None},
    {"access": "access-9"},
])
def test_an_empty_value_in_a_refresh_answer_never_overwrites_a_stored_one(tmp_path, answer):
    store = SqliteStore(tmp_path / "a.db")
    account = _account(store, tmp_path)
    adapter = _adapter(account, answer=answer)
    refresh_account(store, adapter, account.credentials, "run-1", clock=lambda: NOW)
    stored = store.get_account("r").credentials
    assert stored["access"] == "access-9" and stored["refresh"] == "refresh-0"
    assert adapter.credentials["refresh"] == "refresh-0"
    store.close()


def test_a_refresh_that_finds_the_tokens_changed_uses_them_and_spends_nothing(tmp_path):
    store = SqliteStore(tmp_path / "a.db")
    account = _account(store, tmp_path)
    stale = dict(account.credentials)
    store.save_credentials("r", {**stale, "access": "access-7", "refresh": "refresh-7"}, None,
                           now=NOW)
    adapter = _adapter(account)
    refresh_account(store, adapter, stale, "run-1", clock=lambda: NOW)
    assert adapter.credentials["access"] == "access-7"
    assert not (tmp_path / "ledger").exists()  # the platform was not asked
    store.close()


def _refresh_in_process(db: str, folder: str, owner: str, n: int) -> None:
    from autopost.platforms import registry

    registry.register("rotating", Rotating)
    store = SqliteStore(db)
    account = store.get_account("r")
    adapter = Rotating(account, dict(account.credentials), None)
    Path(folder, f"ready-{owner}").write_text("")
    updated = refresh_account(store, adapter, account.credentials, owner,
                              clock=lambda: datetime.now(UTC))
    Path(folder, f"done-{owner}").write_text(
        f"{adapter.credentials['access']} {updated.credentials['refresh']}")
    store.close()


def test_one_refresher_per_account_across_processes(tmp_path):
    n = 4
    store = SqliteStore(tmp_path / "a.db")
    _account(store, tmp_path, wait_for=f"{n}:{tmp_path}")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_refresh_in_process,
                         args=(str(tmp_path / "a.db"), str(tmp_path), f"p{i}", n))
             for i in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * n
    assert (tmp_path / "ledger").read_text().split() == ["refresh-0"]  # one refresh in all
    answers = {Path(tmp_path, f"done-p{i}").read_text() for i in range(n)}
    assert answers == {"access-1 refresh-1"}
    stored = store.get_account("r").credentials
    assert (stored["access"], stored["refresh"]) == ("access-1", "refresh-1")
    assert os.stat(tmp_path / "a.db").st_size > 0
    store.close()
