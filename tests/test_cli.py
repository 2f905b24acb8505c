"""Every job- and account-management command through Typer's CliRunner: happy paths,
--json shapes, idempotent add, cancel and retry."""

from __future__ import annotations

import json
import os
import stat
import sys
from datetime import UTC, datetime, timedelta

import pytest

from autopost.models import ErrorKind, JobStatus
from autopost.platforms import registry
from autopost.platforms.base import PlatformError, Refreshed
from autopost.platforms.outbox import OutboxAdapter
from autopost.store.base import Result

from .conftest import file_hash, opened, outbox_credentials
from .images import png

JOB_KEYS = {"id", "account", "platform", "status", "scheduled_at", "next_attempt_at", "attempts",
            "max_attempts", "key", "platform_post_id", "platform_url", "last_error",
            "last_error_kind", "text", "group_id", "media"}
ATTEMPT_KEYS = {"number", "started_at", "finished_at", "outcome", "error_kind", "http_status",
                "message", "decision"}
SECRET = "s3cr3t-t0ken-value"


class TinyAdapter(OutboxAdapter):
    platform = "tiny"
    text_limit = 10


class SecretiveAdapter(OutboxAdapter):
    platform = "secretive"
    required_fields = ("token",)
    optional_fields = ("handle",)
    secret_fields = ("token",)


class LoginAdapter(OutboxAdapter):
    """Logs in at `accounts add`, as Bluesky does, without any network."""

    platform = "login"
    required_fields = ("user", "password")
    optional_fields = ("session",)
    secret_fields = ("password", "session")
    calls: list[dict] = []

    def setup(self):
        LoginAdapter.calls.append(dict(self.credentials))
        if self.credentials["password"] == "wrong":
            raise PlatformError(ErrorKind.AUTH_REVOKED, "login refused")
        if self.credentials["password"] == "offline":
            raise PlatformError(ErrorKind.NETWORK, "cannot connect")
        return Refreshed({**self.account.credentials, "session": "sess-1"}, EXPIRES)


EXPIRES = datetime(2031, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def test_platforms():
    registry.register("tiny", TinyAdapter)
    registry.register("secretive", SecretiveAdapter)
    registry.register("login", LoginAdapter)
    LoginAdapter.calls.clear()
    yield
    for name in ("tiny", "secretive", "login"):
        registry.unregister(name)


@pytest.fixture
def demo(cli, tmp_path):
    out = cli("accounts", "add", "demo", "--platform", "outbox", "--credentials", "-",
              input=outbox_credentials(tmp_path))
    assert out.code == 0, out.stderr
    return "demo"


def add_job(cli, *args: str) -> dict:
    out = cli("add", *args, "--json")
    assert out.code == 0, out.stderr
    (job,) = out.json()
    return job


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def future(hours: float = 1) -> str:
    return iso(datetime.now(UTC) + timedelta(hours=hours))


# -- basics ----------------------------------------------------------------------------------

def test_help_lists_the_commands(cli):
    out = cli("--help")
    assert out.code == 0
    for name in ("accounts", "add", "import", "list", "show", "cancel", "retry", "platforms",
                 "quota", "calendar", "prune", "cron"):
        assert name in out.stdout


def test_version(cli):
    out = cli("--version")
    assert out.code == 0 and out.stdout.startswith("autopost ")


def test_database_and_folder_are_created_private(cli, demo):
    assert stat.S_IMODE(os.stat(cli.db).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(cli.db.parent).st_mode) == 0o700


# -- accounts --------------------------------------------------------------------------------

def test_accounts_add_list_remove(cli, tmp_path, demo):
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"path": "relative/outbox"}))
    out = cli("accounts", "add", "second", "--platform", "outbox", "--credentials", str(creds),
              "--hourly-limit", "4")
    assert out.code == 0 and out.stdout.strip() == "added account second (outbox)"
    listed = cli("accounts", "list")
    assert listed.code == 0
    assert "demo" in listed.stdout and "second" in listed.stdout
    rows = {a["name"]: a for a in cli("accounts", "list", "--json").json()}
    assert rows["second"]["hourly_limit"] == 4
    assert rows["second"]["credentials"] == {"path": "stored"}
    assert rows["demo"]["state"] == "ok" and rows["demo"]["platform"] == "outbox"
    with opened(cli) as store:  # a relative outbox folder is pinned where it was meant
        assert os.path.isabs(store.get_account("second").credentials["path"])
    assert cli("accounts", "remove", "second").stdout.strip() == "removed account second"
    assert [a["name"] for a in cli("accounts", "list", "--json").json()] == ["demo"]


