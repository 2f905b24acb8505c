"""The idle tick on PostgreSQL: one read-only question and the idle-tick record.

The PostgreSQL twin of probe.py, on a bare psycopg connection (no store, no migration
check beyond the version). Due times are judged by the database's clock.
"""

from __future__ import annotations

import json
from typing import Any

# %(lead)s seconds: a job that falls due that soon counts as due already.
HAS_WORK = """
SELECT EXISTS (
    SELECT 1 FROM jobs j JOIN accounts a ON a.name = j.account
    WHERE j.status = 'pending' AND j.next_attempt_at <= now() + %(lead)s * interval '1 second'
      AND a.state = 'ok'
      AND (a.blocked_until IS NULL
           OR a.blocked_until <= now() + %(lead)s * interval '1 second')
      AND (a.paused_until IS NULL
           OR a.paused_until <= now() + %(lead)s * interval '1 second')
      AND (j.thread_part IS NULL OR j.thread_part <= 1 OR EXISTS (
          SELECT 1 FROM jobs p WHERE p.thread_id = j.thread_id
            AND p.thread_part = j.thread_part - 1 AND p.status = 'posted'))
) OR EXISTS (
    SELECT 1 FROM jobs WHERE status = 'running' AND lease_expires_at <= now()
) OR EXISTS (
    SELECT 1 FROM jobs WHERE status = 'unknown'
      AND next_attempt_at <= now() + %(lead)s * interval '1 second'
      AND (lease_owner IS NULL OR lease_expires_at <= now() + %(lead)s * interval '1 second')
) OR EXISTS (
    SELECT 1 FROM series WHERE status = 'active' AND next_extend_at <= now()
) AS work
"""


def has_work(conn: Any, lead: float = 0.0) -> bool:
    return bool(conn.execute(HAS_WORK, {"lead": lead}).fetchone()["work"])


def record_idle_tick(conn: Any, run_id: str, host: str, pid: int) -> None:
    """Idle ticks extend one run row per idle streak (the row is locked: two hosts
    ticking at once count both ticks)."""
    with conn.transaction():
        last = conn.execute(
            "SELECT id, counts FROM runs ORDER BY started_at DESC LIMIT 1 FOR UPDATE").fetchone()
        counts = json.loads(last["counts"]) if last else {}
        if last and set(counts) == {"idle_ticks"}:
            counts["idle_ticks"] += 1
            conn.execute("UPDATE runs SET finished_at = now(), counts = %s, host = %s, "
                         "pid = %s WHERE id = %s", (json.dumps(counts), host, pid, last["id"]))
        else:
            conn.execute(
                "INSERT INTO runs (id, started_at, finished_at, host, pid, counts) "
                "VALUES (%s, now(), now(), %s, %s, %s)",
                (run_id, host, pid, json.dumps({"idle_ticks": 1})))
