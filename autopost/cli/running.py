"""The commands that drive the engine and report on it: run-due, status, resolve, demo."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import typer

from autopost.cli import params
from autopost.cli.app import (
    app,
    get_settings,
    get_store,
    notify_app,
    now,
    quiet,
    say,
    say_error,
    verbose,
)
from autopost.errors import Interrupted, NeedsAttention, UsageError
from autopost.models import PAUSED_FOREVER, AccountState, JobFilter, JobStatus
from autopost.timeparse import format_utc


@app.command("run-due")
def run_due(
    limit: int = typer.Option(None, "--limit", click_type=params.LIMIT,
                              help="Publish at most N jobs."),
    concurrency: int = typer.Option(None, "--concurrency", click_type=params.concurrency(),
                                    help="Parallel publishes (default [run] max_concurrent_jobs)."),
    linger: float = typer.Option(0.0, "--linger", click_type=params.linger(),
                                 help="Keep watching for jobs falling due until S seconds "
                                      "after start."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what is due; change nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Publish the jobs that are due, then exit (run it from cron every 30-60 s).

    Examples:

    \b
      autopost run-due --linger 60
      autopost run-due --dry-run
    """
    settings = get_settings()
    if not settings.run.enabled:
        message = ("autopost: run-due is disabled (AUTOPOST_ENABLED=false or [run] enabled "
                   "= false); nothing done")
        if as_json:  # stdout stays one JSON document: a run that did nothing
            from autopost.engine import RunSummary

            print(message, file=sys.stderr)
            print("[]" if dry_run else json.dumps(
                {"run_id": None, **RunSummary(run_id="").counts(), "problems": []}, indent=2))
        else:
            print(message)
        return
    tls = None
    if not dry_run:
        from autopost.platforms.tlsprefetch import TlsPrefetch

        # Started before anything slow below: the TLS context loads on another core while
        # the engine is imported, the store opened and the first jobs claimed.
        tls = TlsPrefetch()
    from autopost.engine import Engine, RunOptions
    from autopost.store.select import reopen

    store = get_store(create=not dry_run)
    stop = threading.Event()
    interrupted = _on_signals(stop)  # from here on, Ctrl-C winds the run down
    if not dry_run and not stop.is_set():
        from autopost.series import extend_due

        extend_due(store, settings, now=now())  # recurring posts coming within the horizon
    live = None if dry_run else _live_line(as_json, linger)
    engine = Engine(store, settings, store_factory=lambda: reopen(store), stop=stop,
                    progress=live, client_factory=tls.client if tls is not None else None)
    started = time.monotonic()
    try:
        summary = engine.run(RunOptions(limit=limit, concurrency=concurrency, linger=linger,
                                        dry_run=dry_run))
    finally:
        if live is not None:
            live.close()
    if dry_run:
        _show_dry_run(summary.would_publish, as_json)
        return
    if settings.media.configured:  # copies of jobs that finished: no longer served
        from autopost.mediahost import release_finished

        release_finished(settings.media, store)
    if settings.notify is not None and summary.problems:
        from autopost import notify

        notify.send(settings.notify, notify.run_events(summary.problems, summary.run_id),
                    ledger_path(store))
    if as_json:
        print(json.dumps({"run_id": summary.run_id, **summary.counts(),
                          "problems": [problem(p.job_id, p.account, p.status, p.message)
                                       for p in summary.problems]}, indent=2))
    else:
        # cron mails what a run prints: problems only, and on stderr.
        for item in summary.problems:
            print(item.line(), file=sys.stderr)
        if not quiet() and (verbose() or sys.stdout.isatty()):
            print(_summary_line(summary, time.monotonic() - started))
    if interrupted.is_set():
        raise Interrupted()  # one line and exit 130, after the run wound down
    if summary.needs_attention:
        raise typer.Exit(1)


def show_progress(as_json: bool) -> bool:
    """Whether run-due draws its live line: only for a person at a terminal (stderr is
    one), never with -q or --json, so cron's mail stays empty when all went well."""
    from autopost.tables import is_terminal

    return not as_json and not quiet() and is_terminal(sys.stderr)


