"""When a full quota window frees a place (quota, quota --json) and why a job waits (show,
show --json): the window arithmetic, every reason, and what the commands print."""

from __future__ import annotations

import json
import random
import re
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from autopost.models import Account, AccountState, Job, JobStatus
from autopost.quota import DAY, HOUR, window_slot, window_state
from autopost.store.timefmt import to_db
from autopost.waiting import REASONS, explain
from tests.test_cli import add_job, future, outbox_credentials
from tests.test_cli_tty import tty
from tests.test_json_shapes import COMMANDS, DOC, SHAPES, check

T = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


# -- the window arithmetic ---------------------------------------------------------------------

def test_a_window_with_room_has_no_reset_but_says_when_its_oldest_post_leaves():
    stamps = [T - timedelta(days=2), T - timedelta(minutes=50), T - timedelta(minutes=10)]
    w = window_state(stamps, T, HOUR, 3)
    assert (w.used, w.limit, w.full_until) == (2, 3, None)
    assert w.oldest_at == T - timedelta(minutes=50)
    assert w.frees_at == T + timedelta(minutes=10)
    empty = window_state([], T, DAY, 5)
    assert (empty.used, empty.oldest_at, empty.frees_at, empty.full_until) == (0, None, None,
                                                                               None)


def test_a_full_window_resets_when_enough_posts_have_left_it():
    stamps = [T - timedelta(minutes=m) for m in (55, 40, 20, 5)]
    assert window_state(stamps, T, HOUR, 4).full_until == T + timedelta(minutes=5)
    # Over the limit (it was lowered): two posts must leave before one more fits.
    assert window_state(stamps, T, HOUR, 3).full_until == T + timedelta(minutes=20)
    assert window_state(stamps, T, HOUR, None).full_until is None
    # A job in flight counts from now: the window stays full for the whole hour.
    assert window_state([T], T, HOUR, 1).full_until == T + HOUR


def test_the_reset_is_the_slot_the_claim_would_defer_to():
    rng = random.Random(14)
    for _ in range(300):
        stamps = [T - timedelta(seconds=rng.randrange(0, 2 * 86400)) for _ in
                  range(rng.randrange(0, 12))]
        limit = rng.choice([None, 1, 2, 3, 5, 8])
        for window in (HOUR, DAY):
            assert window_state(stamps, T, window, limit).full_until == \
                window_slot(stamps, T, window, limit)


# -- why a job waits ----------------------------------------------------------------------------

def job(**kw) -> Job:
    base = dict(id="j1", account="a", platform="outbox", text="hi", scheduled_at=T,
                status=JobStatus.PENDING, next_attempt_at=T, attempts=0, max_attempts=5,
                created_at=T - HOUR, updated_at=T - HOUR)
    base.update(kw)
    return Job(**base)


def acct(**kw) -> Account:
    return Account(name="a", platform="outbox", credentials={}, **kw)


def test_each_reason_and_its_end():
    now = T
    hour = window_state([now - timedelta(minutes=45)], now, HOUR, 1)  # full until 09:15
    day_room = window_state([now - timedelta(minutes=45)], now, DAY, 10)
    assert hour.full_until == now + timedelta(minutes=15)

    w = explain(job(), acct(), now, hour=hour, day=day_room)
    assert (w.reason, w.until) == ("over_quota", now + timedelta(minutes=15))
    assert "over the hourly quota of account a (1/1 in the last hour) until" in w.message

    # Scheduled after the window frees: its own time is why.
    later = T + timedelta(hours=3)
    w = explain(job(scheduled_at=later, next_attempt_at=later), acct(), now, hour=hour)
    assert (w.reason, w.until) == ("scheduled", later)
    # A job a run deferred to the free slot has that slot as its time: the quota is why.
    slot = hour.full_until
    w = explain(job(next_attempt_at=slot), acct(), now, hour=hour)
    assert (w.reason, w.until) == ("over_quota", slot)
    # A retry waits for its own time.
    w = explain(job(attempts=2, scheduled_at=T - HOUR, next_attempt_at=later), acct(), now)
    assert (w.reason, w.until) == ("retrying", later)
    assert "retrying after attempt 2 of 5" in w.message

    # A platform block that ends after the window frees.
    blocked = now + timedelta(hours=2)
    w = explain(job(), acct(blocked_until=blocked), now, hour=hour)
    assert (w.reason, w.until) == ("blocked", blocked)
    assert "rate-limited by the platform until" in w.message
    # ... and one that ends before it: the quota is what holds the job.
    w = explain(job(), acct(blocked_until=now + timedelta(minutes=5)), now, hour=hour)
    assert w.reason == "over_quota"
    # A block already over is no reason.
    w = explain(job(), acct(blocked_until=now - timedelta(minutes=5)), now)
    assert (w.reason, w.until) == ("due", T)

    w = explain(job(), acct(state=AccountState.NEEDS_REAUTH, state_reason="token revoked"),
                now, hour=hour)
    assert (w.reason, w.until) == ("needs_reauth", None)
    assert "needs re-auth: token revoked" in w.message

    lease = now + timedelta(minutes=5)
    w = explain(job(status=JobStatus.RUNNING, lease_expires_at=lease), acct(), now)
    assert (w.reason, w.until) == ("running", lease)
    w = explain(job(status=JobStatus.UNKNOWN, next_attempt_at=lease), acct(), now)
    assert (w.reason, w.until) == ("reconciling", lease)
    w = explain(job(status=JobStatus.UNKNOWN, next_attempt_at=None), acct(), now)
    assert (w.reason, w.until) == ("unknown", None) and "autopost resolve j1" in w.message
    for status in (JobStatus.POSTED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.MISSED):
        assert explain(job(status=status), acct(), now) is None


