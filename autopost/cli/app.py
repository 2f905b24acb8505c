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

from autopost.errors import AutopostError

if TYPE_CHECKING:
    from autopost.config import Settings
    from autopost.store.sqlite import SqliteStore


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


# Plain help text (no rich markup mode): help shows what was written, and `--help` does
# not load rich, markdown and pygments.
app = typer.Typer(cls=AutopostGroup, pretty_exceptions_show_locals=False,
                  no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                  help="Schedule social-media posts and publish them reliably from cron.")
accounts_app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False,
                           rich_markup_mode=None,
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


def state(ctx: typer.Context | None = None) -> State:
    ctx = ctx or get_current_context()
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
        root.call_on_close(root.obj.close)
    return root.obj


def get_store(ctx: typer.Context | None = None) -> SqliteStore:
    """The invocation's store, opened (and migrated) on first use, closed at exit."""
    st = state(ctx)
    if st.store is None:
        from autopost.config import resolve_db_path
        from autopost.store.sqlite import SqliteStore

        st.store = SqliteStore(resolve_db_path(st.db))
    return st.store


def get_settings(ctx: typer.Context | None = None) -> Settings:
    st = state(ctx)
    if st.settings is None:
        from autopost.config import load_settings

        st.settings = load_settings(st.config)
    return st.settings


def note(text: str) -> None:
    """A remark beside a listing: under it on a terminal, on stderr through a pipe (so the
    rows stay rows)."""
    print(text, file=sys.stdout if sys.stdout.isatty() else sys.stderr)


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
        "--db", envvar="AUTOPOST_DB", metavar="PATH", show_envvar=True,
        help="The database file (default: the user data folder).")] = None,
    config: Annotated[str | None, typer.Option(
        "--config", envvar="AUTOPOST_CONFIG", metavar="PATH", show_envvar=True,
        help="config.toml (default: the user config folder).")] = None,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Show the version.")] = False,
) -> None:
    st = state(ctx)
    st.db, st.config = db, config