def _live_line(as_json: bool, linger: float):
    if not show_progress(as_json):
        return None
    from autopost.progress import LiveLine

    until = datetime.now().astimezone() + timedelta(seconds=linger) if linger > 0 else None
    return LiveLine(sys.stderr, watching_until=until)


def ledger_path(store) -> Path:
    """Where notify keeps what it has sent: beside the database file."""
    path = getattr(store, "path", None)
    if path is None:
        from autopost.config import default_db_path

        path = default_db_path()
    return Path(path)


@notify_app.command("test")
def notify_test() -> None:
    """Send a sample event to the [notify] command and webhook; exit 1 if one fails.

    Example:

    \b
      autopost notify test
    """
    from autopost import notify

    settings = get_settings()
    if settings.notify is None:
        raise UsageError("no [notify] in the config (see 'autopost config' for its path)")
    event = notify.Event(f"test:{os.getpid()}", "test",
                         "a test event from 'autopost notify test'")
    failures = notify.deliver(settings.notify, event.to_dict(now()))
    for line in failures:
        say_error(line)
    if failures:
        raise typer.Exit(1)
    targets = [n for n, v in (("command", settings.notify.command),
                              ("webhook", settings.notify.webhook)) if v]
    say(f"sent a test event to the {' and the '.join(targets)}")


def _summary_line(summary, seconds: float) -> str:
    """One line for a person watching: what the run did (silent under cron unless -v)."""
    counts = summary.counts()
    parts = [f"{n} {name}" for name, n in counts.items() if n]
    return (f"run {summary.run_id}: {', '.join(parts) or 'nothing due'} "
            f"in {seconds:.1f} s")


def _on_signals(stop: threading.Event) -> threading.Event:
    """SIGTERM and SIGINT stop the run cleanly; returns an event set by SIGINT (Ctrl-C)."""
    interrupted = threading.Event()

    def handler(signum, frame):  # noqa: ARG001
        if signum == signal.SIGINT:
            interrupted.set()
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
    return interrupted


def _show_dry_run(jobs, as_json: bool) -> None:
    from autopost.render import job_to_dict

    if as_json:
        print(json.dumps([job_to_dict(j) for j in jobs], indent=2))
        return
    if not jobs:
        print("nothing is due")
    for job in jobs:
        text = " ".join(job.text.split())
        print(f"would publish {job.id} to {job.account} ({job.platform}), "
              f"due {format_utc(job.next_attempt_at)}: {text[:60]}")


@app.command()
def status(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    prometheus: Path = typer.Option(
        None, "--prometheus", metavar="FILE",
        help="Also write the metrics to FILE (node_exporter textfile format, atomically)."),
    send: bool = typer.Option(
        False, "--notify", help="Tell [notify] about problems not told before (once each)."),
) -> None:
    """Health: last run, overdue, unknown and failed jobs, accounts needing re-auth.
    Exits 1 when anything needs attention.

    Example:

    \b
      autopost status || echo 'autopost needs a look'
    """
    settings = get_settings()
    store = get_store()
    at_now = now()
    report = _health(store, settings, at_now)
    if prometheus is not None:
        from autopost import metrics
        from autopost.cli.ops import quota_rows

        metrics.write(prometheus, metrics.render(metrics.collect(
            report, store, quota_rows(store, settings, at_now), at_now)))
    if send and settings.notify is not None:
        from autopost import notify

        # Unknown jobs a run will reconcile by itself are nobody's problem yet.
        waiting = [j.id for j in store.list_jobs(JobFilter(status=JobStatus.UNKNOWN))
                   if j.next_attempt_at is None]
        notify.send(settings.notify, notify.status_events(report, waiting),
                    ledger_path(store), conditions=True)
    elif send and sys.stderr.isatty():  # under cron, no [notify] is no news
        say_error("--notify: no [notify] in the config; nothing sent")
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        _print_health(report)
    if report["problems"]:
        raise typer.Exit(1)


