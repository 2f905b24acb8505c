"""Writing the schedule on PostgreSQL: edit, bulk cancel/retry, pause, threads, series,
and the duplicate guard and queue slots of add_jobs (the SQLite store's twins).

Two hosts may add or edit at once, and PostgreSQL does not serialise writers as
SQLite does. Whatever reads the schedule to decide (is this slot free, is this text
already scheduled within the window) first locks the accounts involved (lock_accounts:
their rows, FOR UPDATE, in name order), so two concurrent adds for one account take
turns: the second reads what the first committed and takes the next slot, or is
refused as a duplicate. Claims skip a locked account for that moment (SKIP LOCKED)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from autopost.errors import NotFound, UsageError
from autopost.ids import new_id
from autopost.models import Job, JobEdit, JobStatus, NewJob, PostRef, Reply
from autopost.store import schedule
from autopost.store.base import (
    CANCELLABLE,
    LIVE,
    RETRYABLE,
    duplicate_key,
    not_editable_reason,
)
from autopost.store.pg_common import audit, from_pg, to_pg
from autopost.store.rows import (
    attempt_from,
    by_id,
    inserted_job,
    job_from,
    loads,
    new_job_row,
    series_from,
    series_row,
)

_LIVE = [str(s) for s in LIVE]

# SQL conditions on `j` (a job) and `a` (its account), with %(at)s the time judged.
NOT_PAUSED = "(a.paused_until IS NULL OR a.paused_until <= %(at)s)"
THREAD_READY = (
    "(j.thread_part IS NULL OR j.thread_part <= 1 OR EXISTS (SELECT 1 FROM jobs p "
    "WHERE p.thread_id = j.thread_id AND p.thread_part = j.thread_part - 1 "
    "AND p.status = 'posted'))")


def lock_accounts(c, names: Iterable[str]) -> None:
    """Lock these accounts' rows (in name order, so two writers never deadlock)."""
    wanted = sorted(set(names))
    if wanted:
        c.execute("SELECT 1 FROM accounts WHERE name = ANY(%s) ORDER BY name FOR UPDATE",
                  (wanted,))


def job_in(c, job_id: str, *, lock: bool = True) -> Job:
    row = c.execute("SELECT * FROM jobs WHERE id = %s" + (" FOR UPDATE" if lock else ""),
                    (job_id,)).fetchone()
    if row is None:
        raise NotFound(f"unknown job {job_id!r} (see 'autopost list')")
    return job_from(row, from_pg)


def live_by_text(c, jobs: Sequence[NewJob]
                 ) -> dict[tuple[str, str], list[schedule.Known]]:
    """The LIVE jobs sharing a text key with one of `jobs`, in one query."""
    return live_by_pairs(c, sorted({(j.account, k) for j in jobs
                                    if (k := duplicate_key(j.text))}))


def live_by_pairs(c, pairs: Sequence[tuple[str, str]]
                  ) -> dict[tuple[str, str], list[schedule.Known]]:
    """The LIVE jobs of these (account, text key) pairs, in one query."""
    found: dict[tuple[str, str], list[schedule.Known]] = {}
    if not pairs:
        return found
    for r in c.execute(
            "SELECT account, text_key, id, scheduled_at, posted_at, status FROM jobs "
            "WHERE (account, text_key) IN (SELECT * FROM unnest(%s::text[], %s::text[])) "
            "AND status = ANY(%s)", ([a for a, _ in pairs], [k for _, k in pairs], _LIVE)):
        found.setdefault((r["account"], r["text_key"]), []).append(
            (r["id"], from_pg(r["scheduled_at"]), from_pg(r["posted_at"]), r["status"]))
    return found


def check_duplicate(c, account: str, key: str | None, at: datetime, window: float, *,
                    exclude: str | None = None,
                    batch: Sequence[tuple[datetime, str]] | None = None,
                    known: Sequence[schedule.Known] | None = None) -> None:
    """The duplicate guard (schedule.refuse_duplicate) on the LIVE jobs with this text
    key: `known` as live_by_text read them, else the first one in the window."""
    if key is None:
        return  # media-only posts have no text to compare
    if known is None:
        lo, hi = schedule.around(at, window, to_pg)
        known = [(r["id"], r["scheduled_at"], r["posted_at"], r["status"]) for r in c.execute(
            "SELECT id, scheduled_at, posted_at, status FROM jobs WHERE account = %s "
            "AND text_key = %s AND status = ANY(%s) AND id IS DISTINCT FROM %s "
            "AND ((scheduled_at > %s AND scheduled_at < %s) "
            "OR (posted_at > %s AND posted_at < %s)) LIMIT 1",
            (account, key, _LIVE, exclude, lo, hi, lo, hi))]
    schedule.refuse_duplicate(account, at, window, to_pg, known=known, exclude=exclude,
                              batch=batch)


