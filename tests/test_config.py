"""Settings precedence (defaults < config.toml < environment < flags) and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopost.config import load_settings, resolve_db_path
from autopost.errors import ConfigError
from autopost.models import ErrorKind

pytestmark = pytest.mark.usefixtures("isolated_env")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_are_the_seed_tables():
    s = load_settings(env={})
    fb = s.policy("facebook")
    assert (fb.max_attempts, fb.base_delay, fb.max_delay, fb.backoff_multiplier) == \
        (5, 60, 3600, 2)
    assert (fb.hourly_limit, fb.daily_limit) == (10, 50)
    assert ErrorKind.QUOTA_EXCEEDED in fb.retryable
    assert s.policy("twitter") == s.policy("x")
    assert (s.policy("x").max_attempts, s.policy("x").daily_limit) == (8, 300)
    assert (s.policy("youtube").hourly_limit, s.policy("youtube").daily_limit) == (1, 6)
    assert s.policy("instagram").backoff_multiplier == 1.5
    assert s.policy("linkedin").retryable == {ErrorKind.RATE_LIMITED, ErrorKind.NETWORK}
    assert s.run.enabled and s.run.lease_seconds == 300
    assert s.config_path is None


def test_toml_overrides_defaults(tmp_path):
    cfg = write(tmp_path / "c.toml", """
[run]
lease_seconds = "2m"
max_concurrent_jobs = 3
catch_up_window = "2h"
enabled = false

[platforms.facebook]
daily_limit = 40
base_delay = "90s"
backoff_multiplier = 3

[platforms.twitter]
hourly_limit = 0

[platforms.default]
max_attempts = 7
""")
    s = load_settings(str(cfg), env={})
    assert s.config_path == cfg
    assert (s.run.lease_seconds, s.run.max_concurrent_jobs, s.run.catch_up_window) == \
        (120, 3, 7200)
    assert s.run.enabled is False
    fb = s.policy("facebook")
    assert (fb.daily_limit, fb.base_delay, fb.backoff_multiplier) == (40, 90, 3)
    assert fb.hourly_limit == 10  # untouched keys keep their defaults
    assert s.policy("x").hourly_limit is None  # 0 = no limit
    assert s.policy("mastodon").max_attempts == 7  # [platforms.default] for unseeded ones
    assert s.policy("facebook").max_attempts == 5  # the seed table still wins for seeded ones


def test_environment_overrides_toml(tmp_path):
    cfg = write(tmp_path / "c.toml", """
