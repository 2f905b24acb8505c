"""Each command imports what it uses and nothing else (how fast that is, bench/startup.py
measures; here only which modules load, which is deterministic)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from autopost.models import Account, NewJob
from autopost.store.sqlite import SqliteStore
from tests.test_idle import _imported

COMMAND_MODULES = {"autopost.cli.jobs", "autopost.cli.ops", "autopost.cli.running",
                   "autopost.cli.accounts", "autopost.cli.db", "autopost.cli.schedule"}
NEVER_INTERACTIVE = ("rich", "httpx", "httpcore", "pydantic", "sqlite_utils",
                     "autopost.engine", "autopost.publisher")


def _loaded(names: set[str], prefixes) -> set[str]:
    return {m for m in names for p in prefixes if m == p or m.startswith(p + ".")}


def _imports(tmp_path, *args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPOST_")}
    env["AUTOPOST_CONFIG"] = str(tmp_path / "none.toml")
    (tmp_path / "none.toml").write_text("")
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "autopost", *args],
                          capture_output=True, text=True, env=env, timeout=120)
    return done, _imported(done.stderr)


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "autopost.db"
    store = SqliteStore(path)
    now = datetime.now(UTC)
    store.add_account(Account(name="o", platform="outbox",
                              credentials={"path": str(tmp_path / "out")}), now=now)
    store.add_account(Account(name="m", platform="mastodon", base_url="https://m.example",
                              credentials={"access_token": "t" * 20}), now=now)
    added = store.add_jobs([NewJob(account="o", platform="outbox", text="later",
                                   scheduled_at=now + timedelta(days=1))], now=now)
    store.close()
    return path, added[0][0].id


def test_help_imports_no_command_module(tmp_path):
    done, imported = _imports(tmp_path, "--help")
    assert done.returncode == 0 and "Commands:" in done.stdout
    assert not _loaded(imported, COMMAND_MODULES | set(NEVER_INTERACTIVE)), imported
    assert "autopost.store" not in imported


@pytest.mark.parametrize("args, module", [
    (["list"], "autopost.cli.jobs"),
    (["show", "JOB"], "autopost.cli.jobs"),
    (["add", "hello", "-a", "o", "--at", "+2d"], "autopost.cli.jobs"),
    (["status"], "autopost.cli.running"),
    (["accounts", "list"], "autopost.cli.accounts"),
])
def test_a_command_imports_its_own_module_only(tmp_path, db, args, module):
    path, job = db
    args = [job if a == "JOB" else a for a in args]
    done, imported = _imports(tmp_path, "--db", str(path), *args)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    assert module in imported
    assert not _loaded(imported, COMMAND_MODULES - {module}), imported
    assert not _loaded(imported, NEVER_INTERACTIVE), _loaded(imported, NEVER_INTERACTIVE)
    # Random ids and keys come from os.urandom (secrets would load it all for them).
    assert not _loaded(imported - _baseline(), ("secrets",)), imported


def test_status_loads_only_the_platforms_that_warn(tmp_path, db):
    path, _ = db
    done, imported = _imports(tmp_path, "--db", str(path), "status", "--json")
    assert done.returncode in (0, 1)
    assert json.loads(done.stdout)["counts"]["pending"] == 1
    assert not _loaded(imported, ("autopost.platforms.mastodon", "autopost.platforms.outbox",
                                  "autopost.platforms.http", "httpx")), imported


def test_the_platforms_that_warn_in_status_are_the_ones_listed():
    """status skips the module of an account's platform when it is not listed and the
    account has no token expiry: such an account must have nothing to warn about."""
    from autopost.config import PLATFORMS, load_settings
    from autopost.models import Account
    from autopost.platforms.base import Adapter
    from autopost.platforms.registry import WARNS_IN_STATUS, adapter_class

    settings = load_settings(env={})
    now = datetime.now(UTC)
    warns = set()
    for name in PLATFORMS:
        cls = adapter_class(name)
        if cls.status_warnings.__func__ is not Adapter.status_warnings.__func__:
            warns.add(name)
            continue
        plain = Account(name="x", platform=name, credentials={})
        assert cls.status_warnings(plain, settings.policy(name), now) == [], name
    assert warns == set(WARNS_IN_STATUS)


def _baseline() -> set[str]:
    """What `python -c pass` imports on this machine (site, .pth files)."""
    return _imported(subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"],
                                    capture_output=True, text=True).stderr)


def test_idle_tick_builds_no_dataclass_nor_domain_model(tmp_path, db):
    path, _ = db
    baseline = _baseline()
    done, imported = _imports(tmp_path, "--db", str(path), "run-due")
    assert done.returncode == 0 and "autopost.tick" in imported
    extra = imported - baseline
    assert not _loaded(extra, ("dataclasses", "autopost.models", "socket", "secrets",
                               "hashlib")), extra


def test_the_command_table_matches_the_commands():
    """COMMANDS (what --help lists without importing anything) names every command and
    group, the module that registers it, and its help's first paragraph."""
    from typer.main import get_command

    from autopost.cli.app import COMMANDS, app, import_commands

    import_commands()
    group = get_command(app)
    built = dict(group.commands)
    missing = sorted(set(built) - set(COMMANDS))
    assert not missing, f"add {missing} to COMMANDS in autopost/cli/app.py"
    assert set(COMMANDS) <= set(built)
    owners: dict[str, str] = {}
    for info in app.registered_commands:
        owners[info.name or info.callback.__name__.replace("_", "-")] = info.callback.__module__
    for info in app.registered_groups:
        callbacks = [c.callback for c in info.typer_instance.registered_commands]
        modules = {c.__module__ for c in callbacks}
        assert len(modules) == 1, (info.name, modules)
        owners[info.name] = modules.pop()
    for name, (module, text) in COMMANDS.items():
        assert owners[name] == f"autopost.cli.{module}", name
        assert (built[name].help or "").split("\n\n")[0].strip() == text, name


def test_lazy_help_lists_what_the_full_group_lists():
    """--help from the table (nothing imported) reads exactly as Click's own listing of
    the fully built group."""
    from typer._click import Context
    from typer.core import TyperGroup
    from typer.main import get_command

    from autopost.cli.app import app, import_commands

    import_commands()
    group = get_command(app)
    ctx = Context(group, info_name="autopost", terminal_width=80)
    formatter = ctx.make_formatter()
    TyperGroup.format_commands(group, ctx, formatter)
    full = formatter.getvalue().strip()
    assert full.startswith("Commands:")
    assert _lazy_listing(width=80) == full


def _lazy_listing(width: int) -> str:
    """The listing a fresh root group (no command module imported) writes."""
    code = ("import sys\n"
            "from typer._click import Context\n"
            "from typer.main import get_command\n"
            "from autopost.cli.app import app\n"
            "group = get_command(app)\n"
            f"ctx = Context(group, info_name='autopost', terminal_width={width})\n"
            "f = ctx.make_formatter()\n"
            "group.format_commands(ctx, f)\n"
            "assert not [m for m in sys.modules if m.startswith('autopost.cli.') and\n"
            "            m not in ('autopost.cli.app',)], sorted(sys.modules)\n"
            "print(f.getvalue().strip())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_a_mistyped_command_is_suggested_the_right_one(cli):
    out = cli("stat")
    assert out.code == 2
    assert "Did you mean 'status'?" in out.stderr