def free_slot(c, job: NewJob, taken: set[datetime], *, exclude: str | None = None) -> datetime:
    """The first of job.slots that no LIVE job of the account (nor `taken`, the times an
    earlier job of the batch holds) is scheduled at."""
    held = {from_pg(r["scheduled_at"]) for r in c.execute(
        "SELECT scheduled_at FROM jobs WHERE account = %s AND status = ANY(%s) "
        "AND scheduled_at >= %s AND scheduled_at <= %s AND id IS DISTINCT FROM %s",
        (job.account, _LIVE, job.slots[0], job.slots[-1], exclude))}
    return schedule.first_free(job, held | taken, to_pg)


def later_parts(c, job_id: str, statuses: Sequence[JobStatus]) -> list[str]:
    """The ids of the parts after this job in its thread whose status is in `statuses`."""
    return [r["id"] for r in c.execute(
        "SELECT l.id FROM jobs j JOIN jobs l ON l.thread_id = j.thread_id "
        "AND l.thread_part > j.thread_part WHERE j.id = %s AND l.status = ANY(%s) "
        "ORDER BY l.thread_part", (job_id, [str(s) for s in statuses]))]


def stop_thread(c, job_id: str, now: datetime) -> None:
    """A failed part stops its thread: the pending parts after it fail too, saying why."""
    row = c.execute("SELECT thread_part FROM jobs WHERE id = %s", (job_id,)).fetchone()
    if row is None or row["thread_part"] is None:
        return
    why = f"not sent: part {row['thread_part']} of its thread (job {job_id}) failed"
    for later in later_parts(c, job_id, (JobStatus.PENDING,)):
        c.execute("UPDATE jobs SET status = 'failed', next_attempt_at = NULL, "
                  "last_error = %s, updated_at = %s WHERE id = %s", (why, now, later))
        audit(c, later, 0, None, now, "stopped",
              why + "; 'autopost retry' of that part sends the rest after it")


def with_replies(c, jobs: Sequence[Job]) -> list[Job]:
    """The jobs, thread parts after the first with `reply` set from the parts they reply
    to (posted: the claim took them only then)."""
    out = []
    for job in jobs:
        if job.thread_id is not None and job.thread_part and job.thread_part > 1:
            rows = {r["thread_part"]: r for r in c.execute(
                "SELECT thread_part, platform_post_id, platform_url, ref FROM jobs "
                "WHERE thread_id = %s AND thread_part IN (1, %s) AND status = 'posted'",
                (job.thread_id, job.thread_part - 1))}
            if 1 in rows and job.thread_part - 1 in rows:
                def post(r: dict[str, Any]) -> PostRef:
                    return PostRef(r["platform_post_id"] or "", r["platform_url"],
                                   loads(r["ref"]))

                job = replace(job, reply=Reply(parent=post(rows[job.thread_part - 1]),
                                               root=post(rows[1])))
        out.append(job)
    return out


def retry_one(c, job: Job, now: datetime, at: datetime | None, *, force: bool = False
              ) -> bool:
    """Set one (locked) job pending again (False if its status cannot be retried), as the
    SQLite store's _retry_one."""
    if not schedule.retryable(job, now):
        return False
    attempts = [attempt_from(r, from_pg) for r in c.execute(
        "SELECT * FROM attempts WHERE job_id = %s ORDER BY id", (job.id,))]
    holder = None
    if job.status == JobStatus.CANCELLED and job.key is not None:
        holder = c.execute(
            "SELECT id FROM jobs WHERE account = %s AND key = %s AND status <> 'cancelled' "
            "AND id <> %s", (job.account, job.key, job.id)).fetchone()
    note = schedule.retry_note(job, attempts, at, force=force,
                               key_holder=holder and holder["id"])
    c.execute(
        "UPDATE jobs SET status = 'pending', next_attempt_at = %s, "
        "scheduled_at = coalesce(%s, scheduled_at), lease_owner = NULL, "
        "lease_expires_at = NULL, dispatched = 0, "
        "max_attempts = greatest(max_attempts, attempts + 1), last_error = NULL, "
        "last_error_kind = NULL, updated_at = %s WHERE id = %s",
        (to_pg(at or now), to_pg(at), now, job.id))
    audit(c, job.id, job.attempts, None, now, "retried", note)
    return True