def test_the_daily_window_is_named_when_it_ends_last():
    now = T
    hour = window_state([now - timedelta(minutes=45)], now, HOUR, 1)
    day = window_state([now - timedelta(hours=20), now - timedelta(minutes=45)], now, DAY, 2)
    w = explain(job(), acct(), now, hour=hour, day=day)
    assert (w.reason, w.until) == ("over_quota", now + timedelta(hours=4))
    assert "over the daily quota of account a (2/2 in the last day)" in w.message


def test_every_reason_is_documented():
    assert SHAPES["Waiting"] == {"reason": "string", "until": "string|null",
                                 "message": "string"}
    row = next(line for line in DOC.read_text().splitlines() if line.startswith("| reason |"))
    for reason in REASONS:
        assert f"{reason} (" in row, reason


# -- the commands ------------------------------------------------------------------------------

@pytest.fixture
def limited(cli, tmp_path):
    out = cli("accounts", "add", "demo", "--platform", "outbox", "--credentials", "-",
              "--hourly-limit", "1", "--daily-limit", "3", input=outbox_credentials(tmp_path))
    assert out.code == 0, out.stderr
    return "demo"


def posted_at(cli, minutes_ago: float) -> datetime:
    """A post of the account `minutes_ago` minutes ago (straight into the database)."""
    job = add_job(cli, f"posted {minutes_ago} min ago", "-a", "demo", "--at", future(24))
    at = (datetime.now(UTC) - timedelta(minutes=minutes_ago)).replace(microsecond=0)
    with sqlite3.connect(cli.db) as c:
        c.execute("UPDATE jobs SET status = 'posted', posted_at = ?, next_attempt_at = NULL "
                  "WHERE id = ?", (to_db(at), job["id"]))
    return at


def iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_quota_json_gives_each_windows_reset_and_the_next_post(cli, limited):
    older, newer = posted_at(cli, 200), posted_at(cli, 25)
    out = cli("quota", "--json")
    assert out.code == 0, out.stderr
    (row,) = out.json()
    check([row], COMMANDS["autopost quota --json"], "quota")
    assert row["hour"] == {"used": 1, "limit": 1, "oldest_at": iso(newer),
                           "frees_at": iso(newer + HOUR), "full_until": iso(newer + HOUR)}
    assert row["day"] == {"used": 2, "limit": 3, "oldest_at": iso(older),
                          "frees_at": iso(older + DAY), "full_until": None}
    assert row["next_post_at"] == iso(newer + HOUR)
    # A block that ends later decides the next post.
    with sqlite3.connect(cli.db) as c:
        c.execute("UPDATE accounts SET blocked_until = ?",
                  (to_db(datetime.now(UTC) + timedelta(hours=5)),))
    (row,) = cli("quota", "--json").json()
    assert row["next_post_at"] == row["blocked_until"] is not None


def test_quota_piped_carries_the_next_post_in_full(cli, limited):
    newer = posted_at(cli, 10)
    out = cli("quota")
    (line,) = out.stdout.splitlines()
    assert line.split("\t") == ["demo", "outbox", "1/1", "1/3", "", iso(newer + HOUR)]


