"""The root of the command line: the Typer app, the per-invocation state, and the one
place errors become a line on stderr and an exit code.

Exit codes: 0 ok, 1 needs attention, 2 bad usage or input, 3 environment trouble.
Command modules (jobs, accounts, running, ops) register on `app` and `accounts_app`;
nothing here imports them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

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

from autopost.errors import AutopostError, interrupted_by

if TYPE_CHECKING:
    from pathlib import Path

    from autopost.config import Settings
    from autopost.store.base import Store


# -- error handling: one line, the right exit code ---------------------------------------

def say_error(message: str) -> None:
    sys.stderr.write("autopost: " + " ".join(str(message).split()) + "\n")
    sys.stderr.flush()


def _guarded(call: Callable[[], Any]) -> int:
    try:
        rv = call()
    except NoArgsIsHelpError as exc:
        exc.show()
        return exc.exit_code
    except ClickException as exc:
        say_error(exc.format_message())
        return 2 if isinstance(exc, ClickUsageError) else exc.exit_code
    except typer.Abort as exc:
        interrupted = isinstance(exc.__context__, KeyboardInterrupt)
        say_error("interrupted" if interrupted else "aborted")
        return 130 if interrupted else 1
    except AutopostError as exc:
        say_error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        say_error("interrupted")
        return 130
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except Exception as exc:  # a bug: one line (the details with AUTOPOST_DEBUG=1), exit 1
        if interrupted_by(exc):  # Ctrl-C, wrapped by the import it stopped
            say_error("interrupted")
            return 130
        import os

        if os.environ.get("AUTOPOST_DEBUG"):
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        say_error(f"internal error ({type(exc).__name__}); run again with AUTOPOST_DEBUG=1 "
                  "for the details")
        return 1
    return rv if isinstance(rv, int) else 0


def _set_quiet(ctx, param, value) -> None:  # noqa: ARG001
    if value:
        state(ctx).quiet = True


def _set_verbose(ctx, param, value) -> None:  # noqa: ARG001
    if value:
        state(ctx).verbose = True


QUIET_HELP = "Print only what a script needs: job ids from add and list, nothing on success."
VERBOSE_HELP = "Say more: run-due prints its summary line even when not on a terminal."


def _output_options() -> list:
    return [TyperOption(param_decls=["-q", "--quiet"], is_flag=True, default=False,
                        expose_value=False, callback=_set_quiet, help=QUIET_HELP),
            TyperOption(param_decls=["-v", "--verbose"], is_flag=True, default=False,
                        expose_value=False, callback=_set_verbose, help=VERBOSE_HELP)]


def _add_output_options(command) -> None:
    """-q and -v on every command, after the command name as well as before it."""
    for sub in getattr(command, "commands", {}).values():
        _add_output_options(sub)
    if not getattr(command, "commands", None):
        names = {n for p in command.params for n in getattr(p, "opts", [])}
        if "--quiet" not in names:
            command.params.extend(_output_options())


def _checked_main(group: TyperGroup, args: list[str] | None, **kwargs: Any) -> Any:
    """Every argument must be text before any command sees it (Python hands over bytes
    that are not UTF-8 as lone surrogates, which fail far from here)."""
    from autopost.inputs import check_argv

    check_argv(sys.argv[1:] if args is None else args)
    return TyperGroup.main(group, args=args, **kwargs)


# Every command and group of the root, in `--help` order: the module that registers it
# and the first paragraph of its help (what `--help` lists). A command's module is
# imported, and its Click command built, only when that command runs, so each command
# pays for itself alone. tests/test_cli_startup.py checks this table against the modules.
COMMANDS: dict[str, tuple[str, str]] = {
    "add": ("jobs", "Schedule a post to one or more accounts. Prints the job id(s)."),
    "import": ("jobs", "Import many posts from a CSV or JSON Lines file, all or nothing."),
    "list": ("jobs", "List jobs in scheduled order."),
    "show": ("jobs", "Show a job, why it is waiting if it is, and every attempt made for "
                     "it."),
    "cancel": ("jobs", "Cancel jobs that have not been published."),
    "retry": ("jobs", "Send failed, missed or cancelled jobs again, at the next run or --at "
                      "WHEN."),
    "edit": ("jobs", "Change a job that has not reached the platform yet (pending, missed, or "
                     "failed\nbefore any attempt). Checked like add; a new --at makes a missed "
                     "job pending again.\nA series id (s-...) changes the series and its "
                     "occurrences not yet posted."),
    "platforms": ("ops", "The effective retry and quota settings per platform (defaults < "
                         "config < env)."),
    "quota": ("ops", "Posts used against each account's hourly and daily limits (in-flight "
                     "included)."),
    "calendar": ("ops", "Upcoming pending posts: a week grid on a terminal (days across, "
                        "hours down, posts\nper account in each cell), one line per post "
                        "through a pipe."),
    "prune": ("ops", "Delete old finished jobs, their attempts, and old run records."),
    "cron": ("ops", "Print crontab and systemd timer lines that run `run-due` for this "
                    "install."),
    "backup": ("ops", "Write a consistent copy of the database while runs go on (SQLite "
                      "online backup)."),
    "export": ("ops", "Write jobs in the import format, so 'autopost import' reads them "
                      "back."),
    "config": ("ops", "Where the database and config file are, and every setting with "
                      "where its value\ncame from (default, file, environment)."),
    "run-due": ("running", "Publish the jobs that are due, then exit (run it from cron "
                           "every 30-60 s)."),
    "status": ("running", "Health: last run, overdue, unknown and failed jobs, accounts "
                          "needing re-auth.\nExits 1 when anything needs attention."),
    "resolve": ("running", "Settle a job whose outcome is unknown, after checking the "
                           "platform yourself."),
    "demo": ("running", "Schedule three posts to a local outbox, publish them, and show "
                        "the result."),
    "slots": ("schedule", "Show an account's next free queue slots (for `add --at "
                          "next-slot`)."),
    "plan": ("schedule", "The coming occurrences of every active recurring series (changes "
                         "nothing)."),
    "accounts": ("accounts", "Add, list and remove the accounts autopost posts to."),
    "notify": ("running", "The [notify] hook and webhook that hear about problems."),
    "db": ("db", "Move the database between SQLite and PostgreSQL."),
}
COMMAND_MODULES = tuple(dict.fromkeys(module for module, _ in COMMANDS.values()))


def _import(module: str) -> None:
    # __import__, not importlib.import_module: `python -X importtime` sees only the former.
    __import__(f"autopost.cli.{module}")


def import_commands() -> None:
    """Register every command (what a full listing of the app needs): the modules of
    COMMANDS and any other module of this package (a command not in the table yet)."""
    import pkgutil

    import autopost.cli

    names = {m.name for m in pkgutil.iter_modules(autopost.cli.__path__)} - {"app", "params"}
    for module in (*COMMAND_MODULES, *sorted(names - set(COMMAND_MODULES))):
        _import(module)


def _build(name: str) -> Any:
    """The Click command (or group) registered on the root under `name`, or None."""
    from typer.main import get_command_from_info, get_command_name, get_group_from_info

    for info in app.registered_commands:
        if (info.name or get_command_name(info.callback.__name__)) == name:
            return get_command_from_info(info, pretty_exceptions_short=app.pretty_exceptions_short,
                                         rich_markup_mode=app.rich_markup_mode)
    for group in app.registered_groups:
        if group.name == name:
            return get_group_from_info(group, pretty_exceptions_short=app.pretty_exceptions_short,
                                       rich_markup_mode=app.rich_markup_mode,
                                       suggest_commands=app.suggest_commands)
    return None


class AutopostGroup(TyperGroup):
    """The root group: every way in (console script, `python -m`, tests) handles errors
    the same way, whether or not click runs in standalone mode. Commands load lazily
    (COMMANDS): only the one that runs is imported and built."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _add_output_options(self)
        # Commands whose module was imported before this group was built are complete.
        self._ready = {name for name, (module, _) in COMMANDS.items()
                       if name in self.commands and f"autopost.cli.{module}" in sys.modules}
        self._all_loaded = False

    def list_commands(self, ctx: Any) -> list[str]:
        return [*COMMANDS, *(name for name in self.commands if name not in COMMANDS)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in COMMANDS and cmd_name not in self._ready:
            _import(COMMANDS[cmd_name][0])
            self._adopt(cmd_name)
        elif cmd_name not in self.commands and not self._all_loaded:
            # Not in COMMANDS: load everything, so that a command missing from the table
            # still runs and a typo gets its "did you mean" from every name.
            import_commands()
            self._all_loaded = True
            for name in [*COMMANDS, cmd_name]:
                if name not in self._ready:
                    self._adopt(name)
        return self.commands.get(cmd_name)

    def _adopt(self, name: str) -> None:
        command = _build(name)
        if command is not None:
            _add_output_options(command)
            self.commands[name] = command
        self._ready.add(name)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """The root's command list from COMMANDS, importing nothing."""
        from typer._click.utils import make_default_short_help

        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            if name in self._ready or name not in COMMANDS:
                command = self.get_command(ctx, name)
                if command is None or command.hidden:
                    continue
                rows.append((name, command.get_short_help_str(limit)))
            else:
                rows.append((name, make_default_short_help(COMMANDS[name][1], limit).strip()))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):
        code = _guarded(lambda: _checked_main(
            self, args, prog_name=prog_name or "autopost", complete_var=complete_var,
            standalone_mode=False, **extra))
        if standalone_mode:
            sys.exit(code)
        return code

    def invoke(self, ctx: Any) -> Any:
        # Typer turns Ctrl-C into a silent exit 130; autopost says so in one line.
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            from autopost.errors import Interrupted

            raise Interrupted() from None


