"""Settings, usage and upkeep: platforms, quota, calendar, prune, cron, backup, export,
config."""

from __future__ import annotations

import shlex
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from autopost.cli import params
from autopost.cli.app import app, get_settings, get_store, note, now, say, state
from autopost.models import JobFilter, JobStatus
from autopost.timeparse import format_utc, get_zone, parse_duration


@app.command()
def platforms(
    name: Annotated[str | None, typer.Argument(
        metavar="[NAME]", help="One platform: its settings and the job options it takes.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The effective retry and quota settings per platform (defaults < config < env).

    Examples:

    \b
      autopost platforms --json
      autopost platforms mastodon
    """
    import importlib.util

    from autopost import render
    from autopost.config import PLATFORMS, check_platform
    from autopost.platforms.registry import module_name

    settings = get_settings()
    names = PLATFORMS if name is None else (check_platform(name),)
    rows = []
    for platform in names:
        policy = settings.policy(platform)
        rows.append({
            "platform": platform,
            "supported": importlib.util.find_spec(module_name(platform)) is not None,
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
    """Posts used against each account's hourly and daily limits (in-flight included).

    Example:

    \b
      autopost quota
    """
    from autopost import render

    store, settings, at_now = get_store(), get_settings(), now()
    rows = quota_rows(store, settings, at_now)
    if as_json:
        render.print_json(rows)
    elif not rows:
        print("no accounts yet")
    else:
        render.print_quota(rows, at_now)


def quota_rows(store, settings, at_now) -> list[dict]:
    """Each account's use of its rolling windows, when a full one frees a place, and when
    the account may post next (quota --json, status --prometheus)."""
    from autopost import services
    from autopost.quota import windows

    rows = []
    for account in store.list_accounts():
        hour, day = windows(store.quota_times(account.name, now=at_now), at_now,
                            *services.account_limits(account, settings))
        blocked = account.blocked_until if account.is_blocked(at_now) else None
        waits = [t for t in (hour.full_until, day.full_until, blocked) if t is not None]
        rows.append({
            "account": account.name,
            "platform": account.platform,
            "hour": _window(hour),
            "day": _window(day),
            "blocked_until": _utc(blocked),
            "next_post_at": _utc(max(waits)) if waits else None,
        })
    return rows


def _window(state) -> dict:
    return {"used": state.used, "limit": state.limit, "oldest_at": _utc(state.oldest_at),
            "frees_at": _utc(state.frees_at), "full_until": _utc(state.full_until)}


def _utc(value) -> str | None:
    return format_utc(value) if value is not None else None


@app.command()
def calendar(
    days: Annotated[int, typer.Option("--days", "-d", click_type=params.DAYS,
                                      help="How many days ahead.")] = 7,
    tz: Annotated[str | None, typer.Option("--tz", metavar="ZONE",
                                           help="Group by days in this zone.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Upcoming pending posts: a week grid on a terminal (days across, hours down, posts
    per account in each cell), one line per post through a pipe.

    Example:

    \b
      autopost calendar --days 14 --tz America/New_York
    """
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
        "(30d, 12h, ...; never less than the day the quotas count).")] = "30d",
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Say what would be deleted; delete nothing.")] = False,
    yes: Annotated[bool, typer.Option(
        "--yes", "-y", help="Do not ask for confirmation on a terminal.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Delete old finished jobs, their attempts, and old run records.

    Finished means posted, failed, cancelled or missed. Posts the rolling quota windows
    still count (the last day) are always kept. On a terminal it asks first.

    Example:

    \b
      autopost prune --older-than 90d --dry-run
    """
    from autopost import render
    from autopost.quota import DAY

    seconds = parse_duration(older_than, name="--older-than")
    at_now = now()
    before = at_now - timedelta(seconds=seconds)
    kept = before > at_now - DAY
    if kept:
        before = at_now - DAY  # a post still inside the daily window keeps its quota place
    store = get_store()
    jobs, runs = store.prune(before=before, dry_run=True)
    what = (f"{jobs} job{'s' if jobs != 1 else ''} and {runs} run record"
            f"{'s' if runs != 1 else ''} older than {format_utc(before)}")
    if kept and not as_json:
        note("(kept the last day: the quota windows still count those posts)")
    if not dry_run and (jobs or runs) and not yes and sys.stdin.isatty() and not as_json:
        if not typer.confirm(f"delete {what}?", default=False):
            say("nothing deleted")
            return
    if not dry_run:
        jobs, runs = store.prune(before=before)
    if as_json:
        render.print_json({"dry_run": dry_run, "before": format_utc(before),
                           "removed_jobs": jobs, "removed_runs": runs})
    else:
        say(("would prune " if dry_run else "pruned ") + what)


@app.command()
def cron(ctx: typer.Context) -> None:
    """Print crontab and systemd timer lines that run `run-due` for this install.

    Example:

    \b
      autopost cron
    """
    from autopost.cli.app import database
    from autopost.config import default_db_path, is_dsn

    st = state(ctx)
    where = database(ctx)
    # A DSN's password stays out of the crontab (and of every process list): libpq reads
    # it from ~/.pgpass or PGPASSWORD.
    target = _without_password(where) if is_dsn(where) else str(Path(where).absolute())
    command = [sys.executable, "-m", "autopost", "--db", target]
    if st.config:
        command += ["--config", str(Path(st.config).expanduser().absolute())]
    base = " ".join(shlex.quote(part) for part in command)
    # The metrics file sits beside the database file (for PostgreSQL, in the data folder).
    local = default_db_path() if is_dsn(where) else Path(where)
    metrics = local.absolute().with_name("autopost.prom")
    print(CRON_TEMPLATE.format(command=f"{base} run-due", status=f"{base} status",
                               metrics=shlex.quote(str(metrics))).strip())


def _without_password(dsn: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[1]}"))


CRON_TEMPLATE = """
# crontab (crontab -e). cron mails whatever a job prints, and autopost prints only
# problems: put your address here.
MAILTO=you@example.com
# Every minute, each run watching until the next one starts, so a post goes out within
# about a second of its time. Overlapping runs are safe.
* * * * * {command} --linger 60
# Without --linger a post waits up to a minute for the next tick.
# Every 10 minutes: tell [notify] about a missing run, an account needing re-auth or an
# expiring token (each once), and refresh the metrics file for node_exporter.
*/10 * * * * {status} --notify -q --prometheus {metrics} > /dev/null

# systemd instead: ~/.config/systemd/user/autopost.service
[Unit]
Description=autopost: publish the posts that are due
OnFailure=autopost-failed@%n.service

[Service]
Type=oneshot
# Secrets that credentials name as {{"env": "VAR"}}: VAR=value lines, chmod 600.
EnvironmentFile=-%h/.config/autopost/env
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

# ~/.config/systemd/user/autopost-status.service: as the */10 cron line above
[Unit]
Description=autopost: tell [notify] about problems, refresh the metrics file

[Service]
Type=oneshot
EnvironmentFile=-%h/.config/autopost/env
ExecStart={status} --notify -q --prometheus {metrics}
# status exits 1 while something needs a human: [notify] tells, it is no unit failure.
SuccessExitStatus=1

# ~/.config/systemd/user/autopost-status.timer
[Unit]
Description=Run autopost status every 10 minutes

[Timer]
OnBootSec=2min
OnUnitActiveSec=10min

[Install]
WantedBy=timers.target

# ~/.config/systemd/user/autopost-failed@.service: mails the failed unit's last lines
[Unit]
Description=autopost: %i failed

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'journalctl --user -u %i -n 40 | mail -s "autopost: %i failed" "$USER"'

# then: systemctl --user daemon-reload
#       systemctl --user enable --now autopost.timer autopost-status.timer
"""


@app.command()
def backup(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(metavar="PATH", help="Where to write the copy.")],
    force: Annotated[bool, typer.Option("--force", help="Replace PATH if it exists.")] = False,
) -> None:
    """Write a consistent copy of the database while runs go on (SQLite online backup).

    Example:

    \b
      autopost backup ~/backups/autopost-$(date +%F).db
    """
    from autopost.backup import backup as copy
    from autopost.cli.app import database
    from autopost.config import is_dsn
    from autopost.errors import UsageError

    source = database(ctx)
    if is_dsn(source):
        raise UsageError("backup copies a SQLite file; for PostgreSQL use pg_dump, or "
                         "'autopost db copy DSN FILE' for a SQLite copy")
    if not source.is_file():
        raise UsageError(f"no database at {source}")
    size = copy(source, path, overwrite=force)
    say(f"backed up {source} to {path} ({size:,} bytes)")


@app.command("export")
def export(
    fmt: Annotated[str, typer.Option(
        "--format", "-f", metavar="csv|jsonl", help="csv (with a header) or jsonl.")] = "jsonl",
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="FILE", help="Write to FILE instead of stdout.")] = None,
    status: Annotated[str, typer.Option(
        "--status", "-s", help="Which jobs (default: the pending schedule).")] = "pending",
    account: Annotated[str | None, typer.Option("--account", "-a", metavar="NAME")] = None,
) -> None:
    """Write jobs in the import format, so 'autopost import' reads them back.

    Example:

    \b
      autopost export --format csv -o schedule.csv
    """
    import os

    from autopost import exporter
    from autopost.cli.jobs import _status
    from autopost.errors import UsageError

    if fmt not in exporter.FORMATS:
        raise UsageError(f"--format: expected csv or jsonl, got {fmt!r}")
    store = get_store()
    jobs = store.list_jobs(JobFilter(status=_status(status), account=account))
    if account is not None and not jobs:
        store.get_account(account)
    try:
        chunks = list(exporter.lines(jobs, fmt))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if output is None:
        sys.stdout.write("".join(chunks))
    else:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write("".join(chunks))
        print(f"exported {len(jobs)} job{'s' if len(jobs) != 1 else ''} to {output}",
              file=sys.stderr)


@app.command("config")
def config_(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Where the database and config file are, and every setting with where its value
    came from (default, file, environment).

    Example:

    \b
      AUTOPOST_MAX_CONCURRENT_JOBS=4 autopost config
    """
    from autopost import render, settings_report

    root = ctx.find_root()
    st = state(ctx)
    report = settings_report.report(
        st.db, st.config,
        db_source=settings_report.path_source(root.get_parameter_source("db")),
        config_source=settings_report.path_source(root.get_parameter_source("config")))
    if as_json:
        render.print_json(report)
    else:
        settings_report.show(report)
