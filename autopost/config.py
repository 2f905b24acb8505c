"""Settings: built-in defaults < config.toml < AUTOPOST_* environment < command-line flags.

This module is on the idle `run-due` path, so it imports only the standard library
(and platformdirs, lazily, for the default locations); its settings are records
(autopost.record), not dataclasses, for the same reason.

config.toml:

    database = "postgresql://autopost@db.example/autopost"   # or a file path (SQLite)

    [run]
    enabled = true
    lease_seconds = "5m"
    max_concurrent_jobs = 8
    catch_up_window = "1h"       # a job nobody started this long after its time is `missed`
    expected_interval = "60s"    # how often cron runs run-due (for `status`)
    busy_timeout = 30            # seconds to wait for another process's write lock

    [schedule]
    duplicate_window = "24h"     # same text on one account this close together is refused
    horizon = "14d"              # recurring posts are made into jobs this far ahead

    [accounts.news]              # queue slots for `add --at next-slot`
    slots = ["mon 09:00", "wed 12:30", "fri 17:00"]
    tz = "Europe/Berlin"

    [platforms.linkedin]
    api_version = "202603"       # LinkedIn-Version sent with every request (YYYYMM)

    [platforms.x]
    max_attempts = 8
    base_delay = "60s"
    max_delay = "30m"
    backoff_multiplier = 2
    hourly_limit = 30            # 0 = no limit
    daily_limit = 300

    [meta]
    graph_version = "v26.0"      # Facebook and Instagram; `status` warns before it expires
    threads_publish_wait = "30s" # Meta's advice: wait this long before publishing a container

    [media]                      # for platforms that fetch media by URL (Instagram, Threads)
    public_dir = "/var/www/media"            # a folder your web server serves ...
    public_base_url = "https://example.org/media"   # ... at this URL

Every value is bounded (see MAX_* below); nan, inf and integers past 64 bits are refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from autopost.errors import ConfigError, UsageError
from autopost.kinds import ErrorKind
from autopost.record import Factory, Record, replace

PLATFORMS = (
    "outbox",
    "mastodon",
    "bluesky",
    "x",
    "linkedin",
    "facebook",
    "instagram",
    "threads",
    "youtube",
    "telegram",
    "discord",
)
ALIASES = {"twitter": "x"}

RL, NET, QX = ErrorKind.RATE_LIMITED, ErrorKind.NETWORK, ErrorKind.QUOTA_EXCEEDED


class PlatformPolicy(Record):
    max_attempts: int = 5
    base_delay: float = 60.0
    max_delay: float = 3600.0
    backoff_multiplier: float = 2.0
    hourly_limit: int | None = None
    daily_limit: int | None = None
    # Kinds retried with backoff. server and network are always retried (DESIGN.md);
    # ambiguous and duplicate always go through reconcile first.
    retryable: frozenset[ErrorKind] = frozenset({RL, NET})
    # The API version a platform is asked for, where it versions its API by date
    # (LinkedIn's LinkedIn-Version: YYYYMM). None: the adapter's default.
    api_version: str | None = None


class RunSettings(Record):
    enabled: bool = True
    lease_seconds: float = 300.0
    max_concurrent_jobs: int = 8
    catch_up_window: float = 3600.0
    expected_interval: float = 60.0
    busy_timeout: float = 30.0


# The seed's tables (DESIGN.md) and, for the other platforms, their documented limits
# (platforms.md), kept a little under the platform's own ceiling.
_SEED: dict[str, dict[str, Any]] = {
    "facebook": dict(max_attempts=5, base_delay=60, max_delay=3600, backoff_multiplier=2,
                     daily_limit=50, hourly_limit=10, retryable=frozenset({RL, NET, QX})),
    "instagram": dict(max_attempts=5, base_delay=120, max_delay=7200, backoff_multiplier=1.5,
                      daily_limit=25, hourly_limit=5, retryable=frozenset({RL, NET, QX})),
    "linkedin": dict(max_attempts=3, base_delay=300, max_delay=3600, backoff_multiplier=2,
                     daily_limit=20, hourly_limit=3, retryable=frozenset({RL, NET})),
    "x": dict(max_attempts=8, base_delay=60, max_delay=1800, backoff_multiplier=2,
              daily_limit=300, hourly_limit=30, retryable=frozenset({RL, NET, QX})),
    # quotaExceeded (the project's daily quota) and uploadLimitExceeded (the channel's
    # 24-hour cap) pass: the job waits for the reset the adapter reads.
    "youtube": dict(max_attempts=3, base_delay=600, max_delay=21600, backoff_multiplier=1.5,
                    daily_limit=6, hourly_limit=1, retryable=frozenset({RL, NET, QX})),
}
# Quotas only; retry timing comes from the generic default (AUTOPOST_DEFAULT_*).
_DOCUMENTED_LIMITS: dict[str, dict[str, int | None]] = {
    "mastodon": dict(hourly_limit=100, daily_limit=2400),  # 300 statuses / 3 h
    "bluesky": dict(hourly_limit=1500, daily_limit=10000),  # 5,000 / 35,000 points, create = 3
    "threads": dict(hourly_limit=None, daily_limit=250),
    "telegram": dict(hourly_limit=1200, daily_limit=None),  # ~20 / min to one chat
    "discord": dict(hourly_limit=1800, daily_limit=None),
    "outbox": dict(hourly_limit=None, daily_limit=None),
}
_POLICY_KEYS = ("max_attempts", "base_delay", "max_delay", "backoff_multiplier",
                "hourly_limit", "daily_limit")
# Settings only some platforms have.
_VERSIONED = ("linkedin",)
_RUN_KEYS = ("enabled", "lease_seconds", "max_concurrent_jobs", "catch_up_window",
             "expected_interval", "busy_timeout")

# Bounds of every numeric setting (and of the flags that override them). Beyond these a
# value is a typo or an attack: a thread per concurrent job, a 64-bit column, a timedelta.
MAX_CONCURRENCY = 256
MAX_ATTEMPTS = 1000
MAX_POSTS_LIMIT = 1_000_000_000
MAX_MULTIPLIER = 100.0
MAX_LEASE = 86400.0              # a day
MAX_INTERVAL = 30 * 86400.0      # a month
MAX_BUSY_TIMEOUT = 86400.0


class MetaSettings(Record):
    graph_version: str = "v26.0"
    threads_publish_wait: float = 30.0


class MediaHostSettings(Record):
    """A folder a web server publishes, and the URL it publishes it at."""

    public_dir: Path | None = None
    public_base_url: str | None = None

    @property
    def configured(self) -> bool:
        return self.public_dir is not None and self.public_base_url is not None


class ScheduleSettings(Record):
    duplicate_window: float = 86400.0   # 0 = no duplicate guard
    horizon: float = 14 * 86400.0


class Slots(Record):
    """An account's weekly queue slots: (weekday 0 = Monday, hour, minute) in `tz`."""

    times: tuple[tuple[int, int, int], ...]
    tz: str | None = None


