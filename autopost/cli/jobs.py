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
                      "--option", "-o", "--text")


@app.command(cls=RawArgsCommand)
def add(
    ctx: typer.Context,
    texts: Annotated[list[str], typer.Argument(
        metavar="TEXT...", help='The post\'s text ("-" reads it from stdin); with --thread, '
        'each part\'s text in order.')],
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
    repeat: Annotated[str | None, typer.Option(
        "--repeat", metavar="RULE", help="Post again and again: daily, weekdays, mon,wed, "
        "'every 2 weeks', or an RRULE (FREQ=WEEKLY;BYDAY=MO). The first time is --at.")
    ] = None,
    until: Annotated[str | None, typer.Option(
        "--until", metavar="WHEN", help="With --repeat: no occurrence after this.")] = None,
    count: Annotated[int | None, typer.Option(
        "--count", click_type=params.REPEAT_COUNT,
        help="With --repeat: N occurrences in all.")] = None,
    preview: Annotated[bool, typer.Option(
        "--preview", help="With --repeat: print the next occurrences; change nothing.")
    ] = False,
    thread: Annotated[bool, typer.Option(
        "--thread", help="Post the TEXTs as a thread: each part replies to the one before, "
        "and goes out only once that one is posted.")] = False,
    update: Annotated[bool, typer.Option(
        "--update", help="With --key: an existing job with that key takes this text, time "
        "and media (if it has not reached the platform) instead of staying as it is.")
    ] = False,
    allow_duplicate: Annotated[bool, typer.Option(
        "--allow-duplicate", help="Post even if the same text is scheduled or posted on the "
        "account within [schedule] duplicate_window (default 24 h).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the jobs as JSON.")] = False,
) -> None:
    """Schedule a post to one or more accounts. Prints the job id(s).

    --at next-slot takes the account's first free queue slot ([accounts.NAME] slots).

    Examples:

    \b
      autopost add "Launch day!" -a work --at "tomorrow 09:00" --tz Europe/Berlin
      autopost add "A photo" -a work -a home --at +2h --media cat.jpg --alt "A cat"
      autopost add "Tip of the week" -a work --at next-slot
    """
    from autopost import render, services
    from autopost.platforms.options import parse_pairs

    at_now = now()
    if repeat is None and (until is not None or count is not None or preview):
        raise UsageError("--until, --count and --preview go with --repeat")
    if repeat is not None:
        if thread or key is not None or update:
            raise UsageError("--repeat cannot be combined with --thread, --key or --update")
        if at.strip().lower() == services.NEXT_SLOT:
            raise UsageError("--repeat cannot be combined with --at next-slot")
    if thread:
        if len(texts) < 2:
            raise UsageError("--thread: give at least two parts (one TEXT each)")
        if "-" in texts:
            raise UsageError("--thread: parts cannot come from stdin ('-')")
        if update:
            raise UsageError("--update cannot be combined with --thread")
        if at.strip().lower() == services.NEXT_SLOT:
            raise UsageError("--thread cannot be combined with --at next-slot")
    elif len(texts) != 1:
        raise UsageError(f"got {len(texts)} texts; quote the post's text as one argument, "
                         "or give --thread to post several parts as a thread")
    text = texts[0]
    if text == "-" and not thread:
        from autopost.inputs import TEXT_MAX, read_stdin

        text = read_stdin(TEXT_MAX, "text").rstrip("\n")
    if tz is not None:
        get_zone(tz)  # a bad --tz is an error even when WHEN does not need it
    if update and key is None:
        raise UsageError("--update needs --key (it updates the job added with that key)")
    next_slot = at.strip().lower() == services.NEXT_SLOT
    when = at_now if next_slot else parse_when(at, now=at_now, tz=tz)
    if repeat is not None:
        from autopost.cli.schedule import add_series

        add_series(ctx, text=text, accounts=list(account), when=when, tz=tz, rule=repeat,
                   until=until, count=count, preview=preview, media=media, alt=alt,
                   max_attempts=max_attempts, allow_duplicate=allow_duplicate,
                   as_json=as_json, value_options=_ADD_VALUE_OPTIONS, at_now=at_now,
                   options=parse_pairs(option or []))
        return
    files = services.media_files(ctx.meta.get("autopost.raw_args", []), media, alt,
                                 _ADD_VALUE_OPTIONS)
    store = get_store()
    settings = get_settings()
    request = services.AddRequest(text=text, accounts=list(account), when=when, media=files,
                                  key=key, max_attempts=max_attempts, next_slot=next_slot,
                                  options=parse_pairs(option or []),
                                  thread=tuple(texts) if thread else ())
    jobs = services.build_jobs(store, settings, request, now=at_now)
    results = store.add_jobs(jobs, now=at_now, update=update,
                             duplicate_window=services.duplicate_window(settings,
                                                                        allow_duplicate))
    if as_json:
        render.print_json([{**render.job_to_dict(job), "created": created}
                           for job, created in results])
        return
    if quiet():
        print("\n".join(job.id for job, _ in results))
        return
    for job, created in results:
        if created:
            part = f"part {job.thread_part} of a thread, " if job.thread_part else ""
            print(f"{job.id}  {part}scheduled for {render.local(job.scheduled_at)} on "
                  f"{job.account} ({job.platform})")
        elif update and job.status != JobStatus.POSTED:
            print(f"{job.id}  updated (key {job.key!r} on {job.account}): due "
                  f"{render.local(job.scheduled_at)}")
        else:
            note = "" if job.text == text else "; its text differs from this one"
            print(f"{job.id}  already exists (key {job.key!r} on {job.account}, "
                  f"{job.status}); nothing {'updated' if update else 'added'}{note}")


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A .csv (with a header) or "
                                         ".jsonl file.")],
    tz: Annotated[str | None, typer.Option(
        "--tz", metavar="ZONE", help="Zone for rows without a tz column or offset.")] = None,
    allow_duplicate: Annotated[bool, typer.Option(
        "--allow-duplicate", help="Import rows whose text is already scheduled or posted on "
        "the account within [schedule] duplicate_window.")] = False,
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
    from autopost import importer, render, services

    opened = importer.open_lines(file)
    if tz is not None:
        get_zone(tz)
    store, settings, at_now = get_store(), get_settings(), now()
    # Rows are checked as they are read and go to the store as they pass, in one
    # transaction that a bad row anywhere rolls back (importer.CheckedRows).
    rows = importer.CheckedRows(file, store, settings, now=at_now, default_tz=tz,
                                opened=opened)
    with _progress(file) as advance:
        rows.progress = advance
        results = rows.in_file_order(store.import_jobs(
            rows, now=at_now,
            duplicate_window=services.duplicate_window(settings, allow_duplicate)))
    created = sum(1 for _, made in results if made)
    existing = len(results) - created
    if as_json:
        render.print_json({"file": str(file), "format": rows.format, "rows": len(results),
                           "new": created, "existing": existing,
                           "ids": [job_id for job_id, _ in results]})
        return
    line = f"imported {created} new job{'s' if created != 1 else ''} from {file.name}"
    if existing:
        line += f"; {existing} already existed (same key) and were left as they are"
    say(line)


