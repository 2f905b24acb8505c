"""What the CLI shows: tables for people (autopost.tables), and the --json form of every
listing.

`job_to_dict` and `attempt_to_dict` are the one JSON shape of a job and an attempt;
every command that prints jobs as JSON uses them. Times are ISO 8601 UTC (or null).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from autopost import tables
from autopost.models import Account, Attempt, Job, JobStatus
from autopost.redact import safe_url
from autopost.tables import FLEX, KEY, Cell, Column
from autopost.timeparse import format_utc

# -- JSON -------------------------------------------------------------------------

def utc(value: datetime | None) -> str | None:
    return format_utc(value) if value is not None else None


def job_to_dict(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "account": job.account,
        "platform": job.platform,
        "status": str(job.status),
        "scheduled_at": utc(job.scheduled_at),
        "next_attempt_at": utc(job.next_attempt_at),
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "key": job.key,
        "group_id": job.group_id,
        "text": job.text,
        "media": [m.to_dict() for m in job.media],
        "options": job.options,
        "platform_post_id": job.platform_post_id,
        "platform_url": job.platform_url,
        "posted_at": utc(job.posted_at),
        "last_error": job.last_error,
        "last_error_kind": str(job.last_error_kind) if job.last_error_kind else None,
        "lease_owner": job.lease_owner,
        "lease_expires_at": utc(job.lease_expires_at),
        "created_at": utc(job.created_at),
        "updated_at": utc(job.updated_at),
        "thread_id": job.thread_id,
        "thread_part": job.thread_part,
        "series_id": job.series_id,
    }


def attempt_to_dict(attempt: Attempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "run_id": attempt.run_id,
        "started_at": utc(attempt.started_at),
        "finished_at": utc(attempt.finished_at),
        "outcome": attempt.outcome,
        "error_kind": str(attempt.error_kind) if attempt.error_kind else None,
        "http_status": attempt.http_status,
        "message": attempt.message,
        "platform_post_id": attempt.platform_post_id,
        "decision": attempt.decision,
    }


def job_with_attempts(job: Job, attempts: Sequence[Attempt]) -> dict[str, Any]:
    """`show --json`: the job, and "attempt_log", the records of its attempts ("attempts"
    is the count, as in every job)."""
    return {**job_to_dict(job), "attempt_log": [attempt_to_dict(a) for a in attempts]}


def credential_summary(credentials: dict[str, Any]) -> dict[str, str]:
    """Which fields are set and where from; never a value."""
    summary = {}
    for key in sorted(credentials):
        value = credentials[key]
        if isinstance(value, dict) and set(value) == {"env"}:
            summary[key] = f"env:{value['env']}"
        elif value in (None, ""):
            summary[key] = "empty"
        else:
            summary[key] = "stored"
    return summary


def account_state(account: Account, now: datetime) -> str:
    if str(account.state) != "ok":
        return str(account.state)
    if account.is_paused(now):
        return "paused"
    if account.is_blocked(now):
        return "blocked"
    return "ok"


def account_to_dict(account: Account, now: datetime) -> dict[str, Any]:
    return {
        "name": account.name,
        "platform": account.platform,
        "base_url": safe_url(account.base_url),
        "state": account_state(account, now),
        "state_reason": account.state_reason,
        "blocked_until": utc(account.blocked_until) if account.is_blocked(now) else None,
        "paused_until": utc(account.paused_until) if account.is_paused(now) else None,
        "token_expires_at": utc(account.token_expires_at),
        "hourly_limit": account.hourly_limit,
        "daily_limit": account.daily_limit,
        "credentials": credential_summary(account.credentials),
        "created_at": utc(account.created_at),
    }


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


# -- people ---------------------------------------------------------------------------

STATUS_STYLE = {
    JobStatus.PENDING: "cyan",
    JobStatus.RUNNING: "yellow",
    JobStatus.POSTED: "green",
    JobStatus.FAILED: "bold red",
    JobStatus.CANCELLED: "dim",
    JobStatus.MISSED: "red",
    JobStatus.UNKNOWN: "bold magenta",
}


def local(value: datetime | None, zone: tzinfo | None = None) -> str:
    if value is None:
        return "-"
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z").strip()


def short_local(value: datetime | None, zone: tzinfo | None = None) -> str:
    if value is None:
        return "-"
    return value.astimezone(zone).strftime("%m-%d %H:%M")


def one_line(text: str, width: int = 50) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def print_jobs(jobs: Sequence[Job]) -> None:
    columns = [Column("ID", KEY), Column("STATUS", KEY), Column("ACCOUNT", KEY),
               Column("WHEN"), Column("TRIES", right=True), Column("TEXT", FLEX)]
    rows = []
    for job in jobs:
        when = job.next_attempt_at if job.status == JobStatus.PENDING else job.scheduled_at
        note = " ".join(job.text.split())
        if job.last_error and job.status != JobStatus.POSTED:
            note = f"{note}  [{' '.join(job.last_error.split())}]"
        rows.append([job.id, Cell(str(job.status), style=STATUS_STYLE.get(job.status)),
                     job.account, Cell(local(when), short=short_local(when)),
                     f"{job.attempts}/{job.max_attempts}", note])
    tables.emit(columns, rows)


def ago(seconds: float) -> str:
    seconds = int(abs(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            rest = seconds % size
            sub = {"d": ("h", 3600), "h": ("m", 60), "m": ("s", 1)}[unit]
            tail = f" {rest // sub[1]}{sub[0]}" if rest // sub[1] else ""
            return f"{seconds // size}{unit}{tail}"
    return f"{seconds}s"


def show_job(job: Job, attempts: Sequence[Attempt], waiting: str | None = None) -> None:
    colour = tables.use_colour()
    bold = (lambda s: f"\x1b[1m{s}\x1b[0m") if colour else (lambda s: s)
    rows: list[tuple[str, str | None]] = [
        ("id", job.id),
        ("status", str(job.status)),
        ("account", f"{job.account} ({job.platform})"),
        ("waiting", waiting),
        ("scheduled", f"{local(job.scheduled_at)}  ({utc(job.scheduled_at)})"),
        ("next attempt", local(job.next_attempt_at) if job.next_attempt_at else None),
        ("attempts", f"{job.attempts} of {job.max_attempts}"),
        ("key", job.key),
        ("group", job.group_id),
        ("posted", local(job.posted_at) if job.posted_at else None),
        ("post id", job.platform_post_id),
        ("url", job.platform_url),
        ("last error", f"{job.last_error} ({job.last_error_kind})" if job.last_error_kind
         else job.last_error),
    ]
    for media in job.media:
        rows.append(("media", f"{media.path}" + (f"  alt: {media.alt}" if media.alt else "")))
    write = sys.stdout.write
    for label, value in rows:
        if value:
            write(f"{bold(f'{label:>12}')}  {value}\n")
    write(bold(f"{'text':>12}") + f"\n{job.text}\n")
    if not attempts:
        write("\nno attempts yet\n")
        return
    columns = [Column("#", KEY, right=True), Column("STARTED", KEY), Column("FINISHED"),
               Column("OUTCOME", KEY), Column("KIND"), Column("HTTP"), Column("DETAIL", FLEX)]
    table = []
    for a in attempts:
        detail = "; ".join(x for x in (a.message, a.decision) if x)
        table.append([str(a.number), utc(a.started_at) or "-", utc(a.finished_at) or "-",
                      a.outcome or "in flight", str(a.error_kind or "-"),
                      str(a.http_status or "-"), detail])
    width = tables.terminal_width() if tables.is_terminal() else 200
    write("\n" + tables.render_table(columns, table, width, colour))


def credential_text(account: Account) -> str:
    return ", ".join(f"{k}={v}" for k, v in credential_summary(account.credentials).items())


def print_accounts(accounts: Iterable[Account], now: datetime) -> None:
    columns = [Column("NAME", KEY), Column("PLATFORM", KEY), Column("STATE", KEY),
               Column("CREDENTIALS", FLEX), Column("BASE URL")]
    rows = []
    for account in accounts:
        state = short = account_state(account, now)
        if state == "blocked":
            state = f"blocked until {local(account.blocked_until)}"
            short = f"blocked until {short_local(account.blocked_until)}"
        elif account.state_reason and state != "ok":
            state = f"{state}: {account.state_reason}"
        rows.append([account.name, account.platform, Cell(state, short=short),
                     credential_text(account), safe_url(account.base_url) or ""])
    tables.emit(columns, rows)


def bar(used: int, limit: int | None, colour: bool) -> Cell:
    if limit is None:
        return Cell(f"{used} / no limit", style="dim")
    ratio = used / limit if limit else 1.0
    filled = min(10, round(ratio * 10))
    style = "green" if ratio < 0.7 else "yellow" if ratio < 1 else "bold red"
    return Cell(("█" * filled).ljust(10, "░") + f" {used}/{limit}", short=f"{used}/{limit}",
                style=style if colour else None)


def print_quota(rows: Sequence[dict[str, Any]], now: datetime) -> None:
    """Bars for the rolling hour and day, and when the account may post next: now, or the
    time a full window frees a place, or the end of the platform's block (whichever is
    last). Piped: account, platform, hour and day as used/limit, blocked until and next
    post (ISO 8601 UTC, empty when none), tab-separated."""
    if not tables.is_terminal():
        sys.stdout.write(tables.render_tsv([
            [r["account"], r["platform"], _used(r["hour"]), _used(r["day"]),
             r["blocked_until"] or "", r["next_post_at"] or ""] for r in rows]))
        return
    colour = tables.use_colour()
    columns = [Column("ACCOUNT", KEY), Column("LAST HOUR", KEY), Column("LAST DAY", KEY),
               Column("NEXT POST"), Column("PLATFORM")]
    tables.emit(columns, [[r["account"], bar(r["hour"]["used"], r["hour"]["limit"], colour),
                           bar(r["day"]["used"], r["day"]["limit"], colour),
                           next_post(r, now), r["platform"]] for r in rows])


def next_post(row: dict[str, Any], now: datetime) -> Cell:
    """`now`, or `10:32 UTC (hour full)`: the time the account may post again and why."""
    if row["next_post_at"] is None:
        return Cell("now")
    at = _parse(row["next_post_at"])
    why = ("rate-limited" if row["blocked_until"] == row["next_post_at"]
           else "day full" if row["day"]["full_until"] == row["next_post_at"]
           else "hour full")
    same_day = at.astimezone().date() == now.astimezone().date()
    when = at.astimezone().strftime("%H:%M" if same_day else "%m-%d %H:%M")
    zone = at.astimezone().strftime("%Z")
    return Cell(f"{when} {zone} ({why})".replace("  ", " "), short=when,
                style="yellow" if why != "rate-limited" else "red")


def _used(window: dict[str, Any]) -> str:
    return f"{window['used']}/{window['limit'] if window['limit'] is not None else '-'}"


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def print_platforms(rows: Sequence[dict[str, Any]]) -> None:
    columns = [Column("PLATFORM", KEY), Column("ATTEMPTS", right=True), Column("BASE DELAY"),
               Column("MAX DELAY"), Column("MULT"), Column("HOURLY", right=True),
               Column("DAILY", right=True), Column("RETRIES ON", FLEX)]
    tables.emit(columns, [[
        row["platform"] + ("" if row["supported"] else " (not built)"),
        str(row["max_attempts"]), seconds(row["base_delay"]), seconds(row["max_delay"]),
        f"{row['backoff_multiplier']:g}",
        str(row["hourly_limit"] or "-"), str(row["daily_limit"] or "-"),
        ", ".join(row["retryable"])] for row in rows])


def seconds(value: float) -> str:
    value = float(value)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{int(value // size)}{unit}"
    return f"{value:g}s"


def calendar(jobs: Sequence[Job], zone: tzinfo, first_day: date, days: int) -> None:
    """On a terminal, a week grid: days as columns, hours as rows, posts per account in
    each cell. Piped, one line per post: date, time, id, account, text."""
    def when(job: Job) -> datetime:
        return (job.next_attempt_at or job.scheduled_at).astimezone(zone)

    if not tables.is_terminal():
        sys.stdout.write(tables.render_tsv(
            [[when(j).date().isoformat(), when(j).strftime("%H:%M"), j.id, j.account,
              " ".join(j.text.split())] for j in jobs]))
        return
    if not jobs:
        sys.stdout.write("nothing scheduled\n")
        return
    dates = [first_day + timedelta(days=i) for i in range(days)]
    cells: dict[tuple[int, date], dict[str, int]] = {}
    for job in jobs:
        at = when(job)
        per = cells.setdefault((at.hour, at.date()), {})
        per[job.account] = per.get(job.account, 0) + 1
    hours = sorted({h for h, _ in cells})
    columns = [Column("TIME", KEY)] + [Column(d.strftime("%a %m-%d")) for d in dates]
    rows = []
    for hour in hours:
        row: list[str | Cell] = [f"{hour:02d}:00"]
        for d in dates:
            per = cells.get((hour, d), {})
            full = " ".join(f"{n} {a}" for a, n in sorted(per.items()))
            row.append(Cell(full or ".", short=str(sum(per.values())) if per else "."))
        rows.append(row)
    sys.stdout.write(tables.render_table(columns, rows, tables.terminal_width(),
                                         tables.use_colour()))
    total = len(jobs)
    sys.stdout.write(f"{total} post{'s' if total != 1 else ''} in {days} day"
                     f"{'s' if days != 1 else ''} ({zone})\n")
