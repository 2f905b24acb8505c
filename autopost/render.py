"""What the CLI shows: rich tables for people, and the --json form of every listing.

`job_to_dict` and `attempt_to_dict` are the one JSON shape of a job and an attempt;
every command that prints jobs as JSON uses them. Times are ISO 8601 UTC (or null).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime, tzinfo
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from autopost.models import Account, Attempt, Job, JobStatus
from autopost.timeparse import format_utc


def _width() -> int | None:
    # Piped output keeps long lines (ids, URLs) whole instead of rich's 80 columns.
    if os.environ.get("COLUMNS") or sys.stdout.isatty():
        return None
    return 200


console = Console(highlight=False, soft_wrap=False)
err_console = Console(stderr=True, highlight=False)


def out() -> Console:
    """A console on the current stdout (tests swap sys.stdout between invocations)."""
    return Console(highlight=False, width=_width(), file=sys.stdout)


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
    """`show --json`: the job, with "attempts" as the list of its attempt records (the
    count moves to "attempt_count")."""
    data = job_to_dict(job)
    data["attempt_count"] = data["attempts"]
    data["attempts"] = [attempt_to_dict(a) for a in attempts]
    return data


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
    if account.is_blocked(now):
        return "blocked"
    return "ok"


def account_to_dict(account: Account, now: datetime) -> dict[str, Any]:
    return {
        "name": account.name,
        "platform": account.platform,
        "base_url": account.base_url,
        "state": account_state(account, now),
        "state_reason": account.state_reason,
        "blocked_until": utc(account.blocked_until) if account.is_blocked(now) else None,
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


def one_line(text: str, width: int = 50) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def jobs_table(jobs: Sequence[Job]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("ID", no_wrap=True, min_width=8)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("ACCOUNT", no_wrap=True)
    table.add_column("WHEN", no_wrap=True)
    table.add_column("TRIES", no_wrap=True, justify="right")
    table.add_column("TEXT", overflow="ellipsis", no_wrap=True)
    for job in jobs:
        when = job.next_attempt_at if job.status == JobStatus.PENDING else job.scheduled_at
        note = one_line(job.text)
        if job.last_error and job.status != JobStatus.POSTED:
            note = f"{note}  [{one_line(job.last_error, 60)}]"
        table.add_row(job.id, Text(str(job.status), style=STATUS_STYLE.get(job.status, "")),
                      job.account, local(when), f"{job.attempts}/{job.max_attempts}", note)
    return table


def show_job(job: Job, attempts: Sequence[Attempt]) -> None:
    c = out()
    rows: list[tuple[str, str | None]] = [
        ("id", job.id),
        ("status", str(job.status)),
        ("account", f"{job.account} ({job.platform})"),
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
    for label, value in rows:
        if value:
            c.print(f"[bold]{label:>12}[/bold]  ", Text(value), sep="")
    c.print(f"[bold]{'text':>12}[/bold]")
    c.print(Text(job.text), soft_wrap=True)
    if not attempts:
        c.print("\nno attempts yet")
        return
    table = Table(box=None, pad_edge=False, header_style="bold", title_justify="left")
    for name in ("#", "STARTED", "FINISHED", "OUTCOME", "KIND", "HTTP", "DETAIL"):
        table.add_column(name, no_wrap=name != "DETAIL")
    for a in attempts:
        detail = "; ".join(x for x in (a.message, a.decision) if x)
        table.add_row(str(a.number), utc(a.started_at) or "-", utc(a.finished_at) or "-",
                      a.outcome or "in flight", str(a.error_kind or "-"),
                      str(a.http_status or "-"), Text(detail))
    c.print()
    c.print(table)


def accounts_table(accounts: Iterable[Account], now: datetime) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("NAME", "PLATFORM", "STATE", "CREDENTIALS", "BASE URL"):
        table.add_column(name, no_wrap=name != "CREDENTIALS")
    for account in accounts:
        state = account_state(account, now)
        if state == "blocked":
            state = f"blocked until {local(account.blocked_until)}"
        elif account.state_reason and state != "ok":
            state = f"{state}: {account.state_reason}"
        creds = ", ".join(f"{k}={v}" for k, v in credential_summary(account.credentials).items())
        table.add_row(account.name, account.platform, state, creds, account.base_url or "")
    return table


def limit_text(used: int, limit: int | None) -> Text:
    if limit is None:
        return Text(f"{used} / no limit", style="dim")
    ratio = used / limit if limit else 1.0
    filled = min(10, round(ratio * 10))
    style = "green" if ratio < 0.7 else "yellow" if ratio < 1 else "bold red"
    return Text.assemble((("█" * filled).ljust(10, "░"), style), f" {used}/{limit}")


def quota_table(rows: Sequence[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("ACCOUNT", "PLATFORM", "LAST HOUR", "LAST DAY"):
        table.add_column(name, no_wrap=True)
    for row in rows:
        table.add_row(row["account"], row["platform"],
                      limit_text(row["hour"]["used"], row["hour"]["limit"]),
                      limit_text(row["day"]["used"], row["day"]["limit"]))
    return table


def platforms_table(rows: Sequence[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("PLATFORM", "ATTEMPTS", "BASE DELAY", "MAX DELAY", "MULT", "HOURLY", "DAILY",
                 "RETRIES ON"):
        table.add_column(name, no_wrap=name != "RETRIES ON")
    for row in rows:
        table.add_row(
            row["platform"] + ("" if row["supported"] else " (not built)"),
            str(row["max_attempts"]), seconds(row["base_delay"]), seconds(row["max_delay"]),
            f"{row['backoff_multiplier']:g}",
            str(row["hourly_limit"] or "-"), str(row["daily_limit"] or "-"),
            ", ".join(row["retryable"]))
    return table


def seconds(value: float) -> str:
    value = float(value)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{int(value // size)}{unit}"
    return f"{value:g}s"


def calendar(days: Sequence[tuple[str, Sequence[Job]]], zone: tzinfo) -> None:
    c = out()
    if not days:
        c.print("nothing scheduled")
        return
    for day, jobs in days:
        c.print(f"[bold]{day}[/bold]  ({len(jobs)} post{'s' if len(jobs) != 1 else ''})")
        for job in jobs:
            when = job.next_attempt_at or job.scheduled_at
            c.print(f"  {when.astimezone(zone).strftime('%H:%M')}  {job.id}  ",
                    Text(f"{job.account}  {one_line(job.text, 60)}"), sep="")
