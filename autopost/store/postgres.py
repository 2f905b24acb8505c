"""The PostgreSQL Store (psycopg 3): the same contract as the SQLite store, for several hosts.

What differs from SQLite, and why:
- Claims lock the candidate accounts' rows with FOR UPDATE SKIP LOCKED before choosing
  their jobs. Only one transaction at a time can claim for an account, so the "no job of
  this account running anywhere" check, the per-account order and the quota check (all
  read after the lock, in the same transaction) hold across hosts; another host skips
  the locked accounts instead of waiting and claims the others' jobs.
- With clock="database" (the default), leases, due times, quota windows and every stamp
  come from the database server's clock (now(), the transaction's start), not from the
  host's: hosts whose clocks differ neither steal live leases nor post early. The
  engine's relative times (a retry in 5 minutes) are moved onto the database's clock.
  clock="caller" trusts the times the caller passes, as the SQLite store does (the
  contract suite's explicit times need it).
- The refresh lock is the account row itself (SELECT ... FOR UPDATE NOWAIT), held from
  acquire_refresh_lock until the new credentials are saved; the lease columns are kept
  too, so the lock has a visible owner and an expiry like on SQLite.
- Transactions that PostgreSQL aborts for a deadlock or a serialisation failure are
  retried.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from autopost.errors import NotFound, UsageError
from autopost.ids import new_id
from autopost.models import (
    PAUSED_FOREVER,
    Account,
    Attempt,
    Job,
    JobFilter,
    JobStatus,
    NewJob,
    Run,
)
from autopost.quota import DAY, HOUR, next_free_slot
from autopost.store import schedule
from autopost.store.base import (
    CANCELLABLE,
    RETRYABLE,
    CancelOutcome,
    Claim,
    LimitsFor,
    Result,
    Store,
)
from autopost.store.pg_common import audit as _audit
from autopost.store.pg_common import from_pg as _f
from autopost.store.pg_common import stamp as _stamp
from autopost.store.pg_common import to_pg as _t
from autopost.store.pg_schedule import (
    NOT_PAUSED,
    THREAD_READY,
    ScheduleMethods,
    check_duplicate,
    free_slot,
    job_in,
    later_parts,
    live_by_pairs,
    live_by_text,
    lock_accounts,
    retry_one,
    stop_thread,
    update_with,
    with_replies,
)
from autopost.store.pg_schema import migrate
from autopost.store.pgconn import connect, describe_dsn, translate_errors
from autopost.store.rows import (
    FINISHED,
    Imported,
    account_from,
    account_row,
    added_jobs,
    attempt_from,
    batches,
    by_id,
    import_batch,
    job_from,
    jobs_query,
    new_job_row,
    run_from,
)

T = TypeVar("T")
_RETRIES = 20


class PostgresStore(ScheduleMethods, Store):
    def __init__(self, dsn: str, *, clock: str = "database"):
        if clock not in ("database", "caller"):
            raise ValueError(f"clock must be 'database' or 'caller', not {clock!r}")
        self.dsn = dsn
        self.location = dsn
        self.clock = clock
        self.where = describe_dsn(dsn)
        self.conn = connect(dsn)
        # Accounts whose refresh lock this connection holds (the open transaction's).
        self._refreshing: set[str] = set()
        self._tx_now: datetime | None = None
        with translate_errors(self.where):
            migrate(self.conn)

    def close(self) -> None:
        self.conn.close()

    def reopen(self) -> PostgresStore:
        return PostgresStore(self.dsn, clock=self.clock)

    # -- plumbing --------------------------------------------------------------
    def _tx(self, body: Callable[[Any], T]) -> T:
        """Run body(conn) in one transaction, again when PostgreSQL aborted it for a
        deadlock or a serialisation failure (nothing of it was applied)."""
        from psycopg import errors

        for attempt in range(_RETRIES):
            self._tx_now = None
            try:
                with translate_errors(self.where), self.conn.transaction():
                    return body(self.conn)
            except (errors.DeadlockDetected, errors.SerializationFailure,
                    errors.LockNotAvailable):
                if attempt == _RETRIES - 1 or self._refreshing:
                    raise
                import time

                time.sleep(0.005 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def _rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict]:
        with translate_errors(self.where):
            return self.conn.execute(sql, params).fetchall()

    def _now(self, c, now: datetime) -> datetime:
        """The time decisions use: the database's (the transaction's start) or the caller's."""
        if self.clock == "caller":
            return _t(now)
        if self._tx_now is None:  # now() is the transaction's start: one read per transaction
            self._tx_now = c.execute("SELECT now() AS t").fetchone()["t"]
        return self._tx_now

    def database_time(self) -> datetime:
        """The database server's clock."""
        return _f(self._rows("SELECT clock_timestamp() AS t")[0]["t"])

    # -- accounts --------------------------------------------------------------
    def add_account(self, account: Account, *, now: datetime, replace: bool = False) -> Account:
        def body(c):
            row = account_row(account, self._now(c, now), _t)
            exists = c.execute("SELECT 1 FROM accounts WHERE name = %s FOR UPDATE",
                               (account.name,)).fetchone()
            if exists and not replace:
                raise UsageError(f"account {account.name!r} exists (use --update to replace it)")
            if exists:
                row.pop("created_at")
                sets = ", ".join(f"{k} = %({k})s" for k in row if k != "name")
                c.execute(f"UPDATE accounts SET {sets} WHERE name = %(name)s", row)
            else:
                cols = ", ".join(row)
                marks = ", ".join(f"%({k})s" for k in row)
                c.execute(f"INSERT INTO accounts ({cols}) VALUES ({marks})", row)

        self._tx(body)
        return self.get_account(account.name)

    def get_account(self, name: str) -> Account:
        rows = self._rows("SELECT * FROM accounts WHERE name = %s", (name,))
        if not rows:
            raise NotFound(f"unknown account {name!r} (see 'autopost accounts list')")
        return account_from(rows[0], _f)

    def list_accounts(self) -> list[Account]:
        return [account_from(r, _f) for r in self._rows("SELECT * FROM accounts ORDER BY name")]

    def remove_account(self, name: str) -> None:
        def body(c):
            if not c.execute("SELECT 1 FROM accounts WHERE name = %s FOR UPDATE",
                             (name,)).fetchone():
                raise NotFound(f"unknown account {name!r} (see 'autopost accounts list')")
            busy = c.execute(
                "SELECT count(*) AS n FROM jobs WHERE account = %s AND status IN "
                "('pending', 'running', 'unknown')", (name,)).fetchone()["n"]
            if busy:
                raise UsageError(
                    f"account {name!r} still has {busy} pending, running or unknown job(s); "
                    "cancel or resolve them first")
            c.execute("DELETE FROM accounts WHERE name = %s", (name,))

        self._tx(body)

    def save_credentials(self, name, credentials, token_expires_at, *, now):
        def body(c):
            c.execute(
                "UPDATE accounts SET credentials = %s, token_expires_at = %s, updated_at = %s "
                "WHERE name = %s",
                (json.dumps(credentials), _t(token_expires_at), self._now(c, now), name))

        self._tx(body)
        if name in self._refreshing:
            # The new tokens are durable before anyone uses them; this also ends the
            # row lock: the rotation is done.
            self._end_refresh(commit=True)

    def set_account_state(self, name, state, reason, *, now):
        def body(c):
            cur = c.execute(
                "UPDATE accounts SET state = %s, state_reason = %s, updated_at = %s "
                "WHERE name = %s", (str(state), reason, self._now(c, now), name))
            if cur.rowcount == 0:
                raise NotFound(f"unknown account {name!r}")

        self._tx(body)

    def acquire_refresh_lock(self, name, owner, *, now, ttl):
        """Lock the account's row (NOWAIT: False while another transaction holds it) and
        keep the transaction open until the credentials are saved or the lock released.
        A host that dies holding it loses it with its connection; one that hangs, after
        `ttl` seconds idle in the transaction."""
        from psycopg import errors

        c = self.conn
        opened = False
        with translate_errors(self.where):
            if not self._refreshing:
                c.execute("BEGIN")
                opened = True
                c.execute(f"SET LOCAL idle_in_transaction_session_timeout = {int(ttl * 1000)}")
            try:
                with c.transaction():  # a savepoint: a refusal leaves the outer lock alone
                    row = c.execute(
                        "SELECT refresh_owner, refresh_until, now() AS db_now FROM accounts "
                        "WHERE name = %s FOR UPDATE NOWAIT", (name,)).fetchone()
                    at = now if self.clock == "caller" else row and row["db_now"]
                    if row is None:
                        taken = False
                    else:
                        free = (row["refresh_owner"] in (None, owner)
                                or row["refresh_until"] <= at)
                        if free:
                            c.execute(
                                "UPDATE accounts SET refresh_owner = %s, refresh_until = %s "
                                "WHERE name = %s", (owner, at + timedelta(seconds=ttl), name))
                        taken = free
            except errors.LockNotAvailable:
                taken = False
            if taken:
                self._refreshing.add(name)
            elif opened:
                c.execute("ROLLBACK")
        return taken

    def release_refresh_lock(self, name, owner):
        if name in self._refreshing:
            with translate_errors(self.where):
                self.conn.execute(
                    "UPDATE accounts SET refresh_owner = NULL, refresh_until = NULL "
                    "WHERE name = %s AND refresh_owner = %s", (name, owner))
            if not self._refreshing - {name}:
                self._end_refresh(commit=True)
            return
        # Saved already (the row lock ended then): clear the visible owner.
        self._tx(lambda c: c.execute(
            "UPDATE accounts SET refresh_owner = NULL, refresh_until = NULL "
            "WHERE name = %s AND refresh_owner = %s", (name, owner)))

    def _end_refresh(self, *, commit: bool) -> None:
        self._refreshing.clear()
        with translate_errors(self.where):
            self.conn.execute("COMMIT" if commit else "ROLLBACK")

    # -- jobs: management ------------------------------------------------------
    def add_jobs(self, jobs: Sequence[NewJob], *, now: datetime, update: bool = False,
                 duplicate_window: float | None = None) -> list[tuple[Job, bool]]:
        if not jobs:
            return []
        from psycopg import errors

        for _ in range(5):
            try:
                return self._add_jobs_once(jobs, now, update, duplicate_window)
            except errors.UniqueViolation as exc:
                if "jobs_pkey" not in str(exc):
                    raise
        raise RuntimeError("could not find free job ids")  # pragma: no cover

    def _add_jobs_once(self, jobs: Sequence[NewJob], now: datetime, update: bool,
                       window: float | None) -> list[tuple[Job, bool]]:
        out: list[tuple[str, bool]] = []
        rows: list[dict[str, Any]] = []
        inserted: list[NewJob] = []

        def body(c):
            stamp = self._now(c, now)
            out.clear()
            rows.clear()
            inserted.clear()
            seen: dict[tuple[str, str], str] = {}
            pairs = sorted({(j.account, j.key) for j in jobs if j.key is not None})
            existing: dict[tuple[str, str], str] = {}
            # Lock the accounts whose keys, slots or texts this batch checks, so that two
            # hosts adding at once agree on one job per key, take different slots and do
            # not both pass the duplicate guard.
            lock_accounts(c, {a for a, _ in pairs} | {j.account for j in jobs if j.slots}
                          | ({j.account for j in jobs} if window is not None else set()))
            if pairs:
                for r in c.execute(
                        "SELECT id, account, key FROM jobs WHERE (account, key) IN "
                        "(SELECT * FROM unnest(%s::text[], %s::text[])) "
                        "AND key IS NOT NULL AND status <> 'cancelled'",
                        ([a for a, _ in pairs], [k for _, k in pairs])):
                    existing[(r["account"], r["key"])] = r["id"]
            # What this batch adds, for the checks: (account, text key) -> [(time, id)],
            # and account -> the times it takes.
            batch: dict[tuple[str, str | None], list[tuple[datetime, str]]] = {}
            times: dict[str, set[datetime]] = {}
            live = None
            for job in jobs:
                pair = (job.account, job.key) if job.key is not None else None
                if pair is not None and pair in existing:
                    if update:
                        update_with(c, existing[pair], job, stamp, window)
                        live = None  # read again: that job's text or time changed
                    out.append((existing[pair], False))
                    continue
                if pair is not None and pair in seen:
                    out.append((seen[pair], False))
                    continue
                if job.slots:
                    job = dataclasses.replace(job, scheduled_at=free_slot(
                        c, job, times.get(job.account, set())))
                row = new_job_row(job, new_id(), stamp, _t)
                if window is not None:
                    if live is None:
                        live = live_by_text(c, jobs)
                    key = (job.account, row["text_key"])
                    check_duplicate(c, job.account, row["text_key"], job.scheduled_at,
                                    window, batch=batch.get(key), known=live.get(key, []))
                if window is not None or job.slots:
                    batch.setdefault((job.account, row["text_key"]), []).append(
                        (job.scheduled_at, row["id"]))
                    times.setdefault(job.account, set()).add(job.scheduled_at)
                if pair is not None:
                    seen[pair] = row["id"]
                rows.append(row)
                inserted.append(job)
                out.append((row["id"], True))
            if rows:
                cols = list(rows[0])
                with c.cursor() as cur:
                    with cur.copy(f"COPY jobs ({', '.join(cols)}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row([row[k] for k in cols])
            return stamp

        stamp = self._tx(body)
        return added_jobs(out, rows, inserted, _f(stamp), self._jobs_by_ids)

    def import_jobs(self, jobs: Iterable[NewJob], *, now: datetime,
                    duplicate_window: float | None = None) -> Imported:
        """One transaction, not retried as _tx retries (the stream cannot be read twice):
        a deadlock with another import of the same accounts fails this one, with
        nothing of it applied."""
        from psycopg import errors

        window = duplicate_window
        out = Imported()
        seen: dict[tuple[str, str], str] = {}
        self._tx_now = None
        with translate_errors(self.where), self.conn.transaction():
            c = self.conn
            stamp = self._now(c, now)
            for batch in batches(jobs, 500):
                pairs = sorted({(j.account, j.key) for j in batch if j.key is not None})
                # As add_jobs: the accounts whose keys or texts are checked are locked, so
                # that two hosts agree on one job per key and do not both pass the guard.
                lock_accounts(c, {a for a, _ in pairs}
                              | ({j.account for j in batch} if window is not None else set()))
                plan, rows, fresh = import_batch(
                    batch, stamp=stamp, t=_t,
                    existing=self._find_keys(c, pairs) if pairs else {}, seen=seen,
                    window=window, live_by_text=lambda found: live_by_pairs(c, found),
                    check_duplicate=lambda *a, **kw: check_duplicate(c, *a, **kw))
                for attempt in range(5):
                    if attempt:
                        for row in rows:
                            row["id"] = new_id()
                    try:
                        with c.transaction():  # a savepoint: an id clash retries the batch
                            self._copy_jobs(c, rows)
                        break
                    except errors.UniqueViolation as exc:
                        if "jobs_pkey" not in str(exc):
                            raise
                else:  # pragma: no cover
                    raise RuntimeError("could not find free job ids")
                out.add([rows[ref]["id"] if isinstance(ref, int) else ref for ref, _ in plan],
                        [created for _, created in plan])
                seen.update((pair, rows[i]["id"]) for pair, i in fresh.items())
        return out

    @staticmethod
    def _copy_jobs(c, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        cols = list(rows[0])
        with c.cursor() as cur:
            with cur.copy(f"COPY jobs ({', '.join(cols)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([row[k] for k in cols])

    def find_keys(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        pairs = sorted(set(pairs))
        if not pairs:
            return {}
        with translate_errors(self.where):
            return self._find_keys(self.conn, pairs)

    @staticmethod
    def _find_keys(c, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        found: dict[tuple[str, str], str] = {}
        for r in c.execute("SELECT id, account, key FROM jobs WHERE (account, key) IN "
                           "(SELECT * FROM unnest(%s::text[], %s::text[])) "
                           "AND key IS NOT NULL AND status <> 'cancelled'",
                           ([a for a, _ in pairs], [k for _, k in pairs])):
            found[(r["account"], r["key"])] = r["id"]
        return found

    def _jobs_by_ids(self, ids: Sequence[str], c=None) -> list[Job]:
        if not ids:
            return []
        sql = "SELECT * FROM jobs WHERE id = ANY(%s)"
        if c is not None:
            return [job_from(r, _f) for r in c.execute(sql, (list(ids),))]
        return [job_from(r, _f) for r in self._rows(sql, (list(ids),))]

    def get_job(self, job_id: str) -> Job:
        return job_from(by_id(self._rows, "%s", "job", job_id), _f)

    def list_jobs(self, flt: JobFilter) -> list[Job]:
        return [job_from(r, _f) for r in self._rows(*jobs_query(flt, "%s"))]

    def attempts_for(self, job_id: str) -> list[Attempt]:
        rows = self._rows("SELECT * FROM attempts WHERE job_id = %s ORDER BY id", (job_id,))
        return [attempt_from(r, _f) for r in rows]

    def outcomes_in_a_row(self, job_id: str, outcome: str, *,
                          passing: Sequence[str] = ()) -> int:
        rows = self._rows(
            "SELECT count(*) AS n FROM attempts WHERE job_id = %s AND outcome = %s AND id > "
            "coalesce((SELECT max(id) FROM attempts WHERE job_id = %s AND finished_at IS NOT "
            "NULL AND coalesce(outcome, '') <> ALL(%s)), 0)",
            (job_id, outcome, job_id, [outcome, *passing]))
        return rows[0]["n"]

    def cancel_job(self, job_id: str, *, now: datetime) -> CancelOutcome:
        job = self.get_job(job_id)

        def body(c):
            at = self._now(c, now)
            cur = c.execute(
                "UPDATE jobs SET status = 'cancelled', next_attempt_at = NULL, updated_at = %s "
                "WHERE id = %s AND status IN ('pending', 'failed', 'missed') RETURNING attempts",
                (at, job.id))
            row = cur.fetchone()
            if row is not None:
                _audit(c, job.id, row["attempts"], None, at, "cancelled", "cancelled by operator")
                for later in later_parts(c, job.id, CANCELLABLE):
                    c.execute("UPDATE jobs SET status = 'cancelled', next_attempt_at = NULL, "
                              "updated_at = %s WHERE id = %s", (at, later))
                    _audit(c, later, 0, None, at, "cancelled",
                           f"cancelled with part {job.thread_part} of its thread ({job.id})")
            return row is not None

        cancelled = self._tx(body)
        return schedule.cancel_outcome(self.get_job(job.id), cancelled)

    def retry_job(self, job_id: str, *, now: datetime, at: datetime | None = None,
                  force: bool = False) -> Job:
        job = self.get_job(job_id)

        def body(c):
            when = self._now(c, now)
            # Read under the row lock: no run changes the job meanwhile.
            current = job_in(c, job.id)
            if not retry_one(c, current, when, at, force=force):
                raise UsageError(
                    f"job {job.id} is {current.status}; only failed, missed or cancelled "
                    "jobs can be retried")
            # A thread goes on from the part retried: the parts after it come back too.
            for later in later_parts(c, job.id, RETRYABLE):
                retry_one(c, job_in(c, later), when, at)

        self._tx(body)
        return self.get_job(job.id)

    def resolve_job(self, job_id: str, *, posted_url: str | None, now: datetime) -> Job:
        job = self.get_job(job_id)

        def body(c):
            at = self._now(c, now)
            if posted_url is not None:
                row = c.execute(
                    "UPDATE jobs SET status = 'posted', platform_url = %s, posted_at = %s, "
                    "next_attempt_at = NULL, lease_owner = NULL, lease_expires_at = NULL, "
                    "updated_at = %s WHERE id = %s AND status = 'unknown' AND "
                    "(lease_owner IS NULL OR lease_expires_at <= %s) RETURNING attempts",
                    (posted_url, at, at, job.id, at)).fetchone()
                decision = f"operator: posted at {posted_url}"
            else:
                row = c.execute(
                    "UPDATE jobs SET status = 'pending', next_attempt_at = %s, "
                    "lease_owner = NULL, lease_expires_at = NULL, dispatched = 0, "
                    "max_attempts = greatest(max_attempts, attempts + 1), updated_at = %s "
                    "WHERE id = %s AND status = 'unknown' AND "
                    "(lease_owner IS NULL OR lease_expires_at <= %s) RETURNING attempts",
                    (at, at, job.id, at)).fetchone()
                decision = "operator: not posted; will be sent again"
            if row is None:
                now_row = c.execute("SELECT status, lease_owner FROM jobs WHERE id = %s",
                                    (job.id,)).fetchone()
                if now_row["status"] == "unknown":
                    raise UsageError(f"job {job.id} is being reconciled by run "
                                     f"{now_row['lease_owner']}; try again when that run has "
                                     "finished")
                raise UsageError(
                    f"job {job.id} is {now_row['status']}, not unknown; nothing to resolve")
            _audit(c, job.id, row["attempts"], None, at, "resolved", decision)

        self._tx(body)
        return self.get_job(job.id)

    def count_by_status(self) -> dict[JobStatus, int]:
        rows = self._rows("SELECT status, count(*) AS n FROM jobs GROUP BY status")
        counts = {s: 0 for s in JobStatus}
        for r in rows:
            counts[JobStatus(r["status"])] = r["n"]
        return counts

    def quota_usage(self, account: str, *, now: datetime) -> tuple[int, int]:
        def body(c):
            at = self._now(c, now)
            stamps = _usage(c, account, at)
            return sum(1 for t in stamps if t > at - HOUR), len(stamps)

        return self._tx(body)

    def quota_times(self, account: str, *, now: datetime) -> list[datetime]:
        return sorted(self._tx(lambda c: _usage(c, account, self._now(c, now))))

    def prune(self, *, before: datetime, dry_run: bool = False) -> tuple[int, int]:
        cutoff = _t(before)
        if dry_run:
            jobs = self._rows("SELECT count(*) AS n FROM jobs WHERE status = ANY(%s) "
                              "AND updated_at < %s", (list(FINISHED), cutoff))[0]["n"]
            runs = self._rows("SELECT count(*) AS n FROM runs WHERE started_at < %s",
                              (cutoff,))[0]["n"]
            return jobs, runs

        def body(c):
            c.execute(
                "DELETE FROM attempts WHERE job_id IN (SELECT id FROM jobs WHERE status = "
                "ANY(%s) AND updated_at < %s)", (list(FINISHED), cutoff))
            jobs = c.execute("DELETE FROM jobs WHERE status = ANY(%s) AND updated_at < %s",
                             (list(FINISHED), cutoff)).rowcount
            runs = c.execute("DELETE FROM runs WHERE started_at < %s", (cutoff,)).rowcount
            return jobs, runs

        return self._tx(body)

    # -- jobs: the engine --------------------------------------------------------
    def rescue_expired(self, run_id: str, *, now: datetime) -> list[Job]:
        def body(c):
            at = self._now(c, now)
            # One statement each: a host rescuing at the same moment waits for the row and
            # then finds it no longer running.
            lost = c.execute(
                "UPDATE jobs SET status = 'unknown', next_attempt_at = %s, "
                "last_error = 'the run publishing it stopped before recording the outcome', "
                "last_error_kind = 'ambiguous', updated_at = %s "
                "WHERE status = 'running' AND lease_expires_at <= %s AND dispatched = 1 "
                "RETURNING id, attempts, lease_owner", (at, at, at)).fetchall()
            if lost:
                c.cursor().executemany(
                    "UPDATE attempts SET finished_at = %s, outcome = 'lost', "
                    "error_kind = 'ambiguous', decision = %s WHERE job_id = %s AND number = %s "
                    "AND finished_at IS NULL",
                    [(at, f"lease of run {r['lease_owner']} expired; reconcile before any retry",
                      r["id"], r["attempts"]) for r in lost])
            back = c.execute(
                "UPDATE jobs SET status = 'pending', lease_owner = NULL, "
                "lease_expires_at = NULL, updated_at = %s WHERE status = 'running' AND "
                "lease_expires_at <= %s AND dispatched = 0 RETURNING id", (at, at)).fetchall()
            return [r["id"] for r in lost] + [r["id"] for r in back]

        return self._jobs_by_ids(self._tx(body))

    def mark_missed(self, *, now: datetime, window: float) -> list[Job]:
        if window <= 0:
            return []

        def body(c):
            at = self._now(c, now)
            # A paused account's jobs are never missed; after a pause the window counts
            # from the resume. A later thread part waits for the one before.
            rows = c.execute(
                "UPDATE jobs j SET status = 'missed', last_error = %(why)s, updated_at = %(at)s "
                "FROM accounts a WHERE a.name = j.account AND j.status = 'pending' "
                "AND j.next_attempt_at < %(cutoff)s AND j.attempts = 0 AND a.state = 'ok' "
                "AND (j.thread_part IS NULL OR j.thread_part <= 1) "
                f"AND {NOT_PAUSED} "
                "AND (a.resumed_at IS NULL OR a.resumed_at < %(cutoff)s) RETURNING j.id",
                {"why": f"not started within the catch-up window ({int(window)} s)", "at": at,
                 "cutoff": at - timedelta(seconds=window)}).fetchall()
            for r in rows:
                _audit(c, r["id"], 0, None, at, "missed",
                       "no run started it in time; 'autopost retry' sends it anyway")
            return [r["id"] for r in rows]

        return self._jobs_by_ids(self._tx(body))

    def claim_unknown(self, run_id: str, *, now: datetime, lease: float, limit: int) -> list[Job]:
        def body(c):
            at = self._now(c, now)
            jobs = [job_from(r, _f) for r in c.execute(
                "UPDATE jobs SET lease_owner = %s, lease_expires_at = %s, updated_at = %s "
                "WHERE id IN (SELECT id FROM jobs WHERE status = 'unknown' AND "
                "next_attempt_at <= %s AND (lease_owner IS NULL OR lease_expires_at <= %s) "
                "ORDER BY next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED) "
                "AND status = 'unknown' AND (lease_owner IS NULL OR lease_expires_at <= %s) "
                "RETURNING *",
                (run_id, at + timedelta(seconds=lease), at, at, at, limit, at))]
            if jobs:
                # A resend that a dead run started and never recorded: its outcome is as
                # unknown as the job's.
                c.execute(
                    "UPDATE attempts SET finished_at = %s, outcome = 'lost', "
                    "error_kind = 'ambiguous', "
                    "decision = 'the run stopped before recording the outcome' "
                    "WHERE job_id = ANY(%s) AND finished_at IS NULL",
                    (at, [j.id for j in jobs]))
            # A thread part resent by its reconcile is still a reply to the part before it.
            return with_replies(c, jobs)

        return self._tx(body)

    def claim(self, run_id, *, now, lease, limit, per_account, limits_for: LimitsFor) -> Claim:
        def body(c):
            at = self._now(c, now)
            due = ("j.status = 'pending' AND j.next_attempt_at <= %(at)s AND a.state = 'ok' "
                   "AND (a.blocked_until IS NULL OR a.blocked_until <= %(at)s) "
                   f"AND {NOT_PAUSED} AND {THREAD_READY}")
            idle = ("NOT EXISTS (SELECT 1 FROM jobs r WHERE r.account = a.name "
                    "AND r.status = 'running')")
            # The accounts with due jobs, earliest first, locked; those another host is
            # claiming for right now are skipped, not waited for.
            names = [r["account"] for r in c.execute(
                f"SELECT j.account, min(j.next_attempt_at) AS first FROM jobs j "
                f"JOIN accounts a ON a.name = j.account WHERE {due} AND {idle} "
                f"GROUP BY j.account ORDER BY first, j.account LIMIT %(n)s",
                {"at": at, "n": max(limit * 4, 64)})]
            if not names:
                return [], [], {}
            accounts = {r["name"]: account_from(r, _f) for r in c.execute(
                "SELECT * FROM accounts WHERE name = ANY(%s) ORDER BY name "
                "FOR UPDATE SKIP LOCKED", (names,))}
            if not accounts:
                return [], [], {}
            # Read again under the locks: a claim that committed before we got them is
            # visible now (READ COMMITTED takes a new snapshot per statement).
            candidates = c.execute(
                f"SELECT j.id, j.account FROM jobs j JOIN accounts a ON a.name = j.account "
                f"WHERE j.account = ANY(%(names)s) AND {due} AND {idle} "
                f'ORDER BY j.next_attempt_at, j.scheduled_at, j.id LIMIT %(n)s',
                {"at": at, "names": list(accounts), "n": max(limit * 4, 64)}).fetchall()
            chosen: list[str] = []
            deferred: list[tuple[str, datetime]] = []
            limits: dict[str, tuple[int | None, int | None]] = {}
            usage: dict[str, list[datetime]] = {}
            taken: dict[str, int] = {}
            for row in candidates:
                if len(chosen) >= limit:
                    break
                name = row["account"]
                if name not in limits:
                    limits[name] = limits_for(accounts[name])
                    if limits[name] != (None, None):
                        usage[name] = _usage(c, name, at)
                    taken[name] = 0
                if taken[name] >= per_account:
                    continue
                if name in usage:
                    hourly, daily = limits[name]
                    slot = next_free_slot(usage[name], at, hourly=hourly, daily=daily)
                    if slot is not None:
                        deferred.append((row["id"], slot))
                        continue
                    usage[name].append(at)
                taken[name] += 1
                chosen.append(row["id"])
            claimed: dict[str, Job] = {}
            if chosen:
                # The claimed rows come back from the UPDATE itself: no second read.
                claimed = {j.id: j for j in (job_from(r, _f) for r in c.execute(
                    "UPDATE jobs SET status = 'running', lease_owner = %s, "
                    "lease_expires_at = %s, dispatched = 0, updated_at = %s "
                    "WHERE id = ANY(%s) AND status = 'pending' RETURNING *",
                    (run_id, at + timedelta(seconds=lease), at, chosen)))}
            for jid, slot in deferred:
                n = c.execute(
                    "UPDATE jobs SET next_attempt_at = %s, updated_at = %s WHERE id = %s "
                    "RETURNING attempts", (slot, at, jid)).fetchone()["attempts"]
                _audit(c, jid, n, run_id, at, "deferred",
                       f"account quota reached; deferred to {_stamp(slot)}")
            later = {j.id: j for j in self._jobs_by_ids([j for j, _ in deferred], c)}
            return (with_replies(c, [claimed[j] for j in chosen if j in claimed]),
                    [(later[j], slot) for j, slot in deferred], accounts)

        claimed, deferred, accounts = self._tx(body)
        return Claim(jobs=claimed, deferred=deferred,
                     accounts={j.account: accounts[j.account] for j in claimed})

    def dispatch(self, job_ids, run_id, *, now, lease=None):
        return self._tx(lambda c: self._dispatch(c, job_ids, run_id, now, lease))

    def record(self, results: Sequence[Result]) -> list[bool]:
        return self._tx(lambda c: self._record_all(c, results))

    def dispatch_and_record(self, job_ids, results, run_id, *, now, lease=None):
        def body(c):
            numbers = self._dispatch(c, job_ids, run_id, now, lease) if job_ids else {}
            return numbers, self._record_all(c, results)

        return self._tx(body)

    def _record_all(self, c, results: Sequence[Result]) -> list[bool]:
        """Each result is one statement (the job and its attempt row together); they go
        to the server in one pipeline, so a group commit costs one round trip, not one
        per result. The rare account-wide consequences follow, one by one."""
        if not results:
            return []
        planned = [self._planned(c, res) for res in results]
        with c.pipeline():
            cursors = [c.execute(sql, params) for sql, params, _ in planned]
        applied = []
        for res, cur, (_, _, finished) in zip(results, cursors, planned, strict=True):
            row = cur.fetchone()
            applied.append(row is not None)
            if row is not None and res.status == JobStatus.FAILED:
                stop_thread(c, res.job_id, finished)
            if row is not None and (res.refund_attempt or res.block_account_until is not None
                                    or res.account_state is not None):
                self._consequences(c, res, row["account"], finished)
        return applied

    def _dispatch(self, c, job_ids, run_id, now, lease) -> dict[str, int]:
        at = self._now(c, now)
        if lease is not None:
            # A heartbeat: the run is alive, so the jobs it holds keep their leases.
            c.execute("UPDATE jobs SET lease_expires_at = %s WHERE status IN "
                      "('running', 'unknown') AND lease_owner = %s",
                      (at + timedelta(seconds=lease), run_id))
        if not job_ids:
            return {}
        # Only under a live lease: a run that lost it never reaches the platform. A running
        # job spends an attempt; an unknown one is being settled by a resend, which is not
        # an attempt (its row carries the attempt it settles). The marks and their attempt
        # rows in one statement.
        rows = c.execute(
            "WITH d AS (UPDATE jobs SET dispatched = 1, updated_at = %(at)s, "
            "attempts = attempts + CASE WHEN status = 'running' THEN 1 ELSE 0 END "
            "WHERE id = ANY(%(ids)s) AND lease_owner = %(run)s AND lease_expires_at > %(at)s "
            "AND status IN ('running', 'unknown') RETURNING id, attempts, status) "
            "INSERT INTO attempts (job_id, number, run_id, started_at, decision) "
            "SELECT id, attempts, %(run)s, %(at)s, CASE WHEN status = 'unknown' "
            "THEN 'resent to settle an unknown outcome' END FROM d RETURNING job_id, number",
            {"at": at, "ids": list(job_ids), "run": run_id}).fetchall()
        numbers = {r["job_id"]: r["number"] for r in rows}
        return {jid: numbers[jid] for jid in job_ids if jid in numbers}

    def _moved(self, res: Result, finished: datetime, value: datetime | None
               ) -> datetime | None:
        """An engine time, moved onto the database's clock (as finished_at was)."""
        if value is None:
            return None
        return _t(value) + (finished - _t(res.finished_at))

    def _planned(self, c, res: Result) -> tuple[str, dict[str, Any], datetime]:
        finished = _t(res.finished_at)
        if self.clock == "database":
            # The engine's times are on its own clock: move them onto the database's.
            finished = self._now(c, finished)
        posted = res.status == JobStatus.POSTED
        params = {
            "status": str(res.status),
            "next": self._moved(res, finished, res.next_attempt_at),
            "error": None if posted else res.message,
            "error_kind": str(res.error_kind) if res.error_kind and not posted else None,
            "post_id": res.platform_post_id, "url": res.platform_url,
            "posted_at": finished if posted else None, "at": finished, "id": res.job_id,
            "run": res.run_id, "outcome": res.outcome,
            "kind": str(res.error_kind) if res.error_kind else None,
            "http": res.http_status, "message": res.message, "decision": res.decision,
            "closes": res.closes_attempt,
        }
        sql = (
            "WITH j AS (UPDATE jobs SET status = %(status)s, next_attempt_at = %(next)s, "
            "lease_owner = NULL, lease_expires_at = NULL, dispatched = 0, "
            "last_error = %(error)s, last_error_kind = %(error_kind)s, "
            "platform_post_id = coalesce(%(post_id)s, platform_post_id), "
            "platform_url = coalesce(%(url)s, platform_url), "
            "posted_at = coalesce(%(posted_at)s, posted_at), updated_at = %(at)s "
            "WHERE id = %(id)s AND lease_owner = %(run)s AND status IN ('running', 'unknown') "
            "RETURNING id, attempts, account), "
            # The attempt this result closes, or (a reconcile) a row of its own.
            "closed AS (UPDATE attempts a SET finished_at = %(at)s, outcome = %(outcome)s, "
            "error_kind = %(kind)s, http_status = %(http)s, message = %(message)s, "
            "platform_post_id = %(post_id)s, decision = %(decision)s FROM j "
            "WHERE %(closes)s AND a.job_id = j.id AND a.number = j.attempts "
            "AND a.finished_at IS NULL RETURNING a.id), "
            "added AS (INSERT INTO attempts (finished_at, outcome, error_kind, http_status, "
            "message, platform_post_id, decision, job_id, number, run_id, started_at) "
            "SELECT %(at)s, %(outcome)s, %(kind)s, %(http)s, %(message)s, %(post_id)s, "
            "%(decision)s, j.id, j.attempts, %(run)s, %(at)s FROM j WHERE NOT %(closes)s "
            "RETURNING id) "
            "SELECT account, attempts FROM j")
        return sql, params, finished

    def _consequences(self, c, res: Result, account: str, finished: datetime) -> None:
        if res.refund_attempt:
            c.execute("UPDATE jobs SET attempts = greatest(0, attempts - 1) WHERE id = %s",
                      (res.job_id,))
        if res.block_account_until is not None:
            until = self._moved(res, finished, res.block_account_until)
            c.execute(
                "UPDATE accounts SET blocked_until = greatest(blocked_until, %s), "
                "updated_at = %s WHERE name = %s", (until, finished, account))
            # The account's other jobs wait for the reset too (a deferral, not an attempt).
            c.execute(
                "UPDATE jobs SET next_attempt_at = %s WHERE account = %s AND status = 'pending' "
                "AND next_attempt_at < %s", (until, account, until))
        if res.account_state is not None:
            c.execute(
                "UPDATE accounts SET state = %s, state_reason = %s, updated_at = %s "
                "WHERE name = %s", (str(res.account_state), res.account_reason, finished, account))

    def release(self, job_ids, run_id, *, now):
        if not job_ids:
            return 0

        def body(c):
            at = self._now(c, now)
            return c.execute(
                "UPDATE jobs SET status = 'pending', lease_owner = NULL, "
                "lease_expires_at = NULL, updated_at = %s, next_attempt_at = greatest("
                "next_attempt_at, (SELECT blocked_until FROM accounts WHERE name = jobs.account)) "
                "WHERE id = ANY(%s) AND lease_owner = %s AND status = 'running' "
                "AND dispatched = 0", (at, list(job_ids), run_id)).rowcount

        return self._tx(body)

    def save_ref(self, job_id, run_id, ref, *, now, lease=None):
        def body(c):
            at = self._now(c, now)
            until = None if lease is None else at + timedelta(seconds=lease)
            cur = c.execute(
                "UPDATE jobs SET ref = %s, updated_at = %s, "
                "lease_expires_at = coalesce(%s, lease_expires_at) "
                "WHERE id = %s AND lease_owner = %s",
                (json.dumps(ref), at, until, job_id, run_id))
            if cur.rowcount == 0:
                raise UsageError(f"job {job_id}: lease lost while saving its reference")

        self._tx(body)

    def due_jobs(self, *, now: datetime, limit: int | None) -> list[Job]:
        # A read-only view at the time asked for (health asks about the past).
        at = _t(now)
        rows = self._rows(
            "SELECT j.* FROM jobs j JOIN accounts a ON a.name = j.account "
            "WHERE j.status = 'pending' AND j.next_attempt_at <= %(at)s AND a.state = 'ok' "
            "AND (a.blocked_until IS NULL OR a.blocked_until <= %(at)s) "
            f"AND {NOT_PAUSED} AND {THREAD_READY} "
            "ORDER BY j.next_attempt_at, j.scheduled_at, j.id LIMIT %(n)s",
            {"at": at, "n": limit})
        return [job_from(r, _f) for r in rows]

    def next_due_at(self, *, now: datetime) -> datetime | None:
        def body(c):
            at = self._now(c, now)
            row = c.execute(
                "SELECT (SELECT min(j.next_attempt_at) FROM jobs j JOIN accounts a "
                "ON a.name = j.account WHERE j.status = 'pending' AND a.state = 'ok' "
                "AND (a.blocked_until IS NULL OR a.blocked_until <= %(at)s) "
                f"AND {NOT_PAUSED} AND {THREAD_READY}) AS due, "
                # A pause until further notice wakes nothing up.
                "(SELECT min(t) FROM (SELECT CASE WHEN paused_until >= %(forever)s THEN NULL "
                "ELSE greatest(blocked_until, paused_until) END AS t FROM accounts "
                "WHERE state = 'ok' AND name IN (SELECT account FROM jobs "
                "WHERE status = 'pending')) w WHERE t > %(at)s) AS unblock, "
                "(SELECT min(next_attempt_at) FROM jobs WHERE status = 'unknown') AS recheck",
                {"at": at, "forever": PAUSED_FOREVER}).fetchone()
            times = [t for t in row.values() if t is not None]
            if not times:
                return None
            # The answer is on the caller's clock: the caller compares it with its own.
            return _f(min(times)) - (at - _t(now))

        return self._tx(body)

    # -- runs --------------------------------------------------------------------
    def start_run(self, run: Run) -> None:
        def body(c):
            c.execute(
                "INSERT INTO runs (id, started_at, host, pid, counts) VALUES (%s, %s, %s, %s, %s)",
                (run.id, self._now(c, run.started_at), run.host, run.pid,
                 json.dumps(run.counts)))

        self._tx(body)

    def finish_run(self, run_id, *, now, counts):
        def body(c):
            c.execute("UPDATE runs SET finished_at = %s, counts = %s WHERE id = %s",
                      (self._now(c, now), json.dumps(counts), run_id))

        self._tx(body)

    def last_run(self) -> Run | None:
        rows = self._rows("SELECT * FROM runs ORDER BY started_at DESC LIMIT 1")
        return run_from(rows[0], _f) if rows else None


# -- helpers ------------------------------------------------------------------------

def _usage(c, account: str, now: datetime) -> list[datetime]:
    """Times of posts in the last day for quota, with in-flight jobs counted as now.

    One statement, so one snapshot: read in two (the posts, then the jobs in flight), a
    reconcile that another host commits between them (unknown -> posted) is in neither,
    and the claim takes one post too many."""
    posted: list[datetime] = []
    inflight = 0
    for r in c.execute(
            "SELECT status, posted_at FROM jobs WHERE account = %s AND "
            "(status IN ('running', 'unknown') OR (status = 'posted' AND posted_at > %s))",
            (account, now - DAY)):
        if r["status"] == "posted":
            posted.append(_f(r["posted_at"]))
        else:
            inflight += 1
    return sorted(posted) + [_f(now)] * inflight
