"""X end to end through the real CLI (child processes) against the fake X server: the
login flow with the test playing the browser, accounts check, add + run-due, overlapping
runs with an expired token (each refresh token spent once), and the Mastodon crash and
overlap tests repeated for X."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from autopost.models import Account, AccountState, JobFilter, JobStatus, NewJob
from autopost.store.sqlite import SqliteStore
from tests.crashkit import engine_files, finish
from tests.fakes.x_server import FakeX

LEASE = 2.0


@pytest.fixture
def fake():
    with FakeX() as server:
        yield server
        assert server.violations == [], server.violations
        assert server.response_violations == [], server.response_violations


def _env(config: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPOST_")}
    if config is not None:
        env["AUTOPOST_CONFIG"] = str(config)
    return env


def _cli(db: Path, *args: str, config: Path | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "autopost", "--db", str(db), *args],
                            env=_env(config), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def _run(db: Path, *args: str, input: str | None = None, config: Path | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autopost", "--db", str(db), *args],
                          env=_env(config), input=input, capture_output=True, text=True,
                          timeout=timeout)


def _add_account(db: Path, fake: FakeX, name: str = "xa", creds: dict | None = None):
    done = _run(db, "accounts", "add", name, "--platform", "x", "--base-url", fake.base_url,
                "--credentials", "-", input=json.dumps(creds or {"client_id": "cid"}))
    assert done.returncode == 0, done.stderr
    return done


def _url_line(proc: subprocess.Popen) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("http"):
            return line.strip()
    raise AssertionError("no URL printed")


def _approve(url: str, *, state: str | None = None) -> str:
    """The browser: open the authorize page (the fake approves at once), return where it
    redirects, optionally with another state."""
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["scope"].split() == ["tweet.read", "tweet.write", "users.read",
                                      "media.write", "offline.access"]
    answer = httpx.get(url, follow_redirects=False)
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    if state is not None:
        parts = urllib.parse.urlsplit(location)
        q = dict(urllib.parse.parse_qsl(parts.query))
        q["state"] = state
        location = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(q)))
    return location


# -- login -----------------------------------------------------------------------------------

def test_login_through_the_loopback_redirect(tmp_path, fake):
    db = tmp_path / "a.db"
    added = _add_account(db, fake)
    assert "next: autopost accounts login xa" in added.stdout
    proc = _cli(db, "accounts", "login", "xa", "--no-browser", "--port", "0", "--timeout",
                "60")
    url = _url_line(proc)
    assert url.startswith(fake.base_url + "/i/oauth2/authorize?")
    location = _approve(url)
    assert location.startswith("http://127.0.0.1:")
    page = httpx.get(location)  # the browser follows the redirect to autopost
    assert page.status_code == 200 and "close this window" in page.text
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "logged in xa (x) as @alice (Alice)" in out and "token expires" in out
    store = SqliteStore(db)
    account = store.get_account("xa")
    store.close()
    access, refresh = account.credentials["access_token"], account.credentials["refresh_token"]
    assert access in fake.access and account.token_expires_at is not None
    for text in (out, err):
        assert access not in text and refresh not in text
    code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))["code"]
    assert code not in out and code not in err
    assert fake.exchanges == 1
    # The code works once: replaying it is refused.
    replay = httpx.post(fake.base_url + "/2/oauth2/token", data={
        "grant_type": "authorization_code", "code": code, "client_id": "cid",
        "redirect_uri": "x", "code_verifier": "y"})
    assert replay.status_code == 400 and fake.code_reuse == 1 and fake.exchanges == 1


def test_login_with_a_forged_state_is_refused_and_stores_nothing(tmp_path, fake):
    db = tmp_path / "a.db"
    _add_account(db, fake)
    before = SqliteStore(db)
    creds = before.get_account("xa").credentials
    before.close()
    proc = _cli(db, "accounts", "login", "xa", "--no-browser", "--port", "0")
    location = _approve(_url_line(proc), state="forged")
    httpx.get(location)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.strip().splitlines() == [err.strip()] and "state does not match" in err
    assert fake.exchanges == 0
    store = SqliteStore(db)
    assert store.get_account("xa").credentials == creds
    store.close()


def test_login_with_paste_for_a_confidential_client(tmp_path, fake):
    fake.clients["conf"] = "s3cret-value"
    db = tmp_path / "a.db"
    _add_account(db, fake, creds={"client_id": "conf", "client_secret": "s3cret-value"})
    proc = _cli(db, "accounts", "login", "xa", "--paste", stdin=subprocess.PIPE)
    location = _approve(_url_line(proc))
    out, err = proc.communicate(location + "\n", timeout=60)
    assert proc.returncode == 0, err
    assert "logged in xa (x) as @alice" in out and fake.exchanges == 1
    assert "s3cret-value" not in out + err


def test_accounts_check_shows_the_user_and_refreshes_an_expired_token(tmp_path, fake):
    db = tmp_path / "a.db"
    tokens = fake.issue(lifetime=0)
    _add_account(db, fake, creds={"client_id": "cid", "access_token": tokens["access_token"],
                                  "refresh_token": tokens["refresh_token"],
                                  "expires_at": "2026-01-01T00:00:00Z"})
    done = _run(db, "accounts", "check", "xa")
    assert done.returncode == 0, done.stderr
    assert "xa (x): ok, @alice (Alice)" in done.stdout
    assert "https://x.com/alice" in done.stdout and "token expires" in done.stdout
    assert fake.refreshes == 1
    expires = done.stdout.split("token expires ")[1].split()[0]
    assert datetime.fromisoformat(expires.replace("Z", "+00:00")) > datetime.now(UTC)


def test_refused_refresh_makes_the_account_need_login(tmp_path, fake):
    db = tmp_path / "a.db"
    tokens = fake.issue(lifetime=0)
    fake.refresh.clear()  # the refresh token was revoked
    _add_account(db, fake, creds={"client_id": "cid", "access_token": tokens["access_token"],
                                  "refresh_token": tokens["refresh_token"]})
    done = _run(db, "add", "waits for login", "-a", "xa", "--at", "now")
    assert done.returncode == 0, done.stderr
    done = _run(db, "run-due")
    assert done.returncode == 1
    assert "autopost accounts login xa" in done.stdout + done.stderr
    status = _run(db, "status")
    assert status.returncode == 1 and "account xa needs re-auth" in status.stdout
    assert fake.timeline() == []


# -- publishing --------------------------------------------------------------------------------

def test_add_and_run_due_post_through_the_real_cli(tmp_path, fake):
    db = tmp_path / "a.db"
    tokens = fake.issue()
    _add_account(db, fake, creds={"client_id": "cid", **{k: tokens[k] for k in (
        "access_token", "refresh_token")}})
    listed = _run(db, "platforms")
    assert "x (not built)" not in listed.stdout
    assert "reply_settings" in _run(db, "platforms", "x").stdout
    too_long = _run(db, "add", "日" * 141, "-a", "xa", "--at", "now")
    assert too_long.returncode == 2 and "282 characters; x allows 280" in too_long.stderr
    bad = _run(db, "add", "hi", "-a", "xa", "--at", "now", "--option", "reply_settings=all")
    assert bad.returncode == 2 and "option 'reply_settings'" in bad.stderr
    done = _run(db, "add", "Hello from autopost https://example.com", "-a", "xa", "--at",
                "now", "--option", "reply_settings=following", "--json")
    assert done.returncode == 0, done.stderr
    [job] = json.loads(done.stdout)
    done = _run(db, "run-due")
    assert done.returncode == 0, done.stdout + done.stderr
    [post] = fake.timeline()
    assert post.extra == {"reply_settings": "following"}
    shown = json.loads(_run(db, "show", job["id"], "--json").stdout)
    assert shown["status"] == "posted" and shown["platform_post_id"] == post.id
    assert shown["platform_url"] == f"https://x.com/i/web/status/{post.id}"


def test_a_thread_through_the_real_cli_replies_part_by_part(tmp_path, fake):
    db = tmp_path / "a.db"
    tokens = fake.issue()
    _add_account(db, fake, creds={"client_id": "cid", **{k: tokens[k] for k in (
        "access_token", "refresh_token")}})
    quoted = _run(db, "add", "--thread", "1/ q", "2/ q", "-a", "xa", "--at", "now",
                  "--option", "quote_tweet_id=123")
    assert quoted.returncode == 2 and "part 2" in quoted.stderr and "cannot quote" in \
        quoted.stderr
    done = _run(db, "add", "--thread", "1/ the news", "2/ the details", "3/ the end",
                "-a", "xa", "--at", "now", "--json")
    assert done.returncode == 0, done.stderr
    ids = [j["id"] for j in json.loads(done.stdout)]
    done = _run(db, "run-due")
    assert done.returncode == 0, done.stdout + done.stderr
    posts = fake.timeline()
    assert [p.text for p in posts] == ["1/ the news", "2/ the details", "3/ the end"]
    assert posts[0].extra == {}
    assert [p.extra["reply"]["in_reply_to_tweet_id"] for p in posts[1:]] == \
        [posts[0].id, posts[1].id]
    shown = json.loads(_run(db, "show", ids[2], "--json").stdout)
    assert shown["status"] == "posted" and shown["platform_post_id"] == posts[2].id


def _setup(tmp_path: Path, fake: FakeX, *, jobs: int, accounts: int, expired: bool = False,
           expiry_known: bool = True):
    db, config, store = engine_files(tmp_path, "x", LEASE)
    now = datetime.now(UTC)
    new = []
    for a in range(accounts):
        user = fake.approve_as if a == 0 else fake.add_user(f"user{a}", f"User {a}")
        tokens = fake.issue(user, lifetime=0 if expired else 7200)
        expires = (now - timedelta(minutes=1) if expired else now + timedelta(hours=2))
        store.add_account(Account(
            name=f"x{a}", platform="x", base_url=fake.base_url,
            credentials={"client_id": "cid", "access_token": tokens["access_token"],
                         "refresh_token": tokens["refresh_token"]},
            token_expires_at=expires if expiry_known else None), now=now)
        new += [NewJob(account=f"x{a}", platform="x", text=f"x crash test {a}/{i}",
                       scheduled_at=now, max_attempts=8) for i in range(jobs // accounts)]
    store.add_jobs(new, now=now)
    return db, config, store


def _finish(db: Path, config: Path, store: SqliteStore, rounds: int = 12) -> None:
    finish(store, lambda: _run(db, "run-due", config=config).stderr, LEASE, rounds)


def _assert_exactly_once(fake: FakeX, store: SqliteStore, expected: int) -> None:
    posts = [p for p in fake.posts]
    ledger = Counter(p.text for p in posts)
    jobs = store.list_jobs(JobFilter())
    assert len(jobs) == expected
    assert {j.status for j in jobs} == {JobStatus.POSTED}, store.count_by_status()
    assert set(ledger) == {j.text for j in jobs}
    assert max(ledger.values()) == 1, [t for t, n in ledger.items() if n > 1]
    by_text = {p.text: p.id for p in posts}
    assert all(j.platform_post_id == by_text[j.text] for j in jobs)


@pytest.mark.parametrize("expiry_known", [True, False], ids=["proactive", "on-401"])
def test_overlapping_runs_with_an_expired_token_spend_each_refresh_token_once(
        tmp_path, fake, expiry_known):
    fake.latency = 0.01
    db, config, store = _setup(tmp_path, fake, jobs=36, accounts=3, expired=True,
                               expiry_known=expiry_known)
    procs = [_cli(db, "run-due", "--linger", "3", config=config) for _ in range(4)]
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, out + err
    _finish(db, config, store)
    _assert_exactly_once(fake, store, 36)
    assert fake.refreshes == 3  # one rotation per account
    assert fake.reused_refresh == 0
    assert all(a.state == AccountState.OK for a in store.list_accounts())
    store.close()


@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_at_random_moments_loses_nothing_and_posts_nothing_twice(tmp_path, fake,
                                                                         seed):
    rng = random.Random(seed)
    fake.latency = 0.03
    db, config, store = _setup(tmp_path, fake, jobs=30, accounts=3)
    for _ in range(12):
        proc = _cli(db, "run-due", config=config)
        time.sleep(rng.uniform(0.05, 0.9))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        if rng.random() < 0.3:
            time.sleep(LEASE + 0.1)
    _finish(db, config, store)
    _assert_exactly_once(fake, store, 30)
    store.close()


def test_post_created_then_connection_dropped_is_reconciled_once(tmp_path, fake):
    db, config, store = _setup(tmp_path, fake, jobs=3, accounts=1)
    fake.inject("drop", "/2/tweets", count=1)
    done = _run(db, "run-due", config=config)
    assert done.returncode == 0, done.stderr
    assert store.count_by_status()[JobStatus.UNKNOWN] == 1
    assert len(fake.posts) == 3  # the dropped one was created
    _finish(db, config, store)
    _assert_exactly_once(fake, store, 3)
    reconciled = [a for j in store.list_jobs(JobFilter()) for a in store.attempts_for(j.id)
                  if a.outcome == "reconciled"]
    assert len(reconciled) == 1
    store.close()


def test_overlapping_cli_runs_post_each_job_once(tmp_path, fake):
    fake.latency = 0.01
    db, config, store = _setup(tmp_path, fake, jobs=60, accounts=4)
    procs = [_cli(db, "run-due", config=config) for _ in range(4)]
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    _finish(db, config, store)
    _assert_exactly_once(fake, store, 60)
    store.close()


def test_ctrl_c_while_waiting_for_the_redirect_stores_nothing(tmp_path, fake):
    db = tmp_path / "a.db"
    _add_account(db, fake)
    proc = _cli(db, "accounts", "login", "xa", "--no-browser", "--port", "0")
    _url_line(proc)  # it is waiting for the redirect now
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    store = SqliteStore(db)
    assert store.get_account("xa").credentials == {"client_id": "cid"}
    store.close()
    assert fake.exchanges == 0
