"""Commands about the shape of the schedule: queue slots (and recurring plans)."""

from __future__ import annotations

from typing import Annotated

import typer

from autopost.cli import params
from autopost.cli.app import app, get_settings, get_store, now
from autopost.errors import UsageError


@app.command()
def slots(
    account: Annotated[str, typer.Argument(metavar="ACCOUNT", help="The account.")],
    count: Annotated[int, typer.Option("--count", "-n", click_type=params.SLOTS,
                                       help="Show N slots.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show an account's next free queue slots (for `add --at next-slot`).

    Example:

    \b
      autopost slots work --count 5
    """
    from autopost import render, services
    from autopost.models import JobFilter
    from autopost.store.base import LIVE
    from autopost.timeparse import format_utc, get_zone

    settings = get_settings()
    at_now = now()
    candidates = services.account_slots(settings, account, after=at_now)
    store = get_store()
    store.get_account(account)
    held = {j.scheduled_at for status in LIVE
            for j in store.list_jobs(JobFilter(status=status, account=account))}
    free = [t for t in candidates if t not in held][:count]
    zone = get_zone(settings.slots[account].tz)
    if as_json:
        render.print_json({"account": account, "tz": settings.slots[account].tz,
                           "free": [format_utc(t) for t in free]})
        return
    for t in free:
        print(f"{t.astimezone(zone):%a %Y-%m-%d %H:%M %Z}  ({format_utc(t)})")
    if not free:
        print("no free slot in the next 8 weeks")


def add_series(ctx: typer.Context, *, text: str, accounts: list[str], when, tz: str | None,
               rule: str, until: str | None, count: int | None, preview: bool,
               media: list[str] | None, alt: list[str] | None, max_attempts: int | None,
               allow_duplicate: bool, as_json: bool, value_options, at_now,
               options: dict | None = None) -> None:
    """`add --repeat`: a series per account, its occurrences within the horizon made into
    jobs now (run-due makes the later ones as they come within it)."""
    from dataclasses import replace
    from datetime import timedelta

    from autopost import render, series, services
    from autopost.ids import new_id
    from autopost.models import Series
    from autopost.timeparse import format_utc, get_zone, parse_when

    normal = series.normalise_rule(rule)
    name = series.zone_name(tz)
    zone = get_zone(name)
    end = parse_when(until, now=at_now, tz=tz) if until is not None else None
    if end is not None and end < when:
        raise UsageError("--until is before the first time (--at)")
    services.check_not_past(when, at_now)
    plan = series.Rule(normal, zone, when.astimezone(zone).replace(tzinfo=None), until=end,
                       count=count)
    upcoming = plan.first(count or 10)
    if not upcoming:
        raise UsageError(f"--repeat {rule!r}: no occurrence from --at on (check the rule, "
                         "--until and --count)")
    if preview:
        shown = get_zone(tz)
        if as_json:
            render.print_json({"rule": normal, "tz": name,
                               "occurrences": [format_utc(t) for _, t in upcoming]})
            return
        print(f"rule {normal} in {name}; the next {len(upcoming)} (nothing was changed):")
        for n, t in upcoming:
            print(f"  {n:>3}. {t.astimezone(shown):%a %Y-%m-%d %H:%M %Z}")
        return
    files = services.media_files(ctx.meta.get("autopost.raw_args", []), media, alt,
                                 value_options)
    store, settings = get_store(), get_settings()
    seen = set()
    made = []
    horizon = timedelta(seconds=settings.schedule.horizon)
    for account_name in accounts:
        if account_name in seen:
            raise UsageError(f"--account {account_name} given twice")
        seen.add(account_name)
        account = store.get_account(account_name)
        checked = services.job_options(options or {}, [account])[account.name]
        services.check_account_content(settings, account.name, account.platform, text, files,
                                       checked)
        made.append(Series(
            id=series.SERIES_PREFIX + new_id(), account=account.name,
            platform=account.platform, text=text, rule=normal, tz=name, start_at=when,
            media=files, options=checked, max_attempts=max_attempts
            or settings.policy(account.platform).max_attempts, until_at=end, count=count))
    window = services.duplicate_window(settings, allow_duplicate)
    results = []
    for item in made:
        ext = series.plan_extension(plan, 0, None, now=at_now, horizon=horizon)
        item = replace(item, made=ext.made, through=ext.through,
                       next_extend_at=ext.next_extend_at,
                       status="done" if ext.done else "active")
        results.append(store.add_series(item, series.occurrence_jobs(item, ext.occurrences),
                                        now=at_now, duplicate_window=window))
    if as_json:
        render.print_json([{**series_to_dict(s), "jobs": [render.job_to_dict(j) for j in jobs]}
                           for s, jobs in results])
        return
    for s, jobs in results:
        first = upcoming[0][1]
        print(f"{s.id}  repeats {s.rule} in {s.tz} on {s.account}, first "
              f"{render.local(first)}; {len(jobs)} occurrence(s) scheduled so far")


def series_to_dict(s) -> dict:
    from autopost.timeparse import format_utc

    def utc(t):
        return format_utc(t) if t is not None else None

    return {"id": s.id, "account": s.account, "platform": s.platform, "text": s.text,
            "rule": s.rule, "tz": s.tz, "start_at": utc(s.start_at), "until": utc(s.until_at),
            "count": s.count, "status": s.status, "made": s.made,
            "next_extend_at": utc(s.next_extend_at)}


@app.command()
def plan(
    days: Annotated[float | None, typer.Option(
        "--days", click_type=params.PLAN_DAYS,
        help="How far ahead (default: [schedule] horizon).")] = None,
    account: Annotated[str | None, typer.Option("--account", "-a", metavar="NAME")] = None,
    tz: Annotated[str | None, typer.Option(
        "--tz", metavar="ZONE", help="Show times in this zone (default: local).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The coming occurrences of every active recurring series (changes nothing).

    Example:

    \b
      autopost plan --days 7 --tz Europe/Berlin
    """
    from datetime import timedelta

    from autopost import render, series
    from autopost.models import JobFilter
    from autopost.timeparse import format_utc, get_zone

    zone = get_zone(tz)
    settings = get_settings()
    at_now = now()
    end = at_now + timedelta(seconds=settings.schedule.horizon if days is None
                             else days * 86400)
    store = get_store()
    if account is not None:
        store.get_account(account)
    rows = []
    for s in store.list_series(active_only=True):
        if account is not None and s.account != account:
            continue
        jobs = {j.series_n: j for j in store.list_jobs(JobFilter(series_id=s.id))}
        for n, when in series.rule_of(s).occurrences():
            if when > end:
                break
            job = jobs.get(n)
            if when < at_now and (job is None or job.status != "pending"):
                continue
            rows.append((when, s, n, job))
    rows.sort(key=lambda r: (r[0], r[1].id))
    if as_json:
        render.print_json([{"at": format_utc(w), "series": s.id, "n": n, "account": s.account,
                            "job": job.id if job else None,
                            "status": str(job.status) if job else "not made yet",
                            "text": s.text} for w, s, n, job in rows])
        return
    if not rows:
        print("no recurring posts in that time")
        return
    for when, s, n, job in rows:
        state = f"{job.id} {job.status}" if job else "(made later)"
        print(f"{when.astimezone(zone):%a %Y-%m-%d %H:%M %Z}  {s.id}  #{n:<3} {s.account:<12} "
              f"{state:<20} {render.one_line(s.text, 40)}")
