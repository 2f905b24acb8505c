"""`autopost accounts login` for Facebook, Instagram and Threads through the real CLI: the
test plays the browser (it opens the printed URL, the fake's dialog redirects back to the
loopback with a code), then posts with what the login stored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import httpx

from autopost.store.sqlite import SqliteStore
from tests import metakit

fake = metakit.fake
APP, SECRET = "4242424242", "app-secret-for-tests-01"


def _login(proc, name: str, *extra: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run `accounts login NAME --no-browser --port 0`, open its URL as a browser would."""
    argv = [sys.executable, "-m", "autopost", "--db", str(proc.db), "accounts", "login",
            name, "--no-browser", "--port", "0", "--timeout", "60", *extra]
    full = {**{k: v for k, v in os.environ.items() if not k.startswith("AUTOPOST_")}, **env}
    run = subprocess.Popen(argv, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, text=True)
    lines = []
    for line in run.stdout:
        lines.append(line)
        if line.startswith("http"):
            answer = httpx.get(line.strip(), follow_redirects=True, timeout=30)
            assert answer.status_code == 200, answer.text
            break
    out, err = run.communicate(timeout=60)
    return subprocess.CompletedProcess(argv, run.returncode, "".join(lines) + out, err)


def _env(tmp_path) -> dict[str, str]:
    config = tmp_path / "config.toml"
    config.write_text("[meta]\nthreads_publish_wait = 0\n")
    return {"AUTOPOST_CONFIG": str(config)}


def _add(proc, name: str, platform: str, fake, env) -> None:
    out = proc("accounts", "add", name, "--platform", platform, "--base-url", fake.base_url,
               "--credentials", "-", input=json.dumps({"client_id": APP,
                                                       "client_secret": SECRET}), env=env)
    assert out.code == 0, out.stderr


def test_facebook_login_picks_the_page_and_stores_its_token(proc, fake, tmp_path):
    env = _env(tmp_path)
    fake.add_app(APP, SECRET)
    user = fake.add_user("user-token-unused-1")
    fake.add_page("page-token-bakery-1", "Bakery", user=user)
    cafe = fake.add_page("page-token-cafe-01", "Cafe", user=user)
    _add(proc, "fb", "facebook", fake, env)
    several = _login(proc, "fb", env=env)
    assert several.returncode == 2 and "--page" in several.stderr
    assert "Bakery" in several.stderr and "Cafe" in several.stderr
    done = _login(proc, "fb", "--page", "Cafe", env=env)
    assert done.returncode == 0, done.stderr
    assert "logged in fb (facebook) as Page Cafe" in done.stdout
    for secret in (SECRET, "page-token-cafe-01"):
        assert secret not in done.stdout + done.stderr
    stored = SqliteStore(proc.db).get_account("fb").credentials
    assert stored["page_id"] == cafe and stored["access_token"] == "page-token-cafe-01"
    codes = [c for c in fake.codes.values() if c["used"]]
    assert len(codes) == 2  # each login spent its code once
    for code in codes:
        assert code["method"] == "S256" and code["challenge"]
        assert code["scope"] == "pages_manage_posts,pages_read_engagement,pages_show_list"
    out = proc("add", "after login", "--account", "fb", "--at", "now", env=env)
    assert out.code == 0, out.stderr
    run = proc("run-due", env=env)
    assert run.code == 0, run.stderr
    assert [p["message"] for p in fake.published(cafe)] == ["after login"]


def test_instagram_login_picks_the_linked_account(proc, fake, tmp_path):
    env = _env(tmp_path)
    fake.add_app(APP, SECRET)
    user = fake.add_user("user-token-unused-2")
    fake.add_page("page-token-plain-01", "No IG", user=user)
    page = fake.add_page("page-token-shop-001", "Shop", user=user, ig_username="shop")
    _add(proc, "ig", "instagram", fake, env)
    done = _login(proc, "ig", env=env)  # one Page has an Instagram account: no question
    assert done.returncode == 0, done.stderr
    assert "as @shop" in done.stdout
    stored = SqliteStore(proc.db).get_account("ig").credentials
    assert stored["ig_user_id"] == fake.pages[page]["ig"]
    assert stored["access_token"] == "page-token-shop-001"


