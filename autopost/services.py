"""The thin layer between the CLI and the store: turn what an operator typed into
checked Accounts and NewJobs. Everything here validates before anything is written,
so bad input raises a UsageError and changes nothing."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from autopost.config import Settings, canonical_platform
from autopost.errors import UsageError
from autopost.models import Account, Job, JobFilter, Media, NewJob
from autopost.platforms.base import Adapter
from autopost.store.base import Store

# A new job may be "now" give or take the time it took to type the command.
PAST_GRACE = timedelta(seconds=60)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}$")


def utcnow() -> datetime:
    return datetime.now(UTC)


# -- platforms and accounts ------------------------------------------------------------

def platform_adapter(name: str) -> tuple[str, type[Adapter]]:
    """(canonical platform name, its Adapter class); UsageError if unknown or unbuilt."""
    from autopost.platforms.registry import adapter_class

    raw = name.strip().lower()
    if not raw:
        raise UsageError("--platform: empty platform name")
    cls = adapter_class(raw)
    return getattr(cls, "platform", None) or canonical_platform(raw), cls


def check_account_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        from autopost.inputs import shown

        raise UsageError(
            f"account name {shown(name)}: use up to 64 letters, digits and . _ @ + - "
            "(starting with a letter or digit)")
    return name


def read_credentials(source: str) -> dict[str, Any]:
    """A JSON object from a file, or from stdin for '-'. Values are never echoed."""
    from autopost.inputs import (
        CREDENTIALS_MAX,
        BadJSON,
        decode,
        parse_json,
        read_capped,
        read_stdin,
    )

    where = "stdin" if source == "-" else source
    if source == "-":
        raw = read_stdin(CREDENTIALS_MAX, "credentials")
    else:
        path = Path(source).expanduser()
        raw = decode(read_capped(path, CREDENTIALS_MAX, "--credentials"),
                     f"--credentials {source}")
    try:
        data = parse_json(raw)
    except BadJSON as exc:
        # The reason only: the message must not quote the (secret) content.
        raise UsageError(f"credentials from {where}: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"credentials from {where}: expected a JSON object of fields")
    for key, value in data.items():
        if isinstance(value, dict):
            if set(value) != {"env"} or not isinstance(value["env"], str) \
                    or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value["env"]):
                raise UsageError(f"credential field {key!r}: an object value must be "
                                 '{"env": "VARIABLE_NAME"}')
        elif not isinstance(value, str | int | float | bool) and value is not None:
            raise UsageError(f"credential field {key!r}: expected a string or "
                             '{"env": "VARIABLE_NAME"}')
    return data


def build_account(name: str, platform: str, credentials: dict[str, Any], *,
                  base_url: str | None, hourly_limit: int | None, daily_limit: int | None,
                  existing: Account | None = None) -> Account:
    check_account_name(name)
    canon, cls = platform_adapter(platform)
    if existing is not None and existing.platform != canon:
        raise UsageError(f"account {name!r} is a {existing.platform} account; remove it "
                         f"first to make it a {canon} account")
    if base_url is not None:
        base_url = check_base_url(base_url)
    if cls.needs_base_url and base_url is None and (existing is None or not existing.base_url):
        raise UsageError(f"{canon} accounts need --base-url (the instance's address, e.g. "
                         "https://mastodon.social); nothing was stored")
    cls.check_credentials(credentials)
    cls.check_secrets(credentials)
    credentials, token_expires_at = cls.prepare_credentials(credentials)
    if canon == "outbox" and isinstance(credentials.get("path"), str):
        # cron runs elsewhere: a relative folder must mean what it meant here.
        # The real folder is stored: a symbolic link planted there later is not followed.
        credentials = {**credentials,
                       "path": str(Path(credentials["path"]).expanduser().resolve())}
    if existing is not None:
        hourly_limit = existing.hourly_limit if hourly_limit is None else hourly_limit
        daily_limit = existing.daily_limit if daily_limit is None else daily_limit
        base_url = existing.base_url if base_url is None else base_url
    return Account(
        name=name, platform=canon, base_url=base_url, credentials=credentials,
        token_expires_at=token_expires_at,
        blocked_until=existing.blocked_until if existing else None,
        hourly_limit=hourly_limit, daily_limit=daily_limit)


def check_base_url(url: str) -> str:
    """An http(s) origin with an optional path; never echoed when it holds a password."""
    from urllib.parse import urlsplit

    from autopost.inputs import check_text, shown

    check_text(url, "--base-url")
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        parts, port_ok = None, False
    if parts is not None and (parts.username is not None or parts.password is not None):
        raise UsageError("--base-url: must not hold a user name or password (secrets go in "
                         "--credentials); nothing was stored")
    if (parts is None or not port_ok or parts.scheme not in ("http", "https")
            or not parts.hostname or len(url) > 2048
            or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url)):
        raise UsageError(f"--base-url {shown(url)}: expected an http:// or https:// URL")
    if parts.query or parts.fragment:
        raise UsageError(f"--base-url {shown(url)}: no query (?) or fragment (#), please")
    return url


def setup_account(account: Account, cls: type[Adapter]) -> Account:
    """Let the platform exchange what the operator gave for what runs need (a login that
    yields a session, for example). Most platforms need nothing and make no call."""
    if cls.setup is Adapter.setup:
        return account  # nothing to set up: no call, no client
    from autopost.accounts import resolve_credentials
    from autopost.errors import EnvironmentTrouble
    from autopost.models import ErrorKind
    from autopost.platforms.base import PlatformError

    client = None
    if cls.needs_http:
        from autopost.platforms.http import make_client

        client = make_client()
    try:
        fresh = cls(account, resolve_credentials(account), client).setup()
    except PlatformError as exc:
        if exc.kind in (ErrorKind.NETWORK, ErrorKind.SERVER, ErrorKind.RATE_LIMITED,
                        ErrorKind.AMBIGUOUS):
            raise EnvironmentTrouble(f"cannot set up {account.name} on {account.platform}: "
                                     f"{exc.message} (nothing was stored)") from None
        raise UsageError(f"{account.platform} refused the credentials for {account.name}: "
                         f"{exc.message} (nothing was stored)") from None
    finally:
        if client is not None:
            client.close()
    if fresh is None:
        return account
    return replace(account, credentials=fresh.credentials,
                   token_expires_at=fresh.token_expires_at or account.token_expires_at)


def account_limits(account: Account, settings: Settings) -> tuple[int | None, int | None]:
    """(hourly, daily) posts allowed: the account's overrides, else the platform's."""
    policy = settings.policy(account.platform)
    hourly = account.hourly_limit if account.hourly_limit is not None else policy.hourly_limit
    daily = account.daily_limit if account.daily_limit is not None else policy.daily_limit
    return hourly, daily


# -- media ---------------------------------------------------------------------------

def check_media(path: str, base: Path | None = None) -> str:
    """An existing image or video file, checked by content, returned as an absolute path;
    or an https:// URL, returned as it is (only platforms that fetch media by URL take one)."""
    if path.startswith("https://"):
        if not re.match(r"^https://[^\s/?#]+[^\s]*$", path):
            raise UsageError(f"media URL {path!r}: not a valid https:// URL")
        return path
    from autopost.media import check_media as checked

    return checked(path, base)


