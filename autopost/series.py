"""Recurring posts: a rule (an iCalendar RRULE or a short form) evaluated on wall times
in the series' zone, so 09:00 stays 09:00 across DST changes (recur.wall_to_utc says what
happens to a wall time that does not exist, or happens twice, that day).

Short forms (the time of day, and the first day, come from --at):
  daily  weekdays  weekends  weekly  monthly  yearly  hourly
  mon,wed,fri            those days every week (any of mon tue wed thu fri sat sun)
  every N days|weeks|months|hours
An RRULE is given without DTSTART (e.g. FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9;BYMINUTE=0);
"RRULE:" in front is allowed. Rules more frequent than hourly are refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from autopost.errors import UsageError
from autopost.recur import wall_to_utc

_DAYS = {"mon": "MO", "tue": "TU", "wed": "WE", "thu": "TH", "fri": "FR", "sat": "SA",
         "sun": "SU"}
_SHORT = {
    "hourly": "FREQ=HOURLY",
    "daily": "FREQ=DAILY",
    "weekdays": "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
    "weekends": "FREQ=WEEKLY;BYDAY=SA,SU",
    "weekly": "FREQ=WEEKLY",
    "monthly": "FREQ=MONTHLY",
    "yearly": "FREQ=YEARLY",
}
_EVERY = re.compile(r"^every\s+(\d+)\s+(hour|day|week|month)s?$")
_UNIT = {"hour": "HOURLY", "day": "DAILY", "week": "WEEKLY", "month": "MONTHLY"}
# Occurrences are counted from the first; a rule is looked at this far at most.
MAX_STEPS = 100_000


def normalise_rule(text: str) -> str:
    """The RRULE (without DTSTART) for a short form or an RRULE; UsageError otherwise."""
    raw = " ".join(text.strip().split())
    low = raw.lower()
    if not low:
        raise UsageError("--repeat: empty rule")
    if low in _SHORT:
        rule = _SHORT[low]
    elif (m := _EVERY.match(low)) is not None:
        n = int(m.group(1))
        if n < 1:
            raise UsageError("--repeat: every 0 is not a rule")
        rule = f"FREQ={_UNIT[m.group(2)]};INTERVAL={n}"
    elif all(d.strip() in _DAYS for d in low.split(",")) and low.replace(",", "").strip():
        rule = "FREQ=WEEKLY;BYDAY=" + ",".join(_DAYS[d.strip()] for d in low.split(","))
    else:
        rule = raw.upper().removeprefix("RRULE:")
        if not rule.startswith("FREQ=") and ";FREQ=" not in rule:
            raise UsageError(f"--repeat {text!r}: not a rule (try daily, weekdays, mon,wed, "
                             "'every 2 weeks' or an RRULE like FREQ=WEEKLY;BYDAY=MO)")
        if "DTSTART" in rule:
            raise UsageError("--repeat: leave DTSTART out; --at gives the first time")
    if re.search(r"FREQ=(SECONDLY|MINUTELY)", rule):
        raise UsageError("--repeat: more often than hourly is not supported")
    return rule


@dataclass(frozen=True)
class Rule:
    """A series' rule, ready to enumerate: wall times from `start` (naive, in `zone`)."""

    rule: str
    zone: tzinfo
    start: datetime           # the first wall time (naive)
    until: datetime | None = None   # aware UTC: no occurrence after it
    count: int | None = None

    def _rrule(self):
        from dateutil.rrule import rrulestr

        try:
            return rrulestr(self.rule, dtstart=self.start, ignoretz=True)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"--repeat {self.rule!r}: {exc}") from None

    def occurrences(self) -> Iterator[tuple[int, datetime]]:
        """(n, UTC time) for n = 1, 2, ...; stops at `until`, `count` or the rule's end."""
        seen: set[datetime] = set()
        n = 0
        for step, wall in enumerate(self._rrule()):
            if step >= MAX_STEPS:
                return
            when = wall_to_utc(wall, self.zone)
            if self.until is not None and when > self.until:
                return
            if when in seen:
                continue  # two wall times that fall on one instant are one post
            seen.add(when)
            n += 1
            if self.count is not None and n > self.count:
                return
            yield n, when

    def between(self, after_n: int, through: datetime) -> list[tuple[int, datetime]]:
        """Occurrences numbered after `after_n` at or before `through`."""
        out = []
        for n, when in self.occurrences():
            if when > through:
                break
            if n > after_n:
                out.append((n, when))
        return out

    def next_after(self, after_n: int) -> tuple[int, datetime] | None:
        for n, when in self.occurrences():
            if n > after_n:
                return n, when
        return None

    def first(self, k: int, *, after: datetime | None = None) -> list[tuple[int, datetime]]:
        out = []
        for n, when in self.occurrences():
            if after is not None and when < after:
                continue
            out.append((n, when))
            if len(out) >= k:
                break
        return out


# -- series <-> jobs ------------------------------------------------------------------

SERIES_PREFIX = "s-"


def is_series_id(text: str) -> bool:
    return text.strip().lower().startswith(SERIES_PREFIX)


def zone_name(tz: str | None) -> str:
    """The zone a series is kept in: --tz, else the machine's zone by its IANA name."""
    from autopost.timeparse import get_zone

    zone = get_zone(tz)
    name = tz or getattr(zone, "key", None)
    if not name or name == "localtime":
        raise UsageError("--repeat: this machine's zone has no name; give --tz "
                         "(e.g. --tz Europe/Berlin)")
    get_zone(name)
    return name


def rule_of(series) -> Rule:
    from autopost.timeparse import get_zone

    zone = get_zone(series.tz)
    wall = series.start_at.astimezone(zone).replace(tzinfo=None)
    return Rule(series.rule, zone, wall, until=series.until_at, count=series.count)


def occurrence_jobs(series, occurrences: list[tuple[int, datetime]]):
    from autopost.models import NewJob

    return [NewJob(account=series.account, platform=series.platform, text=series.text,
                   scheduled_at=when, media=series.media, options=dict(series.options),
                   max_attempts=series.max_attempts, series_id=series.id, series_n=n)
            for n, when in occurrences]


@dataclass(frozen=True)
class Extension:
    occurrences: list[tuple[int, datetime]]
    made: int
    through: datetime | None
    next_extend_at: datetime | None
    done: bool


def plan_extension(rule: Rule, made: int, through: datetime | None, *, now: datetime,
                   horizon: timedelta) -> Extension:
    """What to make now: the occurrences after the `made` first ones up to now + horizon,
    and when the next one comes within the horizon (None: the rule has ended)."""
    new = rule.between(made, now + horizon)
    last_n = new[-1][0] if new else made
    last_t = new[-1][1] if new else through
    nxt = rule.next_after(last_n)
    if nxt is None:
        return Extension(new, last_n, last_t, None, True)
    return Extension(new, last_n, last_t, nxt[1] - horizon, False)


def extend_due(store, settings, *, now: datetime) -> int:
    """Make the occurrences that came within the horizon into jobs (run-due calls this
    before publishing). Returns how many jobs were made."""
    horizon = timedelta(seconds=settings.schedule.horizon)
    made = 0
    for series in store.series_to_extend(now=now):
        ext = plan_extension(rule_of(series), series.made, series.through, now=now,
                             horizon=horizon)
        if store.extend_series(series.id, occurrence_jobs(series, ext.occurrences),
                               expected_made=series.made, made=ext.made, through=ext.through,
                               next_extend_at=ext.next_extend_at, done=ext.done, now=now):
            made += len(ext.occurrences)
    return made
