"""run-due, status, resolve, demo and accounts check through a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from autopost.models import Account, AccountState, JobStatus, NewJob
from autopost.store.sqlite import SqliteStore
from autopost.store.timefmt import to_db


def cli(tmp_path, *args, env=None, stdin=None):
    full = {**os.environ, "AUTOPOST_DB": str(tmp_path / "autopost.db"),
            "AUTOPOST_CONFIG": str(tmp_path / "config.toml"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "autopost", *args], capture_output=True,
                          text=True, env=full, input=stdin, timeout=120)


@pytest.fixture
def store(tmp_path):
    (tmp_path / "config.toml").write_text("")
    s = SqliteStore(tmp_path / "autopost.db")
    s.add_account(Account(name="o", platform="outbox",
                          credentials={"path": str(tmp_path / "out")}), now=datetime.now(UTC))
    yield s
    s.close()


def add(store, text, *, account="o", at=None):
    now = datetime.now(UTC)
    return store.add_jobs([NewJob(account=account, platform=store.get_account(account).platform,
                                  text=text, scheduled_at=at or now)], now=now)[0][0]


def test_run_due_is_silent_when_all_went_well(tmp_path, store):
    job = add(store, "fine")
    done = cli(tmp_path, "run-due")
    assert done.returncode == 0 and done.stdout == "" and done.stderr == ""
    assert store.get_job(job.id).status == JobStatus.POSTED


def test_run_due_prints_one_line_per_failed_job_and_exits_1(tmp_path, store):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the outbox folder should be")
    store.add_account(Account(name="broken", platform="outbox",
                              credentials={"path": str(blocker / "sub")}),
                      now=datetime.now(UTC))
    bad = [add(store, f"doomed {i}", account="broken") for i in range(2)]
    good = add(store, "fine")
    done = cli(tmp_path, "run-due")
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()  # problems go to stderr
    assert len(lines) == 2 and all("failed" in line for line in lines)
    assert {j.id for j in bad} == {line.split()[1] for line in lines}
    assert store.get_job(good.id).status == JobStatus.POSTED
    assert "Traceback" not in done.stderr


def test_status_exit_codes_follow_health(tmp_path, store):
    done = cli(tmp_path, "status")
    assert done.returncode == 1 and "never run" in done.stdout
    assert cli(tmp_path, "run-due").returncode == 0
    done = cli(tmp_path, "status")
    assert done.returncode == 0 and "healthy" in done.stdout, done.stdout
    # A stale last run: the dead-man's switch.
    old = to_db(datetime.now(UTC) - timedelta(minutes=10))
    store.conn.execute("UPDATE runs SET started_at = ?, finished_at = ?", (old, old))
    done = cli(tmp_path, "status", "--json")
    report = json.loads(done.stdout)
    assert done.returncode == 1 and any("no run for" in p["message"] for p in report["problems"])
    assert report["last_run_age_seconds"] >= 590
    cli(tmp_path, "run-due")
    assert cli(tmp_path, "status").returncode == 0


def test_status_shouts_about_reauth_failed_and_unknown(tmp_path, store):
    cli(tmp_path, "run-due")
    store.set_account_state("o", AccountState.NEEDS_REAUTH, "token revoked",
                            now=datetime.now(UTC))
    done = cli(tmp_path, "status", "--json")
    report = json.loads(done.stdout)
    assert done.returncode == 1 and report["needs_reauth"] == ["o"]
    store.set_account_state("o", AccountState.OK, None, now=datetime.now(UTC))
    job = add(store, "will be unknown")
    now = datetime.now(UTC)
    store.claim("r", now=now, lease=60, limit=1, per_account=1, limits_for=lambda a: (None, None))
    store.dispatch([job.id], "r", now=now)
    from autopost.store.base import Result

    store.record([Result(job.id, "r", now, JobStatus.UNKNOWN, "error", message="lost")])
    done = cli(tmp_path, "status", "--json")
    report = json.loads(done.stdout)
    assert done.returncode == 1 and report["unknown"] == [job.id]
    assert any("resolve" in p["message"] and p["kind"] == "unknown"
               for p in report["problems"])
    # The operator settles it.
    assert cli(tmp_path, "resolve", job.id, "--posted", "https://example.test/1").returncode == 0
    assert store.get_job(job.id).status == JobStatus.POSTED
    assert cli(tmp_path, "status").returncode == 0


def test_resolve_usage_errors(tmp_path, store):
    job = add(store, "pending one", at=datetime.now(UTC) + timedelta(hours=1))
    for args in ([job.id], [job.id, "--posted", "u", "--not-posted"]):
        done = cli(tmp_path, "resolve", *args)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    done = cli(tmp_path, "resolve", job.id, "--not-posted")
    assert done.returncode == 2 and "not unknown" in done.stderr
    done = cli(tmp_path, "resolve", "zzzzzzzz", "--not-posted")
    assert done.returncode == 2 and "unknown job" in done.stderr


def test_run_due_json_and_dry_run(tmp_path, store):
    job = add(store, "dry")
    done = cli(tmp_path, "run-due", "--dry-run", "--json")
    assert done.returncode == 0 and [j["id"] for j in json.loads(done.stdout)] == [job.id]
    assert store.get_job(job.id).status == JobStatus.PENDING
    done = cli(tmp_path, "run-due", "--json")
    summary = json.loads(done.stdout)
    assert summary["posted"] == 1 and summary["problems"] == []


def test_accounts_check_clears_needs_reauth(tmp_path, store):
    store.set_account_state("o", AccountState.NEEDS_REAUTH, "was broken", now=datetime.now(UTC))
    done = cli(tmp_path, "accounts", "check", "o")
    assert done.returncode == 0, done.stderr
    assert store.get_account("o").state == AccountState.OK


def test_demo_runs_end_to_end(tmp_path):
    (tmp_path / "config.toml").write_text("")
    done = cli(tmp_path, "demo", "--dir", str(tmp_path / "demo"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 post(s) in the outbox" in done.stdout
    assert len(list((tmp_path / "demo" / "outbox").glob("*.json"))) == 3