class _progress:
    """A rich progress bar on stderr, only when stderr is a terminal (the total is the
    file's line count, counted first without keeping the file)."""

    def __init__(self, file: Path):
        self.file = file
        self.bar = None

    def __enter__(self) -> Callable[[int | None], None]:
        if not sys.stderr.isatty():
            return lambda _n: None
        from rich.console import Console
        from rich.progress import Progress

        total = 1
        try:
            with open(self.file, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    total += block.count(b"\n")
        except OSError:
            pass  # the import itself says what is wrong with the file
        self.bar = Progress(console=Console(stderr=True, highlight=False), transient=True)
        self.bar.start()
        task = self.bar.add_task("importing rows", total=total)

        def advance(n: int | None) -> None:
            if n is None:
                self.bar.update(task, completed=total)
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
    parts = store.list_jobs(JobFilter(thread_id=job.thread_id)) if job.thread_id else []
    if as_json:
        data = {**render.job_with_attempts(job, attempts),
                "waiting": waiting.to_dict() if waiting else None,
                "thread": [_part(p) for p in parts]}
        render.print_json(data)
        return
    render.show_job(job, attempts, waiting.message if waiting else None)
    if parts:
        print(f"\nthread ({len(parts)} parts; each replies to the one before):")
        for p in parts:
            mark = "*" if p.id == job.id else " "
            where = p.platform_url or p.platform_post_id or ""
            print(f" {mark} {p.thread_part}. {p.id}  {p.status:<9} {where}".rstrip())


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
    parent = None
    if job.thread_id is not None and job.thread_part and job.thread_part > 1:
        parent = next((p for p in store.list_jobs(JobFilter(thread_id=job.thread_id))
                       if p.thread_part == job.thread_part - 1), None)
    return explain(job, account, at_now, hour=hour, day=day, parent=parent)


def _part(job) -> dict:
    return {"part": job.thread_part, "id": job.id, "status": str(job.status),
            "platform_post_id": job.platform_post_id, "platform_url": job.platform_url}


def _jobs(store, ids: list[str]):
    jobs, seen = [], set()
    for job_id in ids:
        job = store.get_job(job_id)
        if job.id not in seen:
            seen.add(job.id)
            jobs.append(job)
    return jobs


def _selection(store, ids: list[str] | None, account: str | None, status: str | None,
               allowed: tuple[JobStatus, ...], verb: str) -> list[JobStatus] | None:
    """The statuses a bulk --account/--status selection covers (None: ids were given)."""
    if ids and (account is not None or status is not None):
        raise UsageError(f"{verb}: give job ids or --account/--status, not both")
    if not ids and account is None and status is None:
        raise UsageError(f"{verb}: give job ids, or --account and/or --status for many jobs")
    if ids:
        return None
    if account is not None:
        store.get_account(account)  # a typo is an error, not "0 jobs"
    if status is None:
        return list(allowed)
    wanted = _status(status)
    if wanted not in allowed:
        done = {"cancel": "cancelled", "retry": "retried"}[verb]
        raise UsageError(f"{verb} --status {wanted}: only "
                         f"{', '.join(str(s) for s in allowed)} jobs can be {done}")
    return [wanted]


def _bulk_report(verb: str, jobs, dry_run: bool) -> None:
    n = len(jobs)
    noun = f"{n} job{'s' if n != 1 else ''}"
    if dry_run:
        print(f"would {verb} {noun} (dry run: nothing changed)")
    else:
        past = {"cancel": "cancelled", "retry": "set pending again"}[verb]
        print(f"{past} {noun}")
    for job in jobs:
        print(f"  {job.id}  {job.account}  {job.status}")


def _matching(store, statuses: list[JobStatus], account: str | None):
    """The jobs a bulk selection covers, in scheduled order (what --dry-run shows)."""
    jobs = [j for s in statuses for j in store.list_jobs(JobFilter(status=s, account=account))]
    return sorted(jobs, key=lambda j: (j.scheduled_at, j.id))


def _bulk_options(able: str, statuses: str, done: str) -> tuple:
    """The JOB... argument and the --account/--status/--dry-run options of a command that
    takes job ids or a bulk selection (cancel, retry), in its words."""
    return (
        Annotated[list[str] | None, typer.Argument(
            metavar="[JOB]...", help="Job ids (or use --account / --status).")],
        Annotated[str | None, typer.Option(
            "--account", "-a", metavar="NAME", help=f"Every {able} job of this account.")],
        Annotated[str | None, typer.Option(
            "--status", "-s", help=f"Only jobs in this status: {statuses}.")],
        Annotated[bool, typer.Option(
            "--dry-run", help=f"Show what would be {done}; change nothing.")],
    )


_CancelIds, _CancelAccount, _CancelStatus, _CancelDryRun = _bulk_options(
    "cancellable", "pending, failed or missed", "cancelled")
_RetryIds, _RetryAccount, _RetryStatus, _RetryDryRun = _bulk_options(
    "retryable", "failed, missed or cancelled", "retried")


@app.command()
def cancel(
    job_ids: _CancelIds = None,
    account: _CancelAccount = None,
    status: _CancelStatus = None,
    dry_run: _CancelDryRun = False,
) -> None:
    """Cancel jobs that have not been published.

    Exits 1 if one could not be cancelled (a run is publishing it right now, or it is
    already posted). With --account / --status, every matching pending, failed or missed
    job is cancelled in one go.

    Example:

    \b
      autopost cancel 3f9k2m7a 8d1q0c4e
      autopost cancel --account work --status pending --dry-run
    """
    store = get_store()
    refused = _cancel(store, job_ids, account, status, dry_run)
    settings = get_settings()
    if not dry_run and settings.media.configured:  # their media copies go too
        from autopost.mediahost import release_finished

        release_finished(settings.media, store)
    if refused:
        raise typer.Exit(1)


def _cancel(store, job_ids, account, status, dry_run: bool) -> bool:
    """Cancel what was asked; True when a job could not be cancelled (said on stderr)."""
    from autopost.store.base import CANCELLABLE

    statuses = _selection(store, job_ids, account, status, CANCELLABLE, "cancel")
    if statuses is not None:
        if dry_run:
            _bulk_report("cancel", _matching(store, statuses, account), True)
        else:
            _bulk_report("cancel", store.cancel_jobs(account=account, statuses=statuses,
                                                     now=now()), False)
        return False
    from autopost.series import is_series_id

    for series_id in [i for i in job_ids or [] if is_series_id(i)]:
        if dry_run:
            print(f"{store.get_series(series_id).id}  would be cancelled with its occurrences "
                  "not yet posted")
            continue
        stopped, jobs = store.cancel_series(series_id, now=now())
        print(f"{stopped.id}  series cancelled; {len(jobs)} occurrence(s) not yet posted "
              "cancelled")
    job_ids = [i for i in job_ids or [] if not is_series_id(i)]
    jobs = _jobs(store, job_ids)
    if dry_run:
        for job in jobs:
            ok = job.status in CANCELLABLE
            print(f"{job.id}  would be {'cancelled' if ok else 'left: it is ' + job.status}")
        print("(dry run: nothing changed)")
        return False
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
    return failed


@app.command()
def retry(
    job_ids: _RetryIds = None,
    at: Annotated[str | None, typer.Option(
        "--at", metavar="WHEN", help="When to send it (default: the next run).")] = None,
    tz: Annotated[str | None, typer.Option(
        "--tz", metavar="ZONE", help="Zone for --at without an offset.")] = None,
    account: _RetryAccount = None,
    status: _RetryStatus = None,
    dry_run: _RetryDryRun = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Send it again even though it may already be posted (an unknown "
                        "job, or one whose earlier outcome was never confirmed).")] = False,
) -> None:
    """Send failed, missed or cancelled jobs again, at the next run or --at WHEN.

    With --account / --status, every matching job is retried in one go (without
    --status: failed and missed ones; cancelled only when asked for).

    Example:

    \b
      autopost list --status failed | cut -f1 | xargs autopost retry
      autopost retry --status failed --account work --at +1h
    """
    from autopost.policy import retry_doubt
    from autopost.services import check_not_past
    from autopost.store.base import RETRYABLE

    at_now = now()
    if tz is not None:
        get_zone(tz)
    when = parse_when(at, now=at_now, tz=tz) if at is not None else None
    if when is not None:
        check_not_past(when, at_now)
    store = get_store()
    statuses = _selection(store, job_ids, account, status, RETRYABLE, "retry")
    if statuses is not None:
        if force:
            raise UsageError("--force goes with job ids, not --account/--status")
        if status is None:
            statuses = [JobStatus.FAILED, JobStatus.MISSED]
        if dry_run:
            _bulk_report("retry", _matching(store, statuses, account), True)
        else:
            _bulk_report("retry", store.retry_jobs(account=account, statuses=statuses,
                                                   now=at_now, at=when), False)
        return
    jobs = _jobs(store, job_ids or [])
    for job in jobs:  # every job is checked before any changes
        if job.status not in RETRYABLE and job.status != JobStatus.UNKNOWN:
            raise UsageError(f"job {job.id} is {job.status}; only failed, missed or cancelled "
                             "jobs can be retried (nothing changed)")
        doubt = retry_doubt(job, store.attempts_for(job.id))
        if doubt is not None and not force:
            raise UsageError(f"{doubt} (nothing changed)")
    if dry_run:
        for job in jobs:
            print(f"{job.id}  would be set pending again ({job.status} now)")
        print("(dry run: nothing changed)")
        return
    for job in jobs:
        fresh = store.retry_job(job.id, now=at_now, at=when, force=force)
        due = "due now" if when is None else f"due {format_local(fresh.scheduled_at)}"
        say(f"{fresh.id}  pending again, {due} ({fresh.attempts} of {fresh.max_attempts} "
              "attempts used)")


