"""--at parsing: round trips, offsets, relative times, phrases, and DST edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autopost.errors import UsageError
from autopost.timeparse import format_utc, local_zone, parse_duration, parse_when

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata",
         "America/Sao_Paulo", "Pacific/Chatham", "Europe/Dublin"]
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

settings.register_profile("autopost", deadline=None)
settings.load_profile("autopost")

offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes)))
naive_times = st.datetimes(min_value=datetime(1980, 1, 1), max_value=datetime(2090, 12, 31))
aware_times = st.builds(lambda dt, tz: dt.replace(tzinfo=tz), naive_times, offsets)


@given(aware_times)
def test_iso_with_an_offset_is_that_instant(dt):
    for text in (dt.isoformat(), dt.isoformat(sep=" ")):
        got = parse_when(text, now=NOW, tz="Asia/Tokyo")  # the zone must not matter
        assert got == dt
        assert got.utcoffset() == timedelta(0)


@given(aware_times)
def test_format_utc_round_trips(dt):
    assert parse_when(format_utc(dt), now=NOW) == dt.replace(microsecond=0)
    assert format_utc(parse_when(format_utc(dt), now=NOW)) == format_utc(dt)


def _instants(naive: datetime, zone: ZoneInfo) -> set[datetime]:
    """Every UTC instant whose wall time in `zone` is `naive`."""
    found = set()
    for fold in (0, 1):
        instant = naive.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == naive:
            found.add(instant)
    return found


@given(naive_times, st.sampled_from(ZONES))
def test_naive_time_is_wall_time_in_tz(naive, name):
    zone = ZoneInfo(name)
    instants = _instants(naive, zone)
    try:
        got = parse_when(naive.isoformat(), now=NOW, tz=name)
    except UsageError as exc:
        assert not instants, "an existing wall time was refused"
        assert "does not exist" in str(exc)
        return
    assert got.astimezone(zone).replace(tzinfo=None) == naive
    assert got == min(instants)  # a repeated wall time means the first of the two


@given(st.integers(min_value=0, max_value=2000), st.sampled_from(sorted(UNITS)))
def test_relative_offsets(n, unit):
    assert parse_when(f"+{n}{unit}", now=NOW) == NOW + timedelta(seconds=n * UNITS[unit])
    assert parse_when(f"+ {n} {unit}", now=NOW) == NOW + timedelta(seconds=n * UNITS[unit])


def test_absurd_offsets_are_refused_not_crashing():
    with pytest.raises(UsageError, match="too far"):
        parse_when("+1000000w", now=NOW)


@given(st.integers(0, 48), st.integers(0, 59), st.integers(0, 59))
def test_combined_relative_offsets(h, m, s):
    assert parse_when(f"+{h}h{m}m{s}s", now=NOW) == NOW + timedelta(hours=h, minutes=m,
                                                                     seconds=s)


@given(st.integers(min_value=0, max_value=5000), st.sampled_from(sorted(UNITS)))
def test_durations(n, unit):
    assert parse_duration(f"{n}{unit}") == n * UNITS[unit]
    assert parse_duration(n) == n
    assert parse_duration(str(n)) == n


@pytest.mark.parametrize("text", ["now", "NOW", "  now "])
def test_now(text):
    assert parse_when(text, now=NOW) == NOW


@pytest.mark.parametrize(("text", "zone", "expected"), [
    # clocks go back: the first 02:30 (still summer time) is meant
    ("2026-10-25T02:30", "Europe/Berlin", "2026-10-25T00:30:00Z"),
    ("2026-11-01 01:30", "America/New_York", "2026-11-01T05:30:00Z"),
    ("2026-04-05T01:45", "Australia/Lord_Howe", "2026-04-04T14:45:00Z"),  # 30-min shift
    # ordinary times on either side of a change
    ("2026-03-29T01:59", "Europe/Berlin", "2026-03-29T00:59:00Z"),
    ("2026-03-29T03:00", "Europe/Berlin", "2026-03-29T01:00:00Z"),
    ("2028-02-29T10:00", "UTC", "2028-02-29T10:00:00Z"),
])
def test_dst_edges(text, zone, expected):
    assert format_utc(parse_when(text, now=NOW, tz=zone)) == expected


@pytest.mark.parametrize(("text", "zone"), [
    ("2026-03-29T02:30", "Europe/Berlin"),
    ("2026-03-08T02:15", "America/New_York"),
    ("2026-10-04T02:10", "Australia/Lord_Howe"),
])
def test_wall_times_skipped_by_dst_are_refused(text, zone):
    with pytest.raises(UsageError, match="does not exist"):
        parse_when(text, now=NOW, tz=zone)


@pytest.mark.parametrize("text", [
    "2026-02-30", "2026-02-30T09:00", "2026-13-01 10:00", "2026-02-29T10:00",
    "2026-04-31", "2026-01-01T25:00", "2026-01-01T10:61",
])
def test_impossible_dates_are_refused(text):
    with pytest.raises(UsageError):
        parse_when(text, now=NOW, tz="UTC")


@pytest.mark.parametrize("text", ["", "   ", "soonish", "+5x", "+", "tomorrow", "today",
                                  "-5m", "5m", "-1h", "2026-06-01 tomorrow"])
def test_unreadable_times_are_refused(text):
    with pytest.raises(UsageError):
        parse_when(text, now=NOW, tz="UTC")


def test_unknown_zone_is_refused():
    with pytest.raises(UsageError, match="time zone"):
        parse_when("2026-06-01T10:00", now=NOW, tz="Mars/Olympus_Mons")


def test_phrases_are_read_in_the_zone():
    late = datetime(2026, 6, 1, 22, 30, tzinfo=UTC)  # already June 2 in Berlin
    assert format_utc(parse_when("tomorrow 09:00", now=late, tz="Europe/Berlin")) == \
        "2026-06-03T07:00:00Z"
    assert format_utc(parse_when("today 17:30", now=late, tz="Europe/Berlin")) == \
        "2026-06-02T15:30:00Z"
    assert format_utc(parse_when("tomorrow 9am", now=late, tz="UTC")) == "2026-06-02T09:00:00Z"
    assert format_utc(parse_when("Dec 1 2026 09:00", now=late, tz="America/New_York")) == \
        "2026-12-01T14:00:00Z"


def test_local_zone_keeps_dst_rules(monkeypatch):
    monkeypatch.setenv("TZ", "Europe/Berlin")
    winter = datetime(2026, 1, 10, tzinfo=UTC)
    assert format_utc(parse_when("2026-07-01T09:00", now=winter)) == "2026-07-01T07:00:00Z"
    assert format_utc(parse_when("2026-01-20T09:00", now=winter)) == "2026-01-20T08:00:00Z"
    assert getattr(local_zone(), "key", None) == "Europe/Berlin"


@pytest.mark.parametrize("value", ["-5", "-5m", "abc", "5 parsecs", "", True, -1])
def test_bad_durations(value):
    with pytest.raises(UsageError):
        parse_duration(value)
