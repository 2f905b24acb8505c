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

from autopost.errors import AutopostError

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


class AutopostGroup(TyperGroup):
    """The root group: every way in (console script, `python -m`, tests) handles errors
    the same way, whether or not click runs in standalone mode."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _add_output_options(self)

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
