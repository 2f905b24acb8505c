"""The store's one time format: fixed-width UTC text that sorts as time sorts."""

from __future__ import annotations

from datetime import UTC, datetime

_FMT = "%Y-%m-%dT%H:%M:%S.%fZ"


def to_db(value: datetime | None) -> str | None:
    if value is None:
        return None
    tz = value.tzinfo
    if tz is None:
        raise ValueError("naive datetime given to the store")
    if tz is not UTC:
        value = value.astimezone(UTC)
    # Same text as strftime(_FMT), several times faster.
    return value.isoformat(timespec="microseconds").replace("+00:00", "Z")


def from_db(value: str | None) -> datetime | None:
    if value is None:
        return None
    # fromisoformat reads the Z suffix (3.11+) and is ~30x faster than strptime,
    # which matters when a large import builds its jobs. The store's own text ends in Z,
    # which it reads as UTC already (datetime.UTC is that same timezone object).
    if value[-1:] == "Z":
        return datetime.fromisoformat(value)
    return datetime.fromisoformat(value).astimezone(UTC)