def test_accounts_add_twice_needs_update(cli, tmp_path, demo):
    again = cli("accounts", "add", "demo", "--platform", "outbox", "--credentials", "-",
                input=json.dumps({"path": str(tmp_path / "other")}))
    assert again.code == 2 and "--update" in again.stderr
    updated = cli("accounts", "add", "demo", "--platform", "outbox", "--credentials", "-",
                  "--update", input=json.dumps({"path": str(tmp_path / "other")}))
    assert updated.code == 0 and updated.stdout.startswith("updated account demo")
    with opened(cli) as store:
        assert store.get_account("demo").credentials == {"path": str(tmp_path / "other")}


def test_credentials_are_never_printed(cli):
    out = cli("accounts", "add", "sec", "--platform", "secretive", "--credentials", "-",
              input=json.dumps({"token": SECRET, "handle": {"env": "SEC_HANDLE_UNSET"}}))
    assert out.code == 0
    assert "SEC_HANDLE_UNSET" in out.stderr  # a note that the variable is not set here
    for args in (("accounts", "list"), ("accounts", "list", "--json"), ("quota", "--json")):
        shown = cli(*args)
        assert shown.code == 0
        assert SECRET not in shown.stdout + shown.stderr
    (row,) = cli("accounts", "list", "--json").json()
    assert row["credentials"] == {"handle": "env:SEC_HANDLE_UNSET", "token": "stored"}
    bad = cli("accounts", "add", "sec2", "--platform", "secretive", "--credentials", "-",
              input='{"token": "' + SECRET + '", ')
    assert bad.code == 2 and SECRET not in bad.stderr and "not valid JSON" in bad.stderr


@pytest.mark.parametrize(("creds", "why"), [
    ({}, "need: token"),
    ({"token": "x", "colour": "red"}, "unknown secretive credential field(s): colour"),
    ({"token": {"env": "lower case!"}}, "VARIABLE_NAME"),
    ({"token": ["a"]}, "expected a string"),
])
def test_credentials_are_checked_against_the_platform(cli, creds, why):
    out = cli("accounts", "add", "sec", "--platform", "secretive", "--credentials", "-",
              input=json.dumps(creds))
    assert out.code == 2 and why in out.stderr
    assert not cli.db.exists()  # a refused first account creates no database


def test_accounts_add_sets_up_the_session_where_the_platform_has_one(cli, monkeypatch):
    monkeypatch.setenv("LOGIN_PW", "right")
    creds = {"user": "me", "password": {"env": "LOGIN_PW"}}
    out = cli("accounts", "add", "me", "--platform", "login", "--credentials", "-",
              input=json.dumps(creds))
    assert out.code == 0, out.stderr
    assert LoginAdapter.calls == [{"user": "me", "password": "right"}]  # env resolved
    with opened(cli) as store:
        account = store.get_account("me")
    # The session is stored; the password stays a reference, never its value.
    assert account.credentials == {**creds, "session": "sess-1"}
    assert account.token_expires_at == EXPIRES