def pair_media(media: Sequence[str], alts: Sequence[str], order: Sequence[str]
               ) -> list[tuple[str, str | None]]:
    """Pair each --alt with the --media before it. `order` is the sequence of 'media'
    and 'alt' as they appeared on the command line."""
    if len(order) != len(media) + len(alts) or order.count("media") != len(media):
        # Options given in a form we could not follow: pair in order, strictly.
        if len(alts) > len(media):
            raise UsageError("--alt: more --alt than --media options")
        order = [x for m in range(len(media)) for x in (("media", "alt") if m < len(alts)
                                                        else ("media",))]
    pairs: list[tuple[str, str | None]] = []
    mi = ai = 0
    for kind in order:
        if kind == "media":
            pairs.append((media[mi], None))
            mi += 1
        else:
            if not pairs:
                raise UsageError("--alt must follow the --media it describes")
            if pairs[-1][1] is not None:
                raise UsageError(f"--alt given twice for --media {pairs[-1][0]}")
            pairs[-1] = (pairs[-1][0], alts[ai])
            ai += 1
    return pairs


def media_files(raw_args: Sequence[str], media: Sequence[str] | None,
                alts: Sequence[str] | None, takes_value: Sequence[str]) -> tuple[Media, ...]:
    """A command line's --media files, each with the --alt given after it, checked.
    `takes_value` are the command's other options that take a value."""
    order = option_order(raw_args, {"--media": "media", "--alt": "alt"}, takes_value)
    return tuple(Media(check_media(path), alt) for path, alt in
                 pair_media(media or [], alts or [], order))


