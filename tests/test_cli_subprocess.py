"""The same commands through a real `python -m autopost` process: exit codes, stdout and
stderr as a shell script or cron sees them."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta

import pytest

from autopost.store.sqlite import SqliteStore

from .conftest import file_hash, outbox_credentials
from .test_cli import ATTEMPT_KEYS, JOB_KEYS


@pytest.fixture
def demo(proc, tmp_path):
    out = proc("accounts", "add", "demo", "--platform", "outbox", "--credentials", "-",
               input=outbox_credentials(tmp_path))
    assert out.code == 0, out.stderr
    assert out.stdout.strip() == "added account demo (outbox)"
    return "demo"


def test_help_and_usage_errors(proc):
    assert proc("--help").code == 0
    none = proc(db=False)
    assert none.code == 2 and "Usage" in none.stdout + none.stderr
    typo = proc("lsit")
    assert typo.code == 2
    assert typo.err_lines == ["autopost: No such command 'lsit'. Did you mean 'list'?"]
    missing = proc("add", "text")
    assert missing.code == 2 and len(missing.err_lines) == 1
    assert "Missing option '--account'" in missing.stderr or "--at" in missing.stderr


def test_accounts(proc, tmp_path, demo):
    creds = tmp_path / "c.json"
    creds.write_text(json.dumps({"path": str(tmp_path / "o2")}))
    assert proc("accounts", "add", "two", "--platform", "outbox", "--credentials",
                str(creds)).code == 0
    table = proc("accounts", "list")
    assert table.code == 0 and "demo" in table.stdout and "two" in table.stdout
    rows = json.loads(proc("accounts", "list", "--json").stdout)
    assert [(r["name"], r["platform"], r["state"]) for r in rows] == [
        ("demo", "outbox", "ok"), ("two", "outbox", "ok")]
    assert all(r["credentials"] == {"path": "stored"} for r in rows)
    removed = proc("accounts", "remove", "two")
    assert removed.code == 0 and removed.stdout.strip() == "removed account two"
    gone = proc("accounts", "remove", "two")
    assert gone.code == 2 and gone.err_lines == ["autopost: unknown account 'two' "
                                                 "(see 'autopost accounts list')"]


def test_job_lifecycle(proc, demo):
    at = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    added = proc("add", "Hello from a script", "--account", "demo", "--at", at, "--key", "k1",
                 "--json")
    assert added.code == 0, added.stderr
    (job,) = added.json()
    assert JOB_KEYS <= set(job) and job["created"] is True
    assert job["scheduled_at"] == at and job["key"] == "k1" and job["status"] == "pending"
    job_id = job["id"]

    again = proc("add", "Hello from a script", "--account", "demo", "--at", at, "--key", "k1")
    assert again.code == 0 and again.stdout.startswith(f"{job_id}  already exists")
    plain = proc("add", "Second", "-a", "demo", "--at", "+3h")
    assert plain.code == 0 and len(plain.stdout.split()[0]) == 8

    listed = proc("list", "--json").json()
    assert [j["id"] for j in listed][0] == job_id and len(listed) == 2
    assert all(JOB_KEYS <= set(j) for j in listed)
    assert job_id in proc("list").stdout
    assert [j["id"] for j in proc("list", "--status", "pending", "--limit", "1",
                                  "--json").json()] == \
        [job_id]

    shown = proc("show", job_id[:4], "--json").json()
    assert shown["id"] == job_id and shown["attempt_log"] == [] and shown["attempts"] == 0
    assert "Hello from a script" in proc("show", job_id).stdout

    cancelled = proc("cancel", job_id)
    assert cancelled.code == 0 and cancelled.stdout.strip() == f"{job_id}  cancelled"
    shown = proc("show", job_id, "--json").json()
    assert shown["status"] == "cancelled"
    assert [a["outcome"] for a in shown["attempt_log"]] == ["cancelled"]
    assert ATTEMPT_KEYS <= set(shown["attempt_log"][0])

    retried = proc("retry", job_id)
    assert retried.code == 0 and "pending again" in retried.stdout
    assert proc("show", job_id, "--json").json()["status"] == "pending"
    refused = proc("retry", job_id)
    assert refused.code == 2 and len(refused.err_lines) == 1


def test_cancel_that_loses_the_race_exits_1(proc, demo):
    (job,) = proc("add", "now", "-a", "demo", "--at", "now", "--json").json()
    store = SqliteStore(proc.db)
    try:
        store.claim("a-run", now=datetime.now(UTC) + timedelta(seconds=1), lease=300, limit=5,
                    per_account=5, limits_for=lambda a: (None, None))
    finally:
        store.close()
    out = proc("cancel", job["id"])
    assert out.code == 1
    assert out.err_lines == [f"autopost: job {job['id']} not cancelled: "
                             "it is being published right now by a run"]


def test_import_is_idempotent_and_atomic(proc, tmp_path, demo):
    good = tmp_path / "posts.jsonl"
    rows = [{"account": "demo", "at": "+1d", "text": f"post {i}", "key": f"k{i}"}
            for i in range(50)]
    good.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    first = proc("import", str(good), "--json")
    assert first.code == 0, first.stderr
    summary = first.json()
    assert (summary["format"], summary["new"], summary["existing"]) == ("jsonl", 50, 0)
    assert first.stderr == ""  # no progress bar off a terminal
    again = proc("import", str(good))
    assert again.code == 0
    assert again.stdout.strip() == ("imported 0 new jobs from posts.jsonl; 50 already existed "
                                    "(same key) and were left as they are")
    bad = tmp_path / "bad.csv"
    bad.write_text("account,at,text\ndemo,+1d,fine\ndemo,2026-02-30T10:00,impossible\n")
    before = file_hash(proc.db)
    out = proc("import", str(bad))
    assert out.code == 2
    assert out.err_lines == ["autopost: bad.csv row 2 (line 3), column at: "
                             "'2026-02-30T10:00' is not a valid date; nothing was imported"]
    assert file_hash(proc.db) == before
    assert len(proc("list", "--json").json()) == 50


def test_settings_and_overview_commands(proc, demo):
    proc("add", "soon", "-a", "demo", "--at", "+10m")
    platforms = proc("platforms", "--json").json()
    assert {"platform", "max_attempts", "base_delay", "max_delay", "backoff_multiplier",
            "hourly_limit", "daily_limit", "retryable", "supported"} <= set(platforms[0])
    assert "facebook" in proc("platforms").stdout
    quota = proc("quota", "--json").json()
    empty = {"used": 0, "limit": None, "oldest_at": None, "frees_at": None,
             "full_until": None}
    assert quota == [{"account": "demo", "platform": "outbox", "hour": empty, "day": empty,
                      "blocked_until": None, "next_post_at": None}]
    assert "demo" in proc("quota").stdout
    days = proc("calendar", "--json").json()
    assert [j["text"] for d in days for j in d["jobs"]] == ["soon"]
    assert "soon" in proc("calendar").stdout
    pruned = proc("prune", "--older-than", "7d")
    assert pruned.code == 0 and pruned.stdout.startswith("pruned 0 jobs")
    cron = proc("cron")
    assert cron.code == 0
    assert f"{sys.executable} -m autopost --db {proc.db} run-due" in cron.stdout


def test_environment_trouble_is_exit_3(proc, tmp_path):
    folder = tmp_path / "a-folder.db"
    folder.mkdir()
    out = proc("--db", str(folder), "list", db=False)
    assert out.code == 3 and len(out.err_lines) == 1
    assert out.stderr.startswith("autopost: ") and "Traceback" not in out.stderr
