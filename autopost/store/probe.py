"""Read-only checks and the idle-tick record, on a bare sqlite3 connection.

This is the SQL of cron's commonest call (a run-due with nothing to do), kept free of
sqlite-utils so that call costs little more than starting Python.
"""

from __future__ import annotations

import json
import sqlite3

# :due is when a pending or unknown job counts as due (now, or a little later for a
# lingering tick that hands over early); expired leases are judged at :now.
HAS_WORK = """
SELECT EXISTS (
    SELECT 1 FROM jobs j JOIN accounts a ON a.name = j.account
    WHERE j.status = 'pending' AND j.next_attempt_at <= :due AND a.state = 'ok'
      AND (a.blocked_until IS NULL OR a.blocked_until <= :due)
      AND (a.paused_until IS NULL OR a.paused_until <= :due)
      AND (j.thread_part IS NULL OR j.thread_part <= 1 OR EXISTS (
          SELECT 1 FROM jobs p WHERE p.thread_id = j.thread_id
            AND p.thread_part = j.thread_part - 1 AND p.status = 'posted'))
) OR EXISTS (
    SELECT 1 FROM jobs WHERE status = 'running' AND lease_expires_at <= :now
) OR EXISTS (
    SELECT 1 FROM jobs WHERE status = 'unknown' AND next_attempt_at <= :due
      AND (lease_owner IS NULL OR lease_expires_at <= :due)
) OR EXISTS (
    SELECT 1 FROM series WHERE status = 'active' AND next_extend_at <= :now
)
"""


def schema_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def has_work(conn: sqlite3.Connection, now: str, due: str | None = None) -> bool:
    """Is anything due, expired or waiting for a reconcile at `now` (store time text)?
    With `due`, a job that falls due by then counts as due already."""
    return bool(conn.execute(HAS_WORK, {"now": now, "due": due or now}).fetchone()[0])


def record_idle_tick(conn: sqlite3.Connection, run_id: str, now: str, host: str,
                     pid: int) -> None:
    """Idle ticks extend one run row per idle streak instead of adding a row each minute."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        last = conn.execute(
            "SELECT id, counts FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()
        counts = json.loads(last[1]) if last else {}
        if last and set(counts) == {"idle_ticks"}:
            counts["idle_ticks"] += 1
            conn.execute("UPDATE runs SET finished_at = ?, counts = ?, host = ?, pid = ? "
                         "WHERE id = ?", (now, json.dumps(counts), host, pid, last[0]))
        else:
            conn.execute(
                "INSERT INTO runs (id, started_at, finished_at, host, pid, counts) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, now, now, host, pid, json.dumps({"idle_ticks": 1})))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
