"""Wall-clock times in a zone: queue slots and recurring rules.

A recurring post at 09:00 Europe/Berlin stays at 09:00 on both sides of a DST change, so
rules are evaluated on wall times in the job's zone and only then turned into UTC.

A wall time that does not exist that day (the hour skipped when clocks go forward) is
moved forward by the length of the gap: 02:30 on the spring-forward night in Berlin is
posted at 03:30 (the same instant 02:30 would have been under the old offset). A wall
time that happens twice (clocks go back) means the first of the two.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo


def wall_to_utc(wall: datetime, zone: tzinfo) -> datetime:
    """A naive wall time in `zone` -> aware UTC, with the gap and fold rules above."""
    # fold=0 is the earlier reading of a repeated hour; for a skipped hour it applies the
    # offset from before the change, which lands the gap's length later on the clock.
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


def slot_times(times: tuple[tuple[int, int, int], ...], zone: tzinfo, *, after: datetime,
               weeks: int = 8) -> list[datetime]:
    """The weekly slots (weekday 0 = Monday, hour, minute) at or after `after`, for
    `weeks` weeks, as aware UTC datetimes in order."""
    if not times:
        return []
    start = after.astimezone(zone).replace(tzinfo=None)
    monday = (start - timedelta(days=start.weekday())).replace(hour=0, minute=0, second=0,
                                                              microsecond=0)
    out = []
    for week in range(weeks + 1):
        for day, hour, minute in times:
            wall = monday + timedelta(weeks=week, days=day, hours=hour, minutes=minute)
            when = wall_to_utc(wall, zone)
            if when >= after:
                out.append(when)
    return sorted(set(out))