def option_order(raw_args: Sequence[str], names: dict[str, str],
                 takes_value: Sequence[str]) -> list[str]:
    """The order in which the options in `names` (flag -> label) appear in raw_args."""
    order = []
    skip = False
    for token in raw_args:
        if skip:
            skip = False
            continue
        if token == "--":
            break
        flag = token.split("=", 1)[0]
        if flag in names:
            order.append(names[flag])
            skip = "=" not in token
        elif flag in takes_value and "=" not in token:
            skip = True
    return order


# -- jobs ----------------------------------------------------------------------------

@dataclass
class AddRequest:
    text: str
    accounts: list[str]
    when: datetime
    media: tuple[Media, ...] = ()
    key: str | None = None
    max_attempts: int | None = None
    # What --option KEY=VALUE gave (or an import row's options): checked per platform.
    options: dict[str, Any] = field(default_factory=dict)
    next_slot: bool = False  # --at next-slot: `when` is only the earliest time
    thread: tuple[str, ...] = ()  # --thread: the parts, in order (media go with part 1)


def job_options(raw: dict[str, Any], accounts: Sequence[Account]) -> dict[str, dict[str, Any]]:
    """Each account's checked options (by account name); UsageError naming the option."""
    from autopost.config import PLATFORMS
    from autopost.platforms.options import check_targets

    check_targets(raw, {a.platform for a in accounts}, PLATFORMS)
    out = {}
    for account in accounts:
        _, cls = platform_adapter(account.platform)
        try:
            out[account.name] = cls.check_options(raw)
        except UsageError as exc:
            raise UsageError(f"{account.name}: {exc}") from None
    return out


NEXT_SLOT = "next-slot"


def account_slots(settings: Settings, account: str, *, after: datetime,
                  weeks: int = 8) -> list[datetime]:
    """The account's configured queue slots from `after` on (UTC, in order)."""
    from autopost.recur import slot_times
    from autopost.timeparse import get_zone

    slots = settings.slots.get(account)
    if slots is None or not slots.times:
        where = settings.config_path or "config.toml"
        raise UsageError(f"--at next-slot: account {account} has no queue slots (set "
                         f"[accounts.{account}] slots = [\"mon 09:00\", ...] in {where})")
    return slot_times(slots.times, get_zone(slots.tz), after=after, weeks=weeks)


def duplicate_window(settings: Settings, allow_duplicate: bool) -> float | None:
    """The duplicate guard's window for this command (None = no guard)."""
    window = settings.schedule.duplicate_window
    return None if allow_duplicate or window <= 0 else window


def edited_options(account: str, platform: str, pairs: Sequence[str],
                   current: dict[str, Any]) -> dict[str, Any]:
    """`edit --option KEY=VALUE` over the job's options, checked as `add` checks them;
    `KEY=` (no value) removes KEY."""
    from autopost.platforms.options import parse_pairs

    raw = parse_pairs(pairs)
    removed = {k.rpartition(".")[2] for k, v in raw.items() if v == ""}
    _, cls = platform_adapter(platform)
    try:
        checked = cls.check_options({k: v for k, v in raw.items() if v != ""})
    except UsageError as exc:
        raise UsageError(f"{account}: {exc}") from None
    out = {k: v for k, v in current.items() if k not in removed}
    out.update(checked)
    return out


def check_account_content(settings: Settings, account: str, platform: str, text: str,
                 media: tuple[Media, ...], options: dict[str, Any]) -> None:
    """The platform's add-time checks, with the account named in the message."""
    _, cls = platform_adapter(platform)
    try:
        check_content(cls, settings, text, media, options)
    except UsageError as exc:
        raise UsageError(f"{account}: {exc}") from None


def check_not_past(when: datetime, now: datetime) -> None:
    if when < now - PAST_GRACE:
        raise UsageError(f"--at: {when.strftime('%Y-%m-%d %H:%M:%S')} UTC is in the past "
                         "(use 'now' to post right away)")


