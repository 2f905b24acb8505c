"""`autopost accounts ...`: add, list, remove and check the accounts autopost posts to."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer

from autopost.cli import params
from autopost.cli.app import accounts_app, get_settings, get_store, now, say
from autopost.errors import NeedsAttention, NotFound, UsageError


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
        "--hourly-limit", click_type=params.posts_limit(),
        help="Posts per hour for this account (overrides config).")
    ] = None,
    daily_limit: Annotated[int | None, typer.Option(
        "--daily-limit", click_type=params.posts_limit(),
        help="Posts per day for this account (overrides config).")
    ] = None,
    offline: Annotated[bool, typer.Option(
        "--offline", help="Store the credentials without contacting the platform (where "
        "it would log in now, the first run does).")] = False,
) -> None:
    """Add an account. Secrets come from a file, stdin or a prompt, never the command line.

    Example:

    \b
      autopost accounts add work -p mastodon --base-url https://mastodon.social \\
        --credentials creds.json
    """
    from autopost import services

    services.check_account_name(name)
    canon, cls = services.platform_adapter(platform)
    if credentials is None:
        creds = _prompt_credentials(cls)
    else:
        creds = services.read_credentials(credentials)
    from autopost.errors import DatabaseMissing

    try:
        store = get_store()
        existing = store.get_account(name)
    except DatabaseMissing:  # the first account: the database is made once all is checked
        store = existing = None
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
    if store is None:
        store = get_store(create=True)
    store.add_account(account, now=now(), replace=existing is not None)
    verb = "updated" if existing else "added"
    say(f"{verb} account {name} ({account.platform})")
    if cls.logs_in and not account.credentials.get("access_token"):
        say(f"next: autopost accounts login {name}")
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
    """List accounts: platform, state, and which credential fields are set (never values).

    Example:

    \b
      autopost accounts list
    """
    from autopost import render

    accounts = get_store().list_accounts()
    at_now = now()
    if as_json:
        render.print_json([render.account_to_dict(a, at_now) for a in accounts])
    elif not accounts:
        print("no accounts yet (add one: autopost accounts add NAME --platform P "
              "--credentials FILE)")
    else:
        render.print_accounts(accounts, at_now)


@accounts_app.command("remove")
def accounts_remove(name: Annotated[str, typer.Argument()]) -> None:
    """Remove an account (refused while it has pending, running or unknown jobs).

    Example:

    \b
      autopost accounts remove old
    """
    get_store().remove_account(name)
    say(f"removed account {name}")


@accounts_app.command("pause")
def accounts_pause(
    name: Annotated[str, typer.Argument(help="The account to pause.")],
    until: Annotated[str | None, typer.Option(
        "--until", metavar="WHEN", help="Resume by itself then (default: until resume).")
    ] = None,
    tz: Annotated[str | None, typer.Option(
        "--tz", metavar="ZONE", help="Zone for --until without an offset.")] = None,
) -> None:
    """Hold an account's jobs: no run posts them (no attempt spent, none marked missed)
    until --until or `accounts resume`; the catch-up window then counts from the resume.

    Example:

    \b
      autopost accounts pause work --until "monday 08:00"
    """
    from autopost.models import PAUSED_FOREVER
    from autopost.timeparse import format_utc, get_zone, parse_when

    at_now = now()
    if tz is not None:
        get_zone(tz)
    when = PAUSED_FOREVER
    if until is not None:
        when = parse_when(until, now=at_now, tz=tz)
        if when <= at_now:
            raise UsageError(f"--until: {format_utc(when)} is not in the future")
    store = get_store()
    store.pause_account(name, until=when, now=at_now)
    if when == PAUSED_FOREVER:
        print(f"paused account {name} until 'autopost accounts resume {name}'")
    else:
        print(f"paused account {name} until {format_utc(when)}")


@accounts_app.command("resume")
def accounts_resume(name: Annotated[str, typer.Argument(help="The account to resume.")]
                    ) -> None:
    """End an account's pause: its due jobs go out with the next run.

    Example:

    \b
      autopost accounts resume work
    """
    store = get_store()
    at_now = now()
    before = store.get_account(name)
    store.resume_account(name, now=at_now)
    if before.is_paused(at_now):
        print(f"resumed account {name}")
    else:
        print(f"account {name} was not paused")


@accounts_app.command("check")
def accounts_check(name: str = typer.Argument(...)) -> None:
    """Verify an account's credentials with a cheap call; exit 1 if it needs re-auth.

    Example:

    \b
      autopost accounts check work
    """
    from autopost.accounts import needs_proactive_refresh, refresh_account, resolve_credentials
    from autopost.models import AccountState, ErrorKind
    from autopost.platforms.base import PlatformError
    from autopost.platforms.registry import adapter_class
    from autopost.timeparse import format_utc

    store = get_store()
    account = store.get_account(name)
    cls = adapter_class(account.platform)
    client = None
    if cls.needs_http:
        from autopost.platforms.http import make_client

        client = make_client()
    try:
        settings = get_settings()
        adapter = cls(account, resolve_credentials(account), client,
                      policy=settings.policy(account.platform), settings=settings)
        if adapter.refresh_ahead and needs_proactive_refresh(account, adapter, now()):
            # A token near its end (Threads: its last week) is renewed here too, so an
            # account with nothing to post does not let it lapse.
            account = refresh_account(store, adapter, account.credentials,
                                      f"check-{os.getpid()}", clock=now)
        try:
            info = adapter.check()
        except PlatformError as exc:
            if exc.kind != ErrorKind.AUTH_EXPIRED or not adapter.refreshable:
                raise
            # An idle token simply expired: refresh it (once, serialised) and ask again.
            refresh_account(store, adapter, account.credentials, f"check-{os.getpid()}",
                            clock=now)
            info = adapter.check()
    except PlatformError as exc:
        if exc.kind in (ErrorKind.AUTH_REVOKED, ErrorKind.AUTH_EXPIRED):
            store.set_account_state(name, AccountState.NEEDS_REAUTH, exc.message, now=now())
            raise NeedsAttention(f"account {name} needs re-auth: {exc.message}") from None
        raise NeedsAttention(f"account {name}: check failed: {exc.message}") from None
    finally:
        if client is not None:
            client.close()
    if account.state != AccountState.OK:
        store.set_account_state(name, AccountState.OK, None, now=now())
    print(f"{name} ({account.platform}): ok, {info.display}")
    if info.url:
        print(f"  {info.url}")
    expires = info.token_expires_at or store.get_account(name).token_expires_at
    if expires:
        print(f"  token expires {format_utc(expires)}")


@accounts_app.command("login")
def accounts_login(
    name: Annotated[str, typer.Argument(
        metavar="NAME", help="The account (added with its client_id).")],
    no_browser: Annotated[bool, typer.Option(
        "--no-browser", help="Only print the URL; do not open a browser.")] = False,
    port: Annotated[int, typer.Option(
        "--port", click_type=params.WholeNumber(0, 65535), help="Port of the redirect URI "
        "http://127.0.0.1:PORT/callback registered with the platform's app.")] = 8765,
    paste: Annotated[bool, typer.Option(
        "--paste", help="On a machine without a browser: open the URL elsewhere, then paste "
        "the URL it was redirected to.")] = False,
    timeout: Annotated[float, typer.Option(
        "--timeout", click_type=params.FiniteNumber(1.0, 86400.0),
        help="Seconds to wait for the redirect.")] = 300.0,
    organization: Annotated[str | None, typer.Option(
        "--organization", metavar="ID", help="LinkedIn: post as this company page (its id "
        "or urn:li:organization:ID), which the member logging in administers.")] = None,
    page: Annotated[str | None, typer.Option(
        "--page", metavar="ID|NAME", help="Facebook, Instagram: the Page to post as (asked "
        "when the login manages several).")] = None,
    ig_user: Annotated[str | None, typer.Option(
        "--ig-user", metavar="ID|USERNAME", help="Instagram: the professional account to "
        "post as (asked when there are several).")] = None,
) -> None:
    """Log an OAuth account in (authorization code with PKCE); stores its tokens.

    Examples:

    \b
      autopost accounts login work
      autopost accounts login work --paste      # on a server without a browser
    """
    from autopost import oauth
    from autopost.platforms.http import make_client
    from autopost.timeparse import format_utc

    def read_line() -> str:
        line = sys.stdin.readline()
        if not line:
            raise UsageError("no URL pasted; nothing changed")
        return line

    def open_browser(url: str) -> None:
        if no_browser:
            return
        import webbrowser

        try:
            webbrowser.open(url)
        except Exception:  # noqa: BLE001 - no browser here: the URL is printed anyway
            pass

    def say(line: str) -> None:
        print(line, flush=True)

    store = get_store()
    with make_client() as client:
        done = oauth.login(store, name, client=client, port=port, paste=paste,
                           open_browser=open_browser, read_line=read_line, say=say,
                           timeout=timeout, clock=now, owner=f"login-{os.getpid()}",
                           options={k: v for k, v in (("organization", organization),
                                                      ("page", page), ("ig_user", ig_user))
                                    if v} or None)
    account = store.get_account(name)
    who = done.who or "(could not ask who)"
    print(f"logged in {name} ({account.platform}) as {who}")
    if done.token_expires_at:
        print(f"  token expires {format_utc(done.token_expires_at)}"
              + ("" if done.refresh_token else "; no refresh token was issued, so log in "
                 "again then"))
    if done.problem:
        raise NeedsAttention(f"account {name}: logged in, but the check failed: "
                             f"{done.problem}")
