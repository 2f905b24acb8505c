"""Turn what an operator types for `--at` into an aware UTC datetime, and durations into seconds.

Accepted WHEN forms:
  now                          the current instant
  +30s  +15m  +2h  +1d  +1w    relative to now (combinations like +1h30m too)
  2026-12-01T09:00:00+01:00    ISO 8601 with an offset: that instant
  2026-12-01T09:00 / 2026-12-01 09:00
                               naive: wall time in --tz (default: the local zone)
  tomorrow 09:00, today 17:30, monday 9am, Dec 1 09:00
                               phrases python-dateutil understands, in --tz

A wall time that does not exist in the zone (the hour skipped when clocks go forward)
is an error; one that happens twice (clocks go back) means the first of the two.
"""

from __future__ import annotations

import functools
import math
import re
from datetime import UTC, datetime, timedelta, tzinfo

from autopost.errors import UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_RELATIVE = re.compile(r"^\+\s*((?:\d+(?:\.\d+)?\s*[smhdw]\s*)+)$")
_BARE_DURATION = re.compile(r"^-?\s*(?:\d+(?:\.\d+)?\s*[smhdw]\s*)+$")


# The longest duration any setting or flag may be (a century: beyond it a timedelta, a
# stored time or a sleep stops making sense).
MAX_SECONDS = 100 * 365 * 86400.0


def parse_duration(value: str | int | float, *, name: str = "duration",
                   max_seconds: float = MAX_SECONDS) -> float:
    """`90`, `90s`, `5m`, `2h`, `1d`, `1h30m` -> seconds. Negative, empty, nan, infinite
    or longer than `max_seconds` is an error."""
    from autopost.inputs import check_text, shown

    if isinstance(value, bool):
        raise UsageError(f"{name}: expected a duration like 90s, 5m or 2h, got {value!r}")
    if isinstance(value, int | float):
        return _bounded(float(value) if abs(value) < 1e300 else math.inf, value, name,
                        max_seconds)
    text = check_text(str(value), name).strip().lower()
    if len(text) > 64:
        raise UsageError(f"{name}: expected a duration like 90s, 5m or 2h, got {shown(value)}")
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return _bounded(seconds, value, name, max_seconds)
    if not text or _DURATION.sub("", text).strip():
        raise UsageError(f"{name}: expected a duration like 90s, 5m or 2h, got {shown(value)}")
    total = float(sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(text)))
    return _bounded(total, value, name, max_seconds)


def _bounded(seconds: float, value: object, name: str, max_seconds: float) -> float:
    if math.isnan(seconds):
        raise UsageError(f"{name}: expected a duration like 90s, 5m or 2h, got {value!r}")
    if seconds < 0:
        raise UsageError(f"{name}: a duration cannot be negative ({value})")
    if seconds > max_seconds:
        raise UsageError(f"{name}: too long (at most {max_seconds:,.0f} seconds)")
    return seconds


def get_zone(name: str | None) -> tzinfo:
    """The named IANA zone, or the machine's local zone when name is None."""
    if name is None:
        return local_zone()
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from autopost.inputs import bad_text_at, shown

    # IANA names are short ASCII paths; anything else never names a zone.
    if len(name) > 255 or bad_text_at(name) is not None or "\0" in name:
        raise UsageError(
            f"unknown time zone {shown(name)} (use an IANA name like Europe/Berlin)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise UsageError(
            f"unknown time zone {shown(name)} (use an IANA name like Europe/Berlin)") from None


def local_zone() -> tzinfo:
    """The machine's zone with its DST rules ($TZ, else /etc/localtime).

    datetime.now().astimezone() would give today's fixed offset, which puts a naive
    time on the far side of a DST change an hour off; it is only the last resort.
    """
    import os

    return _local_zone(os.environ.get("TZ", ""))