def build_jobs(store: Store, settings: Settings, req: AddRequest, *, now: datetime
               ) -> list[NewJob]:
    """Check everything `add` was given and return the jobs to insert."""
    if not req.accounts:
        raise UsageError("give at least one --account")
    seen = set()
    for name in req.accounts:
        if name in seen:
            raise UsageError(f"--account {name} given twice")
        seen.add(name)
    if req.key is not None and not req.key.strip():
        raise UsageError("--key: empty key")
    if req.max_attempts is not None and req.max_attempts < 1:
        raise UsageError("--max-attempts: must be at least 1")
    accounts = [store.get_account(name) for name in req.accounts]
    group = os.urandom(6).hex() if len(accounts) > 1 else None
    options = job_options(req.options, accounts)
    jobs = []
    for account in accounts:
        _, cls = platform_adapter(account.platform)
        if req.thread:
            jobs += thread_jobs(account, cls, req, settings, group=group,
                                options=options[account.name])
            continue
        try:
            check_content(cls, settings, req.text, req.media, options[account.name])
        except UsageError as exc:
            raise UsageError(f"{account.name}: {exc}") from None
        slots: tuple[datetime, ...] = ()
        if req.next_slot:
            slots = tuple(account_slots(settings, account.name, after=max(req.when, now)))
        jobs.append(NewJob(
            account=account.name, platform=account.platform, text=req.text,
            scheduled_at=slots[0] if slots else req.when, media=req.media,
            options=options[account.name],
            max_attempts=req.max_attempts or settings.policy(account.platform).max_attempts,
            key=req.key, group_id=group, slots=slots))
    if req.when < now - PAST_GRACE:
        missing = [j.account for j in jobs if existing_job(store, j.account, j.key) is None]
        if missing:
            raise UsageError(f"--at: {req.when.strftime('%Y-%m-%d %H:%M:%S')} UTC is in the "
                             "past (use 'now' to post right away)")
    return jobs


def check_content(cls: type[Adapter], settings: Settings, text: str,
                  media: tuple[Media, ...], options: dict[str, Any]) -> None:
    """What the platform is known to refuse, and media it could not get at."""
    if not cls.media_urls:
        for item in media:
            if item.path.startswith("https://"):
                raise UsageError(f"{cls.platform} takes media files, not URLs ({item.path})")
    cls.validate(text, media, options)
    if cls.fetches_media and media:
        from autopost.mediahost import require_host

        require_host(media, settings.media, cls.platform)


def thread_parts_key(key: str | None, part: int) -> str | None:
    """Part 1 of a thread keeps --key K; part n gets K#n."""
    if key is None:
        return None
    return key if part == 1 else f"{key}#{part}"


def thread_jobs(account: Account, cls: type[Adapter], req: AddRequest, settings: Settings,
                *, group: str | None, options: dict[str, Any]) -> list[NewJob]:
    """The parts of one thread for one account, each a reply to the part before it."""
    if not cls.supports_replies:
        raise UsageError(f"{account.name}: {account.platform} has no replies, so it cannot "
                         "post a thread")
    if len(req.thread) < 2:
        raise UsageError("--thread: give at least two parts")
    thread_id = os.urandom(8).hex()
    out = []
    for n, text in enumerate(req.thread, start=1):
        media = req.media if n == 1 else ()
        try:
            check_content(cls, settings, text, media, options)
            if n > 1:
                cls.validate_reply(options)
        except UsageError as exc:
            raise UsageError(f"{account.name}: part {n}: {exc}") from None
        out.append(NewJob(
            account=account.name, platform=account.platform, text=text,
            scheduled_at=req.when, media=media, options=options,
            max_attempts=req.max_attempts or settings.policy(account.platform).max_attempts,
            key=thread_parts_key(req.key, n), group_id=group, thread_id=thread_id,
            thread_part=n))
    return out


def existing_job(store: Store, account: str, key: str | None) -> Job | None:
    """The job added earlier with this key, if any (only asked for rare cases)."""
    if key is None:
        return None
    for job in store.list_jobs(JobFilter(account=account)):
        if job.key == key:
            return job
    return None


def existing_keys(store: Store, accounts: set[str]) -> set[tuple[str, str]]:
    found = set()
    for account in accounts:
        for job in store.list_jobs(JobFilter(account=account)):
            if job.key is not None:
                found.add((account, job.key))
    return found


def env_is_set(credentials: dict[str, Any]) -> list[str]:
    """Environment variables the credentials refer to that are not set here."""
    return sorted(str(v["env"]) for v in credentials.values()
                  if isinstance(v, dict) and "env" in v and str(v["env"]) not in os.environ)
