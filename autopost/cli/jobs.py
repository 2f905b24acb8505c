"""Commands on jobs: add, import, list, show, cancel, retry.

Each command imports what it uses (services, render, the importer) when it runs, so
`--help` and the quick commands start fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from autopost.cli import params
from autopost.cli.app import (
    RawArgsCommand,
    app,
    get_settings,
    get_store,
    note,
    now,
    quiet,
    say,
    say_error,
)
from autopost.errors import NotFound, UsageError
from autopost.models import JobFilter, JobStatus
from autopost.timeparse import get_zone, parse_when

_ADD_VALUE_OPTIONS = ("--account", "-a", "--at", "--tz", "--key", "--max-attempts",
                      "--option", "-o")


@app.command(cls=RawArgsCommand)
def add(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help='The post\'s text ("-" reads it from stdin).')],
    account: Annotated[list[str], typer.Option(
        "--account", "-a", metavar="NAME", help="Post to this account (repeatable).")],
    at: Annotated[str, typer.Option(
        "--at", metavar="WHEN",
        help="now, +15m, +2h, 'tomorrow 09:00', 2026-12-01T09:00 (local or --tz), or with "
             "an offset.")],
    tz: Annotated[str | None, typer.Option(
        "--tz", metavar="ZONE", help="Zone for times without an offset (e.g. Europe/Berlin).")
    ] = None,
    media: Annotated[list[str] | None, typer.Option(
        "--media", metavar="FILE", help="Attach a file (repeatable).")] = None,
    alt: Annotated[list[str] | None, typer.Option(
        "--alt", metavar="TEXT", help="Alt text for the --media before it.")] = None,
    key: Annotated[str | None, typer.Option(
        "--key", help="Your id for this post: adding the same key again does nothing.")
    ] = None,
    option: Annotated[list[str] | None, typer.Option(
        "--option", "-o", metavar="KEY=VALUE",
        help="A platform option (repeatable; PLATFORM.KEY=VALUE for one platform only). "
             "'autopost platforms NAME' lists them.")] = None,
    max_attempts: Annotated[int | None, typer.Option(
        "--max-attempts", click_type=params.attempts(),
        help="Give up after N attempts (default: the platform's).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the jobs as JSON.")] = False,
) -> None:
    """Schedule a post to one or more accounts. Prints the job id(s).

    Examples:

    \b
      autopost add "Launch day!" -a work --at "tomorrow 09:00" --tz Europe/Berlin
      autopost add "A photo" -a work -a home --at +2h --media cat.jpg --alt "A cat"
    """
    from autopost import render, services
    from autopost.models import Media
    from autopost.platforms.options import parse_pairs

    at_now = now()
    if text == "-":
        from autopost.inputs import TEXT_MAX, read_stdin

        text = read_stdin(TEXT_MAX, "text").rstrip("\n")
    if tz is not None:
        get_zone(tz)  # a bad --tz is an error even when WHEN does not need it
    when = parse_when(at, now=at_now, tz=tz)
    media_list, alt_list = media or [], alt or []
    order = services.option_order(ctx.meta.get("autopost.raw_args", []),
                                  {"--media": "media", "--alt": "alt"}, _ADD_VALUE_OPTIONS)
    pairs = services.pair_media(media_list, alt_list, order)
    files = tuple(Media(services.check_media(path), alt_text) for path, alt_text in pairs)
    store = get_store()
    request = services.AddRequest(text=text, accounts=list(account), when=when, media=files,
                                  key=key, max_attempts=max_attempts,
                                  options=parse_pairs(option or []))
    jobs = services.build_jobs(store, get_settings(), request, now=at_now)
    results = store.add_jobs(jobs, now=at_now)
    if as_json:
        render.print_json([{**render.job_to_dict(job), "created": created}
                           for job, created in results])
        return
    if quiet():
        print("\n".join(job.id for job, _ in results))
        return
    for job, created in results:
        if created:
            print(f"{job.id}  scheduled for {render.local(job.scheduled_at)} on {job.account}"
                  f" ({job.platform})")
        else:
            note = "" if job.text == text else "; its text differs from this one"
            print(f"{job.id}  already exists (key {job.key!r} on {job.account}, "
                  f"{job.status}); nothing added{note}")


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A .csv (with a header) or "
                                         ".jsonl file.")],
    tz: Annotated[str | None, typer.Option(
        "--tz", metavar="ZONE", help="Zone for rows without a tz column or offset.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Import many posts from a CSV or JSON Lines file, all or nothing.

    Columns: account, at, text, and optional key, media, alt, tz, options (a JSON object
    of platform options). Every row is checked first; one bad row and nothing is
    imported. Rows with a key already imported are left as they are, so importing the
    same file again is safe.

    Example:

    \b
      autopost import posts.csv --tz Europe/Berlin
    """
    from autopost import importer, render

    text = importer.read_text(file)
    if tz is not None:
        get_zone(tz)
    store, settings, at_now = get_store(), get_settings(), now()
    with _progress(text.count("\n")) as advance:
        parsed = importer.parse_file(file, store, settings, now=at_now, default_tz=tz,
                                     progress=advance, text=text)
        advance(None)
        results = store.add_jobs(parsed.jobs, now=at_now)
    created = sum(1 for _, made in results if made)
    existing = len(results) - created
    if as_json:
        render.print_json({"file": str(file), "format": parsed.format, "rows": len(results),
                           "new": created, "existing": existing,
                           "ids": [job.id for job, _ in results]})
        return
    line = f"imported {created} new job{'s' if created != 1 else ''} from {file.name}"
    if existing:
        line += f"; {existing} already existed (same key) and were left as they are"
    say(line)


