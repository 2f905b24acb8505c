"""The SQLite Store, on the standard sqlite3 module (sqlite-utils only on request).

Every SQL string of the project lives in store/.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from autopost.errors import NotFound, UsageError
from autopost.ids import new_id
from autopost.models import (
    Account,
    Attempt,
    Job,
    JobEdit,
    JobFilter,
    JobStatus,
    NewJob,
    PostRef,
    Reply,
    Run,
)
from autopost.quota import DAY, HOUR, next_free_slot
from autopost.store import schedule
from autopost.store.base import (
    CANCELLABLE,
    LIVE,
    RETRYABLE,
    CancelOutcome,
    Claim,
    LimitsFor,
    Result,
    Store,
    duplicate_key,
    not_editable_reason,
)
from autopost.store.connect import open_connection, translate_errors
from autopost.store.rows import (
    Imported,
    account_from,
    account_row,
    added_jobs,
    attempt_from,
    batches,
    by_id,
    import_batch,
    inserted_job,
    job_from,
    jobs_query,
    loads,
    new_job_row,
    run_from,
    series_from,
    series_row,
)
from autopost.store.schema import migrate
from autopost.store.timefmt import from_db, to_db

_FINISHED = ("posted", "failed", "cancelled", "missed")
_CHUNK = 500  # ids per IN (...) list, well under SQLite's limit on parameters
_LIVE_SQL = ", ".join(f"'{s}'" for s in LIVE)


class SqliteStore(Store):
    def __init__(self, path: Path | str, *, busy_timeout: float | None = None,
                 create: bool = True):
        self.path = Path(path)
        self.location: Path | str = self.path
        self.conn = open_connection(self.path, busy_timeout=busy_timeout, create=create)
        self._db: Any = None
        with translate_errors(self.path):
            migrate(self.conn)

    def close(self) -> None:
        self.conn.close()

    @property
    def db(self) -> Any:
        """A sqlite_utils.Database on this connection, for callers that want one. Imported
        on first use: sqlite-utils (and numpy, which it loads when installed) costs
        ~140 ms and ~20 MB, and the store's own SQL does not need it."""
        if self._db is None:
            import sqlite_utils

            self._db = sqlite_utils.Database(self.conn)
        return self._db

    # -- plumbing --------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction that takes the write lock at BEGIN."""
        with translate_errors(self.path):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def _rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict]:
        """A read as dicts. Straight on the connection: sqlite-utils' query() wraps every
        statement in a SAVEPOINT (three statements per read), a third of a get_account."""
        with translate_errors(self.path):
            cur = self.conn.execute(sql, params)
            keys = _dedupe_keys([d[0] for d in cur.description])
            return [dict(zip(keys, row, strict=True)) for row in cur]

    # -- accounts --------------------------------------------------------------
    def add_account(self, account: Account, *, now: datetime, replace: bool = False) -> Account:
        row = account_row(account, now)
        with self._write() as c:
            exists = c.execute("SELECT 1 FROM accounts WHERE name = ?", (account.name,)).fetchone()
            if exists and not replace:
                raise UsageError(f"account {account.name!r} exists (use --update to replace it)")
            if exists:
                row.pop("created_at")
                sets = ", ".join(f"{k} = :{k}" for k in row if k != "name")
                c.execute(f"UPDATE accounts SET {sets} WHERE name = :name", row)
            else:
                cols = ", ".join(row)
                marks = ", ".join(f":{k}" for k in row)
                c.execute(f"INSERT INTO accounts ({cols}) VALUES ({marks})", row)
        return self.get_account(account.name)

    def get_account(self, name: str) -> Account:
        rows = self._rows("SELECT * FROM accounts WHERE name = ?", (name,))
        if not rows:
            raise NotFound(f"unknown account {name!r} (see 'autopost accounts list')")
        return account_from(rows[0])

    def list_accounts(self) -> list[Account]:
        return [account_from(r) for r in self._rows("SELECT * FROM accounts ORDER BY name")]

    def remove_account(self, name: str) -> None:
        with self._write() as c:
            if not c.execute("SELECT 1 FROM accounts WHERE name = ?", (name,)).fetchone():
                raise NotFound(f"unknown account {name!r} (see 'autopost accounts list')")
            busy = c.execute(
                "SELECT count(*) FROM jobs WHERE account = ? AND status IN "
                "('pending', 'running', 'unknown')", (name,)).fetchone()[0]
            if busy:
                raise UsageError(
                    f"account {name!r} still has {busy} pending, running or unknown job(s); "
                    "cancel or resolve them first")
            c.execute("DELETE FROM accounts WHERE name = ?", (name,))

    def save_credentials(self, name, credentials, token_expires_at, *, now):
        with self._write() as c:
            c.execute(
                "UPDATE accounts SET credentials = ?, token_expires_at = ?, updated_at = ? "
                "WHERE name = ?",
                (json.dumps(credentials), to_db(token_expires_at), to_db(now), name))

    def set_account_state(self, name, state, reason, *, now):
        with self._write() as c:
            cur = c.execute(
                "UPDATE accounts SET state = ?, state_reason = ?, updated_at = ? WHERE name = ?",
                (str(state), reason, to_db(now), name))
            if cur.rowcount == 0:
                raise NotFound(f"unknown account {name!r}")

    def pause_account(self, name, *, until, now):
        with self._write() as c:
            cur = c.execute(
                "UPDATE accounts SET paused_until = ?, resumed_at = ?, updated_at = ? "
                "WHERE name = ?", (to_db(until), to_db(until), to_db(now), name))
            if cur.rowcount == 0:
                raise NotFound(f"unknown account {name!r} (see 'autopost accounts list')")
        return self.get_account(name)

    def resume_account(self, name, *, now):
        with self._write() as c:
            cur = c.execute(
                "UPDATE accounts SET resumed_at = CASE WHEN paused_until > :now THEN :now "
                "ELSE resumed_at END, paused_until = NULL, updated_at = :now "
                "WHERE name = :name", {"now": to_db(now), "name": name})
            if cur.rowcount == 0:
                raise NotFound(f"unknown account {name!r} (see 'autopost accounts list')")
        return self.get_account(name)

    def acquire_refresh_lock(self, name, owner, *, now, ttl):
        with self._write() as c:
            cur = c.execute(
                "UPDATE accounts SET refresh_owner = ?, refresh_until = ? WHERE name = ? AND "
                "(refresh_owner IS NULL OR refresh_owner = ? OR refresh_until <= ?)",
                (owner, to_db(now + timedelta(seconds=ttl)), name, owner, to_db(now)))
            return cur.rowcount == 1

    def release_refresh_lock(self, name, owner):
        with self._write() as c:
            c.execute("UPDATE accounts SET refresh_owner = NULL, refresh_until = NULL "
                      "WHERE name = ? AND refresh_owner = ?", (name, owner))

    # -- jobs: management ------------------------------------------------------
    def add_jobs(self, jobs: Sequence[NewJob], *, now: datetime, update: bool = False,
                 duplicate_window: float | None = None) -> list[tuple[Job, bool]]:
        if not jobs:
            return []
        # 32 MB of page cache (allocated only as used) while a large batch goes in: it
        # touches the indexes at random, and the 2 MB default makes that several times
        # slower. Only here, so that a run's memory does not grow with the database.
        cache = None
        if len(jobs) > 1000:
            cache = self.conn.execute("PRAGMA cache_size").fetchone()[0]
            self.conn.execute("PRAGMA cache_size = -32000")
        try:
            for _ in range(5):
                try:
                    return self._add_jobs_once(jobs, now, update, duplicate_window)
                except sqlite3.IntegrityError as exc:
                    if "jobs.id" not in str(exc):
                        raise
            raise RuntimeError("could not find free job ids")  # pragma: no cover
        finally:
            if cache is not None:
                self.conn.execute(f"PRAGMA cache_size = {int(cache)}")

    def _add_jobs_once(self, jobs: Sequence[NewJob], now: datetime, update: bool,
                       window: float | None) -> list[tuple[Job, bool]]:
        stamp = to_db(now)
        out: list[tuple[str, bool]] = []
        rows: list[dict[str, Any]] = []
        seen: dict[tuple[str, str], str] = {}
        inserted: list[NewJob] = []
        # What this batch adds, for the checks: (account, text key) -> [(time, id)], and
        # account -> the times it takes.
        batch: dict[tuple[str, str | None], list[tuple[datetime, str]]] = {}
        times: dict[str, set[str]] = {}
        live: dict[tuple[str, str], list[tuple[str, str, str | None, str]]] | None = None
        with self._write() as c:
            existing = self._existing_keys(c, jobs)
            for job in jobs:
                pair = (job.account, job.key) if job.key is not None else None
                if pair is not None and pair in existing:
                    if update:
                        self._update_with(c, existing[pair], job, now, window)
                        live = None  # read again: that job's text or time changed
                    out.append((existing[pair], False))
                    continue
                if pair is not None and pair in seen:
                    out.append((seen[pair], False))
                    continue
                if job.slots:
                    job = replace(job, scheduled_at=_free_slot(
                        c, job, times.get(job.account, set())))
                row = new_job_row(job, new_id(), stamp)
                if window is not None:
                    if live is None:
                        live = _live_by_text(c, jobs)
                    pair_key = (job.account, row["text_key"])
                    _check_duplicate(c, job.account, row["text_key"], job.scheduled_at,
                                     window, batch=batch.get(pair_key),
                                     known=live.get(pair_key, []))
                if window is not None or job.slots:
                    batch.setdefault((job.account, row["text_key"]), []).append(
                        (job.scheduled_at, row["id"]))
                    times.setdefault(job.account, set()).add(row["scheduled_at"])
                if pair is not None:
                    seen[pair] = row["id"]
                rows.append(row)
                inserted.append(job)
                out.append((row["id"], True))
            if rows:
                cols = ", ".join(rows[0])
                marks = ", ".join(f":{k}" for k in rows[0])
                c.executemany(f"INSERT INTO jobs ({cols}) VALUES ({marks})", rows)
        # Large imports: the dataclasses built from what was inserted, not read back.
        return added_jobs(out, rows, inserted, from_db(stamp), self._jobs_by_ids)

    def import_jobs(self, jobs: Iterable[NewJob], *, now: datetime,
                    duplicate_window: float | None = None) -> Imported:
        stamp = to_db(now)
        window = duplicate_window
        out = Imported()
        seen: dict[tuple[str, str], str] = {}
        cache = self.conn.execute("PRAGMA cache_size").fetchone()[0]
        # 20 MB of page cache for the random index inserts (add_jobs takes 32 MB): at
        # 100,000 rows the indexes outgrow 8 MB and every insert rereads pages. The
        # answer is kept compactly (rows.Imported), which makes room for it under the
        # stream's peak memory goal (80 MB at 100,000 rows).
        self.conn.execute("PRAGMA cache_size = -20000")
        try:
            with self._write() as c:
                trigger: str | None = None  # the counter trigger's SQL, while it is off
                for batch in batches(jobs, _IMPORT_BATCH):
                    plan, rows, fresh = import_batch(
                        batch, stamp=stamp, t=to_db, existing=self._existing_keys(c, batch),
                        seen=seen, window=window,
                        live_by_text=lambda pairs: _live_by_pairs(c, pairs),
                        check_duplicate=lambda *a, **kw: _check_duplicate(c, *a, **kw))
                    if trigger is None and len(batch) == _IMPORT_BATCH:
                        trigger = _counter_off(c)  # a large import: count once per batch
                    if rows:
                        _free_ids(c, rows)
                        # Positional parameters: binding by name makes a string per
                        # column and row.
                        c.executemany(_insert_sql(rows[0], positional=True),
                                      [tuple(row.values()) for row in rows])
                        if trigger:
                            _count_inserted(c, rows)
                    out.add([rows[ref]["id"] if isinstance(ref, int) else ref for ref, _ in plan],
                            [created for _, created in plan])
                    seen.update((pair, rows[i]["id"]) for pair, i in fresh.items())
                if trigger:
                    c.execute(trigger)  # on again, as it was, before the commit
        finally:
            self.conn.execute(f"PRAGMA cache_size = {int(cache)}")
        return out

    def find_keys(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        return self._find_keys(self.conn, list(set(pairs)))

    def _existing_keys(self, c, jobs: Sequence[NewJob]) -> dict[tuple[str, str], str]:
        return self._find_keys(c, list({(j.account, j.key) for j in jobs if j.key is not None}))

    @staticmethod
    def _find_keys(c, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        found: dict[tuple[str, str], str] = {}
        for i in range(0, len(pairs), 400):
            chunk = pairs[i:i + 400]
            values = ", ".join("(?, ?)" for _ in chunk)
            params = [v for pair in chunk for v in pair]
            # One seek in the partial (account, key) index per pair: CROSS JOIN keeps the
            # pairs outside. (An OR of pairs, once an import has added many jobs to an
            # account, is planned as a walk through every job of the account per pair.)
            for jid, account, key in c.execute(
                    f"WITH p(a, k) AS (VALUES {values}) SELECT j.id, j.account, j.key "
                    "FROM p CROSS JOIN jobs j ON j.account = p.a AND j.key = p.k "
                    "WHERE j.key IS NOT NULL AND j.status <> 'cancelled'", params):
                found[(account, key)] = jid
        return found

    def _update_with(self, c, job_id: str, job: NewJob, now: datetime,
                     window: float | None) -> None:
        """`add --key K --update`: the job holding K takes what was given now."""
        current = self._job_in(c, job_id)
        if current.status == JobStatus.POSTED:
            return
        at = job.scheduled_at
        if job.slots:
            at = current.scheduled_at if current.scheduled_at in job.slots else \
                _free_slot(c, job, set(), exclude=job_id)
        self._apply_edit(c, current, schedule.as_update(job, at), now, window, verb="updated")

    def _with_replies(self, jobs: Sequence[Job]) -> dict[str, Job]:
        """Thread parts after the first, with `reply` set from the parts they reply to."""
        out: dict[str, Job] = {}
        for job in jobs:
            if job.thread_id is None or not job.thread_part or job.thread_part <= 1:
                continue
            rows = {r["thread_part"]: r for r in self._rows(
                "SELECT thread_part, platform_post_id, platform_url, ref FROM jobs "
                "WHERE thread_id = ? AND thread_part IN (1, ?) AND status = 'posted'",
                (job.thread_id, job.thread_part - 1))}
            if 1 not in rows or job.thread_part - 1 not in rows:
                continue  # cannot happen: the claim took it only after its parent posted

            def post(r: dict[str, Any]) -> PostRef:
                return PostRef(r["platform_post_id"] or "", r["platform_url"], loads(r["ref"]))

            out[job.id] = replace(job, reply=Reply(parent=post(rows[job.thread_part - 1]),
                                                   root=post(rows[1])))
        return out

    def _job_in(self, c, job_id: str) -> Job:
        cur = c.execute("SELECT * FROM jobs WHERE id = ?", (job_id,))
        keys = [d[0] for d in cur.description]
        row = cur.fetchone()
        if row is None:
            raise NotFound(f"unknown job {job_id!r} (see 'autopost list')")
        return job_from(dict(zip(keys, row, strict=True)))

    def _apply_edit(self, c, job: Job, edit: JobEdit, now: datetime, window: float | None,
                    *, verb: str = "edited") -> None:
        sets, note = schedule.planned_edit(job, edit, verb, to_db(now), to_db)
        guard = schedule.edit_guard(job, edit) if window is not None else None
        if guard is not None:
            _check_duplicate(c, job.account, *guard, window, exclude=job.id)
        assignments = ", ".join(f"{k} = :{k}" for k in sets)
        c.execute(f"UPDATE jobs SET {assignments} WHERE id = :id", {**sets, "id": job.id})
        _audit(c, job.id, job.attempts, None, now, verb, note)

    def edit_job(self, job_id: str, edit: JobEdit, *, now: datetime,
                 duplicate_window: float | None = None) -> Job:
        job = self.get_job(job_id)
        with self._write() as c:
            self._apply_edit(c, self._job_in(c, job.id), edit, now, duplicate_window)
        return self.get_job(job.id)

    def _jobs_by_ids(self, ids: Sequence[str]) -> list[Job]:
        result = []
        for i in range(0, len(ids), 500):
            chunk = list(ids[i:i + 500])
            marks = ", ".join("?" for _ in chunk)
            result += [job_from(r) for r in self._rows(
                f"SELECT * FROM jobs WHERE id IN ({marks})", chunk)]
        return result

    def get_job(self, job_id: str) -> Job:
        return job_from(by_id(self._rows, "?", "job", job_id))

    def list_jobs(self, flt: JobFilter) -> list[Job]:
        return [job_from(r) for r in self._rows(*jobs_query(flt, "?"))]

    def attempts_for(self, job_id: str) -> list[Attempt]:
        rows = self._rows("SELECT * FROM attempts WHERE job_id = ? ORDER BY id", (job_id,))
        return [attempt_from(r) for r in rows]

    def outcomes_in_a_row(self, job_id: str, outcome: str, *,
                          passing: Sequence[str] = ()) -> int:
        skip = ", ".join("?" for _ in (outcome, *passing))
        return self.conn.execute(
            "SELECT count(*) FROM attempts WHERE job_id = ? AND outcome = ? AND id > "
            "coalesce((SELECT max(id) FROM attempts WHERE job_id = ? AND finished_at IS NOT "
            f"NULL AND coalesce(outcome, '') NOT IN ({skip})), 0)",
            (job_id, outcome, job_id, outcome, *passing)).fetchone()[0]

    def cancel_job(self, job_id: str, *, now: datetime) -> CancelOutcome:
        job = self.get_job(job_id)
        with self._write() as c:
            cur = c.execute(
                "UPDATE jobs SET status = 'cancelled', next_attempt_at = NULL, updated_at = ? "
                "WHERE id = ? AND status IN ('pending', 'failed', 'missed')", (to_db(now), job.id))
            if cur.rowcount:
                _audit(c, job.id, job.attempts, None, now, "cancelled", "cancelled by operator")
                for later in _later_parts(c, job.id, CANCELLABLE):
                    c.execute("UPDATE jobs SET status = 'cancelled', next_attempt_at = NULL, "
                              "updated_at = ? WHERE id = ?", (to_db(now), later))
                    _audit(c, later, 0, None, now, "cancelled",
                           f"cancelled with part {job.thread_part} of its thread ({job.id})")
        return schedule.cancel_outcome(self.get_job(job.id), bool(cur.rowcount))

    def retry_job(self, job_id: str, *, now: datetime, at: datetime | None = None,
                  force: bool = False) -> Job:
        job = self.get_job(job_id)
        with self._write() as c:
            # Read inside the write transaction: no run changes the job meanwhile.
            current = self._job_in(c, job.id)
            if not _retry_one(c, current, now, at, force=force):
                raise UsageError(
                    f"job {job.id} is {current.status}; only failed, missed or cancelled "
                    "jobs can be retried")
            # A thread goes on from the part retried: the parts after it come back too.
            for later in _later_parts(c, job.id, RETRYABLE):
                _retry_one(c, self._job_in(c, later), now, at)
        return self.get_job(job.id)

    def _matching(self, c, account: str | None, statuses: Sequence[JobStatus],
                  allowed: Sequence[JobStatus]) -> list[Job]:
        wanted = [JobStatus(s) for s in statuses if s in allowed]
        if not wanted:
            return []
        # One equality per status (an IN list does not qualify for the partial index).
        sql = " UNION ALL ".join(f"SELECT * FROM jobs WHERE status = '{s}'" +
                                 ("" if account is None else " AND account = :account")
                                 for s in dict.fromkeys(wanted))
        cur = c.execute(f"SELECT * FROM ({sql}) ORDER BY scheduled_at, id",
                        {"account": account})
        keys = [d[0] for d in cur.description]
        return [job_from(dict(zip(keys, r, strict=True))) for r in cur.fetchall()]

    def cancel_jobs(self, *, account, statuses, now) -> list[Job]:
        with self._write() as c:
            jobs = self._matching(c, account, statuses, CANCELLABLE)
            c.executemany(
                "UPDATE jobs SET status = 'cancelled', next_attempt_at = NULL, updated_at = ? "
                "WHERE id = ?", [(to_db(now), j.id) for j in jobs])
            for job in jobs:
                _audit(c, job.id, job.attempts, None, now, "cancelled", "cancelled by operator")
        return self._jobs_by_ids([j.id for j in jobs])

    def retry_jobs(self, *, account, statuses, now, at=None) -> list[Job]:
        with self._write() as c:
            jobs = self._matching(c, account, statuses, RETRYABLE)
            for job in jobs:
                _retry_one(c, job, now, at)
        fresh = {j.id: j for j in self._jobs_by_ids([j.id for j in jobs])}
        return [fresh[j.id] for j in jobs]

    def resolve_job(self, job_id: str, *, posted_url: str | None, now: datetime) -> Job:
        job = self.get_job(job_id)
        with self._write() as c:
            if posted_url is not None:
                cur = c.execute(
                    "UPDATE jobs SET status = 'posted', platform_url = ?, posted_at = ?, "
                    "next_attempt_at = NULL, lease_owner = NULL, lease_expires_at = NULL, "
                    "updated_at = ? WHERE id = ? AND status = 'unknown' AND "
                    "(lease_owner IS NULL OR lease_expires_at <= ?)",
                    (posted_url, to_db(now), to_db(now), job.id, to_db(now)))
                decision = f"operator: posted at {posted_url}"
            else:
                cur = c.execute(
                    "UPDATE jobs SET status = 'pending', next_attempt_at = ?, lease_owner = NULL, "
                    "lease_expires_at = NULL, dispatched = 0, "
                    "max_attempts = max(max_attempts, attempts + 1), updated_at = ? "
                    "WHERE id = ? AND status = 'unknown' AND "
                    "(lease_owner IS NULL OR lease_expires_at <= ?)",
                    (to_db(now), to_db(now), job.id, to_db(now)))
                decision = "operator: not posted; will be sent again"
            if cur.rowcount == 0:
                now_row = c.execute("SELECT status, lease_owner FROM jobs WHERE id = ?",
                                    (job.id,)).fetchone()
                if now_row[0] == "unknown":
                    raise UsageError(f"job {job.id} is being reconciled by run {now_row[1]}; "
                                     "try again when that run has finished")
                raise UsageError(f"job {job.id} is {now_row[0]}, not unknown; nothing to resolve")
            _audit(c, job.id, job.attempts, None, now, "resolved", decision)
        return self.get_job(job.id)

    def count_by_status(self) -> dict[JobStatus, int]:
        # Kept by triggers (schema migration 4): a few rows, however many jobs there are.
        rows = self._rows("SELECT status, n FROM job_counts")
        counts = {s: 0 for s in JobStatus}
        for r in rows:
            counts[JobStatus(r["status"])] = r["n"]
        return counts

    def count_by_account_status(self) -> dict[tuple[str, str], int]:
        rows = self._rows("SELECT account, status, count(*) AS n FROM jobs "
                          "GROUP BY account, status")
        return {(r["account"], r["status"]): r["n"] for r in rows}

    def count_attempts(self) -> dict[tuple[str, str], int]:
        rows = self._rows("SELECT outcome, coalesce(error_kind, '') AS kind, count(*) AS n "
                          "FROM attempts WHERE outcome IS NOT NULL GROUP BY outcome, kind")
        return {(r["outcome"], r["kind"]): r["n"] for r in rows}

    def quota_usage(self, account: str, *, now: datetime) -> tuple[int, int]:
        stamps = _usage(self.conn, account, now)
        hour = sum(1 for t in stamps if t > now - HOUR)
        return hour, len(stamps)

    def quota_times(self, account: str, *, now: datetime) -> list[datetime]:
        return sorted(_usage(self.conn, account, now))

    def prune(self, *, before: datetime, dry_run: bool = False) -> tuple[int, int]:
        cutoff = to_db(before)
        if dry_run:
            jobs = self.conn.execute(
                "SELECT count(*) FROM jobs WHERE status IN ('posted', 'failed', 'cancelled', "
                "'missed') AND updated_at < ?", (cutoff,)).fetchone()[0]
            runs = self.conn.execute("SELECT count(*) FROM runs WHERE started_at < ?",
                                     (cutoff,)).fetchone()[0]
            return jobs, runs
        with self._write() as c:
            c.execute(
                "DELETE FROM attempts WHERE job_id IN (SELECT id FROM jobs WHERE status IN "
                "('posted', 'failed', 'cancelled', 'missed') AND updated_at < ?)", (cutoff,))
            jobs = c.execute(
                "DELETE FROM jobs WHERE status IN ('posted', 'failed', 'cancelled', 'missed') "
                "AND updated_at < ?", (cutoff,)).rowcount
            runs = c.execute("DELETE FROM runs WHERE started_at < ?", (cutoff,)).rowcount
        return jobs, runs

    # -- recurring series ---------------------------------------------------------
    def add_series(self, series, jobs, *, now, duplicate_window=None):
        stamp = to_db(now)
        row = series_row(series, stamp)
        with self._write() as c:
            c.execute(f"INSERT INTO series ({', '.join(row)}) VALUES "
                      f"({', '.join(':' + k for k in row)})", row)
            made = self._insert_occurrences(c, jobs, now, duplicate_window)
        return self.get_series(series.id), made

    def _insert_occurrences(self, c, jobs: Sequence[NewJob], now: datetime,
                            window: float | None) -> list[Job]:
        stamp = to_db(now)
        rows = []
        for job in jobs:
            row = new_job_row(job, new_id(), stamp)
            if window is not None:
                _check_duplicate(c, job.account, row["text_key"], job.scheduled_at, window)
            rows.append(row)
        if rows:
            cols = ", ".join(rows[0])
            marks = ", ".join(f":{k}" for k in rows[0])
            c.executemany(f"INSERT INTO jobs ({cols}) VALUES ({marks})", rows)
        return [inserted_job(r, j, from_db(stamp)) for r, j in zip(rows, jobs, strict=True)]

    def get_series(self, series_id):
        return series_from(by_id(self._rows, "?", "series", series_id))

    def list_series(self, *, active_only=False):
        sql = "SELECT * FROM series"
        if active_only:
            sql += " WHERE status = 'active'"
        return [series_from(r) for r in self._rows(sql + " ORDER BY created_at, id")]

    def series_to_extend(self, *, now):
        return [series_from(r) for r in self._rows(
            "SELECT * FROM series WHERE status = 'active' AND next_extend_at <= ? "
            "ORDER BY next_extend_at", (to_db(now),))]

    def extend_series(self, series_id, jobs, *, expected_made, made, through,
                      next_extend_at, done, now):
        with self._write() as c:
            cur = c.execute(
                "UPDATE series SET made = ?, through = ?, next_extend_at = ?, status = ?, "
                "updated_at = ? WHERE id = ? AND status = 'active' AND made = ?",
                (made, to_db(through), to_db(next_extend_at), "done" if done else "active",
                 to_db(now), series_id, expected_made))
            if cur.rowcount == 0:
                return False
            # Occurrences are ordinary jobs; the guard was applied when the series was
            # added (its own occurrences never repeat each other within a day).
            self._insert_occurrences(c, jobs, now, None)
        return True

    def cancel_series(self, series_id, *, now):
        series = self.get_series(series_id)
        with self._write() as c:
            c.execute("UPDATE series SET status = 'cancelled', next_extend_at = NULL, "
                      "updated_at = ? WHERE id = ?", (to_db(now), series.id))
            jobs = [j for j in self._occurrences(c, series.id) if j.status in CANCELLABLE]
            c.executemany("UPDATE jobs SET status = 'cancelled', next_attempt_at = NULL, "
                          "updated_at = ? WHERE id = ?", [(to_db(now), j.id) for j in jobs])
            for job in jobs:
                _audit(c, job.id, job.attempts, None, now, "cancelled",
                       f"series {series.id} cancelled by operator")
        return self.get_series(series.id), self._in_order([j.id for j in jobs])

    def edit_series(self, series_id, edit, *, now):
        if edit.scheduled_at is not None:
            raise UsageError("a series' times come from its rule; cancel it and add a new "
                             "one to change them")
        series = self.get_series(series_id)
        sets = schedule.series_sets(edit, to_db(now))
        with self._write() as c:
            c.execute(f"UPDATE series SET {', '.join(f'{k} = :{k}' for k in sets)} "
                      "WHERE id = :id", {**sets, "id": series.id})
            changed = []
            for job in self._occurrences(c, series.id):
                if not_editable_reason(job) is None:
                    self._apply_edit(c, job, edit, now, None, verb="edited")
                    changed.append(job.id)
        return self.get_series(series.id), self._in_order(changed)

    def _in_order(self, ids: Sequence[str]) -> list[Job]:
        return sorted(self._jobs_by_ids(ids), key=lambda j: (j.series_n or 0, j.id))

    def _occurrences(self, c, series_id: str) -> list[Job]:
        cur = c.execute("SELECT * FROM jobs WHERE series_id = ? ORDER BY series_n",
                        (series_id,))
        keys = [d[0] for d in cur.description]
        return [job_from(dict(zip(keys, r, strict=True))) for r in cur.fetchall()]

    # -- jobs: the engine --------------------------------------------------------
    def rescue_expired(self, run_id: str, *, now: datetime) -> list[Job]:
        stamp = to_db(now)
        with self._write() as c:
            rows = c.execute(
                "SELECT id, dispatched, attempts, lease_owner FROM jobs "
                "WHERE status = 'running' AND lease_expires_at <= ?", (stamp,)).fetchall()
            ids = []
            for jid, dispatched, attempts, owner in rows:
                ids.append(jid)
                if dispatched:
                    # The lease owner stays: if that run is alive after all, its result
                    # still applies until a reconcile takes the job over.
                    c.execute(
                        "UPDATE jobs SET status = 'unknown', next_attempt_at = ?, "
                        "last_error = 'the run publishing it stopped before recording the "
                        "outcome', last_error_kind = 'ambiguous', updated_at = ? WHERE id = ?",
                        (stamp, stamp, jid))
                    c.execute(
                        "UPDATE attempts SET finished_at = ?, outcome = 'lost', "
                        "error_kind = 'ambiguous', decision = ? WHERE job_id = ? AND number = ? "
                        "AND finished_at IS NULL",
                        (stamp, f"lease of run {owner} expired; reconcile before any retry",
                         jid, attempts))
                else:
                    c.execute(
                        "UPDATE jobs SET status = 'pending', lease_owner = NULL, "
                        "lease_expires_at = NULL, updated_at = ? WHERE id = ?", (stamp, jid))
        return self._jobs_by_ids(ids)

    def mark_missed(self, *, now: datetime, window: float) -> list[Job]:
        if window <= 0:
            return []
        cutoff = to_db(now - timedelta(seconds=window))
        with self._write() as c:
            # A paused account's jobs are never missed; after a pause the window counts
            # from the resume.
            ids = [r[0] for r in c.execute(
                "SELECT j.id FROM jobs j JOIN accounts a ON a.name = j.account "
                "WHERE j.status = 'pending' AND j.next_attempt_at < :cutoff "
                "AND j.attempts = 0 AND a.state = 'ok' "
                "AND (j.thread_part IS NULL OR j.thread_part <= 1) "
                "AND (a.paused_until IS NULL OR a.paused_until <= :now) "
                "AND (a.resumed_at IS NULL OR a.resumed_at < :cutoff)",
                {"cutoff": cutoff, "now": to_db(now)})]
            for jid in ids:
                c.execute(
                    "UPDATE jobs SET status = 'missed', last_error = ?, updated_at = ? "
                    "WHERE id = ?",
                    (f"not started within the catch-up window ({int(window)} s)",
                     to_db(now), jid))
                _audit(c, jid, 0, None, now, "missed",
                       "no run started it in time; 'autopost retry' sends it anyway")
        return self._jobs_by_ids(ids)

    def claim_unknown(self, run_id: str, *, now: datetime, lease: float, limit: int) -> list[Job]:
        stamp = to_db(now)
        with self._write() as c:
            cur = c.execute(
                "UPDATE jobs SET lease_owner = ?, lease_expires_at = ?, updated_at = ? "
                "WHERE id IN (SELECT id FROM jobs WHERE status = 'unknown' AND "
                "next_attempt_at <= ? AND (lease_owner IS NULL OR lease_expires_at <= ?) "
                "ORDER BY next_attempt_at LIMIT ?) RETURNING *",
                (run_id, to_db(now + timedelta(seconds=lease)), stamp, stamp, stamp, limit))
            cols = [d[0] for d in cur.description]
            rows = cur.fetchall()
            # A resend that a dead run started and never recorded: its outcome is as
            # unknown as the job's.
            c.executemany(
                "UPDATE attempts SET finished_at = ?, outcome = 'lost', error_kind = 'ambiguous', "
                "decision = 'the run stopped before recording the outcome' "
                "WHERE job_id = ? AND finished_at IS NULL",
                [(stamp, r[cols.index("id")]) for r in rows])
        jobs = [job_from(dict(zip(cols, r, strict=True))) for r in rows]
        # A thread part resent by its reconcile is still a reply to the part before it.
        replies = self._with_replies(jobs)
        return [replies.get(j.id, j) for j in jobs]

    def claim(self, run_id, *, now, lease, limit, per_account, limits_for: LimitsFor) -> Claim:
        stamp = to_db(now)
        chosen: list[str] = []
        deferred: list[tuple[str, datetime]] = []
        with self._write() as c:
            c.row_factory = sqlite3.Row
            try:
                candidates = c.execute(
                    "SELECT j.id, j.account, j.attempts FROM jobs j "
                    "JOIN accounts a ON a.name = j.account "
                    "WHERE j.status = 'pending' AND j.next_attempt_at <= ? "
                    "AND a.state = 'ok' AND (a.blocked_until IS NULL OR a.blocked_until <= ?) "
                    "AND (a.paused_until IS NULL OR a.paused_until <= ?) "
                    f"AND {_THREAD_READY} "
                    "AND j.account NOT IN (SELECT account FROM jobs WHERE status = 'running') "
                    "ORDER BY j.next_attempt_at, j.scheduled_at, j.id LIMIT ?",
                    (stamp, stamp, stamp, max(limit * 4, 64))).fetchall()
                limits: dict[str, tuple[int | None, int | None]] = {}
                usage: dict[str, list[datetime]] = {}
                taken: dict[str, int] = {}
                accounts = self._accounts_named(c, {row["account"] for row in candidates})
                for row in candidates:
                    if len(chosen) >= limit:
                        break
                    name = row["account"]
                    if name not in limits:
                        limits[name] = limits_for(accounts[name])
                        # The day's post times are read only for an account with a limit.
                        if limits[name] != (None, None):
                            usage[name] = _usage(c, name, now)
                        taken[name] = 0
                    if taken[name] >= per_account:
                        continue
                    if name in usage:
                        hourly, daily = limits[name]
                        slot = next_free_slot(usage[name], now, hourly=hourly, daily=daily)
                        if slot is not None:
                            deferred.append((row["id"], slot))
                            continue
                        usage[name].append(now)
                    taken[name] += 1
                    chosen.append(row["id"])
            finally:
                c.row_factory = None
            until = to_db(now + timedelta(seconds=lease))
            # The claimed rows come back from the UPDATE itself: no second read.
            jobs = {j.id: j for j in _update_returning(
                c, "UPDATE jobs SET status = 'running', lease_owner = ?, lease_expires_at = ?, "
                   "dispatched = 0, updated_at = ? WHERE id IN ({ids}) RETURNING *",
                (run_id, until, stamp), chosen)}
            for jid, slot in deferred:
                c.execute("UPDATE jobs SET next_attempt_at = ?, updated_at = ? WHERE id = ?",
                          (to_db(slot), stamp, jid))
                n = c.execute("SELECT attempts FROM jobs WHERE id = ?", (jid,)).fetchone()[0]
                _audit(c, jid, n, run_id, now, "deferred",
                       f"account quota reached; deferred to {to_db(slot)}")
        if deferred:
            jobs.update({j.id: j for j in self._jobs_by_ids([j for j, _ in deferred])})
        jobs.update(self._with_replies([jobs[j] for j in chosen]))
        return Claim(jobs=[jobs[j] for j in chosen],
                     deferred=[(jobs[j], slot) for j, slot in deferred],
                     accounts={jobs[j].account: accounts[jobs[j].account] for j in chosen})

    @staticmethod
    def _accounts_named(c, names: set[str]) -> dict[str, Account]:
        out: dict[str, Account] = {}
        names_list = sorted(names)
        for i in range(0, len(names_list), 500):
            chunk = names_list[i:i + 500]
            marks = ", ".join("?" for _ in chunk)
            for row in c.execute(f"SELECT * FROM accounts WHERE name IN ({marks})", chunk):
                out[row["name"]] = account_from(dict(row))
        return out

    def dispatch(self, job_ids, run_id, *, now, lease=None):
        with self._write() as c:
            return _dispatch(c, job_ids, run_id, now, lease)

    def record(self, results: Sequence[Result]) -> list[bool]:
        with self._write() as c:
            return _record_all(c, results)

    def dispatch_and_record(self, job_ids, results, run_id, *, now, lease=None):
        # One transaction, so one fsync'd commit where dispatch() + record() took two.
        with self._write() as c:
            numbers = _dispatch(c, job_ids, run_id, now, lease) if job_ids else {}
            applied = _record_all(c, results)
        return numbers, applied

    def release(self, job_ids, run_id, *, now):
        n = 0
        with self._write() as c:
            for jid in job_ids:
                n += c.execute(
                    "UPDATE jobs SET status = 'pending', lease_owner = NULL, "
                    "lease_expires_at = NULL, updated_at = ?, next_attempt_at = max("
                    "next_attempt_at, coalesce((SELECT blocked_until FROM accounts "
                    "WHERE name = jobs.account), '')) WHERE id = ? AND lease_owner = ? "
                    "AND status = 'running' AND dispatched = 0",
                    (to_db(now), jid, run_id)).rowcount
        return n

    def save_ref(self, job_id, run_id, ref, *, now, lease=None):
        with self._write() as c:
            until = None if lease is None else to_db(now + timedelta(seconds=lease))
            cur = c.execute(
                "UPDATE jobs SET ref = ?, updated_at = ?, "
                "lease_expires_at = coalesce(?, lease_expires_at) "
                "WHERE id = ? AND lease_owner = ?",
                (json.dumps(ref), to_db(now), until, job_id, run_id))
            if cur.rowcount == 0:
                raise UsageError(f"job {job_id}: lease lost while saving its reference")

    def due_jobs(self, *, now: datetime, limit: int | None) -> list[Job]:
        stamp = to_db(now)
        rows = self._rows(
            "SELECT j.* FROM jobs j JOIN accounts a ON a.name = j.account "
            "WHERE j.status = 'pending' AND j.next_attempt_at <= ? AND a.state = 'ok' "
            "AND (a.blocked_until IS NULL OR a.blocked_until <= ?) "
            "AND (a.paused_until IS NULL OR a.paused_until <= ?) "
            f"AND {_THREAD_READY} "
            "ORDER BY j.next_attempt_at, j.scheduled_at, j.id LIMIT ?",
            (stamp, stamp, stamp, -1 if limit is None else limit))
        return [job_from(r) for r in rows]

    def next_due_at(self, *, now: datetime) -> datetime | None:
        stamp = to_db(now)
        rows = self._rows(
            "SELECT min(j.next_attempt_at) AS t FROM jobs j JOIN accounts a ON a.name = j.account "
            "WHERE j.status = 'pending' AND a.state = 'ok' "
            "AND (a.blocked_until IS NULL OR a.blocked_until <= ?) "
            "AND (a.paused_until IS NULL OR a.paused_until <= ?) "
            f"AND {_THREAD_READY}", (stamp, stamp))
        due = from_db(rows[0]["t"]) if rows else None
        blocked = self._rows(
            "SELECT min(max(coalesce(blocked_until, ''), coalesce(paused_until, ''))) AS t "
            "FROM accounts WHERE state = 'ok' AND (blocked_until > :now OR paused_until > :now) "
            "AND name IN (SELECT account FROM jobs WHERE status = 'pending')", {"now": stamp})
        unblock = from_db(blocked[0]["t"]) if blocked else None
        unknown = self._rows(
            "SELECT min(next_attempt_at) AS t FROM jobs WHERE status = 'unknown'")
        recheck = from_db(unknown[0]["t"]) if unknown else None
        times = [t for t in (due, unblock, recheck) if t is not None]
        return min(times) if times else None

    # -- runs --------------------------------------------------------------------
    def start_run(self, run: Run) -> None:
        with self._write() as c:
            c.execute("INSERT INTO runs (id, started_at, host, pid, counts) VALUES (?, ?, ?, ?, ?)",
                      (run.id, to_db(run.started_at), run.host, run.pid, json.dumps(run.counts)))

    def finish_run(self, run_id, *, now, counts):
        with self._write() as c:
            c.execute("UPDATE runs SET finished_at = ?, counts = ? WHERE id = ?",
                      (to_db(now), json.dumps(counts), run_id))

    def last_run(self) -> Run | None:
        rows = self._rows("SELECT * FROM runs ORDER BY started_at DESC LIMIT 1")
        if not rows:
            return None
        return run_from(rows[0])


# -- helpers (module level: they take a cursor, hold no state) --------------------

def _dedupe_keys(keys: list[str]) -> list[str]:
    """Column names made unique the way sqlite-utils does: later duplicates get _2, _3..."""
    taken = set(keys)
    if len(taken) == len(keys):
        return keys
    seen: set[str] = set()
    out = []
    for key in keys:
        if key in seen:
            new, n = key, 2
            while new in seen or new in taken:
                new, n = f"{key}_{n}", n + 1
            key = new
        seen.add(key)
        out.append(key)
    return out


def _usage(c, account: str, now: datetime) -> list[datetime]:
    """Times of posts in the last day for quota, with in-flight jobs counted as now."""
    since = to_db(now - DAY)
    # The unary plus keeps a term from choosing the index: the day's posts come from
    # jobs_posted with the account checked in its entries, the jobs in flight from
    # jobs_due's, instead of every job of the account (jobs_text) or of the status.
    stamps = [from_db(r[0]) for r in c.execute(
        "SELECT posted_at FROM jobs WHERE posted_at > ? AND +account = ? "
        "AND +status = 'posted'", (since, account))]
    inflight = c.execute(
        "SELECT (SELECT count(*) FROM jobs WHERE status = 'running' AND +account = :a) + "
        "(SELECT count(*) FROM jobs WHERE status = 'unknown' AND +account = :a)",
        {"a": account}).fetchone()[0]
    return sorted(stamps) + [now] * inflight


def _dispatch(c, job_ids: Sequence[str], run_id: str, now: datetime,
              lease: float | None) -> dict[str, int]:
    stamp = to_db(now)
    if lease is not None:
        # A heartbeat: the run is alive, so the jobs it holds keep their leases.
        until = to_db(now + timedelta(seconds=lease))
        for status in ("running", "unknown"):  # each through jobs_due
            c.execute(f"UPDATE jobs SET lease_expires_at = ? WHERE status = '{status}' "
                      "AND lease_owner = ?", (until, run_id))
    if not job_ids:
        return {}
    # Only under a live lease: a run that lost it never reaches the platform. A running
    # job spends an attempt; an unknown one is being settled by a resend, which is not
    # an attempt (its row carries the attempt it settles). One statement for the marks.
    marked: dict[str, tuple[int, str]] = {}
    for i in range(0, len(job_ids), _CHUNK):
        chunk = list(job_ids[i:i + _CHUNK])
        marks = ", ".join("?" for _ in chunk)
        for jid, attempts, status in c.execute(
                "UPDATE jobs SET dispatched = 1, updated_at = ?, "
                f"attempts = attempts + (status = 'running') WHERE id IN ({marks}) "
                "AND lease_owner = ? AND lease_expires_at > ? "
                "AND status IN ('running', 'unknown') RETURNING id, attempts, status",
                (stamp, *chunk, run_id, stamp)):
            marked[jid] = (attempts, status)
    numbers = {jid: marked[jid][0] for jid in job_ids if jid in marked}
    c.executemany(
        "INSERT INTO attempts (job_id, number, run_id, started_at, decision) "
        "VALUES (?, ?, ?, ?, ?)",
        [(jid, n, run_id, stamp,
          "resent to settle an unknown outcome" if marked[jid][1] == "unknown" else None)
         for jid, n in numbers.items()])
    return numbers


def _update_returning(c, sql: str, params: tuple, ids: Sequence[str]) -> list[Job]:
    """An UPDATE ... WHERE id IN ({ids}) ... RETURNING *, in chunks, as jobs."""
    out: list[Job] = []
    for i in range(0, len(ids), _CHUNK):
        chunk = list(ids[i:i + _CHUNK])
        cur = c.execute(sql.format(ids=", ".join("?" for _ in chunk)), (*params, *chunk))
        keys = [d[0] for d in cur.description]
        out += [job_from(dict(zip(keys, r, strict=True))) for r in cur.fetchall()]
    return out


_RECORD_JOB = (
    "UPDATE jobs SET status = ?, next_attempt_at = ?, lease_owner = NULL, "
    "lease_expires_at = NULL, dispatched = 0, last_error = ?, last_error_kind = ?, "
    "platform_post_id = coalesce(?, platform_post_id), "
    "platform_url = coalesce(?, platform_url), posted_at = coalesce(?, posted_at), "
    "updated_at = ? WHERE id = ?")
_CLOSE_ATTEMPT = (
    "UPDATE attempts SET finished_at = ?, outcome = ?, error_kind = ?, http_status = ?, "
    "message = ?, platform_post_id = ?, decision = ? WHERE job_id = ? AND number = ? "
    "AND finished_at IS NULL")
_ADD_ATTEMPT = (
    "INSERT INTO attempts (finished_at, outcome, error_kind, http_status, message, "
    "platform_post_id, decision, job_id, number, run_id, started_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def _record_all(c, results: Sequence[Result]) -> list[bool]:
    """Results in a few statements, whatever their number: one read of which jobs this
    run still holds (inside the write transaction, so nothing changes them meanwhile),
    then the jobs and the attempt rows each with one executemany. The rare account-wide
    consequences follow, result by result. Which results apply is as if each were
    recorded on its own, in order."""
    if not results:
        return []
    ids = [res.job_id for res in results]
    # The same job twice: only one-by-one keeps the order. A single result: one UPDATE
    # that checks the lease itself, instead of a read and then the UPDATE (at
    # concurrency 1 every commit carries one result).
    if len(ids) == 1 or len(set(ids)) != len(ids):
        return [_record_one(c, res) for res in results]
    held: dict[str, tuple[int, str]] = {}
    by_run: dict[str, list[str]] = {}
    for res in results:
        by_run.setdefault(res.run_id, []).append(res.job_id)
    for run_id, run_ids in by_run.items():
        for i in range(0, len(run_ids), _CHUNK):
            chunk = run_ids[i:i + _CHUNK]
            marks = ", ".join("?" for _ in chunk)
            for jid, attempts, account in c.execute(
                    f"SELECT id, attempts, account FROM jobs WHERE id IN ({marks}) "
                    "AND lease_owner = ? AND status IN ('running', 'unknown')",
                    (*chunk, run_id)):
                held[jid] = (attempts, account)
    jobs, closes, adds = [], [], []
    for res in results:
        if res.job_id not in held:
            continue
        stamp = to_db(res.finished_at)
        posted = res.status == JobStatus.POSTED
        jobs.append((str(res.status), to_db(res.next_attempt_at),
                     None if posted else res.message,
                     str(res.error_kind) if res.error_kind and not posted else None,
                     res.platform_post_id, res.platform_url, stamp if posted else None,
                     stamp, res.job_id))
        values = (stamp, res.outcome, str(res.error_kind) if res.error_kind else None,
                  res.http_status, res.message, res.platform_post_id, res.decision,
                  res.job_id, held[res.job_id][0])
        if res.closes_attempt:
            closes.append(values)
        else:
            adds.append((*values, res.run_id, stamp))
    c.executemany(_RECORD_JOB, jobs)
    if closes:
        c.executemany(_CLOSE_ATTEMPT, closes)
    if adds:
        c.executemany(_ADD_ATTEMPT, adds)
    for res in results:
        if res.job_id in held:
            _consequences(c, res, held[res.job_id][1])
    return [jid in held for jid in ids]


def _record_one(c, res: Result) -> bool:
    stamp = to_db(res.finished_at)
    posted_at = stamp if res.status == JobStatus.POSTED else None
    row = c.execute(
        "UPDATE jobs SET status = ?, next_attempt_at = ?, lease_owner = NULL, "
        "lease_expires_at = NULL, dispatched = 0, last_error = ?, last_error_kind = ?, "
        "platform_post_id = coalesce(?, platform_post_id), "
        "platform_url = coalesce(?, platform_url), posted_at = coalesce(?, posted_at), "
        "updated_at = ? WHERE id = ? AND lease_owner = ? AND status IN ('running', 'unknown') "
        "RETURNING attempts, account",
        (str(res.status), to_db(res.next_attempt_at),
         res.message if res.status != JobStatus.POSTED else None,
         str(res.error_kind) if res.error_kind and res.status != JobStatus.POSTED else None,
         res.platform_post_id, res.platform_url, posted_at, stamp, res.job_id,
         res.run_id)).fetchone()
    if row is None:
        return False  # the lease is not ours (any more)
    attempts, account = row
    values = (stamp, res.outcome, str(res.error_kind) if res.error_kind else None,
              res.http_status, res.message, res.platform_post_id, res.decision,
              res.job_id, attempts)
    if res.closes_attempt:
        c.execute(_CLOSE_ATTEMPT, values)
    else:
        c.execute(_ADD_ATTEMPT, (*values, res.run_id, stamp))
    _consequences(c, res, account)
    return True


def _consequences(c, res: Result, account: str) -> None:
    """What a recorded result does beyond its job and attempt row (rare)."""
    if (res.status != JobStatus.FAILED and not res.refund_attempt
            and res.block_account_until is None and res.account_state is None):
        return  # most results: nothing more
    stamp = to_db(res.finished_at)
    if res.status == JobStatus.FAILED:
        _stop_thread(c, res.job_id, res.finished_at)  # a failed thread part stops its thread
    if res.refund_attempt:
        c.execute("UPDATE jobs SET attempts = max(0, attempts - 1) WHERE id = ?", (res.job_id,))
    if res.block_account_until is not None:
        until = to_db(res.block_account_until)
        c.execute(
            "UPDATE accounts SET blocked_until = max(coalesce(blocked_until, ''), ?), "
            "updated_at = ? WHERE name = ?", (until, stamp, account))
        # The account's other jobs wait for the reset too (a deferral, not an attempt).
        c.execute(
            "UPDATE jobs SET next_attempt_at = ? WHERE account = ? AND status = 'pending' "
            "AND next_attempt_at < ?", (until, account, until))
    if res.account_state is not None:
        c.execute("UPDATE accounts SET state = ?, state_reason = ?, updated_at = ? WHERE name = ?",
                  (str(res.account_state), res.account_reason, stamp, account))


_THREAD_READY = (
    "(j.thread_part IS NULL OR j.thread_part <= 1 OR EXISTS (SELECT 1 FROM jobs p "
    "WHERE p.thread_id = j.thread_id AND p.thread_part = j.thread_part - 1 "
    "AND p.status = 'posted'))")


def _later_parts(c, job_id: str, statuses: Sequence[JobStatus]) -> list[str]:
    """The ids of the parts after this job in its thread whose status is in `statuses`."""
    marks = ", ".join("?" for _ in statuses)
    return [r[0] for r in c.execute(
        f"SELECT l.id FROM jobs j JOIN jobs l ON l.thread_id = j.thread_id "
        f"AND l.thread_part > j.thread_part WHERE j.id = ? AND l.status IN ({marks}) "
        "ORDER BY l.thread_part", (job_id, *[str(s) for s in statuses]))]


def _stop_thread(c, job_id: str, now: datetime) -> None:
    """A failed part stops its thread: the pending parts after it fail too, saying why
    (a later part is never posted before the one it replies to)."""
    part = c.execute("SELECT thread_part FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if part is None or part[0] is None:
        return
    why = f"not sent: part {part[0]} of its thread (job {job_id}) failed"
    for later in _later_parts(c, job_id, (JobStatus.PENDING,)):
        c.execute("UPDATE jobs SET status = 'failed', next_attempt_at = NULL, last_error = ?, "
                  "updated_at = ? WHERE id = ?", (why, to_db(now), later))
        _audit(c, later, 0, None, now, "stopped",
               why + "; 'autopost retry' of that part sends the rest after it")


def _retry_one(c, job: Job, now: datetime, at: datetime | None, *,
               force: bool = False) -> bool:
    """Set one job pending again (False if its status cannot be retried). Refuses
    (UsageError) a job that may already be posted unless `force`, an unknown job another
    run holds, and a cancelled job whose key another job now holds."""
    if not schedule.retryable(job, now):
        return False
    cur = c.execute("SELECT * FROM attempts WHERE job_id = ? ORDER BY id", (job.id,))
    keys = [d[0] for d in cur.description]
    attempts = [attempt_from(dict(zip(keys, r, strict=True))) for r in cur.fetchall()]
    holder = None
    if job.status == JobStatus.CANCELLED and job.key is not None:
        holder = c.execute(
            "SELECT id FROM jobs WHERE account = ? AND key = ? AND key IS NOT NULL AND "
            "status <> 'cancelled' AND id <> ?", (job.account, job.key, job.id)).fetchone()
    note = schedule.retry_note(job, attempts, at, force=force, key_holder=holder and holder[0])
    c.execute(
        "UPDATE jobs SET status = 'pending', next_attempt_at = ?, "
        "scheduled_at = coalesce(?, scheduled_at), lease_owner = NULL, "
        "lease_expires_at = NULL, dispatched = 0, "
        "max_attempts = max(max_attempts, attempts + 1), last_error = NULL, "
        "last_error_kind = NULL, updated_at = ? WHERE id = ?",
        (to_db(at or now), to_db(at), to_db(now), job.id))
    _audit(c, job.id, job.attempts, None, now, "retried", note)
    return True


def _check_duplicate(c, account: str, key: str | None, at: datetime, window: float, *,
                     exclude: str | None = None,
                     batch: Sequence[tuple[datetime, str]] | None = None,
                     known: Sequence[schedule.Known] | None = None) -> None:
    """The duplicate guard (schedule.refuse_duplicate) on the LIVE jobs with this text
    key: `known` as _live_by_text read them, else the first one in the window."""
    if key is None:
        return  # media-only posts have no text to compare
    if known is None:
        lo, hi = schedule.around(at, window, to_db)
        known = c.execute(
            f"SELECT id, scheduled_at, posted_at, status FROM jobs WHERE account = ? "
            f"AND text_key = ? AND status IN ({_LIVE_SQL}) AND id IS NOT ? "
            "AND ((scheduled_at > ? AND scheduled_at < ?) OR (posted_at > ? AND posted_at < ?)) "
            "LIMIT 1", (account, key, exclude, lo, hi, lo, hi)).fetchall()
    schedule.refuse_duplicate(account, at, window, to_db, known=known, exclude=exclude,
                              batch=batch)


def _live_by_text(c, jobs: Sequence[NewJob]
                  ) -> dict[tuple[str, str], list[tuple[str, str, str | None, str]]]:
    """The LIVE jobs sharing a text key with one of `jobs`, read in a few queries (a
    large import asks once per 400 texts rather than once per row)."""
    return _live_by_pairs(c, sorted({(j.account, k) for j in jobs
                                     if (k := duplicate_key(j.text))}))


def _live_by_pairs(c, pairs: Sequence[tuple[str, str]]
                   ) -> dict[tuple[str, str], list[tuple[str, str, str | None, str]]]:
    """The LIVE jobs of these (account, text key) pairs."""
    found: dict[tuple[str, str], list[tuple[str, str, str | None, str]]] = {}
    for i in range(0, len(pairs), 400):
        chunk = pairs[i:i + 400]
        values = ", ".join("(?, ?)" for _ in chunk)
        params = [v for pair in chunk for v in pair]
        # A seek in jobs_text per pair (see _find_keys for why not an OR of pairs).
        for account, key, jid, sched, posted, status in c.execute(
                f"WITH p(a, k) AS (VALUES {values}) SELECT j.account, j.text_key, j.id, "
                "j.scheduled_at, j.posted_at, j.status FROM p CROSS JOIN jobs j "
                f"ON j.account = p.a AND j.text_key = p.k WHERE j.status IN ({_LIVE_SQL})",
                params):
            found.setdefault((account, key), []).append((jid, sched, posted, status))
    return found


def _free_slot(c, job: NewJob, taken: set[str], *, exclude: str | None = None) -> datetime:
    """The first of job.slots that no LIVE job of the account (nor `taken`, the times an
    earlier job of the batch holds) is scheduled at."""
    held = {r[0] for r in c.execute(
        f"SELECT scheduled_at FROM jobs WHERE account = ? AND status IN ({_LIVE_SQL}) "
        "AND scheduled_at >= ? AND scheduled_at <= ? AND id IS NOT ?",
        (job.account, to_db(job.slots[0]), to_db(job.slots[-1]), exclude))}
    return schedule.first_free(job, held | taken, to_db)


def _audit(c, job_id: str, number: int, run_id: str | None, now: datetime, outcome: str,
           decision: str) -> None:
    stamp = to_db(now)
    c.execute(
        "INSERT INTO attempts (job_id, number, run_id, started_at, finished_at, outcome, "
        "decision) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (job_id, number, run_id, stamp, stamp, outcome, decision))


_IMPORT_BATCH = 500
# The insert half of job_counts (schema migration 4): what the trigger does per row,
# done once per batch by _count_inserted while the trigger is off.
_COUNTER_TRIGGER = "job_counts_insert"
_COUNTER_SQL = ("CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs BEGIN INSERT INTO "
                "job_counts (status, n) VALUES (new.status, 1) ON CONFLICT (status) DO "
                "UPDATE SET n = n + 1; END")


def _counter_off(c: sqlite3.Connection) -> str:
    """Drop the per-row counter trigger for the rest of this write transaction; its SQL
    (to create it again before the commit), or "" when it is not the one _count_inserted
    stands in for (then it stays). Inside the transaction: other connections never see
    the table without it, and a rollback brings it back."""
    row = c.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?",
                    (_COUNTER_TRIGGER,)).fetchone()
    if row is None or row[0] != _COUNTER_SQL:
        return ""
    c.execute(f"DROP TRIGGER {_COUNTER_TRIGGER}")
    return row[0]


def _count_inserted(c: sqlite3.Connection, rows: list[dict[str, Any]]) -> None:
    """job_counts for rows just inserted, as the insert trigger would have counted them."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    c.executemany("INSERT INTO job_counts (status, n) VALUES (?, ?) ON CONFLICT (status) "
                  "DO UPDATE SET n = n + excluded.n", list(counts.items()))


def _insert_sql(row: dict[str, Any], *, positional: bool = False) -> str:
    """INSERT of a row: named parameters, or ? in the order of the row's columns."""
    marks = ", ".join("?" if positional else f":{k}" for k in row)
    return f"INSERT INTO jobs ({', '.join(row)}) VALUES ({marks})"


def _free_ids(c: sqlite3.Connection, rows: list[dict[str, Any]]) -> None:
    """Make sure each row's id is one that no job and no other row has, drawing new ones
    for those that clash (inside the write transaction: no other writer can take one
    meanwhile)."""
    for _ in range(20):
        ids = [row["id"] for row in rows]
        marks = ", ".join("?" for _ in ids)
        taken = {r[0] for r in c.execute(f"SELECT id FROM jobs WHERE id IN ({marks})", ids)}
        if not taken and len(set(ids)) == len(ids):
            return
        used: set[str] = set()
        for row in rows:
            if row["id"] in taken or row["id"] in used:
                row["id"] = new_id()
            used.add(row["id"])
    raise RuntimeError("could not find free job ids")  # pragma: no cover
