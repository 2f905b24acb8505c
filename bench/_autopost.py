"""`autopost` as the benchmarks run it: the real entry point, plus the bench's platforms.

    python bench/_autopost.py --db X run-due [--concurrency N] [--linger S] [--limit N]

Same path as the console script: autopost.tick answers an idle tick on the standard
library; otherwise the bench's in-process platforms (noop, benchhttp) are registered
and the full CLI runs. Where this checkout has no autopost/cli yet, run-due is
driven the way autopost.cli.running.run_due drives it (settings, SqliteStore, Engine, signals,
one line per problem, exit 1 on problems); BENCH_CLI=engine forces that path.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def cli_available() -> bool:
    if os.environ.get("BENCH_CLI") == "engine":
        return False
    import importlib.util

    return importlib.util.find_spec("autopost.cli") is not None


def main(argv: list[str]) -> int:
    from autopost.__main__ import skip_unused_imports
    from autopost.tick import try_idle

    skip_unused_imports()  # as the console script does

    code = try_idle(argv)
    if code is not None:
        return code
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _adapters

    _adapters.register()
    if cli_available():
        from autopost.cli import run

        return run(argv)
    return engine_run_due(argv)


def engine_run_due(argv: list[str]) -> int:
    import argparse
    import signal
    import threading

    from autopost.config import load_settings, resolve_db_path
    from autopost.engine import Engine, RunOptions
    from autopost.store.sqlite import SqliteStore

    ap = argparse.ArgumentParser(prog="autopost")
    ap.add_argument("--db")
    ap.add_argument("--config")
    ap.add_argument("command", choices=["run-due"])
    ap.add_argument("--limit", type=int)
    ap.add_argument("--concurrency", type=int)
    ap.add_argument("--linger", type=float, default=0.0)
    args = ap.parse_args(argv)
    settings = load_settings(args.config)
    store = SqliteStore(resolve_db_path(args.db))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    engine = Engine(store, settings, store_factory=lambda: SqliteStore(store.path), stop=stop)
    summary = engine.run(RunOptions(limit=args.limit, concurrency=args.concurrency,
                                    linger=args.linger))
    for problem in summary.problems:
        print(problem.line())
    return 1 if summary.needs_attention else 0


if __name__ == "__main__":
    from autopost.__main__ import leave

    leave(main(sys.argv[1:]))  # and ends the way the console script does