class _progress:
    """A rich progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, total: int):
        self.total = max(total, 1)
        self.bar = None

    def __enter__(self) -> Callable[[int | None], None]:
        if not sys.stderr.isatty():
            return lambda _n: None
        from rich.console import Console
        from rich.progress import Progress

        self.bar = Progress(console=Console(stderr=True, highlight=False), transient=True)
        self.bar.start()
        task = self.bar.add_task("checking rows", total=self.total)

        def advance(n: int | None) -> None:
            if n is None:
                self.bar.update(task, description="saving", completed=self.total)
            else:
                self.bar.update(task, completed=n)

        return advance

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _platform_filter(name: str) -> str:
    from autopost.config import check_platform

    try:
        return check_platform(name)
    except UsageError:
        # A platform registered in-process (tests, benchmarks) is a platform too.
        from autopost.platforms.registry import adapter_class

        adapter_class(name.strip().lower())
        return name.strip().lower()


def _status(value: str) -> JobStatus:
    try:
        return JobStatus(value.strip().lower())
    except ValueError:
        raise UsageError(f"unknown status {value!r} (one of: "
                         f"{', '.join(s.value for s in JobStatus)})") from None


# A table longer than this helps nobody (and takes rich a while to lay out).
TABLE_ROWS = 1000


@app.command("list")
def list_(
    status: Annotated[str | None, typer.Option("--status", "-s", help="pending, running, "
                                               "posted, failed, cancelled, missed, unknown")
                      ] = None,
    account: Annotated[str | None, typer.Option("--account", "-a", metavar="NAME")] = None,
    platform: Annotated[str | None, typer.Option("--platform", "-p")] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", click_type=params.LIMIT,
                                              help="Show at most N jobs.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List jobs in scheduled order.

    Examples:

    \b
      autopost list --status failed --account work
      autopost list | cut -f1
    """
    from autopost import render

    flt = JobFilter(status=_status(status) if status is not None else None,
                    account=account, limit=limit,
                    platform=_platform_filter(platform) if platform is not None else None)
    store = get_store()
    if not as_json and limit is None:
        flt = replace(flt, limit=TABLE_ROWS + 1)
    jobs = store.list_jobs(flt)
    if account is not None and not jobs:
        store.get_account(account)  # a typo gets "unknown account", not "no jobs"
    if as_json:
        render.print_json([render.job_to_dict(j) for j in jobs])
    elif quiet():
        sys.stdout.write("".join(f"{j.id}\n" for j in jobs))
    elif not jobs:
        print("no jobs")
    else:
        shown = jobs if limit is not None else jobs[:TABLE_ROWS]
        render.print_jobs(shown)
        if len(shown) < len(jobs):
            note(f"(the first {len(shown)} jobs; there are more: narrow it with --status, "
                 "--account or --limit, or use --json for all)")


