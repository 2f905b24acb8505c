"""The bare-SQL ceiling: a run's writes for N due jobs, with no engine around them.

    python bench/_sql_ceiling.py DB GROUP

On a database prepared like the throughput bench's (same schema, same jobs), one thread
issues the statements a run must commit for every job, at WAL + synchronous=FULL, with
GROUP jobs per commit: claims of 100 jobs (the due scan, then the status change), and
pipelined turns where one commit carries the results of the GROUP jobs dispatched by the
previous commit and the dispatch marks (with their attempt rows) of the next GROUP. No
quota reads, no leases' heartbeat, no threads, no Python objects per job: what SQLite on
this disk can do for this schema, the figure the engine's jobs/s is a fraction of.
Prints one JSON line: {"jobs", "wall", "commits", "group"}.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from datetime import UTC, datetime, timedelta


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def main() -> None:
    db, group = sys.argv[1], int(sys.argv[2])
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    run = "ceiling00000"
    commits = 0
    jobs = 0
    t0 = time.perf_counter()

    def commit() -> None:
        nonlocal commits
        conn.execute("COMMIT")
        commits += 1

    while True:
        now = stamp(datetime.now(UTC))
        until = stamp(datetime.now(UTC) + timedelta(seconds=300))
        conn.execute("BEGIN IMMEDIATE")
        ids = [r[0] for r in conn.execute(
            "SELECT id FROM jobs WHERE status = 'pending' AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at LIMIT 100", (now,))]
        marks = ", ".join("?" for _ in ids)
        if ids:
            conn.execute(f"UPDATE jobs SET status = 'running', lease_owner = ?, "
                         f"lease_expires_at = ?, updated_at = ? WHERE id IN ({marks})",
                         (run, until, now, *ids))
        commit()
        if not ids:
            break
        in_flight: list[tuple[str, int]] = []
        for i in range(0, len(ids) + group, group):
            chunk = ids[i:i + group]
            now = stamp(datetime.now(UTC))
            conn.execute("BEGIN IMMEDIATE")
            if in_flight:
                conn.executemany(
                    "UPDATE jobs SET status = 'posted', next_attempt_at = NULL, "
                    "lease_owner = NULL, lease_expires_at = NULL, dispatched = 0, "
                    "platform_post_id = ?, posted_at = ?, updated_at = ? WHERE id = ?",
                    [(jid, now, now, jid) for jid, _ in in_flight])
                conn.executemany(
                    "UPDATE attempts SET finished_at = ?, outcome = 'posted', "
                    "platform_post_id = ?, decision = 'posted' WHERE job_id = ? AND number = ?",
                    [(now, jid, jid, n) for jid, n in in_flight])
                jobs += len(in_flight)
            in_flight = []
            if chunk:
                m = ", ".join("?" for _ in chunk)
                in_flight = [(r[0], r[1]) for r in conn.execute(
                    f"UPDATE jobs SET dispatched = 1, attempts = attempts + 1, updated_at = ? "
                    f"WHERE id IN ({m}) RETURNING id, attempts", (now, *chunk))]
                conn.executemany(
                    "INSERT INTO attempts (job_id, number, run_id, started_at) "
                    "VALUES (?, ?, ?, ?)", [(jid, n, run, now) for jid, n in in_flight])
            commit()
    wall = time.perf_counter() - t0
    conn.close()
    print(json.dumps({"jobs": jobs, "wall": wall, "commits": commits, "group": group}))


if __name__ == "__main__":
    main()
