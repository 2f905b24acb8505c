"""Rows <-> autopost dataclasses, shared by the SQLite and PostgreSQL stores, and the
queries both build alike (each passing its parameter mark).

The two stores hold the same columns. They differ only in how a time is kept: SQLite
keeps fixed-width UTC text (timefmt.py), PostgreSQL a timestamptz. Each builder and
reader therefore takes the store's pair of time converters; JSON columns are text on
both.
"""

from __future__ import annotations

import json
import os
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from autopost.errors import NotFound, UsageError
from autopost.ids import new_id
from autopost.models import (
    Account,
    AccountState,
    Attempt,
    ErrorKind,
    Job,
    JobFilter,
    JobStatus,
    Media,
    NewJob,
    Run,
    Series,
)
from autopost.store.base import duplicate_key
from autopost.store.timefmt import from_db, to_db

ToDb = Callable[[datetime | None], Any]
FromDb = Callable[[Any], datetime | None]

FINISHED = ("posted", "failed", "cancelled", "missed")
# The tables in the order a copy fills them (each row's references exist before it).
TABLES = ("accounts", "jobs", "attempts", "runs", "series")


def inserted_job(row: dict[str, Any], job: NewJob, created_at: datetime) -> Job:
    """The Job that `row`, just inserted from `job`, reads back as (without reading it)."""
    scheduled = job.scheduled_at.astimezone(UTC)
    return Job(
        id=row["id"], account=job.account, platform=job.platform, text=job.text,
        scheduled_at=scheduled, next_attempt_at=scheduled, status=JobStatus.PENDING,
        media=tuple(job.media), options=dict(job.options), attempts=0,
        max_attempts=job.max_attempts, key=job.key, idempotency_key=row["idempotency_key"],
        group_id=job.group_id, created_at=created_at, updated_at=created_at,
        thread_id=job.thread_id, thread_part=job.thread_part, series_id=job.series_id,
        series_n=job.series_n)


def added_jobs(out: list[tuple[str, bool]], rows: list[dict[str, Any]],
               inserted: list[NewJob], created_at: datetime,
               read: Callable[[list[str]], list[Job]]) -> list[tuple[Job, bool]]:
    """add_jobs' answer from what it did: `out` each job's id in order and whether it was
    created, `rows` and `inserted` the rows it inserted and the jobs they came from,
    `read` the store's read of jobs by id. Up to 1000 jobs are read back; a larger batch
    builds its new jobs from the rows (inserted_job) and reads only the others."""
    if len(out) <= 1000:
        byid = {j.id: j for j in read([i for i, _ in out])}
        return [(byid[i], created) for i, created in out]
    made = {r["id"]: inserted_job(r, job, created_at)
            for r, job in zip(rows, inserted, strict=True)}
    made.update({j.id: j for j in read([i for i, created in out if not created])})
    return [(made[i], created) for i, created in out]


# What by_id looks in, per noun: the table, the shortest start of an id it completes,
# and the command that lists the ids.
_BY_ID = {"job": ("jobs", 3, "list"), "series": ("series", 5, "plan")}


def by_id(read: Callable[..., list[dict[str, Any]]], mark: str, noun: str, given: str
          ) -> dict[str, Any]:
    """The row of the job or series (`noun`) whose id is `given` or, when none is, the one
    whose id starts with it; UsageError when several do, NotFound when none does. `read`
    is the store's read (SQL, parameters) and `mark` its parameter mark."""
    table, shortest, see = _BY_ID[noun]
    key = given.strip().lower()
    rows = read(f"SELECT * FROM {table} WHERE id = {mark}", (key,))
    if not rows and len(key) >= shortest:
        rows = read(f"SELECT * FROM {table} WHERE id >= {mark} AND id < {mark} ORDER BY id "
                    "LIMIT 2", (key, key + "\uffff"))
        if len(rows) > 1:
            raise UsageError(f"{noun} id {key!r} is ambiguous; give more characters")
    if not rows:
        raise NotFound(f"unknown {noun} {key!r} (see 'autopost {see}')")
    return rows[0]


