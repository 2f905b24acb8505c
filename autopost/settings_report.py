"""`autopost config`: where each path and setting comes from.

Settings are layered: built-in defaults < config.toml < AUTOPOST_* environment (the
database and config paths: < flags). This module rebuilds the layers one at a time
with config.py's own parser and names, for each value, the layer that set it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from autopost import config
from autopost.record import fields

DEFAULT, FILE, ENV, FLAG = "default", "file", "environment", "flag"


def _value(value: Any) -> Any:
    if isinstance(value, frozenset):
        return sorted(str(v) for v in value)
    return value


def report(db_flag: str | None, config_flag: str | None, *,
           db_source: str = DEFAULT, config_source: str = DEFAULT,
           env: dict[str, str] | None = None) -> dict[str, Any]:
    env = dict(os.environ) if env is None else env
    path, explicit = config._config_location(config_flag, env)
    data: dict[str, Any] = {}
    if path is not None and path.exists():
        data = config._read_toml(path)
    elif explicit:
        raise config.ConfigError(f"config file not found: {path}")
    defaults = config._build({}, {}, None)
    from_file = config._build(data, {}, path)
    final = config._build(data, env, path if data else None)
    settings: list[dict[str, Any]] = []

    def add(name: str, value: Any, source: str, detail: str | None = None) -> None:
        settings.append({"name": name, "value": _value(value), "source": source,
                         "detail": detail})

    run_table = data.get("run", {})
    env_run = {"enabled": "AUTOPOST_ENABLED", "max_concurrent_jobs":
               "AUTOPOST_MAX_CONCURRENT_JOBS"}
    for f in fields(final.run):
        value = getattr(final.run, f.name)
        var = env_run.get(f.name)
        if var and var in env:
            add(f"run.{f.name}", value, ENV, var)
        elif f.name in run_table:
            add(f"run.{f.name}", value, FILE, "[run]")
        else:
            add(f"run.{f.name}", value, DEFAULT)
    tables = data.get("platforms", {})
    for platform in config.PLATFORMS:
        policy, base = final.platforms[platform], from_file.platforms[platform]
        table = next((t for n, t in tables.items()
                      if config.canonical_platform(n) == platform and n != "default"), {})
        for f in fields(policy):
            if f.name == "api_version" and platform not in config._VERSIONED:
                continue
            if f.name == "retryable":
                continue
            name, value = f"platforms.{platform}.{f.name}", getattr(policy, f.name)
            var = f"AUTOPOST_{platform.upper()}_{f.name.upper()}"
            default_var = f"AUTOPOST_DEFAULT_{f.name.upper()}"
            if var in env and f.name in ("daily_limit", "hourly_limit", "api_version"):
                add(name, value, ENV, var)
            elif value != getattr(base, f.name) and default_var in env:
                add(name, value, ENV, default_var)
            elif f.name in table:
                add(name, value, FILE, f"[platforms.{platform}]")
            elif value != getattr(defaults.platforms[platform], f.name):
                add(name, value, FILE, "[platforms.default]")
            else:
                add(name, value, DEFAULT)
    db = config.resolve_db_path(db_flag, env)
    return {
        "database": {"path": str(db.absolute()), "exists": db.exists(), "source": db_source},
        "config": {"path": str(path.absolute()) if path else None,
                   "exists": bool(path and path.exists()), "source": config_source},
        "settings": settings,
    }


def show(rep: dict[str, Any]) -> None:
    from autopost import tables
    from autopost.tables import FLEX, KEY, Column

    db, cfg = rep["database"], rep["config"]
    out = sys.stdout
    out.write(f"database  {db['path']}  ({db['source']}"
              f"{'' if db['exists'] else '; not created yet'})\n")
    if cfg["exists"]:
        out.write(f"config    {cfg['path']}  ({cfg['source']})\n")
    else:
        out.write(f"config    none (looked for {cfg['path']})\n")
    out.write("\n")
    rows = []
    for s in rep["settings"]:
        value = s["value"]
        shown = "none" if value is None else str(value).lower() if isinstance(value, bool) \
            else f"{value:g}" if isinstance(value, float) else str(value)
        source = s["source"] + (f" {s['detail']}" if s["detail"] else "")
        rows.append([s["name"], shown, source])
    tables.emit([Column("SETTING", KEY), Column("VALUE", KEY), Column("SOURCE", FLEX)], rows)


def path_source(ctx_source: Any) -> str:
    """A click ParameterSource as this report names it."""
    name = getattr(ctx_source, "name", "")
    return {"COMMANDLINE": FLAG, "ENVIRONMENT": ENV}.get(name, DEFAULT)