@pytest.mark.parametrize(("password", "code", "why"), [
    ("wrong", 2, "login refused the credentials for me: login refused"),
    ("offline", 3, "cannot set up me on login: cannot connect"),
])
def test_accounts_add_stores_nothing_when_setup_fails(cli, password, code, why):
    out = cli("accounts", "add", "me", "--platform", "login", "--credentials", "-",
              input=json.dumps({"user": "me", "password": password}))
    assert out.code == code
    assert out.err_lines == [f"autopost: {why} (nothing was stored)"]
    assert not cli.db.exists()
    offline = cli("accounts", "add", "me", "--platform", "login", "--credentials", "-",
                  "--offline", input=json.dumps({"user": "me", "password": password}))
    assert offline.code == 0
    assert len(LoginAdapter.calls) == 1  # --offline made no call


def test_accounts_add_with_an_unset_variable_skips_setup(cli):
    out = cli("accounts", "add", "me", "--platform", "login", "--credentials", "-",
              input=json.dumps({"user": "me", "password": {"env": "NOT_SET_ANYWHERE"}}))
    assert out.code == 0 and "NOT_SET_ANYWHERE" in out.stderr
    assert LoginAdapter.calls == []


# -- add --------------------------------------------------------------------------------------

def test_add_prints_the_job_and_json_shape(cli, demo):
    out = cli("add", "Hello", "--account", "demo", "--at", "+1h")
    assert out.code == 0
    job_id = out.stdout.split()[0]
    assert "scheduled for" in out.stdout and "demo" in out.stdout
    job = add_job(cli, "Second", "-a", "demo", "--at", "2030-01-02T03:04:05+01:00",
                  "--max-attempts", "2")
    assert JOB_KEYS <= set(job)
    assert job["created"] is True
    assert job["status"] == "pending" and job["platform"] == "outbox"
    assert job["scheduled_at"] == job["next_attempt_at"] == "2030-01-02T02:04:05Z"
    assert (job["attempts"], job["max_attempts"]) == (0, 2)
    assert job["key"] is None and job["last_error"] is None and job["media"] == []
    listed = [j["id"] for j in cli("list", "--json").json()]
    assert listed == [job_id, job["id"]]


def test_add_uses_the_platform_default_attempts_and_zone(cli, tmp_path, demo):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[platforms.outbox]\nmax_attempts = 9\n")
    out = cli("--config", str(cfg), "add", "x", "-a", "demo", "--at", "2030-07-01 09:00",
              "--tz", "Europe/Berlin", "--json")
    (job,) = out.json()
    assert job["max_attempts"] == 9
    assert job["scheduled_at"] == "2030-07-01T07:00:00Z"


def test_add_to_several_accounts_shares_a_group(cli, tmp_path, demo):
    cli("accounts", "add", "other", "--platform", "outbox", "--credentials", "-",
        input=outbox_credentials(tmp_path))
    out = cli("add", "Both", "-a", "demo", "-a", "other", "--at", "+2h", "--json")
    jobs = out.json()
    assert [j["account"] for j in jobs] == ["demo", "other"]
    assert jobs[0]["group_id"] and jobs[0]["group_id"] == jobs[1]["group_id"]
    assert jobs[0]["id"] != jobs[1]["id"]


def test_same_key_again_is_a_no_op(cli, demo):
    first = add_job(cli, "Launch", "-a", "demo", "--at", "+1h", "--key", "launch-1")
    again = cli("add", "Launch", "-a", "demo", "--at", "+1h", "--key", "launch-1")
    assert again.code == 0
    assert again.stdout.split()[0] == first["id"]
    assert "already exists" in again.stdout
    as_json = cli("add", "Launch v2", "-a", "demo", "--at", "+3h", "--key", "launch-1", "--json")
    (job,) = as_json.json()
    assert job["id"] == first["id"] and job["created"] is False and job["text"] == "Launch"
    # Even after its time has passed, re-running the same command changes nothing.
    with opened(cli) as store:
        store.conn.execute("UPDATE jobs SET scheduled_at = '2020-01-01T00:00:00.000000Z'")
    late = cli("add", "Launch", "-a", "demo", "--at", "2020-01-01T00:00:00Z", "--key", "launch-1")
    assert late.code == 0 and "already exists" in late.stdout
    assert len(cli("list", "--json").json()) == 1


