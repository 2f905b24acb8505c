"""Recurring posts: rules in the series' zone across DST (hypothesis), the horizon,
preview and plan that change nothing, and cancelling or editing only what is not posted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autopost.errors import UsageError
from autopost.models import JobFilter, JobStatus
from autopost.recur import wall_to_utc
from autopost.series import Rule, normalise_rule, plan_extension
from autopost.store.sqlite import SqliteStore

from .conftest import outbox_credentials
from .test_schedule_cli import content, refused, run_once

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Sydney", "America/Santiago",
         "Asia/Tehran", "Pacific/Chatham", "Europe/London", "America/St_Johns"]


# -- the rule, across DST ------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(zone=st.sampled_from(ZONES),
       start=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2030, 12, 31)),
       hour=st.integers(0, 23), minute=st.sampled_from([0, 15, 30, 45]),
       rule=st.sampled_from(["daily", "weekdays", "weekly", "mon,thu", "every 3 days",
                             "FREQ=WEEKLY;BYDAY=SU", "monthly"]))
def test_occurrences_keep_their_wall_time_across_dst(zone, start, hour, minute, rule):
    tz = ZoneInfo(zone)
    first = start.replace(hour=hour, minute=minute, second=0, microsecond=0)
    occurrences = Rule(normalise_rule(rule), tz, first, count=60).first(60)
    assert occurrences, rule
    times = [t for _, t in occurrences]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert [n for n, _ in occurrences] == list(range(1, len(occurrences) + 1))
    for when in times:
        assert when.tzinfo is not None and when.utcoffset() == timedelta(0)
        wall = when.astimezone(tz)
        real = datetime(wall.year, wall.month, wall.day, hour, minute)
        if wall_to_utc(real, tz).astimezone(tz).replace(tzinfo=None) == real:
            # The wall time exists that day: it is kept exactly, whatever the offset.
            assert (wall.hour, wall.minute) == (hour, minute), (zone, rule, when)
        else:
            # Skipped by a DST change: moved forward by the gap, never earlier.
            gap = wall.replace(tzinfo=None) - real
            assert timedelta(0) < gap <= timedelta(hours=1), (zone, rule, when)


def test_the_documented_gap_and_fold_rules():
    berlin = ZoneInfo("Europe/Berlin")
    # 2026-03-29 02:30 does not exist in Berlin: posted at 03:30 local (01:30 UTC).
    assert wall_to_utc(datetime(2026, 3, 29, 2, 30), berlin) == \
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    # 2026-10-25 02:30 happens twice: the first (summer time, 00:30 UTC).
    assert wall_to_utc(datetime(2026, 10, 25, 2, 30), berlin) == \
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    daily = Rule("FREQ=DAILY", berlin, datetime(2026, 3, 27, 9, 0), count=4).first(4)
    assert [t.astimezone(berlin).hour for _, t in daily] == [9, 9, 9, 9]
    assert [t.hour for _, t in daily] == [8, 8, 7, 7]  # the UTC hour moves, 09:00 stays


def test_until_and_count_bound_the_rule():
    ny = ZoneInfo("America/New_York")
    until = datetime(2026, 11, 5, 23, tzinfo=UTC)
    rule = Rule("FREQ=DAILY", ny, datetime(2026, 11, 1, 9), until=until)
    assert len(list(rule.occurrences())) == 5
    assert len(list(Rule("FREQ=DAILY", ny, datetime(2026, 11, 1, 9), count=3)
                    .occurrences())) == 3


@pytest.mark.parametrize("text, rule", [
    ("daily", "FREQ=DAILY"),
    ("Weekdays", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"),
    ("mon, wed", "FREQ=WEEKLY;BYDAY=MO,WE"),
    ("every 2 weeks", "FREQ=WEEKLY;INTERVAL=2"),
    ("RRULE:FREQ=WEEKLY;BYDAY=MO;BYHOUR=9", "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9"),
])
def test_short_forms(text, rule):
    assert normalise_rule(text) == rule


@pytest.mark.parametrize("text, match", [
    ("sometimes", "not a rule"), ("FREQ=MINUTELY", "more often than hourly"),
    ("DTSTART=20260101;FREQ=DAILY", "DTSTART"), ("FREQ=DAILY;DTSTART=20260101", "DTSTART"),
    ("", "empty"),
])
def test_bad_rules(text, match):
    with pytest.raises(UsageError, match=match):
        normalise_rule(text)


def test_extension_makes_only_what_comes_within_the_horizon():
    tz = ZoneInfo("Europe/Berlin")
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    rule = Rule("FREQ=DAILY", tz, datetime(2026, 12, 2, 9))
    ext = plan_extension(rule, 0, None, now=now, horizon=timedelta(days=7))
    assert [n for n, _ in ext.occurrences] == list(range(1, 8))
    assert ext.next_extend_at == datetime(2026, 12, 9, 8, tzinfo=UTC) - timedelta(days=7)
    later = plan_extension(rule, ext.made, ext.through, now=now + timedelta(days=2),
                           horizon=timedelta(days=7))
    assert [n for n, _ in later.occurrences] == [8, 9]
    assert not later.done
    done = plan_extension(Rule("FREQ=DAILY", tz, datetime(2026, 12, 2, 9), count=2), 0, None,
                          now=now, horizon=timedelta(days=7))
    assert done.done and done.next_extend_at is None and done.made == 2


# -- through the CLI -------------------------------------------------------------------------

@pytest.fixture
def demo(cli, tmp_path):
    out = cli("accounts", "add", "demo", "--platform", "outbox", "--credentials", "-",
              input=outbox_credentials(tmp_path))
    assert out.code == 0, out.stderr
    return "demo"


def tomorrow_9(zone: str) -> str:
    local = datetime.now(ZoneInfo(zone)) + timedelta(days=1)
    return local.strftime("%Y-%m-%dT09:00")


def test_preview_prints_occurrences_and_changes_nothing(cli, demo):
    before = content(cli.db)
    out = cli("add", "Standup notes", "-a", "demo", "--at", tomorrow_9("Europe/Berlin"),
              "--tz", "Europe/Berlin", "--repeat", "weekdays", "--count", "5", "--preview",
              "--json")
    assert out.code == 0, out.stderr
    times = out.json()["occurrences"]
    assert len(times) == 5
    berlin = ZoneInfo("Europe/Berlin")
    for t in times:
        wall = datetime.fromisoformat(t.replace("Z", "+00:00")).astimezone(berlin)
        assert (wall.hour, wall.minute) == (9, 0) and wall.weekday() < 5
    assert content(cli.db) == before


def test_repeat_makes_occurrences_within_the_horizon_and_run_due_adds_more(cli, demo,
                                                                             tmp_path):
    config = tmp_path / "h.toml"
    config.write_text('[schedule]\nhorizon = "3d"\n')
    out = cli("--config", str(config), "add", "Daily tip", "-a", "demo", "--at",
              tomorrow_9("America/New_York"), "--tz", "America/New_York", "--repeat",
              "daily", "--json")
    assert out.code == 0, out.stderr
    (made,) = out.json()
    assert made["id"].startswith("s-") and made["status"] == "active"
    assert 2 <= len(made["jobs"]) <= 3
    store = SqliteStore(cli.db)
    try:
        from autopost.config import load_settings
        from autopost.series import extend_due

        jobs = store.list_jobs(JobFilter(series_id=made["id"]))
        assert [j.series_n for j in jobs] == list(range(1, len(jobs) + 1))
        later = datetime.now(UTC) + timedelta(days=5)
        assert extend_due(store, load_settings(str(config)), now=later) >= 4
        assert extend_due(store, load_settings(str(config)), now=later) == 0  # once only
        jobs = store.list_jobs(JobFilter(series_id=made["id"]))
        assert [j.series_n for j in jobs] == list(range(1, len(jobs) + 1))
        ny = ZoneInfo("America/New_York")
        assert {j.scheduled_at.astimezone(ny).strftime("%H:%M") for j in jobs} == {"09:00"}
    finally:
        store.close()
    plan = cli("--config", str(config), "plan", "--json")
    assert plan.code == 0, plan.stderr
    assert {row["series"] for row in plan.json()} == {made["id"]}


def test_cancel_and_edit_a_series_touch_only_unposted_occurrences(cli, demo):
    out = cli("add", "Weekly digest", "-a", "demo", "--at", "+1m", "--repeat", "every 2 days",
              "--tz", "UTC", "--json")
    assert out.code == 0, out.stderr
    (made,) = out.json()
    first = made["jobs"][0]["id"]
    run_once(cli, first, JobStatus.POSTED, platform_post_id="p1")
    out = cli("edit", made["id"], "--text", "Weekly digest (new)")
    assert out.code == 0, out.stderr
    statuses = {}
    for job in made["jobs"]:
        shown = cli("show", job["id"], "--json").json()
        statuses[job["id"]] = shown["status"]
        expected = "Weekly digest" if job["id"] == first else "Weekly digest (new)"
        assert shown["text"] == expected
    refused(cli, "edit", made["id"], "--at", "+2h", match="rule")
    out = cli("cancel", made["id"])
    assert out.code == 0 and "series cancelled" in out.stdout
    for job in made["jobs"]:
        status = cli("show", job["id"], "--json").json()["status"]
        assert status == ("posted" if job["id"] == first else "cancelled")
    assert cli("plan", "--json").json() == []


def test_repeat_carries_options_checked_by_the_platform(cli):
    out = cli("accounts", "add", "masto", "--platform", "mastodon", "--base-url",
              "https://mastodon.example", "--offline", "--credentials", "-",
              input='{"access_token": "tok-123456789"}')
    assert out.code == 0, out.stderr
    out = cli("add", "weekly", "-a", "masto", "--at", "+1h", "--tz", "UTC", "--repeat",
              "weekly", "--option", "visibility=unlisted", "--json")
    assert out.code == 0, out.stderr
    (made,) = out.json()
    assert {tuple(j["options"].items()) for j in made["jobs"]} == {(("visibility",
                                                                     "unlisted"),)}
    refused(cli, "add", "weekly", "-a", "masto", "--at", "+1h", "--tz", "UTC", "--repeat",
            "weekly", "--option", "visibility=everyone", match="visibility")


def test_repeat_refusals(cli, demo):
    refused(cli, "add", "x", "-a", "demo", "--at", "+1h", "--repeat", "sometimes",
            match="not a rule")
    refused(cli, "add", "x", "-a", "demo", "--at", "+1h", "--count", "3", match="--repeat")
    refused(cli, "add", "x", "-a", "demo", "--at", "+1h", "--repeat", "daily", "--key", "k",
            match="cannot be combined")
    refused(cli, "add", "x", "-a", "demo", "--at", "+1h", "--repeat", "daily", "--until",
            "+1m", match="before the first")
    refused(cli, "cancel", "s-nothere", match="unknown series")


def test_the_idle_tick_wakes_up_for_a_series_to_extend(cli, demo, tmp_path):
    import sqlite3

    from autopost.store import probe
    from autopost.store.timefmt import to_db

    out = cli("add", "tick", "-a", "demo", "--at", "+1h", "--tz", "UTC", "--repeat", "daily",
              "--json")
    assert out.code == 0, out.stderr
    (made,) = out.json()
    conn = sqlite3.connect(cli.db)
    try:
        soon = datetime.now(UTC) + timedelta(minutes=1)
        assert not probe.has_work(conn, to_db(soon))
        extend_at = datetime.fromisoformat(made["next_extend_at"].replace("Z", "+00:00"))
        assert probe.has_work(conn, to_db(extend_at + timedelta(seconds=1)))
    finally:
        conn.close()
