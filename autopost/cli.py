"""The `autopost` command line: parse arguments, call services and the store, render.

No SQL and no HTTP here. Errors a user can cause are AutopostErrors: `run` (and the
app's own entry) turn them into one line on stderr and the error's exit code:
0 ok, 1 needs attention, 2 bad usage or input, 3 environment trouble.
"""

from __future__ import annotations

import importlib.util
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

try:  # newer typer releases vendor their own click; its exceptions are the ones raised
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
    from typer._click.exceptions import UsageError as ClickUsageError
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - typer on top of the click package
    from click import get_current_context
    from click.exceptions import ClickException
    from click.exceptions import UsageError as ClickUsageError

    NoArgsIsHelpError = getattr(__import__("click.exceptions").exceptions,
                                "NoArgsIsHelpError", ())

from autopost import render, services
from autopost.config import PLATFORMS, Settings, check_platform, load_settings, resolve_db_path
from autopost.errors import AutopostError, NotFound, UsageError
from autopost.models import JobFilter, JobStatus, Media
from autopost.timeparse import format_utc, get_zone, parse_duration, parse_when

if TYPE_CHECKING:
    from autopost.store.sqlite import SqliteStore


# -- error handling: one line, the right exit code ---------------------------------------

def _say_error(message: str) -> None:
    sys.stderr.write("autopost: " + " ".join(str(message).split()) + "\n")
    sys.stderr.flush()


def _guarded(call: Callable[[], Any]) -> int:
    try:
        rv = call()
    except NoArgsIsHelpError as exc:
        exc.show()
        return exc.exit_code
    except ClickException as exc:
        _say_error(exc.format_message())
        return 2 if isinstance(exc, ClickUsageError) else exc.exit_code
    except typer.Abort as exc:
        interrupted = isinstance(exc.__context__, KeyboardInterrupt)
        _say_error("interrupted" if interrupted else "aborted")
        return 130 if interrupted else 1
    except AutopostError as exc:
        _say_error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _say_error("interrupted")
        return 130
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return rv if isinstance(rv, int) else 0


class AutopostGroup(TyperGroup):
    """The root group: every way in (console script, `python -m`, tests) handles errors
    the same way, whether or not click runs in standalone mode."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):
        code = _guarded(lambda: TyperGroup.main(
            self, args=args, prog_name=prog_name or "autopost", complete_var=complete_var,
            standalone_mode=False, **extra))
        if standalone_mode:
            sys.exit(code)
        return code


class RawArgsCommand(TyperCommand):
    """Keeps the command's raw arguments, so `add` can pair each --alt with its --media."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        ctx.meta["autopost.raw_args"] = list(args)
        return super().parse_args(ctx, args)


app = typer.Typer(cls=AutopostGroup, pretty_exceptions_show_locals=False,
                  no_args_is_help=True, add_completion=False,
                  help="Schedule social-media posts and publish them reliably from cron.")
accounts_app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False,
                           help="Add, list and remove the accounts autopost posts to.")
app.add_typer(accounts_app, name="accounts")


def run(argv: list[str]) -> int:
    """Run one command line; returns the exit code (used by __main__)."""
    return app(args=list(argv), prog_name="autopost", standalone_mode=False)


# -- per-invocation state: the store and settings, built when first needed -------------

@dataclass
class State:
    db: str | None = None
    config: str | None = None
    store: SqliteStore | None = None
    settings: Settings | None = None

    def close(self) -> None:
        if self.store is not None:
            store, self.store = self.store, None
            store.close()


def _state(ctx: typer.Context | None = None) -> State:
    ctx = ctx or get_current_context()
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
        root.call_on_close(root.obj.close)
    return root.obj


def get_store(ctx: typer.Context | None = None) -> SqliteStore:
    """The invocation's store, opened (and migrated) on first use, closed at exit."""
    state = _state(ctx)
    if state.store is None:
        from autopost.store.sqlite import SqliteStore

        state.store = SqliteStore(resolve_db_path(state.db))
    return state.store


