"""`autopost db ...`: move the whole database between SQLite and PostgreSQL."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from autopost.cli.app import app

db_app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False,
                     help="Move the database between SQLite and PostgreSQL.")
app.add_typer(db_app, name="db")


@db_app.command("copy")
def db_copy(
    source: Annotated[str, typer.Argument(
        metavar="SOURCE", help="A SQLite file or a postgresql:// DSN (only read).")],
    target: Annotated[str, typer.Argument(
        metavar="TARGET", help="A SQLite file or a postgresql:// DSN (must be empty).")],
    replace: Annotated[bool, typer.Option(
        "--replace", help="Empty a target that already holds data, then copy.")] = False,
) -> None:
    """Copy every account, job, attempt and run from SOURCE to TARGET, in one transaction.

    Stop `run-due` on the source first (remove it from cron): jobs it publishes during the
    copy would be copied as they were when the copy began.

    Example:

    \b
      autopost db copy ~/.local/share/autopost/autopost.db postgresql://autopost@db/autopost
    """
    from pathlib import Path

    from autopost.cli.app import quiet as quieted
    from autopost.config import is_dsn
    from autopost.store.copy import copy_database, describe

    quiet = quieted()

    def progress(table: str, n: int) -> None:
        if not quiet and sys.stderr.isatty():
            sys.stderr.write(f"\r{table}: {n}")
            sys.stderr.flush()

    src = source if is_dsn(source) else Path(source).expanduser()
    dst = target if is_dsn(target) else Path(target).expanduser()
    counts = copy_database(src, dst, replace=replace, progress=progress)
    if not quiet and sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
    summary = ", ".join(f"{n} {table}" for table, n in counts.items())
    if not quiet:
        print(f"copied {summary} from {describe(src)} to {describe(dst)} (counts verified)")
