"""Rolling-window post quotas per account: is there room now, and if not, when?

Pure functions over the times of recent posts (in-flight posts count as `now`);
the store calls them inside the claim transaction, so concurrent runs cannot
both see the same free slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def window_slot(stamps: Sequence[datetime], now: datetime, window: timedelta,
                limit: int | None) -> datetime | None:
    """None if fewer than `limit` posts fall in (now - window, now]; otherwise the
    earliest time at which one more post fits in the window."""
    if limit is None:
        return None
    inside = sorted(t for t in stamps if now - window < t <= now)
    if len(inside) < limit:
        return None
    if limit <= 0:
        raise ValueError("limit must be positive or None")
    # The window frees a place when the (n - limit + 1)-th oldest post leaves it.
    return inside[len(inside) - limit] + window


def next_free_slot(stamps: Sequence[datetime], now: datetime, *, hourly: int | None,
                   daily: int | None) -> datetime | None:
    """None when a post fits now under both limits, else the first time one does."""
    slots = [s for s in (window_slot(stamps, now, HOUR, hourly),
                         window_slot(stamps, now, DAY, daily)) if s is not None]
    return max(slots) if slots else None