def get_settings(ctx: typer.Context | None = None) -> Settings:
    state = _state(ctx)
    if state.settings is None:
        state.settings = load_settings(state.config)
    return state.settings


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"autopost {version('autopost')}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    db: Annotated[str | None, typer.Option(
        "--db", envvar="AUTOPOST_DB", metavar="PATH", show_envvar=True,
        help="The database file (default: the user data folder).")] = None,
    config: Annotated[str | None, typer.Option(
        "--config", envvar="AUTOPOST_CONFIG", metavar="PATH", show_envvar=True,
        help="config.toml (default: the user config folder).")] = None,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Show the version.")] = False,
) -> None:
    state = _state(ctx)
    state.db, state.config = db, config


def _now() -> datetime:
    return services.utcnow()


# -- accounts ------------------------------------------------------------------------------

@accounts_app.command("add")
def accounts_add(
    name: Annotated[str, typer.Argument(help="Your name for this account.")],
    platform: Annotated[str, typer.Option("--platform", "-p", help="e.g. outbox, mastodon.")],
    credentials: Annotated[str | None, typer.Option(
        "--credentials", metavar="FILE|-",
        help='A JSON object of the platform\'s fields; "-" reads it from stdin. A value '
             'may be {"env": "VAR"} to read it from the environment at run time.')] = None,
    base_url: Annotated[str | None, typer.Option(
        "--base-url", metavar="URL", help="The platform's API root (self-hosted, tests).")
    ] = None,
    update: Annotated[bool, typer.Option(
        "--update", help="Replace the credentials of an existing account.")] = False,
    hourly_limit: Annotated[int | None, typer.Option(
        "--hourly-limit", min=1, help="Posts per hour for this account (overrides config).")
    ] = None,
    daily_limit: Annotated[int | None, typer.Option(
        "--daily-limit", min=1, help="Posts per day for this account (overrides config).")
    ] = None,
    offline: Annotated[bool, typer.Option(
        "--offline", help="Store the credentials without contacting the platform (where "
        "it would log in now, the first run does).")] = False,
) -> None:
    """Add an account. Secrets come from a file, stdin or a prompt, never the command line."""
    services.check_account_name(name)
    canon, cls = services.platform_adapter(platform)
    if credentials is None:
        creds = _prompt_credentials(cls)
    else:
        creds = services.read_credentials(credentials)
    store = get_store()
    try:
        existing = store.get_account(name)
    except NotFound:
        existing = None
    if existing is not None and not update:
        raise UsageError(f"account {name!r} exists (use --update to replace it)")
    account = services.build_account(name, canon, creds, base_url=base_url,
                                     hourly_limit=hourly_limit, daily_limit=daily_limit,
                                     existing=existing)
    unset = services.env_is_set(account.credentials)
    if not offline and not unset:
        account = services.setup_account(account, cls)
    store.add_account(account, now=_now(), replace=existing is not None)
    verb = "updated" if existing else "added"
    print(f"{verb} account {name} ({account.platform})")
    for var in unset:
        print(f"note: ${var} is not set in this shell; runs will need it", file=sys.stderr)


def _prompt_credentials(cls) -> dict[str, Any]:
    if not sys.stdin.isatty():
        raise UsageError("give --credentials FILE (or - to read JSON from stdin)")
    creds: dict[str, Any] = {}
    for field in cls.required_fields:
        creds[field] = typer.prompt(field, hide_input=field in cls.secret_fields)
    return creds