def test_media_and_alt_pair_in_order(cli, tmp_path, demo, monkeypatch):
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / name).write_bytes(png(2, 2))
    monkeypatch.chdir(tmp_path)
    job = add_job(cli, "Pics", "-a", "demo", "--at", "+1h", "--media", "a.png", "--alt", "A",
                  "--media", "b.png", "--media=c.png", "--alt=C, with comma")
    assert job["media"] == [
        {"path": str(tmp_path / "a.png"), "alt": "A"},
        {"path": str(tmp_path / "b.png"), "alt": None},
        {"path": str(tmp_path / "c.png"), "alt": "C, with comma"},
    ]
    bad = cli("add", "x", "-a", "demo", "--at", "+1h", "--alt", "orphan", "--media", "a.png")
    assert bad.code == 2 and "--alt must follow" in bad.stderr


def test_add_text_from_stdin(cli, demo):
    out = cli("add", "-", "-a", "demo", "--at", "+1h", "--json", input="A long\npost\n")
    assert out.json()[0]["text"] == "A long\npost"


def test_add_checks_text_against_the_platform(cli, tmp_path):
    cli("accounts", "add", "t", "--platform", "tiny", "--credentials", "-",
        input=outbox_credentials(tmp_path))
    assert cli("add", "short", "-a", "t", "--at", "+1h").code == 0
    long = cli("add", "far too long for tiny", "-a", "t", "--at", "+1h")
    assert long.code == 2 and "tiny allows 10" in long.stderr and "t:" in long.stderr
    assert len(cli("list", "--json").json()) == 1


# -- list and show -------------------------------------------------------------------------

def test_list_filters(cli, tmp_path, demo):
    cli("accounts", "add", "t", "--platform", "tiny", "--credentials", "-",
        input=outbox_credentials(tmp_path))
    a = add_job(cli, "one", "-a", "demo", "--at", future(1))
    b = add_job(cli, "two", "-a", "t", "--at", future(2))
    c = add_job(cli, "three", "-a", "demo", "--at", future(3))
    cli("cancel", c["id"])

    def ids(*args):
        out = cli("list", *args, "--json")
        assert out.code == 0, out.stderr
        return [j["id"] for j in out.json()]

    assert ids() == [a["id"], b["id"], c["id"]]
    assert ids("--status", "pending") == [a["id"], b["id"]]
    assert ids("--status", "CANCELLED") == [c["id"]]
    assert ids("--account", "t") == [b["id"]]
    assert ids("--platform", "outbox") == [a["id"], c["id"]]
    assert ids("--platform", "tiny") == [b["id"]]
    assert ids("--limit", "1") == [a["id"]]
    assert ids("-s", "posted") == []
    table = cli("list")
    assert table.code == 0
    for job in (a, b, c):
        assert job["id"] in table.stdout
    assert "cancelled" in table.stdout


def test_long_tables_are_cut_but_json_is_whole(cli, demo, monkeypatch):
    import autopost.cli.jobs

    monkeypatch.setattr(autopost.cli.jobs, "TABLE_ROWS", 2)
    jobs = [add_job(cli, f"j{i}", "-a", "demo", "--at", future(i + 1)) for i in range(3)]
    table = cli("list")
    assert jobs[1]["id"] in table.stdout and jobs[2]["id"] not in table.stdout
    assert "the first 2 jobs; there are more" in table.stderr  # rows stay rows
    assert len(cli("list", "--json").json()) == 3
    assert jobs[2]["id"] in cli("list", "--limit", "3").stdout


def test_list_when_empty(cli, demo):
    assert cli("list").stdout.strip() == "no jobs"
    assert cli("list", "--json").json() == []


