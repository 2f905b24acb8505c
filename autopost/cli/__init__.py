"""The `autopost` command line, one module per command group.

app       the root Typer app, the per-invocation state, the one error handler
jobs      add, import, list, show, edit, cancel, retry
accounts  accounts add, list, remove, check, pause, resume
schedule  slots, plan (and add --repeat)
running   run-due, status, resolve, demo
ops       platforms, quota, calendar, prune, cron, backup, export, config
db        db copy (SQLite <-> PostgreSQL)

No SQL and no HTTP here: commands parse, call services and the store, and render.
Errors a user can cause are AutopostErrors, turned into one stderr line and an exit code
in app.py. The command modules import app.py, never this package's namespace.

Importing this package registers no command: the root group imports a command's module
when that command runs (app.COMMANDS), so `autopost list` never loads run-due's code.
"""

from autopost.cli.app import accounts_app, app, run

__all__ = ["accounts_app", "app", "run"]