def problem(job: str | None, account: str | None, kind: str, message: str) -> dict:
    """The one JSON shape of a problem (run-due and status): see docs/json.md."""
    return {"job": job, "account": account, "kind": kind, "message": message}


def _health(store, settings, now: datetime) -> dict:
    last = store.last_run()
    interval = settings.run.expected_interval
    counts = store.count_by_status()
    problems: list[dict] = []
    age = None
    if last is None:
        problems.append(problem(None, None, "never_run",
                                "run-due has never run (add it to cron: 'autopost cron')"))
    else:
        seen = last.finished_at or last.started_at
        age = (now - seen).total_seconds()
        if age > 3 * interval:
            problems.append(problem(None, None, "no_recent_run", f"no run for {int(age)} s "
                                    f"(expected every {int(interval)} s)"))
    overdue = [j for j in store.due_jobs(now=now - timedelta(seconds=3 * interval), limit=50)]
    if overdue:
        problems.append(problem(None, None, "overdue", f"{len(overdue)} job(s) overdue by "
                                f"more than {int(3 * interval)} s"))
    unknown = store.list_jobs(JobFilter(status=JobStatus.UNKNOWN))
    waiting = [j for j in unknown if j.next_attempt_at is None]
    if waiting:
        named = ", ".join(j.id for j in waiting[:10]) + (" ..." if len(waiting) > 10 else "")
        problems.append(problem(None, None, "unknown", f"{len(waiting)} job(s) with an "
                                f"unknown outcome wait for 'autopost resolve': {named}"))
    if counts[JobStatus.FAILED]:
        problems.append(problem(None, None, "failed", f"{counts[JobStatus.FAILED]} job(s) "
                                "failed ('autopost list --status failed'; retry or cancel "
                                "them)"))
    if counts[JobStatus.MISSED]:
        problems.append(problem(None, None, "missed", f"{counts[JobStatus.MISSED]} job(s) "
                                "missed their time ('autopost retry' or cancel them)"))
    reauth = [a for a in store.list_accounts() if a.state == AccountState.NEEDS_REAUTH]
    for account in reauth:
        problems.append(problem(
            None, account.name, "needs_reauth",
            f"account {account.name} needs re-auth: {account.state_reason or ''}"
            .rstrip(": ")))
    problems += [problem(None, name, "expiring", line)
                 for name, line in _account_warnings(store.list_accounts(), settings, now)]
    blocked = [a for a in store.list_accounts() if a.is_blocked(now)]
    if any(a.platform in ("facebook", "instagram") for a in store.list_accounts()):
        from autopost.platforms.meta.versions import version_status

        found = version_status(settings.meta.graph_version, now.date())
        if found is not None:  # the Graph API version is retired, or soon will be
            problems.append(problem(None, None, "expiring", found[1]))
    paused = [a for a in store.list_accounts() if a.is_paused(now)]
    return {
        "now": format_utc(now),
        "last_run": None if last is None else {
            "id": last.id, "started_at": format_utc(last.started_at),
            "finished_at": format_utc(last.finished_at) if last.finished_at else None,
            "host": last.host, "pid": last.pid, "counts": last.counts},
        "last_run_age_seconds": None if age is None else round(age, 1),
        "counts": {str(k): v for k, v in counts.items()},
        "overdue": [j.id for j in overdue],
        "unknown": [j.id for j in unknown],
        "needs_reauth": [a.name for a in reauth],
        "blocked": {a.name: format_utc(a.blocked_until) for a in blocked},
        "paused": {a.name: None if a.paused_until == PAUSED_FOREVER
                   else format_utc(a.paused_until) for a in paused},
        "problems": problems,
    }