def jobs_query(flt: JobFilter, mark: str) -> tuple[str, list[Any]]:
    """list_jobs' SELECT for a filter and its parameters, `mark` being the store's
    parameter mark ('?' on SQLite, '%s' on PostgreSQL)."""
    where, params = [], []
    if flt.status is not None:
        # A literal (a JobStatus value): the partial indexes qualify for it.
        where.append(f"status = '{JobStatus(flt.status)}'")
    for column, value in (("account", flt.account), ("platform", flt.platform),
                          ("thread_id", flt.thread_id), ("series_id", flt.series_id)):
        if value is not None:
            where.append(f"{column} = {mark}")
            params.append(value)
    sql = "SELECT * FROM jobs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY thread_part, scheduled_at, id" if flt.thread_id is not None else \
        " ORDER BY scheduled_at, id"
    if flt.limit is not None:
        sql += f" LIMIT {mark}"
        params.append(flt.limit)
    return sql, params


_UNSET: Any = object()


def new_job_row(job: NewJob, job_id: str, stamp: Any, t: ToDb = to_db, *,
                text_key: str | None = _UNSET) -> dict[str, Any]:
    """The jobs row for `job`; `text_key` is its duplicate_key(text) when the caller
    already has it."""
    scheduled = t(job.scheduled_at)
    return {
        "id": job_id,
        "account": job.account,
        "platform": job.platform,
        "text": job.text,
        "media": json.dumps([m.to_dict() for m in job.media]) if job.media else "[]",
        "options": json.dumps(job.options) if job.options else "{}",
        "scheduled_at": scheduled,
        "status": "pending",
        "attempts": 0,
        "max_attempts": job.max_attempts,
        "next_attempt_at": scheduled,
        "key": job.key,
        "idempotency_key": os.urandom(16).hex(),
        "group_id": job.group_id,
        "ref": "{}",
        "created_at": stamp,
        "updated_at": stamp,
        "thread_id": job.thread_id,
        "thread_part": job.thread_part,
        "series_id": job.series_id,
        "series_n": job.series_n,
        "text_key": duplicate_key(job.text) if text_key is _UNSET else text_key,
    }


class Imported(Sequence[tuple[str, bool]]):
    """What import_jobs answers: (job id, created) per job, in order. Kept compactly
    (the ids of each batch in one string, the flags in bytes) so that the answer for a
    large import takes ~17 bytes a job rather than a tuple and a string each (~120)."""

    def __init__(self) -> None:
        self._parts: list[str] = []   # ids, joined per batch
        self._text = ""                # the parts joined, once read
        self._ends = array("q")        # where each id ends in the joined text
        self._made = bytearray()

    def add(self, ids: Sequence[str], made: Sequence[bool]) -> None:
        end = self._ends[-1] if self._ends else 0
        for job_id in ids:
            end += len(job_id)
            self._ends.append(end)
        self._parts.append("".join(ids))
        self._made += bytes(made)

    def __len__(self) -> int:
        return len(self._made)

    def _joined(self) -> str:
        if self._parts:
            self._text = "".join([self._text, *self._parts])
            self._parts = []
        return self._text

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(i)
        text = self._joined()
        return text[self._ends[i - 1] if i else 0:self._ends[i]], bool(self._made[i])

    def __iter__(self) -> Iterator[tuple[str, bool]]:
        text, start = self._joined(), 0
        for end, made in zip(self._ends, self._made, strict=True):
            yield text[start:end], bool(made)
            start = end

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Imported({list(self)!r})"


# (id, scheduled_at, posted_at, status) of a LIVE job with a given text key, as each
# store reads it back.
Live = dict[tuple[str, str], list[tuple[Any, ...]]]
CheckDuplicate = Callable[..., None]