class RawArgsCommand(TyperCommand):
    """Keeps the command's raw arguments, so `add` can pair each --alt with its --media."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        ctx.meta["autopost.raw_args"] = list(args)
        return super().parse_args(ctx, args)


# Plain help text (no rich markup mode): help shows what was written, and `--help` does
# not load rich, markdown and pygments.
app = typer.Typer(cls=AutopostGroup, pretty_exceptions_show_locals=False,
                  no_args_is_help=True, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Schedule social-media posts and publish them reliably from cron.")
accounts_app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False,
                           rich_markup_mode=None,
                           help="Add, list and remove the accounts autopost posts to.")
app.add_typer(accounts_app, name="accounts")
notify_app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False,
                         rich_markup_mode=None,
                         help="The [notify] hook and webhook that hear about problems.")
app.add_typer(notify_app, name="notify")


def run(argv: list[str]) -> int:
    """Run one command line; returns the exit code (used by __main__)."""
    return app(args=list(argv), prog_name="autopost", standalone_mode=False)


# -- per-invocation state: the store and settings, built when first needed -------------

@dataclass
class State:
    db: str | None = None
    config: str | None = None
    store: Store | None = None
    settings: Settings | None = None
    quiet: bool = False
    verbose: bool = False

    def close(self) -> None:
        if self.store is not None:
            store, self.store = self.store, None
            store.close()


def state(ctx: typer.Context | None = None) -> State:
    ctx = ctx or get_current_context()
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
        root.call_on_close(root.obj.close)
    return root.obj


def get_store(ctx: typer.Context | None = None, *, create: bool = False) -> Store:
    """The invocation's store, opened (and migrated) on first use, closed at exit.

    Only commands that write something new pass create=True: a command that reads (or
    changes what exists) never leaves an empty SQLite file behind a mistyped --db. Every
    setting is checked first, whichever command this is."""
    st = state(ctx)
    if st.store is None:
        from autopost.store.select import open_store

        settings = get_settings(ctx)
        st.store = open_store(database(ctx), create=create,
                              busy_timeout=settings.run.busy_timeout)
    return st.store


def database(ctx: typer.Context | None = None) -> str | Path:
    """Where the store is: --db, AUTOPOST_DB, `database` in config.toml, or the default
    file. A postgresql:// DSN (a str) or a SQLite path."""
    import os

    from autopost.config import resolve_database

    st = state(ctx)
    if st.db or os.environ.get("AUTOPOST_DB"):
        return resolve_database(st.db)  # config.toml is not needed (nor read)
    return resolve_database(None, get_settings(ctx))