class Settings(Record):
    run: RunSettings = Factory(RunSettings)
    schedule: ScheduleSettings = Factory(ScheduleSettings)
    slots: dict[str, Slots] = Factory(dict)
    default: PlatformPolicy = Factory(PlatformPolicy)
    platforms: dict[str, PlatformPolicy] = Factory(dict)
    config_path: Path | None = None
    notify: Any = None  # autopost.notify.Target from [notify], or None
    # `database = ...` from config.toml: a SQLite file path or a postgresql:// DSN.
    database: str | None = None
    meta: MetaSettings = Factory(MetaSettings)
    media: MediaHostSettings = Factory(MediaHostSettings)

    def policy(self, platform: str) -> PlatformPolicy:
        return self.platforms.get(canonical_platform(platform), self.default)


def canonical_platform(name: str) -> str:
    name = name.strip().lower()
    return ALIASES.get(name, name)


def check_platform(name: str) -> str:
    canon = canonical_platform(name)
    if canon not in PLATFORMS:
        raise UsageError(f"unknown platform {name!r} (known: {', '.join(PLATFORMS)})")
    return canon


def default_config_path() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("autopost")) / "config.toml"


def default_db_path() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("autopost")) / "autopost.db"


def resolve_db_path(flag: str | None, env: dict[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if flag:
        return Path(flag).expanduser()
    if env.get("AUTOPOST_DB"):
        return Path(env["AUTOPOST_DB"]).expanduser()
    return default_db_path()


def is_dsn(value: str | Path | None) -> bool:
    """A postgresql:// (or postgres://) DSN selects the PostgreSQL store; a path, SQLite."""
    return isinstance(value, str) and value.startswith(("postgresql://", "postgres://"))


def resolve_database(flag: str | None, settings: Settings | None = None,
                     env: dict[str, str] | None = None) -> str | Path:
    """--db, else AUTOPOST_DB, else `database` in config.toml, else the default file.
    A DSN comes back as the string, a path as a Path."""
    env = os.environ if env is None else env
    for value in (flag, env.get("AUTOPOST_DB"), settings.database if settings else None):
        if value:
            return value if is_dsn(value) else Path(value).expanduser()
    return default_db_path()


def load_settings(config_flag: str | None = None, env: dict[str, str] | None = None) -> Settings:
    """Defaults, then config.toml, then the environment. Flags are applied by the caller.
    Every setting is checked here, whichever command asked."""
    from autopost.inputs import check_env, check_text

    env = dict(os.environ) if env is None else env
    try:
        check_env(env)
        if config_flag is not None:
            check_text(config_flag, "--config")
    except UsageError as exc:
        raise ConfigError(str(exc)) from None
    path, explicit = _config_location(config_flag, env)
    data: dict[str, Any] = {}
    if path is not None and path.exists():
        data = _read_toml(path)
    elif explicit:
        raise ConfigError(f"config file not found: {path}")
    return _build(data, env, path if data else None)


def _config_location(flag: str | None, env: dict[str, str]) -> tuple[Path | None, bool]:
    if flag:
        return Path(flag).expanduser(), True
    if env.get("AUTOPOST_CONFIG"):
        return Path(env["AUTOPOST_CONFIG"]).expanduser(), True
    return default_config_path(), False


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib

    from autopost.inputs import CONFIG_MAX, read_text_file

    try:
        text = read_text_file(path, CONFIG_MAX, "config")
    except UsageError as exc:
        raise ConfigError(str(exc)) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML (nested too deeply)") from None


def _build(data: dict[str, Any], env: dict[str, str], path: Path | None) -> Settings:
    unknown = set(data) - {"run", "platforms", "notify", "database", "meta", "media",
                           "schedule", "accounts"}
    if unknown:
        raise ConfigError(f"config: unknown section [{sorted(unknown)[0]}]")
    database = data.get("database")
    if database is not None and (not isinstance(database, str) or not database.strip()):
        raise ConfigError("config: database must be a file path or a postgresql:// DSN")
    run = _apply(RunSettings(), _table(data, "run"), "run", _RUN_KEYS)
    schedule = _schedule(_table(data, "schedule"))
    slots = {name: _slots(name, table)
             for name, table in _table(data, "accounts").items()}
    run = _apply_env_run(run, env)
    platform_tables = _table(data, "platforms")
    default = PlatformPolicy()
    if "default" in platform_tables:
        default = _apply(default, _table(platform_tables, "default", "platforms."),
                         "platforms.default", _POLICY_KEYS)
    default = _apply_env_default(default, env)
    platforms: dict[str, PlatformPolicy] = {}
    for name in PLATFORMS:
        base = replace(default, **_SEED.get(name, {}), **_DOCUMENTED_LIMITS.get(name, {}))
        platforms[name] = base
    for raw_name, table in platform_tables.items():
        if raw_name == "default":
            continue
        name = canonical_platform(raw_name)
        if name not in PLATFORMS:
            raise ConfigError(f"config: unknown platform [platforms.{raw_name}]")
        if not isinstance(table, dict):
            raise ConfigError(f"config: platforms.{raw_name} must be a table")
        keys = _POLICY_KEYS + (("api_version",) if name in _VERSIONED else ())
        platforms[name] = _apply(platforms[name], table, f"platforms.{raw_name}", keys)
    for name in PLATFORMS:
        platforms[name] = _apply_env_platform(name, platforms[name], env)
    notify = None
    if "notify" in data:  # imported only when configured: this module is on the idle path
        from autopost.notify import target_from

        notify = target_from(_table(data, "notify"))
    meta = _meta(_table(data, "meta"), env)
    media = _media(_table(data, "media"), env, path)
    return Settings(run=run, schedule=schedule, slots=slots, default=default,
                    platforms=platforms, config_path=path, notify=notify,
                    database=database, meta=meta, media=media)


def _meta(table: dict[str, Any], env: dict[str, str]) -> MetaSettings:
    import re

    unknown = set(table) - {"graph_version", "threads_publish_wait"}
    if unknown:
        raise ConfigError(f"config: unknown key meta.{sorted(unknown)[0]}")
    version = env.get("AUTOPOST_GRAPH_VERSION", table.get("graph_version", "v26.0"))
    name = "AUTOPOST_GRAPH_VERSION" if "AUTOPOST_GRAPH_VERSION" in env else "meta.graph_version"
    if not isinstance(version, str) or not re.fullmatch(r"v\d{1,3}\.\d", version):
        raise ConfigError(f"{name}: expected a Graph API version such as \"v26.0\", "
                          f"got {version!r}")
    wait = 30.0
    if "threads_publish_wait" in table:
        from autopost.timeparse import parse_duration

        try:
            wait = parse_duration(table["threads_publish_wait"],
                                  name="meta.threads_publish_wait")
        except UsageError:
            raise ConfigError("meta.threads_publish_wait: invalid value "
                              f"{table['threads_publish_wait']!r}") from None
        if not 0 <= wait <= 300:
            raise ConfigError("meta.threads_publish_wait: must be between 0 and 5 minutes")
    return MetaSettings(graph_version=version, threads_publish_wait=wait)


def _media(table: dict[str, Any], env: dict[str, str], path: Path | None) -> MediaHostSettings:
    import re

    unknown = set(table) - {"public_dir", "public_base_url"}
    if unknown:
        raise ConfigError(f"config: unknown key media.{sorted(unknown)[0]}")
    folder = env.get("AUTOPOST_MEDIA_PUBLIC_DIR", table.get("public_dir"))
    base = env.get("AUTOPOST_MEDIA_PUBLIC_BASE_URL", table.get("public_base_url"))
    for key, value in (("public_dir", folder), ("public_base_url", base)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigError(f"media.{key}: expected a non-empty string")
    if (folder is None) != (base is None):
        raise ConfigError("[media] needs both public_dir and public_base_url")
    if base is not None and not re.match(r"^https?://[^\s/]+(/\S*)?$", base):
        raise ConfigError(f"media.public_base_url: expected an https:// URL, got {base!r}")
    directory = None
    if folder is not None:
        directory = Path(folder).expanduser()
        if not directory.is_absolute():
            directory = ((path.parent if path else Path.cwd()) / directory).absolute()
    return MediaHostSettings(public_dir=directory,
                             public_base_url=base.rstrip("/") + "/" if base else None)


def _schedule(table: dict[str, Any]) -> ScheduleSettings:
    from autopost.timeparse import parse_duration

    changes = {}
    for key, value in table.items():
        if key not in ("duplicate_window", "horizon"):
            raise ConfigError(f"config: unknown key schedule.{key}")
        try:
            changes[key] = parse_duration(value, name=f"schedule.{key}")
        except UsageError as exc:
            raise ConfigError(str(exc)) from None
    if changes.get("horizon", 1) <= 0:
        raise ConfigError("schedule.horizon: must be more than zero")
    return replace(ScheduleSettings(), **changes)


def _slots(name: str, table: Any) -> Slots:
    where = f"accounts.{name}"
    if not isinstance(table, dict):
        raise ConfigError(f"config: [{where}] must be a table")
    unknown = set(table) - {"slots", "tz"}
    if unknown:
        raise ConfigError(f"config: unknown key {where}.{sorted(unknown)[0]}")
    raw = table.get("slots", [])
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise ConfigError(f'{where}.slots: expected a list like ["mon 09:00", "wed 12:30"]')
    times = []
    for value in raw:
        parts = value.strip().lower().split()
        try:
            if len(parts) != 2:
                raise ValueError
            day = _weekday(parts[0])
            if not (len(parts[1]) in (4, 5) and parts[1].count(":") == 1
                    and parts[1].replace(":", "").isascii()
                    and parts[1].replace(":", "").isdigit()):
                raise ValueError
            hour, minute = (int(x) for x in parts[1].split(":"))
            if not (0 <= hour < 24 and 0 <= minute < 60):
                raise ValueError
        except ValueError:
            raise ConfigError(f"{where}.slots: {value!r} is not a weekly slot like "
                              "'mon 09:00'") from None
        times.append((day, hour, minute))
    tz = table.get("tz")
    if tz is not None:
        from autopost.timeparse import get_zone

        if not isinstance(tz, str):
            raise ConfigError(f"{where}.tz: expected a zone name like Europe/Berlin")
        try:
            get_zone(tz)
        except UsageError:
            raise ConfigError(f"{where}.tz: unknown time zone {tz!r}") from None
    return Slots(tuple(sorted(set(times))), tz)


_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _weekday(word: str) -> int:
    """0 for mon / monday, ... 6 for sun / sunday; ValueError otherwise."""
    for i, full in enumerate(_DAY_NAMES):
        if len(word) >= 3 and full.startswith(word):
            return i
    raise ValueError(word)


def _table(data: dict[str, Any], key: str, prefix: str = "") -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"config: [{prefix}{key}] must be a table")
    return value


def _apply(obj: Any, table: dict[str, Any], where: str, keys: tuple[str, ...]) -> Any:
    changes = {}
    for key, value in table.items():
        if key not in keys:
            raise ConfigError(f"config: unknown key {where}.{key}")
        changes[key] = _coerce(key, value, f"{where}.{key}")
    return replace(obj, **changes)


def _coerce(key: str, value: Any, name: str) -> Any:
    """Check and convert one setting; `name` is what an error message calls it."""
    from autopost.inputs import real_number, shown, whole_number
    from autopost.timeparse import MAX_SECONDS, parse_duration

    try:
        if isinstance(value, str):
            if len(value) > 100:
                raise ConfigError(f"{name}: invalid value {shown(value)}")
        if key == "enabled":
            return _boolean(value, name)
        if key == "api_version":
            return _api_version(value, name)
        if key in ("lease_seconds", "catch_up_window", "expected_interval", "base_delay",
                   "max_delay"):
            most = {"lease_seconds": MAX_LEASE, "expected_interval": MAX_INTERVAL}.get(
                key, MAX_SECONDS)
            seconds = parse_duration(value, name=name, max_seconds=most)
            if key in ("lease_seconds", "expected_interval") and seconds <= 0:
                raise ConfigError(f"{name}: must be more than zero")
            return seconds
        if key == "busy_timeout":
            return real_number(value, name, lo=0.0, hi=MAX_BUSY_TIMEOUT)
        if key == "backoff_multiplier":
            return real_number(value, name, lo=1.0, hi=MAX_MULTIPLIER)
        if key in ("hourly_limit", "daily_limit"):
            return whole_number(value, name, lo=0, hi=MAX_POSTS_LIMIT) or None
        most = MAX_CONCURRENCY if key == "max_concurrent_jobs" else MAX_ATTEMPTS
        return whole_number(value, name, lo=1, hi=most)
    except ConfigError:
        raise
    except UsageError as exc:
        raise ConfigError(str(exc)) from None
    except (ValueError, TypeError):
        raise ConfigError(f"{name}: invalid value {shown(value)}") from None


def _api_version(value: Any, name: str) -> str:
    """YYYYMM, or YYYYMM.NN for a patch release."""
    import re

    text = str(value).strip() if isinstance(value, str | int) and not isinstance(
        value, bool) else ""
    m = re.fullmatch(r"(\d{4})(\d{2})(\.\d{2})?", text)
    if not m or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 2020:
        raise ConfigError(f"{name}: expected a version like \"202603\" (YYYYMM), "
                          f"got {value!r}")
    return text


def _boolean(value: Any, name: str) -> bool:
    from autopost.inputs import shown

    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: expected true or false, got {shown(value)}")


def busy_timeout_from_env(env: dict[str, str] | None = None) -> float | None:
    """AUTOPOST_BUSY_TIMEOUT in seconds, checked; None when unset."""
    env = os.environ if env is None else env
    raw = env.get("AUTOPOST_BUSY_TIMEOUT")
    if raw is None:
        return None
    return _coerce("busy_timeout", raw, "AUTOPOST_BUSY_TIMEOUT")


def _apply_env_run(run: RunSettings, env: dict[str, str]) -> RunSettings:
    changes = {}
    if "AUTOPOST_ENABLED" in env:
        changes["enabled"] = _coerce("enabled", env["AUTOPOST_ENABLED"], "AUTOPOST_ENABLED")
    if "AUTOPOST_MAX_CONCURRENT_JOBS" in env:
        changes["max_concurrent_jobs"] = _coerce(
            "max_concurrent_jobs", env["AUTOPOST_MAX_CONCURRENT_JOBS"],
            "AUTOPOST_MAX_CONCURRENT_JOBS")
    busy = busy_timeout_from_env(env)
    if busy is not None:
        changes["busy_timeout"] = busy
    return replace(run, **changes)


def _apply_env_default(policy: PlatformPolicy, env: dict[str, str]) -> PlatformPolicy:
    changes = {}
    for key in ("max_attempts", "base_delay", "max_delay"):
        name = f"AUTOPOST_DEFAULT_{key.upper()}"
        if name in env:
            changes[key] = _coerce(key, env[name], name)
    return replace(policy, **changes)


def _apply_env_platform(name: str, policy: PlatformPolicy, env: dict[str, str]) -> PlatformPolicy:
    names = [name] + [alias for alias, canon in ALIASES.items() if canon == name]
    changes = {}
    for platform in names:
        for key in ("daily_limit", "hourly_limit") + (
                ("api_version",) if name in _VERSIONED else ()):
            var = f"AUTOPOST_{platform.upper()}_{key.upper()}"
            if var in env:
                changes[key] = _coerce(key, env[var], var)
    return replace(policy, **changes)