def test_show_json_says_over_quota_until_the_window_frees(cli, limited):
    newer = posted_at(cli, 25)
    waiting = add_job(cli, "waits for the hour", "-a", "demo", "--at", "now")
    out = cli("show", waiting["id"], "--json")
    data = out.json()
    check(data, COMMANDS["autopost show JOB --json"], "show")
    assert data["waiting"]["reason"] == "over_quota"
    assert data["waiting"]["until"] == iso(newer + HOUR)
    assert "over the hourly quota of account demo (1/1 in the last hour)" in \
        data["waiting"]["message"]
    text = cli("show", waiting["id"]).stdout
    # The same message, bar its countdown, which may tick between the two calls.
    countdown = re.compile(r"\(in [0-9dhms ]+\)")
    assert countdown.search(data["waiting"]["message"])
    assert countdown.sub("(in ...)", data["waiting"]["message"]) in countdown.sub("(in ...)", text)
    later = add_job(cli, "tomorrow", "-a", "demo", "--at", future(30))
    data = cli("show", later["id"], "--json").json()
    assert (data["waiting"]["reason"], data["waiting"]["until"]) == ("scheduled",
                                                                   later["scheduled_at"])


def test_show_json_of_a_settled_job_has_no_waiting(cli, limited):
    posted_at(cli, 5)
    (job,) = cli("list", "--json", "--status", "posted").json()
    assert cli("show", job["id"], "--json").json()["waiting"] is None


def test_quota_bars_show_the_reset_time_on_a_terminal(tmp_path):
    from tests.test_cli_tty import piped

    db = tmp_path / "autopost.db"
    (tmp_path / "config.toml").write_text("")
    creds = json.dumps({"path": str(tmp_path / "outbox")})
    subprocess.run([sys.executable, "-m", "autopost", "--db", str(db), "--config",
                    str(tmp_path / "config.toml"), "accounts", "add", "a", "--platform",
                    "outbox", "--credentials", "-", "--hourly-limit", "1"],
                   input=creds, text=True, capture_output=True, check=True, timeout=60)
    done = piped(db, "add", "one", "-a", "a", "--at", "now", "--json")
    assert done.returncode == 0, done.stderr
    assert piped(db, "run-due").returncode == 0
    (row,) = json.loads(piped(db, "quota", "--json").stdout)
    reset = datetime.fromisoformat(row["next_post_at"])
    for columns in (60, 80, 200):
        out = tty(db, "quota", columns=columns)
        line = next(x for x in out.splitlines() if x.startswith("a "))
        assert "██████████ 1/1" in line
        assert reset.strftime("%H:%M") in line, (columns, out)
        if columns >= 80:
            assert "(hour full)" in line


def test_a_paused_account_holds_its_jobs_until_the_latest_end():
    from autopost.models import PAUSED_FOREVER

    now = T
    w = explain(job(), acct(paused_until=PAUSED_FOREVER), now)
    assert (w.reason, w.until) == ("paused", None)
    assert "paused until 'autopost accounts resume a'" in w.message
    until = now + timedelta(hours=2)
    w = explain(job(), acct(paused_until=until), now)
    assert (w.reason, w.until) == ("paused", until)
    # A pause ending before the job's own time is no reason; one that is over, neither.
    later = now + timedelta(hours=5)
    w = explain(job(scheduled_at=later, next_attempt_at=later), acct(paused_until=until), now)
    assert (w.reason, w.until) == ("scheduled", later)
    assert explain(job(), acct(paused_until=now - timedelta(minutes=1)), now).reason == "due"
    # The pause ends first, the quota window later: the quota is what holds the job then.
    hour = window_state([now - timedelta(minutes=5)], now, HOUR, 1)  # full until 09:55
    w = explain(job(), acct(paused_until=now + timedelta(minutes=20)), now, hour=hour)
    assert (w.reason, w.until) == ("over_quota", hour.full_until)
    # ... and a block that outlasts the pause.
    w = explain(job(), acct(paused_until=until, blocked_until=until + HOUR), now)
    assert (w.reason, w.until) == ("blocked", until + HOUR)
    # Re-auth comes first: a resume alone would not send the job.
    w = explain(job(), acct(paused_until=until, state=AccountState.NEEDS_REAUTH), now)
    assert w.reason == "needs_reauth"