@functools.lru_cache(maxsize=8)
def _local_zone(tz_env: str) -> tzinfo:
    import os
    from zoneinfo import ZoneInfo

    name = tz_env.lstrip(":")
    real = os.path.realpath("/etc/localtime")
    try:
        if name:
            return ZoneInfo(name)
        if "/zoneinfo/" in real:
            return ZoneInfo(real.split("/zoneinfo/", 1)[1])
        if os.path.exists(real):
            with open(real, "rb") as fh:
                return ZoneInfo.from_file(fh, key="localtime")
    except (OSError, ValueError, KeyError):
        pass
    local = datetime.now().astimezone().tzinfo
    assert local is not None
    return local


def parse_when(text: str, *, now: datetime, tz: str | None = None) -> datetime:
    """Parse WHEN relative to `now` (aware). Returns an aware UTC datetime."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    raw = text
    text = text.strip()
    if not text:
        raise UsageError("--at: empty time (try 'now', '+15m', 'tomorrow 09:00' or an ISO date)")
    low = text.lower()
    if low == "now":
        return now.astimezone(UTC)
    if len(low) > 200:
        from autopost.inputs import shown

        raise UsageError(f"--at: cannot read {shown(raw)} as a time")
    rel = _RELATIVE.match(low)
    if rel:
        try:
            seconds = parse_duration(rel.group(1), max_seconds=math.inf)
            return (now + timedelta(seconds=seconds)).astimezone(UTC)
        except (OverflowError, UsageError):
            raise UsageError(f"--at: {raw!r} is too far in the future") from None
    if _BARE_DURATION.match(low):
        # dateutil would read "5m" as 00:05 today and "-1h" as 01:00: refuse instead.
        raise UsageError(f"--at: {raw!r} is not a time; write '+{low.lstrip('+-').strip()}' "
                         "for that long from now")
    zone = get_zone(tz)
    parsed = _parse_absolute(text, now=now, zone=zone, raw=raw)
    return parsed.astimezone(UTC)


def _parse_absolute(text: str, *, now: datetime, zone: tzinfo, raw: str) -> datetime:
    local_now = now.astimezone(zone)
    try:
        iso = datetime.fromisoformat(text)
    except ValueError:
        iso = None
    if iso is not None:
        return iso if iso.tzinfo is not None else _localize(iso, zone, raw)
    if _looks_iso_date(text):
        # fromisoformat refused a date that has the ISO shape: it is impossible (Feb 30).
        raise UsageError(f"--at: {raw!r} is not a valid date")
    day_offset = 0
    words = text.split()
    if words and words[0].lower() in ("today", "tomorrow"):
        day_offset = 1 if words[0].lower() == "tomorrow" else 0
        words = words[1:]
        if not words:
            raise UsageError(f"--at: {raw!r} needs a time of day, like 'tomorrow 09:00'")
    from dateutil import parser as dateparser

    base = local_now.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    base = base + timedelta(days=day_offset)
    try:
        result = dateparser.parse(" ".join(words), default=base)
    except (ValueError, OverflowError, dateparser.ParserError):
        raise UsageError(
            f"--at: cannot read {raw!r} as a time "
            "(try 'now', '+15m', 'tomorrow 09:00' or 2026-12-01T09:00)"
        ) from None
    if result.tzinfo is not None:
        return result
    if day_offset and result.date() != base.date():
        raise UsageError(f"--at: {raw!r} names a date as well as 'today'/'tomorrow'")
    return _localize(result, zone, raw)


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ].*)?$")


def _looks_iso_date(text: str) -> bool:
    return bool(_ISO_DATE.match(text))


def _localize(naive: datetime, zone: tzinfo, raw: str) -> datetime:
    """Attach `zone`, refusing wall times that do not exist there."""
    first = naive.replace(tzinfo=zone, fold=0)
    # A wall time exists iff converting to UTC and back gives the same wall time.
    back = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    if back != naive:
        second = naive.replace(tzinfo=zone, fold=1)
        back2 = second.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
        if back2 != naive:
            raise UsageError(
                f"--at: {raw!r} does not exist in {_zone_name(zone)} "
                "(the clocks skip that hour); pick another time"
            )
        return second
    return first


def _zone_name(zone: tzinfo) -> str:
    return getattr(zone, "key", None) or str(zone)


def format_utc(value: datetime) -> str:
    """ISO 8601 UTC with a Z, as every --json output shows times."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