def import_batch(batch: list[NewJob], *, stamp: Any, t: ToDb,
                 existing: dict[tuple[str, str], str], seen: dict[tuple[str, str], str],
                 window: float | None, live_by_text: Callable[[list[tuple[str, str]]], Live],
                 check_duplicate: CheckDuplicate
                 ) -> tuple[list[tuple[str | int, bool]], list[dict[str, Any]],
                            dict[tuple[str, str], int]]:
    """What one batch of an import adds, for both stores.

    Returns (plan, rows, fresh): per job an existing id or the index of its new row (and
    whether it is new); the new rows (the store makes sure their ids are free); and the
    (account, key) of each new row with its index. Jobs whose (account, key) is in
    `existing` (stored), `seen` (an earlier batch) or an earlier row of this batch are
    not added again.

    The duplicate guard (with a window): each new row's text key is computed once; the
    stored LIVE jobs sharing a key with the batch are read in one go (earlier batches
    are stored by now), and only a row whose key has a stored job or an earlier row of
    this batch is compared, with the store's check_duplicate."""
    plan: list[tuple[str | int, bool]] = []
    rows: list[dict[str, Any]] = []
    fresh: dict[tuple[str, str], int] = {}
    new: list[tuple[NewJob, str, str | None]] = []
    for job in batch:
        pair = (job.account, job.key) if job.key is not None else None
        if pair is not None and (pair in existing or pair in seen or pair in fresh):
            plan.append((existing.get(pair) or seen.get(pair) or fresh[pair], False))
            continue
        if pair is not None:
            fresh[pair] = len(new)
        plan.append((len(new), True))
        new.append((job, new_id(), duplicate_key(job.text)))
    if window is not None:
        live = live_by_text(sorted({(j.account, k) for j, _, k in new if k is not None}))
        mine: dict[tuple[str, str], list[tuple[datetime, str]]] = {}
        for job, job_id, key in new:
            if key is None:
                continue  # media-only posts have no text to compare
            text = (job.account, key)
            known, earlier = live.get(text), mine.get(text)
            if known or earlier:
                check_duplicate(job.account, key, job.scheduled_at, window,
                                batch=earlier, known=known or [])
            mine.setdefault(text, []).append((job.scheduled_at, job_id))
    rows = [new_job_row(job, job_id, stamp, t, text_key=key) for job, job_id, key in new]
    return plan, rows, fresh


def account_row(account: Account, now: datetime, t: ToDb = to_db) -> dict[str, Any]:
    return {
        "name": account.name,
        "platform": account.platform,
        "base_url": account.base_url,
        "credentials": json.dumps(account.credentials),
        "state": str(account.state),
        "state_reason": account.state_reason,
        "blocked_until": t(account.blocked_until),
        "token_expires_at": t(account.token_expires_at),
        "hourly_limit": account.hourly_limit,
        "daily_limit": account.daily_limit,
        "created_at": t(now),
        "updated_at": t(now),
    }


def loads(text: str) -> Any:
    """json.loads with a fast path for the empty list/object most rows hold."""
    if text == "{}":
        return {}
    if text == "[]":
        return []
    return json.loads(text)


def built(cls: type, values: dict[str, Any]) -> Any:
    """A frozen dataclass made from the values of all its fields, without its __init__:
    that sets every field through object.__setattr__, which for a Job (31 fields) cost
    more than reading its row; a claim builds a hundred. The caller gives every field
    (tests/test_store_rows.py holds them to the class's)."""
    obj = _new(cls)
    obj.__dict__.update(values)
    return obj


_new = object.__new__