def record_attempts(cli, job_id: str) -> None:
    """One failed attempt for the job, as a run would record it."""
    now = datetime.now(UTC)
    with opened(cli) as store:
        store.conn.execute("UPDATE jobs SET next_attempt_at = ? WHERE id = ?",
                           (now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), job_id))
        got = store.claim("run-1", now=now, lease=60, limit=10, per_account=10,
                          limits_for=lambda a: (None, None))
        assert [j.id for j in got.jobs] == [job_id]
        store.dispatch([job_id], "run-1", now=now)
        store.record([Result(job_id, "run-1", now, JobStatus.FAILED, "failed",
                             error_kind="invalid", http_status=422, message="too many tags",
                             decision="invalid content: not retried")])


def test_show_job_and_attempts(cli, demo):
    job = add_job(cli, "Shown", "-a", "demo", "--at", "+1h", "--key", "k")
    record_attempts(cli, job["id"])
    out = cli("show", job["id"][:5], "--json")
    assert out.code == 0
    shown = out.json()
    assert JOB_KEYS <= set(shown)
    assert shown["status"] == "failed" and shown["last_error"] == "too many tags"
    assert shown["last_error_kind"] == "invalid"
    assert (shown["attempts"], shown["max_attempts"]) == (1, 5)
    (attempt,) = shown["attempt_log"]
    assert ATTEMPT_KEYS <= set(attempt)
    assert (attempt["number"], attempt["outcome"], attempt["error_kind"],
            attempt["http_status"]) == (1, "failed", "invalid", 422)
    assert attempt["started_at"].endswith("Z") and attempt["finished_at"].endswith("Z")
    human = cli("show", job["id"])
    assert human.code == 0
    for part in (job["id"], "failed", "Shown", "too many tags", "422"):
        assert part in human.stdout


# -- cancel and retry ----------------------------------------------------------------------

def test_cancel(cli, demo):
    a = add_job(cli, "a", "-a", "demo", "--at", "+1h")
    b = add_job(cli, "b", "-a", "demo", "--at", "+2h")
    out = cli("cancel", a["id"], b["id"][:4])
    assert out.code == 0
    assert out.stdout.splitlines() == [f"{a['id']}  cancelled", f"{b['id']}  cancelled"]
    again = cli("cancel", a["id"])
    assert again.code == 0 and "already cancelled" in again.stdout
    assert {j["status"] for j in cli("list", "--json").json()} == {"cancelled"}


def test_cancel_that_loses_to_a_run_says_so(cli, demo):
    running = add_job(cli, "r", "-a", "demo", "--at", "now")
    waiting = add_job(cli, "w", "-a", "demo", "--at", "+1h")
    with opened(cli) as store:
        store.claim("run-x", now=datetime.now(UTC) + timedelta(seconds=1), lease=300, limit=1,
                    per_account=1, limits_for=lambda a: (None, None))
    out = cli("cancel", running["id"], waiting["id"])
    assert out.code == 1
    assert out.stdout.strip() == f"{waiting['id']}  cancelled"
    (line,) = out.err_lines
    assert line.startswith(f"autopost: job {running['id']} not cancelled") and "run" in line
    assert cli("show", running["id"], "--json").json()["status"] == "running"


def test_cancel_unknown_job_changes_nothing(cli, demo):
    job = add_job(cli, "a", "-a", "demo", "--at", "+1h")
    out = cli("cancel", job["id"], "zzzzzzzz")
    assert out.code == 2 and "unknown job" in out.stderr
    assert cli("show", job["id"], "--json").json()["status"] == "pending"


def test_retry(cli, demo):
    failed = add_job(cli, "f", "-a", "demo", "--at", "+1h", "--max-attempts", "1")
    record_attempts(cli, failed["id"])
    cancelled = add_job(cli, "c", "-a", "demo", "--at", "+1h")
    cli("cancel", cancelled["id"])
    out = cli("retry", failed["id"], cancelled["id"])
    assert out.code == 0, out.stderr
    assert "pending again" in out.stdout
    for job_id in (failed["id"], cancelled["id"]):
        shown = cli("show", job_id, "--json").json()
        assert shown["status"] == "pending" and shown["last_error"] is None
        assert shown["max_attempts"] > shown["attempts"]