def _account_warnings(accounts, settings, now: datetime) -> list[tuple[str, str]]:
    """What each account's platform says will break soon (a token or API version), as
    (account, message) pairs."""
    from autopost.errors import UsageError
    from autopost.platforms.registry import adapter_class, warns_in_status

    out: list[tuple[str, str]] = []
    for account in accounts:
        if account.token_expires_at is None and not warns_in_status(account.platform):
            continue  # its adapter has nothing to say: its module stays unloaded
        try:
            cls = adapter_class(account.platform)
        except UsageError:
            continue
        out += [(account.name, line) for line in
                cls.status_warnings(account, settings.policy(account.platform), now)]
    return out


def _print_health(report: dict) -> None:
    if quiet():
        for item in report["problems"]:
            print(f"attention: {item['message']}")
        return
    last = report["last_run"]
    if last:
        print(f"last run: {last['finished_at'] or last['started_at']} "
              f"({int(report['last_run_age_seconds'])} s ago) on {last['host']}")
    print("jobs: " + (", ".join(f"{k} {v}" for k, v in report["counts"].items() if v)
                      or "none"))
    for name, until in report["blocked"].items():
        print(f"account {name} is rate-limited until {until}")
    for name, until in report["paused"].items():
        print(f"account {name} is paused " + (f"until {until}" if until else
                                              "(until 'autopost accounts resume')"))
    if report["problems"]:
        for item in report["problems"]:
            print(f"attention: {item['message']}")
    else:
        print("healthy")


@app.command()
def resolve(
    job_id: str = typer.Argument(..., metavar="JOB"),
    posted: str = typer.Option(None, "--posted", metavar="URL",
                               help="It was posted: its URL (or id)."),
    not_posted: bool = typer.Option(False, "--not-posted",
                                    help="It was not posted: send it again."),
) -> None:
    """Settle a job whose outcome is unknown, after checking the platform yourself.

    Examples:

    \b
      autopost resolve 3f9k --posted https://mastodon.social/@me/1131
      autopost resolve 3f9k --not-posted
    """
    if (posted is None) == (not not_posted):
        raise UsageError("give exactly one of --posted URL or --not-posted")
    store = get_store()
    job = store.resolve_job(job_id, posted_url=posted, now=now())
    say(f"job {job.id} is now {job.status}")


@app.command()
def demo(
    folder: Path = typer.Option(None, "--dir", help="Where to keep the demo's database and "
                                "outbox (default: a new temporary folder)."),
) -> None:
    """Schedule three posts to a local outbox, publish them, and show the result.

    Example:

    \b
      autopost demo
    """
    import subprocess
    import tempfile
    import time

    base = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="autopost-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    db = base / "autopost.db"
    outbox = base / "outbox"
    cmd = [sys.executable, "-m", "autopost", "--db", str(db)]

    def step(*args: str, stdin: str | None = None) -> None:
        print("$ autopost " + " ".join(args), flush=True)
        done = subprocess.run(cmd + list(args), input=stdin, text=True)
        if done.returncode not in (0,):
            raise NeedsAttention(f"demo step failed: autopost {' '.join(args)}")

    print(f"demo folder: {base}")
    creds = json.dumps({"path": str(outbox)})
    step("accounts", "add", "demo", "--platform", "outbox", "--credentials", "-", stdin=creds)
    step("add", "Hello from autopost: posted right away", "--account", "demo", "--at", "now")
    step("add", "A second post, due in 2 seconds", "--account", "demo", "--at", "+2s")
    step("add", "A third post, due in 4 seconds", "--account", "demo", "--at", "+4s")
    step("run-due", "--linger", "6")
    # On a busy machine the steps above may take longer than the posts' spacing: look
    # again until all three are out (they are all due by now), within a generous minute.
    deadline = time.monotonic() + 60
    while len(list(outbox.glob("*.json"))) < 3 and time.monotonic() < deadline:
        step("run-due", "--linger", "2")
    step("list")
    files = sorted(outbox.glob("*.json"))
    print(f"\n{len(files)} post(s) in the outbox {outbox}:")
    for path in files:
        doc = json.loads(path.read_text())
        print(f"  {path.name}: {doc['text']}")
    if len(files) != 3:
        raise NeedsAttention("the demo expected 3 posts in the outbox")