@app.command()
def show(
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="A job id or its unique start.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a job, why it is waiting if it is, and every attempt made for it.

    Example:

    \b
      autopost show 3f9k
    """
    from autopost import render

    store = get_store()
    job = store.get_job(job_id)
    attempts = store.attempts_for(job.id)
    waiting = _waiting(store, job)
    if as_json:
        render.print_json({**render.job_with_attempts(job, attempts),
                           "waiting": waiting.to_dict() if waiting else None})
    else:
        render.show_job(job, attempts, waiting.message if waiting else None)


def _waiting(store, job):
    """Why the job has not gone out (autopost.waiting), with its account's quota windows."""
    from autopost.waiting import explain

    try:
        account = store.get_account(job.account)
    except NotFound:
        account = None
    at_now = now()
    hour = day = None
    if account is not None and job.status == JobStatus.PENDING:
        from autopost.quota import windows
        from autopost.services import account_limits

        hour, day = windows(store.quota_times(account.name, now=at_now), at_now,
                            *account_limits(account, get_settings()))
    return explain(job, account, at_now, hour=hour, day=day)


def _jobs(store, ids: list[str]):
    jobs, seen = [], set()
    for job_id in ids:
        job = store.get_job(job_id)
        if job.id not in seen:
            seen.add(job.id)
            jobs.append(job)
    return jobs


@app.command()
def cancel(
    job_ids: Annotated[list[str], typer.Argument(metavar="JOB...", help="Job ids.")],
) -> None:
    """Cancel jobs that have not been published.

    Exits 1 if one could not be cancelled (a run is publishing it right now, or it is
    already posted).

    Example:

    \b
      autopost cancel 3f9k2m7a 8d1q0c4e
    """
    store = get_store()
    jobs = _jobs(store, job_ids)
    failed = False
    for job in jobs:
        outcome = store.cancel_job(job.id, now=now())
        if outcome.cancelled:
            say(f"{job.id}  cancelled")
        elif outcome.job.status == JobStatus.CANCELLED:
            say(f"{job.id}  was already cancelled")
        else:
            failed = True
            say_error(f"job {job.id} not cancelled: {outcome.reason}")
    if failed:
        raise typer.Exit(1)


_RETRYABLE = (JobStatus.FAILED, JobStatus.MISSED, JobStatus.CANCELLED)


@app.command()
def retry(
    job_ids: Annotated[list[str], typer.Argument(metavar="JOB...", help="Job ids.")],
    force: Annotated[bool, typer.Option(
        "--force", help="Send it again even though it may already be posted (an unknown "
                        "job, or one whose earlier outcome was never confirmed).")] = False,
) -> None:
    """Send failed, missed or cancelled jobs again, as soon as the next run.

    Example:

    \b
      autopost list --status failed | cut -f1 | xargs autopost retry
    """
    from autopost.policy import retry_doubt

    store = get_store()
    jobs = _jobs(store, job_ids)
    for job in jobs:  # every job is checked before any changes
        if job.status not in _RETRYABLE and job.status != JobStatus.UNKNOWN:
            raise UsageError(f"job {job.id} is {job.status}; only failed, missed or cancelled "
                             "jobs can be retried (nothing changed)")
        doubt = retry_doubt(job, store.attempts_for(job.id))
        if doubt is not None and not force:
            raise UsageError(f"{doubt} (nothing changed)")
    for job in jobs:
        fresh = store.retry_job(job.id, now=now(), force=force)
        say(f"{fresh.id}  pending again, due now ({fresh.attempts} of {fresh.max_attempts} "
              "attempts used)")