def apply_edit(c, job: Job, edit: JobEdit, now: datetime, window: float | None, *,
               verb: str = "edited") -> None:
    """Change one (locked) job as the SQLite store's _apply_edit."""
    sets, note = schedule.planned_edit(job, edit, verb, now, to_pg)
    guard = schedule.edit_guard(job, edit) if window is not None else None
    if guard is not None:
        check_duplicate(c, job.account, *guard, window, exclude=job.id)
    assignments = ", ".join(f"{k} = %({k})s" for k in sets)
    c.execute(f"UPDATE jobs SET {assignments} WHERE id = %(id)s", {**sets, "id": job.id})
    audit(c, job.id, job.attempts, None, now, verb, note)


def update_with(c, job_id: str, job: NewJob, now: datetime, window: float | None) -> None:
    """`add --key K --update`: the job holding K takes what was given now."""
    current = job_in(c, job_id)
    if current.status == JobStatus.POSTED:
        return
    at = job.scheduled_at
    if job.slots:
        at = current.scheduled_at if current.scheduled_at in job.slots else \
            free_slot(c, job, set(), exclude=job_id)
    apply_edit(c, current, schedule.as_update(job, at), now, window, verb="updated")


def _matching(c, account: str | None, statuses: Sequence[JobStatus],
              allowed: Sequence[JobStatus]) -> list[Job]:
    wanted = [str(s) for s in statuses if s in allowed]
    if not wanted:
        return []
    sql = "SELECT * FROM jobs WHERE status = ANY(%s)"
    params: list[Any] = [wanted]
    if account is not None:
        sql += " AND account = %s"
        params.append(account)
    return [job_from(r, from_pg)
            for r in c.execute(sql + " ORDER BY scheduled_at, id FOR UPDATE", params)]