def account_from(r: dict[str, Any], f: FromDb = from_db) -> Account:
    return built(Account, {
        "name": r["name"], "platform": r["platform"], "base_url": r["base_url"],
        "credentials": json.loads(r["credentials"]), "state": AccountState(r["state"]),
        "state_reason": r["state_reason"], "blocked_until": f(r["blocked_until"]),
        "token_expires_at": f(r["token_expires_at"]), "hourly_limit": r["hourly_limit"],
        "daily_limit": r["daily_limit"], "created_at": f(r["created_at"]),
        "paused_until": f(r.get("paused_until")), "resumed_at": f(r.get("resumed_at"))})


def job_from(r: dict[str, Any], f: FromDb = from_db) -> Job:
    media = r["media"]
    kind = r["last_error_kind"]
    return built(Job, {
        "id": r["id"], "account": r["account"], "platform": r["platform"], "text": r["text"],
        "scheduled_at": f(r["scheduled_at"]), "next_attempt_at": f(r["next_attempt_at"]),
        "status": JobStatus(r["status"]),
        "media": () if media == "[]" else tuple(Media(**m) for m in loads(media)),
        "options": loads(r["options"]), "attempts": r["attempts"],
        "max_attempts": r["max_attempts"], "key": r["key"],
        "idempotency_key": r["idempotency_key"], "group_id": r["group_id"],
        "lease_owner": r["lease_owner"], "lease_expires_at": f(r["lease_expires_at"]),
        "last_error": r["last_error"], "last_error_kind": ErrorKind(kind) if kind else None,
        "platform_post_id": r["platform_post_id"], "platform_url": r["platform_url"],
        "posted_at": f(r["posted_at"]), "ref": loads(r["ref"]),
        "created_at": f(r["created_at"]), "updated_at": f(r["updated_at"]),
        "thread_id": r.get("thread_id"), "thread_part": r.get("thread_part"),
        "series_id": r.get("series_id"), "series_n": r.get("series_n"), "reply": None})


def attempt_from(r: dict[str, Any], f: FromDb = from_db) -> Attempt:
    return Attempt(
        job_id=r["job_id"], number=r["number"], run_id=r["run_id"],
        started_at=f(r["started_at"]), finished_at=f(r["finished_at"]),
        outcome=r["outcome"],
        error_kind=ErrorKind(r["error_kind"]) if r["error_kind"] else None,
        http_status=r["http_status"], message=r["message"],
        platform_post_id=r["platform_post_id"], decision=r["decision"])


def run_from(r: dict[str, Any], f: FromDb = from_db) -> Run:
    return Run(id=r["id"], started_at=f(r["started_at"]), finished_at=f(r["finished_at"]),
               host=r["host"], pid=r["pid"], counts=json.loads(r["counts"]))


def series_row(s: Series, stamp: Any, t: ToDb = to_db) -> dict[str, Any]:
    return {
        "id": s.id, "account": s.account, "platform": s.platform, "text": s.text,
        "media": json.dumps([m.to_dict() for m in s.media]),
        "options": json.dumps(s.options), "max_attempts": s.max_attempts, "rule": s.rule,
        "tz": s.tz, "start_at": t(s.start_at), "until_at": t(s.until_at),
        "count": s.count, "status": s.status, "through": t(s.through), "made": s.made,
        "next_extend_at": t(s.next_extend_at), "created_at": stamp, "updated_at": stamp,
    }


def series_from(r: dict[str, Any], f: FromDb = from_db) -> Series:
    return Series(
        id=r["id"], account=r["account"], platform=r["platform"], text=r["text"],
        rule=r["rule"], tz=r["tz"], start_at=f(r["start_at"]),
        media=tuple(Media(**m) for m in loads(r["media"])), options=loads(r["options"]),
        max_attempts=r["max_attempts"], until_at=f(r["until_at"]), count=r["count"],
        status=r["status"], made=r["made"], through=f(r["through"]),
        next_extend_at=f(r["next_extend_at"]), created_at=f(r["created_at"]),
        updated_at=f(r["updated_at"]))


def batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """`items` in lists of `size` (the last one shorter), read lazily: a streamed import
    holds one batch at a time."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
