"""Commands about the shape of the schedule: queue slots (and recurring plans)."""

from __future__ import annotations

from typing import Annotated

import typer

from autopost.cli.app import app, get_settings, get_store, now


@app.command()
def slots(
    account: Annotated[str, typer.Argument(metavar="ACCOUNT", help="The account.")],
    count: Annotated[int, typer.Option("--count", "-n", min=1, help="Show N slots.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show an account's next free queue slots (for `add --at next-slot`)."""
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
