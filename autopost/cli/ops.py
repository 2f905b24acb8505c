"""Settings, usage and upkeep: platforms, quota, calendar, prune, cron."""

from __future__ import annotations

import shlex
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from autopost.cli.app import app, get_settings, get_store, note, now, state
from autopost.models import JobFilter, JobStatus
from autopost.timeparse import format_utc, get_zone, parse_duration


@app.command()
def platforms(
    name: Annotated[str | None, typer.Argument(
        metavar="[NAME]", help="One platform: its settings and the job options it takes.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The effective retry and quota settings per platform (defaults < config < env)."""
    import importlib.util

    from autopost import render
    from autopost.config import PLATFORMS, check_platform

    settings = get_settings()
    names = PLATFORMS if name is None else (check_platform(name),)
    rows = []
    for platform in names:
        policy = settings.policy(platform)
        rows.append({
            "platform": platform,
            "supported": importlib.util.find_spec(f"autopost.platforms.{platform}") is not None,
            "max_attempts": policy.max_attempts,
            "base_delay": policy.base_delay,
            "max_delay": policy.max_delay,
            "backoff_multiplier": policy.backoff_multiplier,
            "hourly_limit": policy.hourly_limit,
            "daily_limit": policy.daily_limit,
            "retryable": sorted(str(k) for k in policy.retryable),
        })
    if name is not None:
        rows[0]["options"] = _options_of(rows[0]["platform"]) if rows[0]["supported"] else []
    if as_json:
        render.print_json(rows if name is None else rows[0])
        return
    render.print_platforms(rows)
    if name is not None:
        options = rows[0]["options"]
        if not rows[0]["supported"]:
            print(f"\n{rows[0]['platform']} is not built yet")
        elif not options:
            print(f"\n{rows[0]['platform']} takes no job options")
        else:
            print("\noptions (add --option KEY=VALUE; import: an options column):")
            for o in options:
                default = f" (default {o['default']})" if o["default"] is not None else ""
                print(f"  {o['name']:<24} {o['values']}: {o['help']}{default}")
    if settings.config_path:
        note(f"config: {settings.config_path}")


def _options_of(platform: str) -> list[dict]:
    from autopost.platforms.registry import adapter_class

    return [{"name": o.name, "values": o.describe(), "help": o.help, "default": o.default}
            for o in adapter_class(platform).options]


@app.command()
def quota(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Posts used against each account's hourly and daily limits (in-flight included)."""
    from autopost import render, services

    store, settings, at_now = get_store(), get_settings(), now()
    rows = []
    for account in store.list_accounts():
        hour, day = store.quota_usage(account.name, now=at_now)
        hourly, daily = services.account_limits(account, settings)
        rows.append({
            "account": account.name,
            "platform": account.platform,
            "hour": {"used": hour, "limit": hourly},
            "day": {"used": day, "limit": daily},
            "blocked_until": render.utc(account.blocked_until)
            if account.is_blocked(at_now) else None,
        })
    if as_json:
        render.print_json(rows)
    elif not rows:
        print("no accounts yet")
    else:
        render.print_quota(rows)


@app.command()
def calendar(
    days: Annotated[int, typer.Option("--days", "-d", min=1, help="How many days ahead.")] = 7,
    tz: Annotated[str | None, typer.Option("--tz", metavar="ZONE",
                                           help="Group by days in this zone.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Upcoming pending posts: a week grid on a terminal (days across, hours down, posts
    per account in each cell), one line per post through a pipe."""
    from autopost import render

    zone = get_zone(tz)
    start = now()
    end = start + timedelta(days=days)
    jobs = [j for j in get_store().list_jobs(JobFilter(status=JobStatus.PENDING))
            if (j.next_attempt_at or j.scheduled_at) < end]
    jobs.sort(key=lambda j: (j.next_attempt_at or j.scheduled_at, j.id))
    grouped: dict[str, list] = {}
    for job in jobs:
        day = (job.next_attempt_at or job.scheduled_at).astimezone(zone).date().isoformat()
        grouped.setdefault(day, []).append(job)
    if as_json:
        render.print_json([{"date": day, "jobs": [render.job_to_dict(j) for j in items]}
                           for day, items in grouped.items()])
    else:
        render.calendar(jobs, zone, start.astimezone(zone).date(), days)


@app.command()
def prune(
    older_than: Annotated[str, typer.Option(
        "--older-than", metavar="AGE", help="Finished jobs untouched for this long "
        "(30d, 12h, ...).")] = "30d",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Delete old finished jobs, their attempts, and old run records.

    Finished means posted, failed, cancelled or missed."""
    from autopost import render

    seconds = parse_duration(older_than, name="--older-than")
    before = now() - timedelta(seconds=seconds)
    jobs, runs = get_store().prune(before=before)
    if as_json:
        render.print_json({"jobs": jobs, "runs": runs, "before": format_utc(before)})
    else:
        print(f"pruned {jobs} job{'s' if jobs != 1 else ''} and {runs} run record"
              f"{'s' if runs != 1 else ''} older than {format_utc(before)}")


@app.command()
def cron(ctx: typer.Context) -> None:
    """Print crontab and systemd timer lines that run `run-due` for this install."""
    from autopost.config import resolve_db_path

    st = state(ctx)
    command = [sys.executable, "-m", "autopost", "--db",
               str(resolve_db_path(st.db).absolute())]
    if st.config:
        command += ["--config", str(Path(st.config).expanduser().absolute())]
    command.append("run-due")
    line = " ".join(shlex.quote(part) for part in command)
    print(CRON_TEMPLATE.format(command=line).strip())


CRON_TEMPLATE = """
# crontab (crontab -e): every minute, each run watching until the next one starts, so a
# post goes out within about a second of its time. cron mails whatever it prints: only
# problems. Overlapping runs are safe.
* * * * * {command} --linger 60
# Without --linger a post waits up to a minute for the next tick.

# systemd instead: ~/.config/systemd/user/autopost.service
[Unit]
Description=autopost: publish the posts that are due

[Service]
Type=oneshot
ExecStart={command}

# ~/.config/systemd/user/autopost.timer
[Unit]
Description=Run autopost every 30 seconds

[Timer]
OnBootSec=30s
OnUnitActiveSec=30s
AccuracySec=1s

[Install]
WantedBy=timers.target

# then: systemctl --user daemon-reload && systemctl --user enable --now autopost.timer
"""
