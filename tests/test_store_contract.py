"""The Store contract: what any backend (SQLite today, PostgreSQL later) must do.

Written against the Store interface only, through the `store` fixture (conftest.py),
which is parametrised over STORE_BACKENDS. Times are explicit: nothing here reads the
wall clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from autopost.errors import NotFound, UsageError
from autopost.models import (
    Account,
    AccountState,
    ErrorKind,
    JobFilter,
    JobStatus,
    Media,
    NewJob,
    Run,
)
from autopost.store.base import Result, Store

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LEASE = 300.0


def no_limits(_account):
    return (None, None)


def account(store: Store, name: str = "a", platform: str = "outbox", **kw) -> Account:
    return store.add_account(
        Account(name=name, platform=platform, credentials={"path": f"/tmp/{name}"}, **kw),
        now=NOW)


def new(account: str = "a", at: datetime = NOW, *, key: str | None = None,
        text: str = "hello", platform: str = "outbox", **kw) -> NewJob:
    return NewJob(account=account, platform=platform, text=text, scheduled_at=at, key=key, **kw)


def add(store: Store, *jobs: NewJob, now: datetime = NOW):
    return [job for job, _ in store.add_jobs(list(jobs), now=now)]


def claim(store: Store, run: str = "r1", now: datetime = NOW, *, limit: int = 50,
          per_account: int = 50, limits=no_limits, lease: float = LEASE):
    return store.claim(run, now=now, lease=lease, limit=limit, per_account=per_account,
                       limits_for=limits)


def finish(store: Store, job_id: str, run: str, at: datetime, status: JobStatus, **kw) -> bool:
    return store.record([Result(job_id=job_id, run_id=run, finished_at=at, status=status,
                                outcome=str(status), **kw)])[0]


def publish(store: Store, job_id: str, at: datetime, run: str = "rp") -> None:
    """Take one due job all the way to posted at `at`."""
    got = claim(store, run, at)
    assert job_id in [j.id for j in got.jobs]
    before = store.get_job(job_id).attempts
    assert store.dispatch([job_id], run, now=at) == {job_id: before + 1}
    others = [j.id for j in got.jobs if j.id != job_id]
    store.release(others, run, now=at)
    assert finish(store, job_id, run, at, JobStatus.POSTED, platform_post_id=f"p-{job_id}")


# -- accounts ---------------------------------------------------------------------------------

def test_accounts_add_get_list(store):
    account(store, "zed", base_url="https://social.example", hourly_limit=3)
    account(store, "amy", platform="mastodon")
    assert [a.name for a in store.list_accounts()] == ["amy", "zed"]
    zed = store.get_account("zed")
    assert zed.platform == "outbox"
    assert zed.base_url == "https://social.example"
    assert zed.credentials == {"path": "/tmp/zed"}
    assert zed.hourly_limit == 3 and zed.daily_limit is None
    assert zed.state == AccountState.OK and zed.blocked_until is None


def test_account_names_are_unique_unless_replaced(store):
    account(store, "a")
    with pytest.raises(UsageError):
        account(store, "a")
    store.add_account(Account(name="a", platform="outbox", credentials={"path": "/new"}),
                      now=NOW, replace=True)
    assert store.get_account("a").credentials == {"path": "/new"}
    assert len(store.list_accounts()) == 1


def test_unknown_account_is_not_found(store):
    with pytest.raises(NotFound):
        store.get_account("nobody")
    with pytest.raises(NotFound):
        store.remove_account("nobody")


def test_remove_account_refused_while_it_has_live_jobs(store):
    account(store, "a")
    (job,) = add(store, new("a"))
    with pytest.raises(UsageError):
        store.remove_account("a")
    assert store.get_account("a").name == "a"
    store.cancel_job(job.id, now=NOW)
    store.remove_account("a")
    with pytest.raises(NotFound):
        store.get_account("a")


def test_account_state_and_credentials_updates(store):
    account(store, "a")
    store.set_account_state("a", AccountState.NEEDS_REAUTH, "token revoked", now=NOW)
    got = store.get_account("a")
    assert got.state == AccountState.NEEDS_REAUTH and got.state_reason == "token revoked"
    expires = NOW + timedelta(hours=2)
    store.save_credentials("a", {"path": "/x", "token": "t2"}, expires, now=NOW)
    got = store.get_account("a")
    assert got.credentials == {"path": "/x", "token": "t2"}
    assert got.token_expires_at == expires
    with pytest.raises(NotFound):
        store.set_account_state("ghost", AccountState.OK, None, now=NOW)


def test_refresh_lock_has_one_owner_until_it_expires(store):
    account(store, "a")
    assert store.acquire_refresh_lock("a", "p1", now=NOW, ttl=60)
    assert not store.acquire_refresh_lock("a", "p2", now=NOW, ttl=60)
    assert store.acquire_refresh_lock("a", "p1", now=NOW, ttl=60)  # re-entrant
    store.release_refresh_lock("a", "p2")  # not the owner: no effect
    assert not store.acquire_refresh_lock("a", "p2", now=NOW + timedelta(seconds=30), ttl=60)
    assert store.acquire_refresh_lock("a", "p2", now=NOW + timedelta(seconds=61), ttl=60)
    store.release_refresh_lock("a", "p2")
    assert store.acquire_refresh_lock("a", "p3", now=NOW + timedelta(seconds=62), ttl=60)


# -- adding and reading jobs ------------------------------------------------------------------

def test_add_jobs_returns_pending_jobs_with_every_field(store):
    account(store)
    media = (Media("/m/a.png", "a cat"), Media("/m/b.png"))
    results = store.add_jobs([new(at=NOW + timedelta(hours=1), media=media, key="k1",
                                  group_id="g1", max_attempts=7, options={"lang": "en"}),
                              new(at=NOW + timedelta(hours=2))], now=NOW)
    assert [created for _, created in results] == [True, True]
    first, second = (job for job, _ in results)
    assert len(first.id) >= 6 and first.id != second.id
    assert first.status == JobStatus.PENDING
    assert first.scheduled_at == first.next_attempt_at == NOW + timedelta(hours=1)
    assert first.attempts == 0 and first.max_attempts == 7
    assert first.media == media and first.options == {"lang": "en"}
    assert first.key == "k1" and first.group_id == "g1"
    assert first.idempotency_key and first.idempotency_key != second.idempotency_key
    assert first.created_at == NOW
    assert store.get_job(first.id) == first


def test_add_jobs_is_all_or_nothing(store):
    account(store)
    broken = NewJob(account="a", platform="outbox", text="naive time",
                    scheduled_at=datetime(2026, 6, 1, 12, 0))  # no zone: refused
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do, as long as it is total
        store.add_jobs([new(text="fine"), new(text="fine too"), broken], now=NOW)
    assert store.list_jobs(JobFilter()) == []


def test_same_key_again_returns_the_existing_job(store):
    account(store, "a")
    account(store, "b")
    (first,) = add(store, new("a", key="launch"))
    again = store.add_jobs([new("a", key="launch", text="different")], now=NOW)
    assert again == [(first, False)]
    assert store.get_job(first.id).text == "hello"
    # Within one batch the second use of a key is the first job, not a new one.
    batch = store.add_jobs([new("a", key="dup"), new("a", key="dup")], now=NOW)
    assert [c for _, c in batch] == [True, False]
    assert batch[0][0].id == batch[1][0].id
    # Keys are per account; jobs without a key never collide.
    (other,) = add(store, new("b", key="launch"))
    assert other.id != first.id
    assert len(add(store, new("a"), new("a"))) == 2
    assert len(store.list_jobs(JobFilter())) == 5


def test_import_jobs_streams_in_order_and_keeps_keys(store):
    account(store, "a")
    (first,) = add(store, new("a", key="old"))
    made: list[int] = []

    def stream():
        for i in range(1200):  # more than one of the store's batches
            made.append(i)
            yield new("a", at=NOW + timedelta(minutes=i), text=f"post {i}",
                      key="old" if i == 700 else ("dup" if i in (3, 1100) else None))

    results = store.import_jobs(stream(), now=NOW)
    assert len(results) == 1200 and len(made) == 1200
    assert results[700] == (first.id, False)
    assert results[1100] == (results[3][0], False)  # the second use of a key in a stream
    assert sum(created for _, created in results) == 1198
    assert len({job_id for job_id, _ in results}) == 1199
    jobs = {j.id: j for j in store.list_jobs(JobFilter())}
    assert len(jobs) == 1199
    assert [jobs[job_id].text for job_id, _ in results[:3]] == ["post 0", "post 1", "post 2"]
    assert jobs[results[1199][0]].scheduled_at == NOW + timedelta(minutes=1199)
    assert store.find_keys([("a", "old"), ("a", "dup"), ("a", "none"), ("b", "old")]) == {
        ("a", "old"): first.id, ("a", "dup"): results[3][0]}


def test_import_jobs_is_all_or_nothing_when_the_stream_fails_late(store):
    account(store)

    def stream():
        for i in range(1100):
            yield new(text=f"post {i}", key=f"k{i}")
        raise UsageError("row 1101: bad")

    with pytest.raises(UsageError, match="row 1101"):
        store.import_jobs(stream(), now=NOW)
    assert store.list_jobs(JobFilter()) == []
    assert store.find_keys([("a", "k0")]) == {}
    # The store is usable afterwards.
    assert len(store.import_jobs(iter([new(key="k0")]), now=NOW)) == 1


def test_import_jobs_duplicate_guard(store):
    """The guard compares the normalised text (case, spacing, NFKC) with the stored live
    jobs, with earlier rows of the same batch and with rows of earlier batches; what it
    stores for an imported job is what a later add is compared with."""
    account(store)
    account(store, "b")
    day = 86400
    (first,) = add(store, new(text="Big  News"))

    def rows(*texts, start=0):
        return iter([new(text=t, at=NOW + timedelta(days=100 + start + i))
                     for i, t in enumerate(texts)])

    with pytest.raises(UsageError, match=first.id):
        store.import_jobs(iter([new(text="ok"), new(text="big news", at=NOW + timedelta(
            hours=23))]), now=NOW, duplicate_window=day)
    with pytest.raises(UsageError, match="in this batch"):
        store.import_jobs(iter([new("b", text="x"), new("b", text=" Ｘ ", at=NOW)]), now=NOW,
                          duplicate_window=day)
    assert [j.id for j in store.list_jobs(JobFilter())] == [first.id]
    # A row 600 rows after its twin: the first is in the table (an earlier batch) by then.
    far = [new(text=f"post {i}", at=NOW + timedelta(days=10, minutes=i)) for i in range(600)]
    far.append(new(text="POST 3", at=NOW + timedelta(days=10, minutes=5)))
    with pytest.raises(UsageError, match="same text"):
        store.import_jobs(iter(far), now=NOW, duplicate_window=day)
    assert len(store.list_jobs(JobFilter())) == 1
    # Outside the window, on another account, or allowed: imported.
    assert all(made for _, made in store.import_jobs(
        rows("Big News", "big news"), now=NOW, duplicate_window=day))
    assert all(made for _, made in store.import_jobs(
        iter([new("b", text="Big News", at=NOW + timedelta(days=50))]), now=NOW,
        duplicate_window=day))
    ((kept, made),) = store.import_jobs(iter([new("b", text="big  NEWS", at=NOW)]), now=NOW)
    assert made
    # Media-only rows are never duplicates.
    store.import_jobs(iter([new(text=""), new(text="")]), now=NOW, duplicate_window=day)
    # The imported jobs carry the key a later add or import is checked against.
    with pytest.raises(UsageError, match=kept):
        store.add_jobs([new("b", text="Big News", at=NOW + timedelta(hours=2))], now=NOW,
                       duplicate_window=day)
    (imported, _), = store.import_jobs(rows("Fresh Text", start=200), now=NOW,
                                       duplicate_window=day)
    with pytest.raises(UsageError, match=imported):
        store.import_jobs(rows("FRESH   text", start=200), now=NOW, duplicate_window=day)
    with pytest.raises(UsageError, match=imported):
        store.add_jobs([new(text="fresh text", at=NOW + timedelta(days=300))], now=NOW,
                       duplicate_window=day)


def test_import_jobs_keeps_the_counts_exact(store):
    """count_by_status after an import, a refused one and one of existing keys."""
    from collections import Counter

    def check():
        real = Counter(j.status for j in store.list_jobs(JobFilter()))
        assert store.count_by_status() == {s: real.get(s, 0) for s in JobStatus}

    account(store)
    account(store, "b")
    (old,) = add(store, new(key="old"))
    store.cancel_job(old.id, now=NOW)
    add(store, new(key="kept"))
    check()
    results = store.import_jobs(
        iter([new("ab"[i % 2], text=f"t{i}", key="kept" if i == 4 else f"k{i}")
              for i in range(1300)]), now=NOW)
    assert sum(made for _, made in results) == 1299
    check()
    assert store.count_by_status()[JobStatus.PENDING] == 1300

    def failing():
        yield from (new(text=f"u{i}") for i in range(1100))
        raise UsageError("row 1101: bad")

    with pytest.raises(UsageError):
        store.import_jobs(failing(), now=NOW)
    check()
    assert store.count_by_status()[JobStatus.PENDING] == 1300
    store.import_jobs(iter([new(key="kept")]), now=NOW)
    check()
    # Counting still follows every change after a large import.
    (job,) = add(store, new("b", text="after"))
    check()
    store.cancel_job(job.id, now=NOW)
    check()
    assert store.count_by_status()[JobStatus.CANCELLED] == 2


def test_large_batches_round_trip(store):
    account(store)
    jobs = [new(at=NOW + timedelta(minutes=i), key=f"k{i}", text=f"post {i}")
            for i in range(1500)]
    results = store.add_jobs(jobs, now=NOW)
    assert all(created for _, created in results)
    assert [j.text for j, _ in results] == [f"post {i}" for i in range(1500)]
    assert store.get_job(results[1234][0].id) == results[1234][0]
    again = store.add_jobs(jobs, now=NOW)
    assert [j.id for j, _ in again] == [j.id for j, _ in results]
    assert not any(created for _, created in again)


def test_get_job_by_id_or_unique_prefix(store):
    account(store)
    (job,) = add(store, new())
    assert store.get_job(job.id) == job
    assert store.get_job(job.id[:5]) == job
    assert store.get_job(f"  {job.id[:5].upper()} ") == job
    with pytest.raises(NotFound):
        store.get_job(job.id[:2])  # too short to be a prefix
    with pytest.raises(NotFound):
        store.get_job("zzzzzzzz" if not job.id.startswith("zzz") else "yyyyyyyy")


def test_ambiguous_prefix_is_refused(store):
    account(store)
    prefixes: dict[str, str] = {}
    shared = None
    for batch in range(20):
        for job in add(store, *[new(text=f"{batch}-{i}") for i in range(200)]):
            if job.id[:3] in prefixes:
                shared = job.id[:3]
                break
            prefixes[job.id[:3]] = job.id
        if shared:
            break
    assert shared is not None
    with pytest.raises(UsageError) as err:
        store.get_job(shared)
    assert not isinstance(err.value, NotFound)
    assert "ambiguous" in str(err.value)


def test_list_jobs_filters_and_order(store):
    account(store, "a")
    account(store, "m", platform="mastodon")
    late, early = add(store, new("a", NOW + timedelta(hours=3)), new("a", NOW + timedelta(hours=1)))
    (masto,) = add(store, new("m", NOW + timedelta(hours=2), platform="mastodon"))
    store.cancel_job(late.id, now=NOW)
    assert [j.id for j in store.list_jobs(JobFilter())] == [early.id, masto.id, late.id]
    assert [j.id for j in store.list_jobs(JobFilter(status=JobStatus.CANCELLED))] == [late.id]
    assert [j.id for j in store.list_jobs(JobFilter(account="m"))] == [masto.id]
    assert [j.id for j in store.list_jobs(JobFilter(platform="outbox"))] == [early.id, late.id]
    assert [j.id for j in store.list_jobs(JobFilter(limit=2))] == [early.id, masto.id]
    assert store.list_jobs(JobFilter(account="a", status=JobStatus.POSTED)) == []


def test_count_by_status(store):
    account(store)
    a, _b = add(store, new(), new())
    store.cancel_job(a.id, now=NOW)
    counts = store.count_by_status()
    assert counts[JobStatus.PENDING] == 1 and counts[JobStatus.CANCELLED] == 1
    assert counts[JobStatus.POSTED] == 0
    assert set(counts) == set(JobStatus)


def test_count_by_status_follows_every_change(store):
    """The counts (kept by triggers on SQLite) match the jobs after each kind of change."""
    from collections import Counter

    def check():
        real = Counter(j.status for j in store.list_jobs(JobFilter()))
        assert store.count_by_status() == {s: real.get(s, 0) for s in JobStatus}

    for i in range(6):
        account(store, f"a{i}")
    jobs = add(store, *(new(f"a{i}", text=f"t{i}", at=NOW - timedelta(minutes=5))
                        for i in range(6)))
    check()
    claimed = claim(store, "r1").jobs
    assert len(claimed) >= 3
    check()
    finish(store, claimed[0].id, "r1", NOW, JobStatus.POSTED)
    finish(store, claimed[1].id, "r1", NOW, JobStatus.FAILED)
    check()
    store.rescue_expired("r2", now=NOW + timedelta(seconds=LEASE + 1))
    check()
    for job in jobs:
        store.cancel_job(job.id, now=NOW)
    check()
    store.retry_job(claimed[1].id, now=NOW)
    check()
    with pytest.raises(Exception):  # noqa: B017 - a refused batch changes no count
        store.add_jobs([new("a0", text="rolled back"),
                        new("a0", text="naive", at=datetime(2026, 6, 1, 12, 0))], now=NOW)
    check()
    store.prune(before=NOW + timedelta(days=400))
    check()


# -- cancel, retry, resolve ------------------------------------------------------------------

def test_cancel_pending_job(store):
    account(store)
    (job,) = add(store, new(at=NOW + timedelta(hours=1)))
    out = store.cancel_job(job.id, now=NOW)
    assert out.cancelled and out.job.status == JobStatus.CANCELLED
    assert store.get_job(job.id).status == JobStatus.CANCELLED
    assert claim(store, now=NOW + timedelta(hours=2)).jobs == []
    assert [a.outcome for a in store.attempts_for(job.id)] == ["cancelled"]
    again = store.cancel_job(job.id, now=NOW)
    assert not again.cancelled and again.job.status == JobStatus.CANCELLED


def test_cancel_loses_to_a_running_job(store):
    account(store)
    (job,) = add(store, new())
    claim(store, "r1")
    out = store.cancel_job(job.id, now=NOW)
    assert not out.cancelled
    assert out.job.status == JobStatus.RUNNING
    assert "run" in out.reason
    assert store.get_job(job.id).status == JobStatus.RUNNING


def test_cancel_refuses_posted_job(store):
    account(store)
    (job,) = add(store, new())
    publish(store, job.id, NOW)
    out = store.cancel_job(job.id, now=NOW)
    assert not out.cancelled and "posted" in out.reason
    assert store.get_job(job.id).status == JobStatus.POSTED


def test_missed_job_can_be_cancelled(store):
    account(store)
    (job,) = add(store, new())
    store.mark_missed(now=NOW + timedelta(hours=2), window=3600)
    assert store.cancel_job(job.id, now=NOW + timedelta(hours=2)).cancelled


@pytest.mark.parametrize("how", ["failed", "missed", "cancelled"])
def test_retry_puts_finished_jobs_back_to_pending(store, how):
    account(store)
    (job,) = add(store, new(max_attempts=1))
    later = NOW + timedelta(hours=2)
    if how == "failed":
        claim(store, "r1")
        store.dispatch([job.id], "r1", now=NOW)
        finish(store, job.id, "r1", NOW, JobStatus.FAILED, error_kind=ErrorKind.INVALID,
               message="too long")
    elif how == "missed":
        store.mark_missed(now=later, window=60)
    else:
        store.cancel_job(job.id, now=NOW)
    assert store.get_job(job.id).status == how
    fresh = store.retry_job(job.id, now=later)
    assert fresh.status == JobStatus.PENDING
    assert fresh.next_attempt_at == later
    assert fresh.last_error is None and fresh.last_error_kind is None
    assert fresh.max_attempts > fresh.attempts
    assert [j.id for j in claim(store, "r2", later).jobs] == [job.id]


def test_retry_refuses_live_or_posted_jobs(store):
    account(store)
    pending, posted = add(store, new(), new(at=NOW - timedelta(minutes=1)))
    publish(store, posted.id, NOW)
    for job in (pending, posted):
        with pytest.raises(UsageError):
            store.retry_job(job.id, now=NOW)
    assert store.get_job(pending.id).status == JobStatus.PENDING


def make_unknown(store: Store, job_id: str) -> datetime:
    claim(store, "dead-run")
    store.dispatch([job_id], "dead-run", now=NOW)
    later = NOW + timedelta(seconds=LEASE + 1)
    store.rescue_expired("rescuer", now=later)
    assert store.get_job(job_id).status == JobStatus.UNKNOWN
    return later


def test_resolve_unknown_as_posted(store):
    account(store)
    (job,) = add(store, new())
    later = make_unknown(store, job.id)
    done = store.resolve_job(job.id, posted_url="https://x.example/1", now=later)
    assert done.status == JobStatus.POSTED and done.platform_url == "https://x.example/1"
    assert done.posted_at == later


def test_resolve_unknown_as_not_posted_sends_it_again(store):
    account(store)
    (job,) = add(store, new(max_attempts=1))
    later = make_unknown(store, job.id)
    done = store.resolve_job(job.id, posted_url=None, now=later)
    assert done.status == JobStatus.PENDING and done.next_attempt_at == later
    assert done.max_attempts > done.attempts
    assert [j.id for j in claim(store, "r2", later).jobs] == [job.id]


def test_resolve_refuses_jobs_that_are_not_unknown(store):
    account(store)
    (job,) = add(store, new())
    with pytest.raises(UsageError):
        store.resolve_job(job.id, posted_url="https://x", now=NOW)
    assert store.get_job(job.id).status == JobStatus.PENDING


def test_resolve_refuses_a_job_whose_lease_another_run_holds(store):
    account(store)
    (job,) = add(store, new())
    later = make_unknown(store, job.id)
    store.claim_unknown("reconciler", now=later, lease=LEASE, limit=5)
    for url in ("https://x.example/1", None):
        with pytest.raises(UsageError, match="being reconciled by run reconciler"):
            store.resolve_job(job.id, posted_url=url, now=later)
    got = store.get_job(job.id)
    assert got.status == JobStatus.UNKNOWN and got.lease_owner == "reconciler"
    # Once that lease is over, the operator's answer applies.
    after = later + timedelta(seconds=LEASE + 1)
    assert store.resolve_job(job.id, posted_url="https://x.example/1",
                             now=after).status == JobStatus.POSTED


def test_retry_refuses_an_unknown_job_unless_forced(store):
    account(store)
    (job,) = add(store, new())
    later = make_unknown(store, job.id)
    with pytest.raises(UsageError, match="may already be posted"):
        store.retry_job(job.id, now=later)
    assert store.get_job(job.id).status == JobStatus.UNKNOWN
    store.claim_unknown("reconciler", now=later, lease=LEASE, limit=5)
    with pytest.raises(UsageError, match="being reconciled"):
        store.retry_job(job.id, now=later, force=True)
    after = later + timedelta(seconds=LEASE + 1)
    fresh = store.retry_job(job.id, now=after, force=True)
    assert fresh.status == JobStatus.PENDING and fresh.max_attempts > fresh.attempts
    assert [j.id for j in claim(store, "r2", after).jobs] == [job.id]


def test_retry_refuses_a_failed_job_with_an_unsettled_attempt(store):
    account(store)
    (job,) = add(store, new(max_attempts=1))
    later = make_unknown(store, job.id)
    store.claim_unknown("rec", now=later, lease=LEASE, limit=5)
    # A record that calls it failed although nothing showed the post is absent.
    assert finish(store, job.id, "rec", later, JobStatus.FAILED, closes_attempt=False,
                  decision="gave up")
    with pytest.raises(UsageError, match="may already be posted"):
        store.retry_job(job.id, now=later)
    assert store.get_job(job.id).status == JobStatus.FAILED
    assert store.retry_job(job.id, now=later, force=True).status == JobStatus.PENDING


def test_retry_after_an_established_absence_needs_no_force(store):
    account(store)
    (job,) = add(store, new(max_attempts=1))
    later = make_unknown(store, job.id)
    store.claim_unknown("rec", now=later, lease=LEASE, limit=5)
    assert store.record([Result(job.id, "rec", later, JobStatus.FAILED, "not_posted",
                                closes_attempt=False, decision="absent")]) == [True]
    assert store.retry_job(job.id, now=later).status == JobStatus.PENDING


# -- claiming ------------------------------------------------------------------------------

def test_claim_takes_due_jobs_in_order_up_to_the_limit(store):
    for name in "abc":
        account(store, name)
    c_, a_, b_ = add(store, new("c", NOW - timedelta(minutes=1)),
                     new("a", NOW - timedelta(minutes=3)), new("b", NOW - timedelta(minutes=2)))
    (future,) = add(store, new("a", NOW + timedelta(minutes=1)))
    got = claim(store, "r1", limit=2)
    assert [j.id for j in got.jobs] == [a_.id, b_.id]
    for job in got.jobs:
        assert job.status == JobStatus.RUNNING
        assert job.lease_owner == "r1"
        assert job.lease_expires_at == NOW + timedelta(seconds=LEASE)
    assert got.deferred == []
    rest = claim(store, "r2", limit=10)
    assert [j.id for j in rest.jobs] == [c_.id]
    assert store.get_job(future.id).status == JobStatus.PENDING


def test_claim_skips_blocked_and_reauth_accounts(store):
    account(store, "ok")
    account(store, "blocked", blocked_until=NOW + timedelta(minutes=10))
    account(store, "reauth")
    store.set_account_state("reauth", AccountState.NEEDS_REAUTH, "revoked", now=NOW)
    ok, blocked, reauth = add(store, new("ok"), new("blocked"), new("reauth"))
    assert [j.id for j in claim(store, "r1").jobs] == [ok.id]
    assert store.get_job(reauth.id).status == JobStatus.PENDING
    later = NOW + timedelta(minutes=11)
    assert [j.id for j in claim(store, "r2", later).jobs] == [blocked.id]
    assert store.get_job(reauth.id).status == JobStatus.PENDING


def test_claim_skips_an_account_with_a_job_running(store):
    account(store, "a")
    account(store, "b")
    a1, a2, b1 = add(store, new("a", NOW - timedelta(minutes=2)),
                     new("a", NOW - timedelta(minutes=1)), new("b"))
    assert [j.id for j in claim(store, "r1", per_account=1, limit=1).jobs] == [a1.id]
    # Another run must not start a's next post while a1 is in flight.
    assert [j.id for j in claim(store, "r2").jobs] == [b1.id]
    assert store.get_job(a2.id).status == JobStatus.PENDING


def test_claim_per_account_cap(store):
    account(store, "a")
    jobs = add(store, *[new("a", NOW - timedelta(minutes=5 - i)) for i in range(3)])
    got = claim(store, "r1", per_account=2)
    assert [j.id for j in got.jobs] == [jobs[0].id, jobs[1].id]
    assert store.get_job(jobs[2].id).status == JobStatus.PENDING


def test_claim_defers_over_quota_jobs_with_an_audit_row(store):
    account(store, "a")
    (old,) = add(store, new("a", NOW - timedelta(minutes=30)))
    publish(store, old.id, NOW - timedelta(minutes=20))
    (job,) = add(store, new("a"))
    got = claim(store, "r1", limits=lambda acc: (1, None))
    assert got.jobs == []
    assert [(j.id, slot) for j, slot in got.deferred] == [(job.id, NOW + timedelta(minutes=40))]
    fresh = store.get_job(job.id)
    assert fresh.status == JobStatus.PENDING
    assert fresh.next_attempt_at == NOW + timedelta(minutes=40)
    assert fresh.attempts == 0  # a deferral is not an attempt
    (audit,) = store.attempts_for(job.id)
    assert audit.outcome == "deferred" and "quota" in audit.decision
    # At the slot it goes.
    assert [j.id for j in claim(store, "r2", NOW + timedelta(minutes=40),
                                limits=lambda acc: (1, None)).jobs] == [job.id]


def test_quota_counts_jobs_in_flight(store):
    account(store, "a")
    first, second = add(store, new("a", NOW - timedelta(minutes=1)), new("a"))
    got = claim(store, "r1", limits=lambda acc: (None, 1))
    assert [j.id for j in got.jobs] == [first.id]
    assert [j.id for j, _ in got.deferred] == [second.id]
    assert got.deferred[0][1] > NOW


def test_claim_passes_the_account_to_limits_for(store):
    account(store, "small", hourly_limit=1)
    account(store, "big")
    seen = []

    def limits(acc):
        seen.append(acc.name)
        return (acc.hourly_limit, None)

    add(store, new("small"), new("small"), new("big"), new("big"))
    got = claim(store, "r1", limits=limits)
    assert sorted(j.account for j in got.jobs) == ["big", "big", "small"]
    assert [j.account for j, _ in got.deferred] == ["small"]
    assert set(seen) == {"small", "big"}


# -- dispatch, record, release, leases -------------------------------------------------------

def test_dispatch_counts_an_attempt_before_the_platform_call(store):
    account(store)
    (job,) = add(store, new())
    claim(store, "r1")
    assert store.dispatch([job.id], "r1", now=NOW) == {job.id: 1}
    assert store.get_job(job.id).attempts == 1
    (attempt,) = store.attempts_for(job.id)
    assert attempt.number == 1 and attempt.run_id == "r1"
    assert attempt.started_at == NOW and attempt.finished_at is None


def test_dispatch_skips_jobs_leased_to_another_run(store):
    account(store)
    (job,) = add(store, new())
    claim(store, "r1")
    assert store.dispatch([job.id], "intruder", now=NOW) == {}
    assert store.get_job(job.id).attempts == 0


def test_record_posted(store):
    account(store)
    (job,) = add(store, new())
    claim(store, "r1")
    store.dispatch([job.id], "r1", now=NOW)
    done_at = NOW + timedelta(seconds=2)
    assert finish(store, job.id, "r1", done_at, JobStatus.POSTED, platform_post_id="42",
                  platform_url="https://x.example/42", decision="posted")
    got = store.get_job(job.id)
    assert got.status == JobStatus.POSTED
    assert (got.platform_post_id, got.platform_url) == ("42", "https://x.example/42")
    assert got.posted_at == done_at and got.lease_owner is None
    (attempt,) = store.attempts_for(job.id)
    assert attempt.finished_at == done_at and attempt.outcome == "posted"
    assert attempt.platform_post_id == "42"


def test_record_only_applies_while_the_lease_is_ours(store):
    account(store)
    (job,) = add(store, new())
    claim(store, "r1")
    store.dispatch([job.id], "r1", now=NOW)
    assert not finish(store, job.id, "someone-else", NOW, JobStatus.POSTED)
    assert store.get_job(job.id).status == JobStatus.RUNNING
    assert store.record([
        Result(job.id, "someone-else", NOW, JobStatus.FAILED, "failed"),
        Result(job.id, "r1", NOW, JobStatus.POSTED, "posted"),
    ]) == [False, True]
    assert store.get_job(job.id).status == JobStatus.POSTED


def test_record_retry_and_account_consequences(store):
    account(store)
    (job,) = add(store, new())
    claim(store, "r1")
    store.dispatch([job.id], "r1", now=NOW)
    retry_at = NOW + timedelta(minutes=15)
    assert finish(store, job.id, "r1", NOW, JobStatus.PENDING, next_attempt_at=retry_at,
                  error_kind=ErrorKind.RATE_LIMITED, http_status=429, message="slow down",
                  block_account_until=retry_at)
    got = store.get_job(job.id)
    assert got.status == JobStatus.PENDING and got.next_attempt_at == retry_at
    assert got.last_error == "slow down" and got.last_error_kind == ErrorKind.RATE_LIMITED
    assert store.get_account("a").blocked_until == retry_at
    (attempt,) = store.attempts_for(job.id)
    assert attempt.http_status == 429 and attempt.error_kind == ErrorKind.RATE_LIMITED
    # Blocked: nothing of this account is claimed before the reset.
    assert claim(store, "r2", NOW + timedelta(minutes=5)).jobs == []
    claim(store, "r3", retry_at)
    store.dispatch([job.id], "r3", now=retry_at)
    assert finish(store, job.id, "r3", retry_at, JobStatus.PENDING, next_attempt_at=retry_at,
                  error_kind=ErrorKind.AUTH_REVOKED, account_state=AccountState.NEEDS_REAUTH,
                  account_reason="token revoked")
    assert store.get_account("a").state == AccountState.NEEDS_REAUTH


def test_record_of_a_reconcile_adds_a_row_without_closing_an_attempt(store):
    account(store)
    (job,) = add(store, new())
    later = make_unknown(store, job.id)
    (leased,) = store.claim_unknown("rec", now=later, lease=LEASE, limit=10)
    assert leased.id == job.id
    assert store.record([Result(job.id, "rec", later, JobStatus.POSTED, "reconciled",
                                platform_post_id="99", closes_attempt=False,
                                decision="found it on the platform")]) == [True]
    got = store.get_job(job.id)
    assert got.status == JobStatus.POSTED and got.platform_post_id == "99"
    outcomes = [a.outcome for a in store.attempts_for(job.id)]
    assert outcomes == ["lost", "reconciled"]
    assert got.attempts == 1


def test_dispatch_needs_a_live_lease(store):
    account(store)
    (job,) = add(store, new())
    claim(store, "r1", lease=60)
    expired = NOW + timedelta(seconds=60)
    assert store.dispatch([job.id], "r1", now=expired) == {}  # nobody rescued it yet
    got = store.get_job(job.id)
    assert got.attempts == 0 and store.attempts_for(job.id) == []


def test_heartbeat_renews_every_job_the_run_holds(store):
    for name in "ab":
        account(store, name)
    (a,) = add(store, new("a"))
    later = make_unknown(store, a.id)
    (b,) = add(store, new("b", later))
    store.claim_unknown("r1", now=later, lease=60, limit=5)  # a, to reconcile
    claim(store, "r1", later, lease=60)                       # b, to publish
    beat = later + timedelta(seconds=30)
    store.dispatch([], "r1", now=beat, lease=60)
    for job in (a, b):
        assert store.get_job(job.id).lease_expires_at == beat + timedelta(seconds=60)
    assert store.rescue_expired("r2", now=later + timedelta(seconds=61)) == []
    assert store.claim_unknown("r2", now=later + timedelta(seconds=61), lease=60,
                               limit=5) == []


def test_dispatch_of_an_unknown_job_is_a_settling_resend_not_an_attempt(store):
    account(store)
    (job,) = add(store, new(max_attempts=1))
    later = make_unknown(store, job.id)
    assert store.dispatch([job.id], "rec", now=later) == {}  # not leased to "rec" yet
    store.claim_unknown("rec", now=later, lease=LEASE, limit=5)
    assert store.dispatch([job.id], "rec", now=later) == {job.id: 1}
    got = store.get_job(job.id)
    assert got.attempts == 1 and got.status == JobStatus.UNKNOWN
    lost, resend = store.attempts_for(job.id)
    assert lost.outcome == "lost" and resend.finished_at is None and resend.number == 1
    assert finish(store, job.id, "rec", later, JobStatus.POSTED, platform_post_id="9")
    resend = store.attempts_for(job.id)[-1]
    assert resend.outcome == "posted" and resend.finished_at == later


def test_claim_unknown_closes_a_resend_a_dead_run_never_recorded(store):
    account(store)
    (job,) = add(store, new())
    later = make_unknown(store, job.id)
    store.claim_unknown("dead", now=later, lease=60, limit=5)
    store.dispatch([job.id], "dead", now=later)
    again = later + timedelta(seconds=61)
    assert [j.id for j in store.claim_unknown("r2", now=again, lease=60, limit=5)] == [job.id]
    rows = store.attempts_for(job.id)
    assert [a.outcome for a in rows] == ["lost", "lost"]
    assert all(a.finished_at is not None for a in rows)


def test_outcomes_in_a_row_counts_the_end_of_the_log(store):
    """The resend bound's count: failed settling resends since anything else was
    recorded, failed read-backs between them and the resend in flight aside."""
    account(store)
    (job,) = add(store, new())
    at = make_unknown(store, job.id)  # its attempt 'lost'

    def count():
        return store.outcomes_in_a_row(job.id, "resend_failed", passing=("reconcile_error",))

    def row(outcome, *, resend=True):
        nonlocal at
        at += timedelta(seconds=1)
        store.claim_unknown("r", now=at, lease=LEASE, limit=5)
        if resend:
            store.dispatch([job.id], "r", now=at)
        assert store.record([Result(job.id, "r", at, JobStatus.UNKNOWN, outcome,
                                    next_attempt_at=at, closes_attempt=resend)]) == [True]

    assert count() == 0
    row("resend_failed")
    row("resend_failed")
    assert count() == 2
    row("reconcile_error", resend=False)
    row("resend_failed")
    assert count() == 3
    store.claim_unknown("r", now=at + timedelta(seconds=1), lease=LEASE, limit=5)
    store.dispatch([job.id], "r", now=at + timedelta(seconds=1))  # in flight: not counted
    assert count() == 3
    assert store.outcomes_in_a_row(job.id, "reconcile_error") == 0
    assert store.outcomes_in_a_row("nosuchjob", "resend_failed") == 0
    # Anything else (the operator's order here) ends the run of them.
    (other,) = add(store, new(text="other"))
    at2 = make_unknown(store, other.id)
    store.claim_unknown("r", now=at2, lease=LEASE, limit=5)
    store.dispatch([other.id], "r", now=at2)
    store.record([Result(other.id, "r", at2, JobStatus.UNKNOWN, "resend_failed",
                         next_attempt_at=at2)])
    assert store.retry_job(other.id, now=at2, force=True)
    assert store.outcomes_in_a_row(other.id, "resend_failed") == 0
    assert count() == 3  # one job's log is not another's


def test_quota_counts_a_dispatched_job_until_a_reconcile_says_it_is_absent(store):
    account(store)
    (job,) = add(store, new())
    claim(store, "dead", lease=60)
    store.dispatch([job.id], "dead", now=NOW)
    later = NOW + timedelta(seconds=61)
    assert store.quota_usage("a", now=later) == (1, 1)  # lease expired, not yet rescued
    store.rescue_expired("r2", now=later)
    assert store.quota_usage("a", now=later) == (1, 1)
    store.claim_unknown("r2", now=later, lease=60, limit=5)
    assert store.quota_usage("a", now=later) == (1, 1)
    assert store.record([Result(job.id, "r2", later, JobStatus.PENDING, "not_posted",
                                next_attempt_at=later, closes_attempt=False)]) == [True]
    assert store.quota_usage("a", now=later) == (0, 0)


def test_release_returns_undispatched_jobs_only(store):
    account(store, "a")
    account(store, "b")
    a, b = add(store, new("a"), new("b"))
    claim(store, "r1")
    store.dispatch([a.id], "r1", now=NOW)
    assert store.release([a.id, b.id], "r1", now=NOW) == 1
    assert store.get_job(b.id).status == JobStatus.PENDING
    assert store.get_job(b.id).attempts == 0
    assert store.get_job(a.id).status == JobStatus.RUNNING
    assert store.release([a.id], "other", now=NOW) == 0


def test_save_ref_needs_the_lease(store):
    account(store)
    (job,) = add(store, new())
    claim(store, "r1")
    store.save_ref(job.id, "r1", {"container": "c-1"}, now=NOW)
    assert store.get_job(job.id).ref == {"container": "c-1"}
    with pytest.raises(UsageError):
        store.save_ref(job.id, "other", {"container": "c-2"}, now=NOW)
    assert store.get_job(job.id).ref == {"container": "c-1"}


def test_save_ref_with_a_lease_keeps_a_long_call_alive(store):
    account(store)
    (job,) = add(store, new())
    claim(store, "r1", lease=60)
    store.dispatch([job.id], "r1", now=NOW)
    later = NOW + timedelta(seconds=50)
    store.save_ref(job.id, "r1", {"upload": "u", "sent": 10}, now=later, lease=60)
    assert store.get_job(job.id).lease_expires_at == later + timedelta(seconds=60)
    assert store.rescue_expired("r2", now=NOW + timedelta(seconds=61)) == []
    store.save_ref(job.id, "r1", {"upload": "u", "sent": 20}, now=later)  # no lease: kept
    assert store.get_job(job.id).lease_expires_at == later + timedelta(seconds=60)


def test_rescue_expired_leases(store):
    for name in "abc":
        account(store, name)
    sent, unsent, fresh = add(store, new("a"), new("b"), new("c"))
    claim(store, "dead", lease=60)
    store.dispatch([sent.id], "dead", now=NOW)
    store.release([fresh.id], "dead", now=NOW)
    claim(store, "alive", NOW + timedelta(seconds=30), lease=600)  # takes `fresh`
    later = NOW + timedelta(seconds=61)
    rescued = {j.id: j for j in store.rescue_expired("r2", now=later)}
    assert set(rescued) == {sent.id, unsent.id}
    assert rescued[sent.id].status == JobStatus.UNKNOWN  # it may have been posted
    assert rescued[sent.id].last_error_kind == ErrorKind.AMBIGUOUS
    assert rescued[unsent.id].status == JobStatus.PENDING  # never reached the platform
    assert rescued[unsent.id].attempts == 0
    assert store.get_job(fresh.id).status == JobStatus.RUNNING
    (lost,) = store.attempts_for(sent.id)
    assert lost.outcome == "lost" and lost.finished_at == later


def test_claim_unknown_leases_each_job_to_one_run(store):
    account(store)
    (job,) = add(store, new())
    later = make_unknown(store, job.id)
    assert [j.id for j in store.claim_unknown("r1", now=later, lease=LEASE, limit=5)] == [job.id]
    assert store.claim_unknown("r2", now=later, lease=LEASE, limit=5) == []
    assert store.get_job(job.id).status == JobStatus.UNKNOWN


def test_mark_missed(store):
    account(store, "a")
    account(store, "b")
    stale, recent, tried = add(store, new("a", NOW - timedelta(hours=3)),
                               new("a", NOW - timedelta(minutes=10)),
                               new("b", NOW - timedelta(hours=3)))
    claim(store, "r1", NOW - timedelta(hours=3), limit=10)
    store.release([stale.id], "r1", now=NOW - timedelta(hours=3))
    store.dispatch([tried.id], "r1", now=NOW - timedelta(hours=3))
    finish(store, tried.id, "r1", NOW - timedelta(hours=3), JobStatus.PENDING,
           next_attempt_at=NOW - timedelta(hours=2), error_kind=ErrorKind.NETWORK)
    assert store.mark_missed(now=NOW, window=0) == []
    missed = store.mark_missed(now=NOW, window=3600)
    assert [j.id for j in missed] == [stale.id]
    assert store.get_job(stale.id).status == JobStatus.MISSED
    assert store.get_job(recent.id).status == JobStatus.PENDING
    assert store.get_job(tried.id).status == JobStatus.PENDING  # retries are not "missed"
    assert store.attempts_for(stale.id)[-1].outcome == "missed"


def test_jobs_of_an_account_needing_reauth_wait_instead_of_missing(store):
    account(store, "a")
    (job,) = add(store, new("a", NOW - timedelta(hours=3)))
    store.set_account_state("a", AccountState.NEEDS_REAUTH, "revoked", now=NOW)
    assert store.mark_missed(now=NOW, window=3600) == []
    assert store.get_job(job.id).status == JobStatus.PENDING


def test_due_jobs_and_next_due_at(store):
    account(store, "a")
    account(store, "blocked", blocked_until=NOW + timedelta(minutes=5))
    assert store.next_due_at(now=NOW) is None
    due, later = add(store, new("a", NOW - timedelta(minutes=1)),
                     new("a", NOW + timedelta(hours=1)))
    add(store, new("blocked"))
    assert [j.id for j in store.due_jobs(now=NOW, limit=None)] == [due.id]
    assert store.next_due_at(now=NOW) == due.scheduled_at
    store.cancel_job(due.id, now=NOW)
    assert store.next_due_at(now=NOW) == NOW + timedelta(minutes=5)  # the unblock
    assert later.id not in [j.id for j in store.due_jobs(now=NOW, limit=None)]


def test_quota_usage_counts_posted_and_in_flight(store):
    account(store, "a")
    old, recent, running = add(store, new("a", NOW - timedelta(hours=5)),
                               new("a", NOW - timedelta(hours=4)), new("a"))
    publish(store, old.id, NOW - timedelta(hours=3))
    publish(store, recent.id, NOW - timedelta(minutes=30))
    claim(store, "r1")
    assert store.get_job(running.id).status == JobStatus.RUNNING
    assert store.quota_usage("a", now=NOW) == (2, 3)
    assert store.quota_usage("a", now=NOW + timedelta(days=2)) == (1, 1)  # in flight only


def test_quota_times_are_the_stamps_the_windows_count(store):
    account(store, "a")
    account(store, "b")
    too_old, old, recent, running, unknown, other = add(
        store, new("a", NOW - timedelta(days=3)), new("a", NOW - timedelta(hours=5)),
        new("a", NOW - timedelta(hours=4)), new("a", NOW - timedelta(minutes=2)),
        new("a", NOW - timedelta(minutes=1)), new("b", NOW - timedelta(hours=1)))
    publish(store, too_old.id, NOW - timedelta(days=2))
    publish(store, old.id, NOW - timedelta(hours=3))
    publish(store, recent.id, NOW - timedelta(minutes=30))
    publish(store, other.id, NOW - timedelta(minutes=50))
    assert store.quota_times("a", now=NOW) == [NOW - timedelta(hours=3),
                                               NOW - timedelta(minutes=30)]
    got = claim(store, "r1")
    assert {j.id for j in got.jobs} == {running.id, unknown.id}
    store.dispatch([running.id, unknown.id], "r1", now=NOW)
    assert finish(store, unknown.id, "r1", NOW, JobStatus.UNKNOWN, next_attempt_at=None)
    # In flight (running) and maybe live (unknown): both count, as now.
    assert store.quota_times("a", now=NOW) == [NOW - timedelta(hours=3),
                                               NOW - timedelta(minutes=30), NOW, NOW]
    assert len(store.quota_times("a", now=NOW)) == store.quota_usage("a", now=NOW)[1]
    assert store.quota_times("b", now=NOW) == [NOW - timedelta(minutes=50)]
    assert store.quota_times("nobody", now=NOW) == []


def test_prune_deletes_old_finished_jobs_and_runs(store):
    account(store)
    posted, pending = add(store, new(at=NOW - timedelta(days=40)), new(at=NOW + timedelta(days=1)))
    publish(store, posted.id, NOW - timedelta(days=40))
    store.start_run(Run(id="old-run", started_at=NOW - timedelta(days=40), finished_at=None,
                        host="h", pid=1))
    store.start_run(Run(id="new-run", started_at=NOW, finished_at=None, host="h", pid=2))
    assert store.prune(before=NOW - timedelta(days=30), dry_run=True) == (1, 1)
    assert store.get_job(posted.id).status == JobStatus.POSTED  # a dry run deletes nothing
    assert store.prune(before=NOW - timedelta(days=30)) == (1, 1)
    with pytest.raises(NotFound):
        store.get_job(posted.id)
    assert store.attempts_for(posted.id) == []
    assert store.get_job(pending.id).status == JobStatus.PENDING
    assert store.last_run().id == "new-run"
    assert store.prune(before=NOW - timedelta(days=30)) == (0, 0)


def test_runs_are_recorded(store):
    assert store.last_run() is None
    store.start_run(Run(id="r1", started_at=NOW, finished_at=None, host="box", pid=10))
    store.start_run(Run(id="r2", started_at=NOW + timedelta(seconds=60), finished_at=None,
                        host="box", pid=11))
    store.finish_run("r2", now=NOW + timedelta(seconds=62), counts={"posted": 3})
    last = store.last_run()
    assert last.id == "r2" and last.pid == 11 and last.host == "box"
    assert last.finished_at == NOW + timedelta(seconds=62)
    assert last.counts == {"posted": 3}


# -- writing the schedule: edit, bulk cancel/retry, keys, duplicates, slots, pause -----------

def test_edit_job_changes_only_what_is_given_and_audits(store):
    from autopost.models import JobEdit

    account(store)
    (job,) = add(store, new(at=NOW + timedelta(hours=1), text="draft"))
    later = NOW + timedelta(hours=2)
    fresh = store.edit_job(job.id, JobEdit(text="final", scheduled_at=later,
                                           options={"k": "v"}), now=NOW)
    assert (fresh.text, fresh.scheduled_at, fresh.next_attempt_at, fresh.options) == \
        ("final", later, later, {"k": "v"})
    assert fresh.media == job.media and fresh.max_attempts == job.max_attempts
    (audit,) = store.attempts_for(job.id)
    assert audit.outcome == "edited" and "text" in audit.decision
    assert "media" not in audit.decision


def test_edit_job_refuses_once_the_platform_was_reached(store):
    from autopost.models import JobEdit

    account(store)
    (job,) = add(store, new())
    claim(store)
    with pytest.raises(UsageError, match="being published"):
        store.edit_job(job.id, JobEdit(text="x"), now=NOW)
    store.dispatch([job.id], "r1", now=NOW)
    finish(store, job.id, "r1", NOW, JobStatus.PENDING, next_attempt_at=NOW)
    with pytest.raises(UsageError, match="already reached"):
        store.edit_job(job.id, JobEdit(text="x"), now=NOW)
    assert store.get_job(job.id).text == "hello"


def test_edit_job_with_a_time_makes_a_missed_job_pending(store):
    from autopost.models import JobEdit

    account(store)
    (job,) = add(store, new())
    store.mark_missed(now=NOW + timedelta(hours=2), window=3600)
    fresh = store.edit_job(job.id, JobEdit(scheduled_at=NOW + timedelta(hours=3)),
                           now=NOW + timedelta(hours=2))
    assert fresh.status == JobStatus.PENDING and fresh.last_error is None


def test_retry_job_at_a_time(store):
    account(store)
    (job,) = add(store, new())
    store.cancel_job(job.id, now=NOW)
    at = NOW + timedelta(hours=4)
    fresh = store.retry_job(job.id, now=NOW, at=at)
    assert (fresh.status, fresh.next_attempt_at, fresh.scheduled_at) == \
        (JobStatus.PENDING, at, at)


def test_cancel_jobs_and_retry_jobs_in_bulk(store):
    account(store, "a")
    account(store, "b")
    a1, a2 = add(store, new("a"), new("a", NOW + timedelta(hours=1)))
    claim(store, limit=1)  # a1 running: left alone
    (b1,) = add(store, new("b"))
    done = store.cancel_jobs(account="a", statuses=[JobStatus.PENDING, JobStatus.RUNNING],
                             now=NOW)
    assert [j.id for j in done] == [a2.id] and done[0].status == JobStatus.CANCELLED
    assert store.get_job(a1.id).status == JobStatus.RUNNING
    assert store.get_job(b1.id).status == JobStatus.PENDING
    assert store.cancel_jobs(account=None, statuses=[JobStatus.POSTED], now=NOW) == []
    back = store.retry_jobs(account=None, statuses=[JobStatus.CANCELLED], now=NOW,
                            at=NOW + timedelta(hours=2))
    assert [(j.id, j.status, j.next_attempt_at) for j in back] == \
        [(a2.id, JobStatus.PENDING, NOW + timedelta(hours=2))]
    assert [a.outcome for a in store.attempts_for(a2.id)] == ["cancelled", "retried"]


def test_a_cancelled_key_is_free_and_the_old_job_cannot_take_it_back(store):
    account(store)
    (old,) = add(store, new(key="k", text="v1"))
    store.cancel_job(old.id, now=NOW)
    ((fresh, created),) = store.add_jobs([new(key="k", text="v2")], now=NOW)
    assert created and fresh.id != old.id
    assert store.get_job(old.id).status == JobStatus.CANCELLED
    with pytest.raises(UsageError, match="belongs to job"):
        store.retry_job(old.id, now=NOW)
    with pytest.raises(UsageError, match="belongs to job"):
        store.retry_jobs(account="a", statuses=[JobStatus.CANCELLED], now=NOW)


def test_add_jobs_update(store):
    account(store)
    (job,) = add(store, new(key="k", text="v1"))
    ((same, created),) = store.add_jobs(
        [new(key="k", text="v2", at=NOW + timedelta(hours=1))], now=NOW, update=True)
    assert not created and same.id == job.id
    assert (same.text, same.scheduled_at) == ("v2", NOW + timedelta(hours=1))
    assert store.attempts_for(job.id)[-1].outcome == "updated"
    claim(store, now=NOW + timedelta(hours=1))
    with pytest.raises(UsageError, match="being published"):
        store.add_jobs([new(key="k", text="v3")], now=NOW, update=True)
    assert store.get_job(job.id).text == "v2"


def test_add_jobs_duplicate_guard(store):
    account(store)
    account(store, "b")
    (first,) = add(store, new(text="Same  Text"))
    with pytest.raises(UsageError, match=first.id):
        store.add_jobs([new(text="same text", at=NOW + timedelta(hours=23))], now=NOW,
                       duplicate_window=86400)
    with pytest.raises(UsageError, match="in this batch"):
        store.add_jobs([new("b", text="x"), new("b", text="X", at=NOW + timedelta(hours=1))],
                       now=NOW, duplicate_window=86400)
    assert len(store.list_jobs(JobFilter())) == 1
    add_ok = store.add_jobs([new(text="same text", at=NOW + timedelta(hours=25)),
                             new("b", text="same text")], now=NOW, duplicate_window=86400)
    assert all(created for _, created in add_ok)
    # Media-only posts (no text) are never duplicates of each other.
    store.add_jobs([new(text=""), new(text="")], now=NOW, duplicate_window=86400)
    # The posted time counts too.
    claim(store)
    store.dispatch([first.id], "r1", now=NOW)
    finish(store, first.id, "r1", NOW + timedelta(days=3), JobStatus.POSTED,
           platform_post_id="p")
    with pytest.raises(UsageError, match="posted"):
        store.add_jobs([new(text="SAME TEXT", at=NOW + timedelta(days=3, hours=2))], now=NOW,
                       duplicate_window=86400)


def test_add_jobs_slots_take_the_first_free_one(store):
    account(store)
    slots = tuple(NOW + timedelta(days=7 * i) for i in range(1, 4))
    (held,) = add(store, new(at=slots[0], text="held"))
    got = add(store, new(at=slots[0], slots=slots, text="q1"),
              new(at=slots[0], slots=slots, text="q2"))
    assert [j.scheduled_at for j in got] == [slots[1], slots[2]]
    with pytest.raises(UsageError, match="no free slot"):
        add(store, new(at=slots[0], slots=slots, text="q3"))
    store.cancel_job(held.id, now=NOW)
    (again,) = add(store, new(at=slots[0], slots=slots, text="q4"))
    assert again.scheduled_at == slots[0]


def test_pause_and_resume_account(store):
    from autopost.models import PAUSED_FOREVER

    account(store)
    (job,) = add(store, new())
    paused = store.pause_account("a", until=PAUSED_FOREVER, now=NOW)
    assert paused.is_paused(NOW) and paused.paused_until == PAUSED_FOREVER
    later = NOW + timedelta(hours=5)
    assert claim(store, now=later).jobs == []
    assert store.due_jobs(now=later, limit=None) == []
    assert store.mark_missed(now=later, window=3600) == []
    resumed = store.resume_account("a", now=later)
    assert not resumed.is_paused(later) and resumed.resumed_at == later
    assert store.mark_missed(now=later + timedelta(minutes=59), window=3600) == []
    assert [j.id for j in claim(store, now=later).jobs] == [job.id]
    with pytest.raises(NotFound):
        store.pause_account("nobody", until=PAUSED_FOREVER, now=NOW)
    with pytest.raises(NotFound):
        store.resume_account("nobody", now=NOW)


def test_pause_until_a_time_counts_the_window_from_then(store):
    account(store)
    (job,) = add(store, new())
    until = NOW + timedelta(hours=3)
    store.pause_account("a", until=until, now=NOW)
    assert store.next_due_at(now=NOW) == until
    assert store.mark_missed(now=until + timedelta(minutes=30), window=3600) == []
    assert [j.id for j in store.mark_missed(now=until + timedelta(minutes=61),
                                            window=3600)] == [job.id]
    # A later `accounts add --update` of the account leaves the pause alone.
    store.pause_account("a", until=NOW + timedelta(days=9), now=NOW)
    store.add_account(Account(name="a", platform="outbox", credentials={"path": "/x"}),
                      now=NOW, replace=True)
    assert store.get_account("a").is_paused(NOW + timedelta(days=1))


# -- threads -----------------------------------------------------------------------------------

def test_claim_takes_a_part_only_after_the_one_before_is_posted(store):
    from autopost.models import PostRef, Reply

    now = NOW
    store.add_account(Account(name="a", platform="outbox", credentials={"path": "/tmp/a"}),
                      now=now)
    jobs = [j for j, _ in store.add_jobs(
        [NewJob(account="a", platform="outbox", text=f"p{n}", scheduled_at=now,
                thread_id="t", thread_part=n) for n in (1, 2)], now=now)]

    def claim(at):
        return store.claim("r", now=at, lease=60, limit=10, per_account=10,
                           limits_for=lambda a: (None, None)).jobs

    assert [j.id for j in claim(now)] == [jobs[0].id]
    assert store.due_jobs(now=now, limit=None) == []  # part 2 is not due yet
    store.dispatch([jobs[0].id], "r", now=now)
    store.record([Result(jobs[0].id, "r", now, JobStatus.POSTED, "posted",
                         platform_post_id="id-1", platform_url="https://x/1")])
    (second,) = claim(now)
    assert second.id == jobs[1].id
    assert second.reply == Reply(parent=PostRef("id-1", "https://x/1", {}),
                                 root=PostRef("id-1", "https://x/1", {}))
    # A later part is never marked missed while it waits for the one before.
    assert store.mark_missed(now=now + timedelta(days=1), window=3600) == []


def test_a_thread_part_claimed_for_reconcile_still_replies_to_the_part_before(store):
    """A part whose run died on the wire is reconciled and, if the post never arrived,
    sent again: as a reply, like the first time, not as a post of its own."""
    from autopost.models import PostRef, Reply

    account(store)
    first, second = add(store, *[new(text=f"p{n}", thread_id="t", thread_part=n)
                                 for n in (1, 2)])
    publish(store, first.id, NOW)
    parent = store.get_job(first.id)
    assert parent.status == JobStatus.POSTED
    later = make_unknown(store, second.id)
    (leased,) = store.claim_unknown("rec", now=later, lease=LEASE, limit=5)
    assert leased.id == second.id
    ref = PostRef(parent.platform_post_id or "", parent.platform_url, parent.ref or {})
    assert leased.reply == Reply(parent=ref, root=ref)


def test_list_jobs_by_thread_in_part_order_and_a_failed_part_stops_the_rest(store):
    account(store)
    jobs = add(store, *[new(text=f"p{n}", thread_id="t", thread_part=n) for n in (3, 1, 2)])
    assert [j.thread_part for j in store.list_jobs(JobFilter(thread_id="t"))] == [1, 2, 3]
    first = next(j for j in jobs if j.thread_part == 1)
    claim(store)
    store.dispatch([first.id], "r1", now=NOW)
    finish(store, first.id, "r1", NOW, JobStatus.FAILED, message="refused")
    rest = store.list_jobs(JobFilter(thread_id="t"))
    assert [j.status for j in rest] == [JobStatus.FAILED] * 3
    assert "part 1 of its thread" in rest[2].last_error and rest[2].attempts == 0
    # Retrying the failed part brings back the parts after it; cancelling one cancels them.
    store.retry_job(first.id, now=NOW)
    assert [j.status for j in store.list_jobs(JobFilter(thread_id="t"))] == \
        [JobStatus.PENDING] * 3
    second = next(j for j in jobs if j.thread_part == 2)
    store.cancel_job(second.id, now=NOW)
    assert [j.status for j in store.list_jobs(JobFilter(thread_id="t"))] == \
        [JobStatus.PENDING, JobStatus.CANCELLED, JobStatus.CANCELLED]


# -- recurring series ----------------------------------------------------------------------------

def _series(**kw):
    from autopost.models import Series

    fields = dict(id="s-abcdefgh", account="a", platform="outbox", text="weekly",
                  rule="FREQ=DAILY", tz="UTC", start_at=NOW, made=2,
                  through=NOW + timedelta(days=1), next_extend_at=NOW + timedelta(days=1))
    fields.update(kw)
    return Series(**fields)


def test_series_add_extend_cancel_and_edit(store):
    from autopost.models import JobEdit

    account(store)
    occ = [new(at=NOW + timedelta(days=n - 1), text="weekly", series_id="s-abcdefgh",
               series_n=n) for n in (1, 2)]
    series, jobs = store.add_series(_series(), occ, now=NOW)
    assert series.made == 2 and [j.series_n for j in jobs] == [1, 2]
    assert store.get_series("s-abcd").id == "s-abcdefgh"
    assert store.series_to_extend(now=NOW) == []
    assert [s.id for s in store.series_to_extend(now=NOW + timedelta(days=1))] == [series.id]
    more = [new(at=NOW + timedelta(days=2), text="weekly", series_id=series.id, series_n=3)]
    later = NOW + timedelta(days=1)
    assert store.extend_series(series.id, more, expected_made=2, made=3,
                               through=NOW + timedelta(days=2),
                               next_extend_at=NOW + timedelta(days=2), done=False, now=later)
    # A second extender that read the same state adds nothing.
    assert not store.extend_series(series.id, more, expected_made=2, made=3,
                                   through=NOW + timedelta(days=2), next_extend_at=None,
                                   done=False, now=later)
    made = store.list_jobs(JobFilter(series_id=series.id))
    assert [j.series_n for j in made] == [1, 2, 3]
    # The first occurrence is posted; editing and cancelling leave it alone.
    claim(store)
    store.dispatch([made[0].id], "r1", now=NOW)
    finish(store, made[0].id, "r1", NOW, JobStatus.POSTED, platform_post_id="p")
    edited, changed = store.edit_series(series.id, JobEdit(text="weekly (new)"), now=later)
    assert edited.text == "weekly (new)" and [j.series_n for j in changed] == [2, 3]
    with pytest.raises(UsageError):
        store.edit_series(series.id, JobEdit(scheduled_at=later), now=later)
    stopped, cancelled = store.cancel_series(series.id, now=later)
    assert stopped.status == "cancelled" and [j.series_n for j in cancelled] == [2, 3]
    assert [j.status for j in store.list_jobs(JobFilter(series_id=series.id))] == \
        [JobStatus.POSTED, JobStatus.CANCELLED, JobStatus.CANCELLED]
    assert store.get_job(made[0].id).text == "weekly"
    assert store.list_series(active_only=True) == []
    assert not store.extend_series(series.id, [], expected_made=3, made=3, through=None,
                                   next_extend_at=None, done=True, now=later)
    with pytest.raises(NotFound):
        store.get_series("s-nothere")