def format_local(when) -> str:
    from autopost import render

    return render.local(when)


_EDIT_VALUE_OPTIONS = ("--text", "--at", "--tz", "--max-attempts", "--option")


@app.command(cls=RawArgsCommand)
def edit(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="A job id or its unique start.")],
    text: Annotated[str | None, typer.Option(
        "--text", help='The new text ("-" reads it from stdin).')] = None,
    at: Annotated[str | None, typer.Option("--at", metavar="WHEN", help="The new time.")
                  ] = None,
    tz: Annotated[str | None, typer.Option(
        "--tz", metavar="ZONE", help="Zone for --at without an offset.")] = None,
    media: Annotated[list[str] | None, typer.Option(
        "--media", metavar="FILE", help="Replace the media with these files (repeatable).")
    ] = None,
    alt: Annotated[list[str] | None, typer.Option(
        "--alt", metavar="TEXT", help="Alt text for the --media before it.")] = None,
    no_media: Annotated[bool, typer.Option("--no-media", help="Remove all media.")] = False,
    option: Annotated[list[str] | None, typer.Option(
        "--option", metavar="KEY=VALUE", help="Set a platform option (KEY= removes it).")
    ] = None,
    max_attempts: Annotated[int | None, typer.Option(
        "--max-attempts", click_type=params.attempts(),
        help="Give up after N attempts.")] = None,
    allow_duplicate: Annotated[bool, typer.Option(
        "--allow-duplicate", help="Skip the duplicate guard.")] = False,
) -> None:
    """Change a job that has not reached the platform yet (pending, missed, or failed
    before any attempt). Checked like add; a new --at makes a missed job pending again.
    A series id (s-...) changes the series and its occurrences not yet posted.

    Example:

    \b
      autopost edit 3f9k2m7a --text "Launch day! (updated)" --at "tomorrow 10:00"
    """
    from autopost import render, services

    at_now = now()
    if text == "-":
        from autopost.inputs import TEXT_MAX, read_stdin

        text = read_stdin(TEXT_MAX, "text").rstrip("\n")
    if tz is not None:
        get_zone(tz)
    when = parse_when(at, now=at_now, tz=tz) if at is not None else None
    if when is not None:
        services.check_not_past(when, at_now)
    if no_media and media:
        raise UsageError("give --media or --no-media, not both")
    files = None
    if media or alt:
        files = services.media_files(ctx.meta.get("autopost.raw_args", []), media, alt,
                                     _EDIT_VALUE_OPTIONS)
    elif no_media:
        files = ()
    store = get_store()
    from autopost.series import is_series_id

    if is_series_id(job_id):
        if when is not None:
            raise UsageError("a series' times come from its rule; cancel it and add a new one "
                             "to change them")
        template = store.get_series(job_id)
        change = _checked_edit(template, text, None, files, option, max_attempts)
        fresh, changed = store.edit_series(template.id, change, now=at_now)
        print(f"{fresh.id}  series edited ({', '.join(change.fields())}); "
              f"{len(changed)} occurrence(s) not yet posted changed too")
        return
    job = store.get_job(job_id)
    change = _checked_edit(job, text, when, files, option, max_attempts, timed=True)
    fresh = store.edit_job(job.id, change, now=at_now, duplicate_window=services.duplicate_window(
        get_settings(), allow_duplicate))
    print(f"{fresh.id}  edited ({', '.join(change.fields())}); {fresh.status}, due "
          f"{render.local(fresh.scheduled_at)}")


def _checked_edit(target, text, when, files, option, max_attempts, *, timed: bool = False):
    """The JobEdit for a job or a series (`target`), checked as `add` checks the content
    (`timed`: the target has a time to change, so --at is one of the things to give)."""
    from autopost import services
    from autopost.models import JobEdit

    options = services.edited_options(target.account, target.platform, option,
                                      target.options) if option else None
    change = JobEdit(text=text, scheduled_at=when, media=files, options=options,
                     max_attempts=max_attempts)
    if not change.fields():
        raise UsageError(f"edit: nothing to change (give --text, {'--at, ' if timed else ''}"
                         "--media, --no-media, --option or --max-attempts)")
    services.check_account_content(get_settings(), target.account, target.platform,
                                   target.text if text is None else text,
                                   target.media if files is None else files,
                                   target.options if options is None else options)
    return change
