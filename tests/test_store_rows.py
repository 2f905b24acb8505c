"""Rows become the same objects the dataclasses' constructors make (store/rows.py builds
them without __init__, so nothing else checks that every field is there)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from autopost.models import Account, AccountState, ErrorKind, Job, JobStatus, Media
from autopost.store.rows import account_from, job_from
from autopost.store.timefmt import to_db

AT = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)


def job_row(**kw):
    row = {
        "id": "abcd2345", "account": "a", "platform": "outbox", "text": "hello",
        "media": '[{"path": "/x.png", "alt": "an x"}]', "options": '{"k": 1}',
        "scheduled_at": to_db(AT), "next_attempt_at": to_db(AT), "status": "unknown",
        "attempts": 2, "max_attempts": 5, "key": "k1", "idempotency_key": "ik",
        "group_id": "g", "lease_owner": "r1", "lease_expires_at": to_db(AT),
        "last_error": "timed out", "last_error_kind": "ambiguous", "platform_post_id": "p1",
        "platform_url": "https://x/p1", "posted_at": None, "ref": '{"upload": "u1"}',
        "created_at": to_db(AT), "updated_at": to_db(AT), "thread_id": "t1",
        "thread_part": 2, "series_id": None, "series_n": None, "dispatched": 1,
        "text_key": "tk"}
    row.update(kw)
    return row


def test_a_job_row_builds_the_job_its_constructor_would():
    job = job_from(job_row())
    expected = Job(
        id="abcd2345", account="a", platform="outbox", text="hello", scheduled_at=AT,
        next_attempt_at=AT, status=JobStatus.UNKNOWN, media=(Media(path="/x.png",
                                                                   alt="an x"),),
        options={"k": 1}, attempts=2, max_attempts=5, key="k1", idempotency_key="ik",
        group_id="g", lease_owner="r1", lease_expires_at=AT, last_error="timed out",
        last_error_kind=ErrorKind.AMBIGUOUS, platform_post_id="p1",
        platform_url="https://x/p1", posted_at=None, ref={"upload": "u1"}, created_at=AT,
        updated_at=AT, thread_id="t1", thread_part=2)
    assert job == expected
    assert set(vars(job)) == {f.name for f in dataclasses.fields(Job)}
    assert job.media[0].alt == "an x" and job.status is JobStatus.UNKNOWN
    # Still frozen, and still a value: replace() and hashing see the same fields.
    try:
        job.text = "changed"  # type: ignore[misc]
    except dataclasses.FrozenInstanceError:
        pass
    else:
        raise AssertionError("a built job can be changed")
    assert dataclasses.replace(job, text="other").text == "other"
    plain = job_from(job_row(media="[]", options="{}", ref="{}", last_error_kind=None))
    assert (plain.media, plain.options, plain.ref, plain.last_error_kind) == ((), {}, {}, None)


def test_an_account_row_builds_the_account_its_constructor_would():
    row = {"name": "a", "platform": "x", "base_url": None, "credentials": '{"t": "s"}',
           "state": "needs_reauth", "state_reason": "401", "blocked_until": to_db(AT),
           "token_expires_at": None, "hourly_limit": 3, "daily_limit": None,
           "created_at": to_db(AT), "updated_at": to_db(AT), "refresh_owner": None,
           "refresh_until": None, "paused_until": None, "resumed_at": to_db(AT)}
    account = account_from(row)
    assert account == Account(name="a", platform="x", credentials={"t": "s"},
                              state=AccountState.NEEDS_REAUTH, state_reason="401",
                              blocked_until=AT, hourly_limit=3, created_at=AT,
                              resumed_at=AT)
    assert set(vars(account)) == {f.name for f in dataclasses.fields(Account)}