def get_settings(ctx: typer.Context | None = None) -> Settings:
    st = state(ctx)
    if st.settings is None:
        from autopost.config import load_settings

        st.settings = load_settings(st.config)
    return st.settings


def note(text: str) -> None:
    """A remark beside a listing: under it on a terminal, on stderr through a pipe (so the
    rows stay rows); nothing with -q."""
    if not state().quiet:
        print(text, file=sys.stdout if sys.stdout.isatty() else sys.stderr)


def say(text: str) -> None:
    """A line saying what a command did; nothing with -q (errors still speak)."""
    if not state().quiet:
        print(text)


def quiet() -> bool:
    return state().quiet


def verbose() -> bool:
    return state().verbose


def now() -> datetime:
    return datetime.now(UTC)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"autopost {version('autopost')}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    db: Annotated[str | None, typer.Option(
        "--db", envvar="AUTOPOST_DB", metavar="DB", show_envvar=True,
        help="The database: a SQLite file, or a postgresql:// DSN for several hosts "
             "(default: `database` in config.toml, else a file in the user data folder)."
    )] = None,
    config: Annotated[str | None, typer.Option(
        "--config", envvar="AUTOPOST_CONFIG", metavar="PATH", show_envvar=True,
        help="config.toml (default: the user config folder).")] = None,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Show the version.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP)] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help=VERBOSE_HELP)] = False,
) -> None:
    st = state(ctx)
    st.db, st.config = db, config
    st.quiet, st.verbose = st.quiet or quiet, st.verbose or verbose