@accounts_app.command("list")
def accounts_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List accounts: platform, state, and which credential fields are set (never values)."""
    accounts = get_store().list_accounts()
    now = _now()
    if as_json:
        render.print_json([render.account_to_dict(a, now) for a in accounts])
    elif not accounts:
        print("no accounts yet (add one: autopost accounts add NAME --platform P "
              "--credentials FILE)")
    else:
        render.out().print(render.accounts_table(accounts, now))


@accounts_app.command("remove")
def accounts_remove(name: Annotated[str, typer.Argument()]) -> None:
    """Remove an account (refused while it has pending, running or unknown jobs)."""
    get_store().remove_account(name)
    print(f"removed account {name}")


# -- jobs ------------------------------------------------------------------------------------

_ADD_VALUE_OPTIONS = ("--account", "-a", "--at", "--tz", "--key", "--max-attempts")


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
    max_attempts: Annotated[int | None, typer.Option(
        "--max-attempts", min=1, help="Give up after N attempts (default: the platform's).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the jobs as JSON.")] = False,
) -> None:
    """Schedule a post to one or more accounts. Prints the job id(s)."""
    now = _now()
    if text == "-":
        text = sys.stdin.read().rstrip("\n")
    if tz is not None:
        get_zone(tz)  # a bad --tz is an error even when WHEN does not need it
    when = parse_when(at, now=now, tz=tz)
    media_list, alt_list = media or [], alt or []
    order = services.option_order(ctx.meta.get("autopost.raw_args", []),
                                  {"--media": "media", "--alt": "alt"}, _ADD_VALUE_OPTIONS)
    pairs = services.pair_media(media_list, alt_list, order)
    files = tuple(Media(services.check_media(path), alt_text) for path, alt_text in pairs)
    store = get_store()
    request = services.AddRequest(text=text, accounts=list(account), when=when, media=files,
                                  key=key, max_attempts=max_attempts)
    jobs = services.build_jobs(store, get_settings(), request, now=now)
    results = store.add_jobs(jobs, now=now)
    if as_json:
        render.print_json([{**render.job_to_dict(job), "created": created}
                           for job, created in results])
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

    Columns: account, at, text, and optional key, media, alt, tz. Every row is checked
    first; one bad row and nothing is imported. Rows with a key already imported are
    left as they are, so importing the same file again is safe."""
    from autopost import importer

    text = importer.read_text(file)
    if tz is not None:
        get_zone(tz)
    store, settings, now = get_store(), get_settings(), _now()
    with _progress(text.count("\n")) as advance:
        parsed = importer.parse_file(file, store, settings, now=now, default_tz=tz,
                                     progress=advance, text=text)
        advance(None)
        results = store.add_jobs(parsed.jobs, now=now)
    created = sum(1 for _, made in results if made)
    existing = len(results) - created
    if as_json:
        render.print_json({"file": str(file), "format": parsed.format, "rows": len(results),
                           "created": created, "existing": existing,
                           "ids": [job.id for job, _ in results]})
        return
    line = f"imported {created} new job{'s' if created != 1 else ''} from {file.name}"
    if existing:
        line += f"; {existing} already existed (same key) and were left as they are"
    print(line)


class _progress:
    """A rich progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, total: int):
        self.total = max(total, 1)
        self.bar = None

    def __enter__(self) -> Callable[[int | None], None]:
        if not sys.stderr.isatty():
            return lambda _n: None
        from rich.progress import Progress

        self.bar = Progress(console=render.err_console, transient=True)
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
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=1,
                                              help="Show at most N jobs.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List jobs in scheduled order."""
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
    elif not jobs:
        print("no jobs")
    else:
        shown = jobs if limit is not None else jobs[:TABLE_ROWS]
        render.out().print(render.jobs_table(shown))
        if len(shown) < len(jobs):
            print(f"(the first {len(shown)} jobs; there are more: narrow it with --status, "
                  "--account or --limit, or use --json for all)")