[run]
max_concurrent_jobs = 5
[platforms.facebook]
daily_limit = 40
hourly_limit = 8
""")
    env = {
        "AUTOPOST_MAX_CONCURRENT_JOBS": "2",
        "AUTOPOST_FACEBOOK_DAILY_LIMIT": "30",
        "AUTOPOST_TWITTER_HOURLY_LIMIT": "12",
        "AUTOPOST_DEFAULT_MAX_ATTEMPTS": "9",
        "AUTOPOST_DEFAULT_BASE_DELAY": "5m",
        "AUTOPOST_DEFAULT_MAX_DELAY": "7200",
        "AUTOPOST_ENABLED": "no",
    }
    s = load_settings(str(cfg), env=env)
    assert s.run.max_concurrent_jobs == 2
    assert s.run.enabled is False
    assert s.policy("facebook").daily_limit == 30
    assert s.policy("facebook").hourly_limit == 8  # from the file; no env for it
    assert s.policy("x").hourly_limit == 12
    mastodon = s.policy("mastodon")
    assert (mastodon.max_attempts, mastodon.base_delay, mastodon.max_delay) == (9, 300, 7200)


def test_config_location_flag_beats_env_beats_default(tmp_path, isolated_env):
    default = write(isolated_env / "config" / "autopost" / "config.toml",
                    "[run]\nmax_concurrent_jobs = 11\n")
    from_env = write(tmp_path / "env.toml", "[run]\nmax_concurrent_jobs = 12\n")
    flag = write(tmp_path / "flag.toml", "[run]\nmax_concurrent_jobs = 13\n")
    assert load_settings(env={}).run.max_concurrent_jobs == 11
    assert load_settings(env={}).config_path == default
    env = {"AUTOPOST_CONFIG": str(from_env)}
    assert load_settings(env=env).run.max_concurrent_jobs == 12
    assert load_settings(str(flag), env=env).run.max_concurrent_jobs == 13


def test_db_location_flag_beats_env(tmp_path, isolated_env):
    assert resolve_db_path(None, {}) == isolated_env / "data" / "autopost" / "autopost.db"
    assert resolve_db_path(None, {"AUTOPOST_DB": "/x/env.db"}) == Path("/x/env.db")
    assert resolve_db_path("/x/flag.db", {"AUTOPOST_DB": "/x/env.db"}) == Path("/x/flag.db")


@pytest.mark.parametrize(("toml", "names"), [
    ('[run]\nlease_seconds = "soon"\n', "run.lease_seconds"),
    ("[run]\nlease_seconds = 0\n", "run.lease_seconds"),
    ('[run]\nenabled = "perhaps"\n', "run.enabled"),
    ("[run]\nmax_concurrent_jobs = -1\n", "run.max_concurrent_jobs"),
    ("[run]\nmax_concurrent_jobs = 1.5\n", "run.max_concurrent_jobs"),
    ("[run]\nspeed = 3\n", "run.speed"),
    ("[platforms.x]\nmax_attempts = 0\n", "platforms.x.max_attempts"),
    ('[platforms.x]\ndaily_limit = "many"\n', "platforms.x.daily_limit"),
    ("[platforms.x]\nbackoff_multiplier = 0.5\n", "platforms.x.backoff_multiplier"),
    ('[platforms.facebook]\nmax_delay = "-5m"\n', "platforms.facebook.max_delay"),
    ("[platforms.myspace]\ndaily_limit = 1\n", "platforms.myspace"),
    ("[extras]\nx = 1\n", "extras"),
    ("run = 5\n", "run"),
    ("[run\n", "not valid TOML"),
])
def test_malformed_config_names_the_key(tmp_path, toml, names):
    cfg = write(tmp_path / "c.toml", toml)
    with pytest.raises(ConfigError) as err:
        load_settings(str(cfg), env={})
    assert names in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("var", "value"), [
    ("AUTOPOST_ENABLED", "maybe"),
    ("AUTOPOST_MAX_CONCURRENT_JOBS", "lots"),
    ("AUTOPOST_MAX_CONCURRENT_JOBS", "0"),
    ("AUTOPOST_DEFAULT_MAX_ATTEMPTS", "-2"),
    ("AUTOPOST_DEFAULT_BASE_DELAY", "a while"),
    ("AUTOPOST_FACEBOOK_DAILY_LIMIT", "fifty"),
    ("AUTOPOST_X_HOURLY_LIMIT", "-1"),
])
def test_malformed_environment_names_the_variable(var, value):
    with pytest.raises(ConfigError, match=var):
        load_settings(env={var: value})


def test_missing_explicit_config_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(str(tmp_path / "nope.toml"), env={})
    with pytest.raises(ConfigError, match="not found"):
        load_settings(env={"AUTOPOST_CONFIG": str(tmp_path / "nope.toml")})


def test_platforms_command_shows_effective_settings(cli, tmp_path):
    cfg = write(tmp_path / "c.toml", "[platforms.facebook]\ndaily_limit = 40\nhourly_limit = 9\n")
    out = cli("--config", str(cfg), "platforms", "--json",
              env={"AUTOPOST_FACEBOOK_HOURLY_LIMIT": "4"})
    assert out.code == 0, out.stderr
    rows = {r["platform"]: r for r in out.json()}
    assert rows["facebook"]["daily_limit"] == 40  # toml
    assert rows["facebook"]["hourly_limit"] == 4  # env beats toml
    assert rows["facebook"]["max_attempts"] == 5  # default
    assert rows["outbox"]["supported"] is True
    assert set(rows) >= {"outbox", "mastodon", "x", "facebook", "youtube"}
    assert sorted(rows["x"]["retryable"]) == ["network", "quota_exceeded", "rate_limited"]


def test_bad_environment_value_is_one_line_exit_2(cli):
    out = cli("platforms", env={"AUTOPOST_YOUTUBE_DAILY_LIMIT": "six"})
    assert out.code == 2
    assert out.err_lines == [out.stderr.strip()]
    assert "AUTOPOST_YOUTUBE_DAILY_LIMIT" in out.stderr
    assert "Traceback" not in out.stderr