def test_retry_refuses_a_pending_job_and_changes_nothing(cli, demo):
    pending = add_job(cli, "p", "-a", "demo", "--at", "+1h")
    cancelled = add_job(cli, "c", "-a", "demo", "--at", "+1h")
    cli("cancel", cancelled["id"])
    out = cli("retry", cancelled["id"], pending["id"])
    assert out.code == 2 and "only failed, missed or cancelled" in out.stderr
    assert cli("show", cancelled["id"], "--json").json()["status"] == "cancelled"


def make_unknown(cli, job_id: str) -> None:
    """The job's run died after sending it: the outcome is unknown."""
    now = datetime.now(UTC)
    then = now - timedelta(seconds=120)
    with opened(cli) as store:
        store.conn.execute("UPDATE jobs SET next_attempt_at = ? WHERE id = ?",
                           (then.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), job_id))
        store.claim("dead-run", now=then, lease=60, limit=10, per_account=10,
                    limits_for=lambda a: (None, None))
        assert store.dispatch([job_id], "dead-run", now=then) == {job_id: 1}
        store.rescue_expired("rescuer", now=now)
        assert store.get_job(job_id).status == JobStatus.UNKNOWN


def test_retry_of_a_job_that_may_be_posted_needs_force(cli, demo):
    maybe = add_job(cli, "maybe live", "-a", "demo", "--at", "+1h")
    make_unknown(cli, maybe["id"])
    failed = add_job(cli, "f", "-a", "demo", "--at", "+1h", "--max-attempts", "1")
    record_attempts(cli, failed["id"])
    before = file_hash(cli.db)
    out = cli("retry", failed["id"], maybe["id"])
    assert out.code == 2 and len(out.err_lines) == 1
    assert "may already be posted" in out.stderr and "--force" in out.stderr
    assert f"autopost resolve {maybe['id']}" in out.stderr
    assert file_hash(cli.db) == before  # not even the failed job was touched
    out = cli("retry", "--force", failed["id"], maybe["id"])
    assert out.code == 0, out.stderr
    shown = cli("show", maybe["id"], "--json").json()
    assert shown["status"] == "pending"


# -- settings and usage ---------------------------------------------------------------------

def test_platforms_table(cli):
    out = cli("platforms")
    assert out.code == 0
    for name in ("outbox", "facebook", "youtube", "x"):
        assert name in out.stdout
    assert "300" in out.stdout  # x's daily limit


def test_quota(cli, tmp_path, demo):
    cli("accounts", "add", "capped", "--platform", "outbox", "--credentials", "-",
        "--daily-limit", "2", input=outbox_credentials(tmp_path))
    job = add_job(cli, "q", "-a", "capped", "--at", "now")
    with opened(cli) as store:
        store.claim("run-q", now=datetime.now(UTC) + timedelta(seconds=1), lease=300, limit=5,
                    per_account=5, limits_for=lambda a: (None, None))
    rows = {r["account"]: r for r in cli("quota", "--json").json()}

    def use(window):
        return {k: window[k] for k in ("used", "limit", "full_until")}

    assert use(rows["capped"]["day"]) == {"used": 1, "limit": 2, "full_until": None}
    assert use(rows["capped"]["hour"]) == {"used": 1, "limit": None, "full_until": None}
    assert rows["capped"]["hour"]["oldest_at"] is not None  # the job in flight
    assert rows["demo"]["day"] == {"used": 0, "limit": None, "oldest_at": None,
                                   "frees_at": None, "full_until": None}
    assert rows["capped"]["next_post_at"] is None
    assert cli("show", job["id"], "--json").json()["status"] == "running"
    table = cli("quota")
    assert table.code == 0 and "capped" in table.stdout and "1/2" in table.stdout


