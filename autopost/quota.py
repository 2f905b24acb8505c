"""Rolling-window post quotas per account: is there room now, and if not, when?

Pure functions over the times of recent posts (in-flight posts count as `now`);
the store calls them inside the claim transaction, so concurrent runs cannot
both see the same free slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class WindowState:
    """One rolling window as `quota` shows it."""

    used: int                      # posts it counts now (in flight included)
    limit: int | None
    oldest_at: datetime | None     # the oldest post it counts
    frees_at: datetime | None      # when that one leaves the window (one place frees)
    full_until: datetime | None    # at or over the limit: when one more post fits again


def window_state(stamps: Sequence[datetime], now: datetime, window: timedelta,
                 limit: int | None) -> WindowState:
    """The use of one window from the store's quota_times. A stamp counts while it is
    less than `window` old (in-flight jobs are stamped with the store's clock, which may
    be a little ahead of `now`)."""
    inside = sorted(t for t in stamps if t > now - window)
    oldest = inside[0] if inside else None
    full_until = None
    if limit is not None and limit > 0 and len(inside) >= limit:
        # A place frees when the (n - limit + 1)-th oldest post leaves the window.
        full_until = inside[len(inside) - limit] + window
    return WindowState(used=len(inside), limit=limit, oldest_at=oldest,
                       frees_at=oldest + window if oldest is not None else None,
                       full_until=full_until)


def windows(stamps: Sequence[datetime], now: datetime, hourly: int | None,
            daily: int | None) -> tuple[WindowState, WindowState]:
    """The rolling hour and day, from the store's quota_times and the account's limits."""
    return (window_state(stamps, now, HOUR, hourly), window_state(stamps, now, DAY, daily))
