"""One run-due on a prepared database, timed around Engine.run only.

    python bench/_engine_run.py DB [--concurrency N] [--profile OUT]

Builds the engine the way `autopost run-due` does (settings from the environment and
the default config path, SqliteStore with WAL + synchronous=FULL, a store factory for
token refreshes), with the bench's platforms registered. Prints one JSON line: wall and
CPU seconds of the run, its counts, and what the database holds afterwards.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _adapters  # noqa: E402

from autopost.config import load_settings  # noqa: E402
from autopost.engine import Engine, RunOptions  # noqa: E402
from autopost.store.sqlite import SqliteStore  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("db")
    ap.add_argument("--concurrency", type=int)
    ap.add_argument("--profile")
    args = ap.parse_args()
    _adapters.register()
    settings = load_settings(None)
    store = SqliteStore(args.db)
    sync = store.conn.execute("PRAGMA synchronous").fetchone()[0]
    engine = Engine(store, settings, store_factory=lambda: SqliteStore(args.db))
    opts = RunOptions(concurrency=args.concurrency)
    c0, m0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
    if args.profile:
        import cProfile

        prof = cProfile.Profile()
        summary = prof.runcall(engine.run, opts)
        prof.dump_stats(args.profile)
    else:
        summary = engine.run(opts)
    wall = time.perf_counter() - t0
    cpu, main_cpu = time.process_time() - c0, time.thread_time() - m0
    store.close()
    conn = sqlite3.connect(args.db)
    statuses = dict(conn.execute("SELECT status, count(*) FROM jobs GROUP BY status"))
    attempts = conn.execute("SELECT count(*) FROM attempts WHERE outcome = 'posted'").fetchone()[0]
    conn.close()
    print(json.dumps({"wall": wall, "cpu": cpu, "main_cpu": main_cpu, "synchronous": sync,
                      "counts": summary.counts(), "statuses": statuses,
                      "posted_attempts": attempts, "problems": len(summary.problems)}))


if __name__ == "__main__":
    main()