class ScheduleMethods:
    """The schedule-writing half of PostgresStore (it provides _tx, _now, _rows,
    get_job, get_account and _jobs_by_ids)."""

    def pause_account(self, name, *, until, now):
        def body(c):
            cur = c.execute(
                "UPDATE accounts SET paused_until = %s, resumed_at = %s, updated_at = %s "
                "WHERE name = %s", (to_pg(until), to_pg(until), self._now(c, now), name))
            if cur.rowcount == 0:
                raise NotFound(f"unknown account {name!r} (see 'autopost accounts list')")

        self._tx(body)
        return self.get_account(name)

    def resume_account(self, name, *, now):
        def body(c):
            at = self._now(c, now)
            cur = c.execute(
                "UPDATE accounts SET resumed_at = CASE WHEN paused_until > %(now)s "
                "THEN %(now)s ELSE resumed_at END, paused_until = NULL, updated_at = %(now)s "
                "WHERE name = %(name)s", {"now": at, "name": name})
            if cur.rowcount == 0:
                raise NotFound(f"unknown account {name!r} (see 'autopost accounts list')")

        self._tx(body)
        return self.get_account(name)

    def edit_job(self, job_id: str, edit: JobEdit, *, now: datetime,
                 duplicate_window: float | None = None) -> Job:
        job = self.get_job(job_id)

        def body(c):
            if duplicate_window is not None:
                lock_accounts(c, [job.account])
            apply_edit(c, job_in(c, job.id), edit, self._now(c, now), duplicate_window)

        self._tx(body)
        return self.get_job(job.id)

    def cancel_jobs(self, *, account, statuses, now) -> list[Job]:
        def body(c):
            at = self._now(c, now)
            jobs = _matching(c, account, statuses, CANCELLABLE)
            if jobs:
                c.execute("UPDATE jobs SET status = 'cancelled', next_attempt_at = NULL, "
                          "updated_at = %s WHERE id = ANY(%s)", (at, [j.id for j in jobs]))
            for job in jobs:
                audit(c, job.id, job.attempts, None, at, "cancelled", "cancelled by operator")
            return [j.id for j in jobs]

        ids = self._tx(body)
        fresh = {j.id: j for j in self._jobs_by_ids(ids)}
        return [fresh[i] for i in ids]

    def retry_jobs(self, *, account, statuses, now, at=None) -> list[Job]:
        def body(c):
            when = self._now(c, now)
            jobs = _matching(c, account, statuses, RETRYABLE)
            for job in jobs:
                retry_one(c, job, when, at)
            return [j.id for j in jobs]

        ids = self._tx(body)
        fresh = {j.id: j for j in self._jobs_by_ids(ids)}
        return [fresh[i] for i in ids]

    # -- recurring series ---------------------------------------------------------
    def add_series(self, series, jobs, *, now, duplicate_window=None):
        def body(c):
            at = self._now(c, now)
            row = series_row(series, at, to_pg)
            if duplicate_window is not None:
                lock_accounts(c, [series.account])
            c.execute(f"INSERT INTO series ({', '.join(row)}) VALUES "
                      f"({', '.join(f'%({k})s' for k in row)})", row)
            return _insert_occurrences(c, jobs, at, duplicate_window)

        made = self._tx(body)
        return self.get_series(series.id), made

    def get_series(self, series_id):
        return series_from(by_id(self._rows, "%s", "series", series_id), from_pg)

    def list_series(self, *, active_only=False):
        sql = "SELECT * FROM series"
        if active_only:
            sql += " WHERE status = 'active'"
        return [series_from(r, from_pg) for r in self._rows(sql + " ORDER BY created_at, id")]

    def series_to_extend(self, *, now):
        def body(c):
            return [series_from(r, from_pg) for r in c.execute(
                "SELECT * FROM series WHERE status = 'active' AND next_extend_at <= %s "
                "ORDER BY next_extend_at", (self._now(c, now),))]

        return self._tx(body)

    def extend_series(self, series_id, jobs, *, expected_made, made, through,
                      next_extend_at, done, now):
        def body(c):
            at = self._now(c, now)
            cur = c.execute(
                "UPDATE series SET made = %s, through = %s, next_extend_at = %s, "
                "status = %s, updated_at = %s WHERE id = %s AND status = 'active' "
                "AND made = %s",
                (made, to_pg(through), to_pg(next_extend_at), "done" if done else "active",
                 at, series_id, expected_made))
            if cur.rowcount == 0:
                return False
            # Occurrences are ordinary jobs; the guard was applied when the series was
            # added (its own occurrences never repeat each other within a day).
            _insert_occurrences(c, jobs, at, None)
            return True

        return self._tx(body)

    def cancel_series(self, series_id, *, now):
        series = self.get_series(series_id)

        def body(c):
            at = self._now(c, now)
            c.execute("UPDATE series SET status = 'cancelled', next_extend_at = NULL, "
                      "updated_at = %s WHERE id = %s", (at, series.id))
            jobs = [j for j in _occurrences(c, series.id) if j.status in CANCELLABLE]
            if jobs:
                c.execute("UPDATE jobs SET status = 'cancelled', next_attempt_at = NULL, "
                          "updated_at = %s WHERE id = ANY(%s)", (at, [j.id for j in jobs]))
            for job in jobs:
                audit(c, job.id, job.attempts, None, at, "cancelled",
                      f"series {series.id} cancelled by operator")
            return [j.id for j in jobs]

        ids = self._tx(body)
        return self.get_series(series.id), self._in_order(ids)

    def edit_series(self, series_id, edit, *, now):
        if edit.scheduled_at is not None:
            raise UsageError("a series' times come from its rule; cancel it and add a new "
                             "one to change them")
        series = self.get_series(series_id)

        def body(c):
            at = self._now(c, now)
            sets = schedule.series_sets(edit, at)
            c.execute(f"UPDATE series SET {', '.join(f'{k} = %({k})s' for k in sets)} "
                      "WHERE id = %(id)s", {**sets, "id": series.id})
            changed = []
            for job in _occurrences(c, series.id):
                if not_editable_reason(job) is None:
                    apply_edit(c, job, edit, at, None, verb="edited")
                    changed.append(job.id)
            return changed

        ids = self._tx(body)
        return self.get_series(series.id), self._in_order(ids)

    def _in_order(self, ids: Sequence[str]) -> list[Job]:
        return sorted(self._jobs_by_ids(ids), key=lambda j: (j.series_n or 0, j.id))


def _occurrences(c, series_id: str) -> list[Job]:
    return [job_from(r, from_pg) for r in c.execute(
        "SELECT * FROM jobs WHERE series_id = %s ORDER BY series_n FOR UPDATE", (series_id,))]


def _insert_occurrences(c, jobs: Sequence[NewJob], now: datetime,
                        window: float | None) -> list[Job]:
    rows = []
    for job in jobs:
        row = new_job_row(job, new_id(), now, to_pg)
        if window is not None:
            check_duplicate(c, job.account, row["text_key"], job.scheduled_at, window)
        rows.append(row)
    if rows:
        cols = list(rows[0])
        with c.cursor() as cur:
            cur.executemany(f"INSERT INTO jobs ({', '.join(cols)}) VALUES "
                            f"({', '.join(f'%({k})s' for k in cols)})", rows)
    return [inserted_job(r, j, from_pg(now)) for r, j in zip(rows, jobs, strict=True)]
