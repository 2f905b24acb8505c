"""Changing the schedule through the CLI: edit, retry --at, bulk cancel/retry, key reuse,
add --update, the duplicate guard, queue slots, pause/resume. Each refusal is one line on
stderr, exit 2, and the database's content unchanged."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from autopost.models import JobStatus
from autopost.store.base import Result

from .conftest import opened, outbox_credentials
from .images import png


@pytest.fixture
def demo(cli, tmp_path):
    for name in ("demo", "other"):
        out = cli("accounts", "add", name, "--platform", "outbox", "--credentials", "-",
                  input=outbox_credentials(tmp_path))
        assert out.code == 0, out.stderr
    return "demo"


def content(db) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def refused(cli, *args: str, match: str, code: int = 2) -> str:
    """Run a command that must be refused: one stderr line, the code, nothing changed."""
    before = content(cli.db)
    out = cli(*args)
    assert out.code == code, (out.stdout, out.stderr)
    assert len(out.err_lines) == 1 and out.err_lines[0].startswith("autopost: "), out.stderr
    assert match in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert content(cli.db) == before
    return out.stderr


def add_job(cli, *args: str) -> dict:
    out = cli("add", *args, "--json")
    assert out.code == 0, out.stderr
    (job,) = out.json()
    return job


def show(cli, job_id: str) -> dict:
    out = cli("show", job_id, "--json")
    assert out.code == 0, out.stderr
    return out.json()


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def future(hours: float = 1) -> str:
    return iso(datetime.now(UTC) + timedelta(hours=hours))


def run_once(cli, job_id: str, status: JobStatus, **kw) -> None:
    """Claim and dispatch the job as a run would, then record `status`."""
    with opened(cli) as store:
        job = store.get_job(job_id)
        at = max(datetime.now(UTC), job.next_attempt_at) + timedelta(seconds=1)
        claim = store.claim("run-t", now=at, lease=300, limit=10, per_account=10,
                            limits_for=lambda a: (None, None))
        assert job_id in [j.id for j in claim.jobs]
        store.release([j.id for j in claim.jobs if j.id != job_id], "run-t", now=at)
        store.dispatch([job_id], "run-t", now=at)
        store.record([Result(job_id, "run-t", at, status, str(status), **kw)])


# -- edit ------------------------------------------------------------------------------------

def test_edit_changes_text_time_options_and_is_audited(cli, demo, tmp_path):
    job = add_job(cli, "first draft", "-a", "demo", "--at", "+1h")
    pic = tmp_path / "pic.png"
    pic.write_bytes(png(4, 4))
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)
    out = cli("edit", job["id"], "--text", "final text", "--at", iso(when), "--media",
              str(pic), "--alt", "a picture", "--max-attempts", "2")
    assert out.code == 0, out.stderr
    assert job["id"] in out.stdout and "edited" in out.stdout
    fresh = show(cli, job["id"])
    assert fresh["text"] == "final text"
    assert fresh["scheduled_at"] == fresh["next_attempt_at"]
    assert fresh["scheduled_at"].startswith(iso(when)[:19])
    assert fresh["media"] == [{"path": str(pic), "alt": "a picture"}]
    assert fresh["max_attempts"] == 2
    (audit,) = [a for a in fresh["attempt_log"] if a["outcome"] == "edited"]
    for name in ("text", "scheduled_at", "media", "max_attempts"):
        assert name in audit["decision"]
    assert "options" not in audit["decision"]
    assert cli("edit", job["id"], "--no-media").code == 0
    assert show(cli, job["id"])["media"] == []


def test_edit_options_are_checked_by_the_platform(cli):
    out = cli("accounts", "add", "masto", "--platform", "mastodon", "--base-url",
              "https://mastodon.example", "--offline", "--credentials", "-",
              input='{"access_token": "tok-123456789"}')
    assert out.code == 0, out.stderr
    job = add_job(cli, "hello", "-a", "masto", "--at", "+1h", "--option", "language=en")
    assert cli("edit", job["id"], "--option", "visibility=unlisted").code == 0
    assert show(cli, job["id"])["options"] == {"language": "en", "visibility": "unlisted"}
    refused(cli, "edit", job["id"], "--option", "visibility=everyone", match="visibility")
    refused(cli, "edit", job["id"], "--option", "colour=red", match="no option")
    # KEY= removes an option.
    assert cli("edit", job["id"], "--option", "language=").code == 0
    assert show(cli, job["id"])["options"] == {"visibility": "unlisted"}


def test_edit_a_missed_job_with_a_new_time_makes_it_pending(cli, demo):
    job = add_job(cli, "late", "-a", "demo", "--at", "now")
    with opened(cli) as store:
        store.mark_missed(now=datetime.now(UTC) + timedelta(hours=2), window=3600)
        assert store.get_job(job["id"]).status == JobStatus.MISSED
    assert cli("edit", job["id"], "--text", "late but fixed").code == 0
    assert show(cli, job["id"])["status"] == "missed"  # text only: still missed
    assert cli("edit", job["id"], "--at", "+2h").code == 0
    fresh = show(cli, job["id"])
    assert fresh["status"] == "pending" and fresh["last_error"] is None


@pytest.mark.parametrize("status, match", [
    (JobStatus.POSTED, "already posted"),
    (JobStatus.UNKNOWN, "unknown"),
    (JobStatus.FAILED, "already reached"),
])
def test_edit_refuses_a_job_that_reached_the_platform(cli, demo, status, match):
    job = add_job(cli, "sent", "-a", "demo", "--at", "now")
    run_once(cli, job["id"], status, platform_post_id="p1" if status == "posted" else None)
    refused(cli, "edit", job["id"], "--text", "changed", match=match)


def test_edit_refuses_a_pending_job_that_was_attempted(cli, demo):
    job = add_job(cli, "retrying", "-a", "demo", "--at", "now")
    run_once(cli, job["id"], JobStatus.PENDING,
             next_attempt_at=datetime.now(UTC) + timedelta(hours=1))
    assert show(cli, job["id"])["status"] == "pending"
    refused(cli, "edit", job["id"], "--text", "changed", match="already reached outbox")


def test_edit_refuses_running_and_cancelled_jobs(cli, demo):
    job = add_job(cli, "now", "-a", "demo", "--at", "now")
    with opened(cli) as store:
        store.claim("run-x", now=datetime.now(UTC) + timedelta(seconds=1), lease=300,
                    limit=1, per_account=1, limits_for=lambda a: (None, None))
    refused(cli, "edit", job["id"], "--text", "x", match="being published")
    other = add_job(cli, "later", "-a", "demo", "--at", "+1h")
    assert cli("cancel", other["id"]).code == 0
    refused(cli, "edit", other["id"], "--text", "x", match="cancelled")


def test_edit_is_checked_like_add(cli, demo, tmp_path):
    out = cli("accounts", "add", "tiny", "--platform", "telegram", "--credentials", "-",
              input='{"bot_token": "123:abc", "chat_id": "1"}', )
    assert out.code == 0, out.stderr
    tiny = add_job(cli, "short", "-a", "tiny", "--at", "+1h")
    job = add_job(cli, "ok", "-a", "demo", "--at", "+1h")
    refused(cli, "edit", tiny["id"], "--text", "x" * 5000, match="4096")
    refused(cli, "edit", job["id"], "--at", "2001-01-01T00:00:00Z", match="in the past")
    refused(cli, "edit", job["id"], "--media", str(tmp_path / "missing.png"),
            match="not found")
    refused(cli, "edit", job["id"], match="nothing to change")
    refused(cli, "edit", job["id"], "--option", "novalue", match="KEY=VALUE")
    refused(cli, "edit", "zzzzzzzz", "--text", "x", match="unknown job")


# -- retry --at, bulk cancel / retry ----------------------------------------------------------

def test_retry_at_a_time(cli, demo):
    job = add_job(cli, "try again", "-a", "demo", "--at", "now")
    run_once(cli, job["id"], JobStatus.FAILED, message="no")
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=5)
    out = cli("retry", job["id"], "--at", iso(when))
    assert out.code == 0, out.stderr
    fresh = show(cli, job["id"])
    assert fresh["status"] == "pending"
    assert fresh["next_attempt_at"].startswith(iso(when)[:19])
    assert fresh["scheduled_at"].startswith(iso(when)[:19])
    refused(cli, "retry", job["id"], "--at", "+1h", match="pending")
    run_once(cli, job["id"], JobStatus.FAILED, message="no")
    refused(cli, "retry", job["id"], "--at", "2001-01-01T00:00Z", match="in the past")


def test_bulk_cancel_by_account_with_a_count_and_dry_run(cli, demo):
    ids = [add_job(cli, f"post {i}", "-a", "demo", "--at", f"+{i + 1}h")["id"]
           for i in range(3)]
    keep = add_job(cli, "theirs", "-a", "other", "--at", "+1h")["id"]
    before = content(cli.db)
    out = cli("cancel", "--account", "demo", "--dry-run")
    assert out.code == 0 and "would cancel 3 jobs" in out.stdout
    assert all(i in out.stdout for i in ids)
    assert content(cli.db) == before
    out = cli("cancel", "--account", "demo")
    assert out.code == 0 and "cancelled 3 jobs" in out.stdout
    assert {show(cli, i)["status"] for i in ids} == {"cancelled"}
    assert show(cli, keep)["status"] == "pending"
    assert all(any(a["outcome"] == "cancelled" for a in show(cli, i)["attempt_log"]) for i in ids)


def test_bulk_retry_by_status(cli, demo):
    a = add_job(cli, "a", "-a", "demo", "--at", "now")
    b = add_job(cli, "b", "-a", "other", "--at", "now")
    c = add_job(cli, "c", "-a", "demo", "--at", "+1h")
    run_once(cli, a["id"], JobStatus.FAILED, message="x")
    run_once(cli, b["id"], JobStatus.FAILED, message="x")
    out = cli("retry", "--status", "failed", "--dry-run")
    assert out.code == 0 and "would retry 2 jobs" in out.stdout
    assert show(cli, a["id"])["status"] == "failed"
    out = cli("retry", "--status", "failed", "--account", "demo")
    assert out.code == 0 and "set pending again 1 job" in out.stdout
    assert show(cli, a["id"])["status"] == "pending"
    assert show(cli, b["id"])["status"] == "failed"
    assert show(cli, c["id"])["attempt_log"] == []


def test_bulk_refusals(cli, demo):
    job = add_job(cli, "a", "-a", "demo", "--at", "+1h")
    refused(cli, "cancel", match="give job ids")
    refused(cli, "cancel", job["id"], "--account", "demo", match="not both")
    refused(cli, "cancel", "--status", "posted", match="only pending, failed, missed")
    refused(cli, "cancel", "--account", "nobody", match="unknown account")
    refused(cli, "retry", "--status", "pending", match="only failed, missed, cancelled")
    refused(cli, "retry", "--status", "nonsense", match="unknown status")


# -- keys: reuse after cancel, --update ----------------------------------------------------------

def test_a_cancelled_jobs_key_can_be_reused(cli, demo):
    old = add_job(cli, "v1", "-a", "demo", "--at", "+1h", "--key", "launch")
    assert cli("cancel", old["id"]).code == 0
    new = add_job(cli, "v2", "-a", "demo", "--at", "+2h", "--key", "launch")
    assert new["created"] and new["id"] != old["id"] and new["key"] == "launch"
    kept = show(cli, old["id"])
    assert kept["status"] == "cancelled" and kept["text"] == "v1" and kept["attempt_log"]
    again = add_job(cli, "v3", "-a", "demo", "--at", "+2h", "--key", "launch")
    assert not again["created"] and again["id"] == new["id"]
    # The old job cannot come back while its key belongs to the new one.
    refused(cli, "retry", old["id"], match=f"belongs to job {new['id']}")


def test_add_key_update_changes_the_pending_job(cli, demo):
    first = add_job(cli, "draft", "-a", "demo", "--at", "+1h", "--key", "k")
    out = cli("add", "final", "-a", "demo", "--at", "+3h", "--key", "k", "--update")
    assert out.code == 0, out.stderr
    assert f"{first['id']}  updated" in out.stdout
    fresh = show(cli, first["id"])
    assert fresh["text"] == "final"
    assert any(a["outcome"] == "updated" for a in fresh["attempt_log"])
    assert len(cli("list", "--json").json()) == 1
    # Without --update the same key stays a no-op.
    out = cli("add", "other", "-a", "demo", "--at", "+3h", "--key", "k")
    assert out.code == 0 and "nothing added" in out.stdout
    assert show(cli, first["id"])["text"] == "final"


def test_add_update_leaves_a_posted_job_and_refuses_a_running_one(cli, demo):
    job = add_job(cli, "posted one", "-a", "demo", "--at", "now", "--key", "p")
    run_once(cli, job["id"], JobStatus.POSTED, platform_post_id="x")
    out = cli("add", "changed", "-a", "demo", "--at", "+1h", "--key", "p", "--update")
    assert out.code == 0 and "nothing updated" in out.stdout
    assert show(cli, job["id"])["text"] == "posted one"
    busy = add_job(cli, "busy", "-a", "other", "--at", "now", "--key", "b")
    with opened(cli) as store:
        store.claim("run-x", now=datetime.now(UTC) + timedelta(seconds=1), lease=300,
                    limit=1, per_account=1, limits_for=lambda a: (None, None))
    refused(cli, "add", "changed", "-a", "other", "--at", "+1h", "--key", "b", "--update",
            match="being published")
    assert show(cli, busy["id"])["text"] == "busy"
    refused(cli, "add", "x", "-a", "demo", "--at", "+1h", "--update", match="needs --key")


# -- duplicate guard -------------------------------------------------------------------------

def test_duplicate_text_within_the_window_is_refused(cli, demo):
    first = add_job(cli, "Big   News today", "-a", "demo", "--at", "+1h")
    err = refused(cli, "add", "big news TODAY", "-a", "demo", "--at", "+5h",
                  match="--allow-duplicate")
    assert first["id"] in err
    # Another account, or outside the window, is fine.
    add_job(cli, "Big News today", "-a", "other", "--at", "+1h")
    add_job(cli, "Big News today", "-a", "demo", "--at", "+26h")
    # --allow-duplicate lets it through.
    add_job(cli, "Big News today", "-a", "demo", "--at", "+2h", "--allow-duplicate")


def test_duplicate_of_a_posted_job_and_on_edit(cli, demo, tmp_path):
    job = add_job(cli, "posted text", "-a", "demo", "--at", "now")
    run_once(cli, job["id"], JobStatus.POSTED, platform_post_id="x")
    refused(cli, "add", "posted text", "-a", "demo", "--at", "+2h", match="posted at")
    other = add_job(cli, "something else", "-a", "demo", "--at", "+3h")
    refused(cli, "edit", other["id"], "--text", "Posted text", match=job["id"])
    assert cli("edit", other["id"], "--text", "Posted text", "--allow-duplicate").code == 0
    # A cancelled job is not a duplicate of anything.
    c = add_job(cli, "cancel me", "-a", "other", "--at", "+1h")
    assert cli("cancel", c["id"]).code == 0
    add_job(cli, "cancel me", "-a", "other", "--at", "+1h")


def test_duplicate_rows_of_an_import_are_refused(cli, demo, tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text(f"account,at,text\ndemo,{future(1)},same\ndemo,{future(2)},same\n")
    refused(cli, "import", str(path), match="same text")
    out = cli("import", str(path), "--allow-duplicate")
    assert out.code == 0, out.stderr
    path.write_text("account,at,text\n"
                    f"demo,{future(30)},window off\ndemo,{future(31)},window off\n")
    config = tmp_path / "off.toml"
    config.write_text('[schedule]\nduplicate_window = "0"\n')
    out = cli("--config", str(config), "import", str(path))
    assert out.code == 0, out.stderr


# -- queue slots ------------------------------------------------------------------------------

def slots_config(tmp_path, zone="Europe/Berlin"):
    path = tmp_path / "slots.toml"
    path.write_text(f'[accounts.demo]\nslots = ["mon 09:00", "wed 12:30"]\ntz = "{zone}"\n')
    return str(path)


def test_next_slot_takes_free_slots_in_order(cli, demo, tmp_path):
    config = slots_config(tmp_path)
    out = cli("--config", config, "slots", "demo", "--json")
    assert out.code == 0, out.stderr
    free = out.json()["free"]
    assert len(free) >= 4
    berlin = ZoneInfo("Europe/Berlin")
    walls = [datetime.fromisoformat(t.replace("Z", "+00:00")).astimezone(berlin) for t in free]
    assert all((w.strftime("%a %H:%M") in ("Mon 09:00", "Wed 12:30")) for w in walls)
    jobs = []
    for i in range(3):
        out = cli("--config", config, "add", f"queued {i}", "-a", "demo", "--at", "next-slot",
                  "--json")
        assert out.code == 0, out.stderr
        jobs.append(out.json()[0])
    assert [j["scheduled_at"][:16] for j in jobs] == [t[:16] for t in free[:3]]
    out = cli("--config", config, "slots", "demo", "--json")
    assert out.json()["free"][0] == free[3]
    # A cancelled job gives its slot back.
    assert cli("cancel", jobs[0]["id"]).code == 0
    out = cli("--config", config, "add", "again", "-a", "demo", "--at", "next-slot", "--json")
    assert out.json()[0]["scheduled_at"][:16] == free[0][:16]


def test_slots_refusals(cli, demo, tmp_path):
    config = slots_config(tmp_path)
    refused(cli, "--config", config, "add", "x", "-a", "other", "--at", "next-slot",
            match="has no queue slots")
    refused(cli, "--config", config, "slots", "other", match="has no queue slots")
    bad = tmp_path / "bad.toml"
    bad.write_text('[accounts.demo]\nslots = ["someday 09:00"]\n')
    refused(cli, "--config", str(bad), "add", "x", "-a", "demo", "--at", "next-slot",
            match="accounts.demo.slots")


# -- pause / resume ---------------------------------------------------------------------------

def test_pause_holds_jobs_without_attempts_or_missed_and_resume_restarts_the_window(cli, demo):
    job = add_job(cli, "held", "-a", "demo", "--at", "now")
    other = add_job(cli, "goes", "-a", "other", "--at", "now")
    out = cli("accounts", "pause", "demo")
    assert out.code == 0 and "paused account demo" in out.stdout
    status = cli("status", "--json").json()
    assert status["paused"] == {"demo": None}
    assert cli("accounts", "list", "--json").json()[0]["state"] == "paused"
    later = datetime.now(UTC) + timedelta(hours=3)
    with opened(cli) as store:
        assert [j.id for j in store.due_jobs(now=later, limit=None)] == [other["id"]]
        claim = store.claim("r", now=later, lease=60, limit=10, per_account=10,
                            limits_for=lambda a: (None, None))
        assert [j.id for j in claim.jobs] == [other["id"]]
        assert store.mark_missed(now=later, window=3600) == []
        store.resume_account("demo", now=later)
        # The window counts from the resume: not missed yet, claimable.
        assert store.mark_missed(now=later + timedelta(minutes=30), window=3600) == []
        assert [j.id for j in store.due_jobs(now=later, limit=None)] == [job["id"]]
        held = store.get_job(job["id"])
        assert held.status == JobStatus.PENDING and held.attempts == 0
        # ... and it is missed an hour after the resume, not before.
        assert [j.id for j in store.mark_missed(now=later + timedelta(minutes=61),
                                                window=3600)] == [job["id"]]


def test_pause_until_ends_by_itself(cli, demo):
    job = add_job(cli, "held", "-a", "demo", "--at", "now")
    until = datetime.now(UTC) + timedelta(hours=2)
    out = cli("accounts", "pause", "demo", "--until", iso(until))
    assert out.code == 0 and "until" in out.stdout
    with opened(cli) as store:
        assert store.due_jobs(now=until - timedelta(minutes=1), limit=None) == []
        assert store.next_due_at(now=datetime.now(UTC)).isoformat()[:16] == \
            until.isoformat()[:16]
        assert [j.id for j in store.due_jobs(now=until + timedelta(seconds=1), limit=None)] \
            == [job["id"]]
        assert store.mark_missed(now=until + timedelta(minutes=59), window=3600) == []


def test_show_says_a_job_waits_for_its_paused_account_or_the_part_before(cli, demo):
    job = add_job(cli, "held", "-a", "demo", "--at", "now")
    assert cli("show", job["id"], "--json").json()["waiting"]["reason"] == "due"
    assert cli("accounts", "pause", "demo").code == 0
    waiting = cli("show", job["id"], "--json").json()["waiting"]
    assert waiting["reason"] == "paused" and waiting["until"] is None
    assert "accounts resume demo" in cli("show", job["id"]).stdout
    until = datetime.now(UTC) + timedelta(hours=2)
    assert cli("accounts", "pause", "demo", "--until", iso(until)).code == 0
    waiting = cli("show", job["id"], "--json").json()["waiting"]
    assert waiting["reason"] == "paused" and waiting["until"][:16] == iso(until)[:16]
    assert cli("accounts", "resume", "demo").code == 0
    parts = cli("add", "--thread", "one", "two", "-a", "demo", "--at", "now", "--json").json()
    waiting = cli("show", parts[1]["id"], "--json").json()["waiting"]
    assert waiting["reason"] == "thread" and parts[0]["id"] in waiting["message"]
    assert cli("show", parts[0]["id"], "--json").json()["waiting"]["reason"] == "due"


def test_run_due_is_quiet_about_a_paused_account(proc, tmp_path):
    out = proc("accounts", "add", "demo", "--platform", "outbox", "--credentials", "-",
               input=outbox_credentials(tmp_path))
    assert out.code == 0, out.stderr
    assert proc("add", "held", "-a", "demo", "--at", "now").code == 0
    assert proc("accounts", "pause", "demo").code == 0
    run = proc("run-due")
    assert run.code == 0 and run.stdout == "" and run.stderr == ""
    assert not list((tmp_path / "outbox").glob("*.json")) if (tmp_path / "outbox").exists() \
        else True
    assert proc("accounts", "resume", "demo").stdout.strip() == "resumed account demo"
    run = proc("run-due")
    assert run.code == 0, run.stderr
    assert len(list((tmp_path / "outbox").glob("*.json"))) == 1


def test_pause_refusals(cli, demo):
    refused(cli, "accounts", "pause", "nobody", match="unknown account")
    refused(cli, "accounts", "pause", "demo", "--until", "2001-01-01T00:00Z",
            match="not in the future")
    refused(cli, "accounts", "resume", "nobody", match="unknown account")