@app.command()
def show(
    job_id: Annotated[str, typer.Argument(metavar="JOB", help="A job id or its unique start.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a job and every attempt made for it."""
    store = get_store()
    job = store.get_job(job_id)
    attempts = store.attempts_for(job.id)
    if as_json:
        render.print_json(render.job_with_attempts(job, attempts))
    else:
        render.show_job(job, attempts)


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
    already posted)."""
    store = get_store()
    jobs = _jobs(store, job_ids)
    failed = False
    for job in jobs:
        outcome = store.cancel_job(job.id, now=_now())
        if outcome.cancelled:
            print(f"{job.id}  cancelled")
        elif outcome.job.status == JobStatus.CANCELLED:
            print(f"{job.id}  was already cancelled")
        else:
            failed = True
            _say_error(f"job {job.id} not cancelled: {outcome.reason}")
    if failed:
        raise typer.Exit(1)


_RETRYABLE = (JobStatus.FAILED, JobStatus.MISSED, JobStatus.CANCELLED)


@app.command()
def retry(
    job_ids: Annotated[list[str], typer.Argument(metavar="JOB...", help="Job ids.")],
) -> None:
    """Send failed, missed or cancelled jobs again, as soon as the next run."""
    store = get_store()
    jobs = _jobs(store, job_ids)
    for job in jobs:
        if job.status not in _RETRYABLE:
            raise UsageError(f"job {job.id} is {job.status}; only failed, missed or cancelled "
                             "jobs can be retried (nothing changed)")
    for job in jobs:
        fresh = store.retry_job(job.id, now=_now())
        print(f"{fresh.id}  pending again, due now ({fresh.attempts} of {fresh.max_attempts} "
              "attempts used)")


# -- settings and usage ------------------------------------------------------------------------

@app.command()
def platforms(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The effective retry and quota settings per platform (defaults < config < env)."""
    settings = get_settings()
    rows = []
    for name in PLATFORMS:
        policy = settings.policy(name)
        rows.append({
            "platform": name,
            "supported": importlib.util.find_spec(f"autopost.platforms.{name}") is not None,
            "max_attempts": policy.max_attempts,
            "base_delay": policy.base_delay,
            "max_delay": policy.max_delay,
            "backoff_multiplier": policy.backoff_multiplier,
            "hourly_limit": policy.hourly_limit,
            "daily_limit": policy.daily_limit,
            "retryable": sorted(str(k) for k in policy.retryable),
        })
    if as_json:
        render.print_json(rows)
        return
    c = render.out()
    c.print(render.platforms_table(rows))
    if settings.config_path:
        c.print(f"\nconfig: {settings.config_path}")


@app.command()
def quota(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Posts used against each account's hourly and daily limits (in-flight included)."""
    store, settings, now = get_store(), get_settings(), _now()
    rows = []
    for account in store.list_accounts():
        hour, day = store.quota_usage(account.name, now=now)
        hourly, daily = services.account_limits(account, settings)
        rows.append({
            "account": account.name,
            "platform": account.platform,
            "hour": {"used": hour, "limit": hourly},
            "day": {"used": day, "limit": daily},
            "blocked_until": render.utc(account.blocked_until)
            if account.is_blocked(now) else None,
        })
    if as_json:
        render.print_json(rows)
    elif not rows:
        print("no accounts yet")
    else:
        render.out().print(render.quota_table(rows))


@app.command()
def calendar(
    days: Annotated[int, typer.Option("--days", "-d", min=1, help="How many days ahead.")] = 7,
    tz: Annotated[str | None, typer.Option("--tz", metavar="ZONE",
                                           help="Group by days in this zone.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Upcoming pending posts, by day."""
    zone = get_zone(tz)
    now = _now()
    end = now + timedelta(days=days)
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
        render.calendar(list(grouped.items()), zone)


@app.command()
def prune(
    older_than: Annotated[str, typer.Option(
        "--older-than", metavar="AGE", help="Finished jobs untouched for this long "
        "(30d, 12h, ...).")] = "30d",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Delete old finished jobs, their attempts, and old run records.

    Finished means posted, failed, cancelled or missed."""
    seconds = parse_duration(older_than, name="--older-than")
    now = _now()
    before = now - timedelta(seconds=seconds)
    jobs, runs = get_store().prune(before=before)
    if as_json:
        render.print_json({"jobs": jobs, "runs": runs, "before": format_utc(before)})
    else:
        print(f"pruned {jobs} job{'s' if jobs != 1 else ''} and {runs} run record"
              f"{'s' if runs != 1 else ''} older than {format_utc(before)}")


@app.command()
def cron(ctx: typer.Context) -> None:
    """Print crontab and systemd timer lines that run `run-due` for this install."""
    state = _state(ctx)
    command = [sys.executable, "-m", "autopost", "--db",
               str(resolve_db_path(state.db).absolute())]
    if state.config:
        command += ["--config", str(Path(state.config).expanduser().absolute())]
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


# The engine's commands register on `app` and `accounts_app` when that module exists.
if importlib.util.find_spec("autopost.cli_engine") is not None:
    from autopost import cli_engine  # noqa: E402,F401  (registers run-due, status, resolve, demo, accounts check)