def test_threads_login_stores_a_60_day_token_and_its_user(proc, fake, tmp_path):
    env = _env(tmp_path)
    fake.add_app(APP, SECRET, platform="threads")
    user = fake.add_threads_user("seed-threads-token-1", "poster")
    _add(proc, "th", "threads", fake, env)
    done = _login(proc, "th", env=env)
    assert done.returncode == 0, done.stderr
    assert "as @poster" in done.stdout and "token expires" in done.stdout
    account = SqliteStore(proc.db).get_account("th")
    assert account.credentials["threads_user_id"] == user
    assert fake.tokens[account.credentials["access_token"]]["long"] is True
    assert account.token_expires_at is not None
    out = proc("add", "hello", "--account", "th", "--at", "now", env=env)
    assert out.code == 0, out.stderr
    assert proc("run-due", env=env).code == 0
    assert [p["message"] for p in fake.published(user)] == ["hello"]


def _threads_account_near_expiry(proc, fake, env: dict[str, str], token: str,
                                 username: str, days_left: int) -> str:
    """Account "th" added with a Threads user's 60-day token that has `days_left` days
    left (as the fake and as the credentials say); the user's id."""
    user = fake.add_threads_user(token, username, expires_in=days_left * 86400)
    fake.tokens[token]["issued"] -= timedelta(days=60 - days_left)
    expires = (datetime.now(UTC) + timedelta(days=days_left)).isoformat()
    out = proc("accounts", "add", "th", "--platform", "threads", "--base-url", fake.base_url,
               "--credentials", "-", input=json.dumps({
                   "threads_user_id": user, "access_token": token, "expires_at": expires}),
               env=env)
    assert out.code == 0, out.stderr
    return user


def test_a_threads_token_is_refreshed_in_its_last_week(proc, fake, tmp_path):
    env = _env(tmp_path)
    token = "threads-direct-token-7"
    user = _threads_account_near_expiry(proc, fake, env, token, "poster", days_left=3)
    assert proc("add", "fresh token", "--account", "th", "--at", "now", env=env).code == 0
    run = proc("run-due", env=env)
    assert run.code == 0, run.stderr
    assert fake.refreshes == [token]
    account = SqliteStore(proc.db).get_account("th")
    assert account.credentials["access_token"] != token
    assert account.token_expires_at > datetime.now(UTC) + timedelta(days=59)
    assert [p["message"] for p in fake.published(user)] == ["fresh token"]


def test_credentials_given_directly_are_checked_at_add(proc, tmp_path):
    env = _env(tmp_path)
    cases = [("facebook", {"access_token": "page-token-no-id-1"}, "page_id"),
             ("instagram", {"access_token": "ig-token-no-id-001"}, "ig_user_id"),
             ("threads", {"client_id": APP}, "client_secret"),
             ("facebook", {"page_id": "1", "access_token": "xxxx"}, "placeholder")]
    for platform, creds, needs in cases:
        out = proc("accounts", "add", "a", "--platform", platform, "--credentials", "-",
                   input=json.dumps(creds), env=env)
        assert out.code == 2 and len(out.err_lines) == 1 and needs in out.stderr, out.stderr
    out = proc("accounts", "add", "a", "--platform", "facebook", "--credentials", "-",
               input=json.dumps({"client_id": APP, "client_secret": SECRET}), env=env)
    assert out.code == 0 and "autopost accounts login a" in out.stdout
    out = proc("add", "x", "--account", "a", "--at", "now", env=env)
    assert out.code == 0
    run = proc("run-due", env=env)
    assert run.code == 1 and "accounts login a" in run.stdout + run.stderr


def test_accounts_check_renews_a_threads_token_in_its_last_week(proc, fake, tmp_path):
    env = _env(tmp_path)
    token = "threads-direct-token-8"
    _threads_account_near_expiry(proc, fake, env, token, "idle", days_left=2)
    check = proc("accounts", "check", "th", env=env)
    assert check.code == 0 and "@idle" in check.stdout, check.stderr
    assert fake.refreshes == [token]
    assert SqliteStore(proc.db).get_account("th").token_expires_at > datetime.now(UTC) + \
        timedelta(days=59)