def test_calendar(cli, demo):
    today = add_job(cli, "soon", "-a", "demo", "--at", "+1m")
    later = add_job(cli, "later", "-a", "demo", "--at", "+3d")
    add_job(cli, "far", "-a", "demo", "--at", "+30d")
    days = cli("calendar", "--days", "5", "--json").json()
    assert [j["id"] for day in days for j in day["jobs"]] == [today["id"], later["id"]]
    assert days[0]["date"] == today["scheduled_at"][:10]
    assert days[-1]["date"] == later["scheduled_at"][:10]
    human = cli("calendar", "--days", "5")
    assert today["id"] in human.stdout and "far" not in human.stdout
    tokyo = cli("calendar", "--days", "5", "--tz", "Pacific/Kiritimati", "--json").json()
    assert len(tokyo) >= 1


def test_prune(cli, demo):
    job = add_job(cli, "old", "-a", "demo", "--at", "+1h")
    cli("cancel", job["id"])
    keep = add_job(cli, "keep", "-a", "demo", "--at", "+1h")
    with opened(cli) as store:
        store.conn.execute("UPDATE jobs SET updated_at = '2020-01-01T00:00:00.000000Z' "
                           "WHERE id = ?", (job["id"],))
    dry = cli("prune", "--older-than", "30d", "--dry-run")
    assert dry.code == 0 and dry.stdout.startswith("would prune 1 job and 0 run records")
    assert len(cli("list", "--json").json()) == 2  # nothing deleted
    out = cli("prune", "--older-than", "30d")
    assert out.code == 0 and out.stdout.startswith("pruned 1 job and 0 run records")
    assert [j["id"] for j in cli("list", "--json").json()] == [keep["id"]]
    assert cli("prune", "--json").json()["removed_jobs"] == 0


def test_prune_keeps_what_the_quota_windows_count(cli, demo):
    posted = add_job(cli, "posted an hour ago", "-a", "demo", "--at", "now")
    assert cli("run-due").code == 0
    with opened(cli) as store:
        assert store.get_job(posted["id"]).status == "posted"
        hour, day = store.quota_usage("demo", now=datetime.now(UTC))
    out = cli("prune", "--older-than", "1s", "--json")
    assert out.code == 0 and out.json()["removed_jobs"] == 0
    assert out.json()["before"] <= iso(datetime.now(UTC) - timedelta(hours=23, minutes=59))
    with opened(cli) as store:
        assert store.quota_usage("demo", now=datetime.now(UTC)) == (hour, day) == (1, 1)
    assert "kept the last day" in cli("prune", "--older-than", "1h").stderr


def test_cron_prints_lines_for_this_install(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = cli("cron")
    assert out.code == 0
    assert f"* * * * * {sys.executable} -m autopost --db {cli.db} run-due" in out.stdout
    assert "[Timer]" in out.stdout and "OnUnitActiveSec" in out.stdout
    assert f"ExecStart={sys.executable} -m autopost --db {cli.db} run-due" in out.stdout
    from typer.testing import CliRunner

    from autopost.cli import app

    relative = CliRunner().invoke(app, ["--db", "rel.db", "--config", "c.toml", "cron"])
    assert f"--db {tmp_path / 'rel.db'} --config {tmp_path / 'c.toml'} run-due" in \
        relative.stdout
    assert not (tmp_path / "rel.db").exists()  # cron only prints


def test_db_from_the_environment(cli, tmp_path, demo):
    from typer.testing import CliRunner

    from autopost.cli import app

    result = CliRunner().invoke(app, ["accounts", "list", "--json"],
                                env={"AUTOPOST_DB": str(cli.db)})
    assert result.exit_code == 0
    assert [a["name"] for a in json.loads(result.stdout)] == ["demo"]


def test_status_of_a_database_without_jobs_says_none(cli, tmp_path):
    done = cli("accounts", "add", "demo", "--platform", "outbox", "--credentials", "-",
               input=outbox_credentials(tmp_path))
    assert done.code == 0, done.stderr
    lines = cli("status").stdout.splitlines()
    assert "jobs: none" in lines, lines
