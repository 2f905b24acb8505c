"""The engine against a scripted in-process platform, with a fake clock and seeded jitter."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from autopost import engine as engine_module
from autopost.engine import Engine, RunOptions
from autopost.models import AccountState, ErrorKind, JobStatus, NewJob
from autopost.platforms.base import PlatformError, Verdict
from autopost.store.sqlite import SqliteStore
from tests.enginekit import Kit


@pytest.fixture
def kit(tmp_path):
    k = Kit(tmp_path)
    k.account("a")
    yield k
    k.store.close()


def err(kind, **kw):
    return PlatformError(kind, f"scripted {kind}", **kw)


def test_posts_due_jobs_and_records_attempts(kit):
    job = kit.add("a", "hello")
    later = kit.add("a", "later", at=kit.clock() + timedelta(hours=1))
    summary = kit.run()
    assert summary.posted == 1 and not summary.needs_attention
    done = kit.job(job.id)
    assert done.status == JobStatus.POSTED and done.attempts == 1
    assert done.platform_url and done.posted_at == kit.clock()
    attempts = kit.store.attempts_for(job.id)
    assert [(a.number, a.outcome) for a in attempts] == [(1, "posted")]
    assert attempts[0].started_at is not None and attempts[0].finished_at is not None
    assert kit.job(later.id).status == JobStatus.PENDING
    assert kit.world.posted("hello") == 1 and kit.world.posted("later") == 0


@pytest.mark.parametrize("kind", [ErrorKind.NETWORK, ErrorKind.SERVER])
def test_transient_errors_retry_with_backoff_then_give_up(kit, kind):
    job = kit.add("a", "flaky", max_attempts=3)
    kit.world.script["flaky"] = [err(kind), err(kind), err(kind)]
    policy = kit.settings.policy("scripted")
    for n in (1, 2):
        start = kit.clock()
        kit.run()
        j = kit.job(job.id)
        assert j.status == JobStatus.PENDING and j.attempts == n
        assert j.last_error_kind == kind
        delay = (j.next_attempt_at - start).total_seconds()
        cap = min(policy.max_delay, policy.base_delay * policy.backoff_multiplier ** (n - 1))
        assert cap / 2 <= delay <= cap
        kit.clock.now = j.next_attempt_at
    summary = kit.run()
    j = kit.job(job.id)
    assert j.status == JobStatus.FAILED and j.attempts == 3
    assert summary.needs_attention and "failed" in summary.problems[0].line()
    assert kit.world.posted("flaky") == 0


def test_invalid_fails_at_once_with_the_platform_message(kit):
    job = kit.add("a", "bad")
    kit.world.script["bad"] = [PlatformError(ErrorKind.INVALID, "HTTP 422: too long",
                                             http_status=422)]
    summary = kit.run()
    j = kit.job(job.id)
    assert j.status == JobStatus.FAILED and j.last_error == "HTTP 422: too long"
    assert kit.store.attempts_for(job.id)[0].http_status == 422
    assert summary.failed == 1 and "HTTP 422: too long" in summary.problems[0].line()


def test_rate_limit_blocks_account_until_reset_and_defers_its_jobs(kit):
    reset = kit.clock() + timedelta(minutes=20)
    first = kit.add("a", "one")
    second = kit.add("a", "two", at=kit.clock() + timedelta(seconds=1))
    kit.clock.advance(1)
    kit.world.script["one"] = [err(ErrorKind.RATE_LIMITED, retry_at=reset)]
    kit.run()
    j1, j2 = kit.job(first.id), kit.job(second.id)
    assert j1.status == JobStatus.PENDING and j1.next_attempt_at >= reset
    assert j2.status == JobStatus.PENDING and j2.next_attempt_at >= reset
    assert kit.store.get_account("a").blocked_until == reset
    assert kit.world.calls == [("a", "one")]  # "two" was not sent into the limit
    kit.clock.now = max(j1.next_attempt_at, j2.next_attempt_at)
    kit.run()
    assert kit.job(first.id).status == kit.job(second.id).status == JobStatus.POSTED


def test_reset_time_wins_over_short_backoff(kit):
    job = kit.add("a", "x")
    reset = kit.clock() + timedelta(hours=3)
    kit.world.script["x"] = [err(ErrorKind.RATE_LIMITED, retry_at=reset)]
    kit.run()
    assert kit.job(job.id).next_attempt_at == reset


def test_auth_expired_refreshes_once_and_retries_without_spending_an_attempt(kit):
    kit.store.save_credentials("a", {"token": "old", "refresh": "r"}, None, now=kit.clock())
    job = kit.add("a", "needs refresh")
    summary = kit.run()
    j = kit.job(job.id)
    assert j.status == JobStatus.POSTED and j.attempts == 1
    assert kit.world.refreshes == 1
    stored = kit.store.get_account("a").credentials
    assert stored["token"] == "t1" and stored["refresh"] == "r"  # refresh token kept
    assert summary.posted == 1


def test_refresh_refused_puts_account_in_needs_reauth_and_jobs_wait(kit):
    kit.store.save_credentials("a", {"token": "old"}, None, now=kit.clock())
    kit.world.refresh_error = err(ErrorKind.AUTH_REVOKED)
    job = kit.add("a", "waits")
    other = kit.add("a", "waits too")
    summary = kit.run()
    account = kit.store.get_account("a")
    assert account.state == AccountState.NEEDS_REAUTH
    for jid in (job.id, other.id):
        j = kit.job(jid)
        assert j.status == JobStatus.PENDING and j.attempts == 0  # nothing failed, nothing spent
    assert summary.needs_attention
    assert any(p.job_id is None and p.account == "a" for p in summary.problems)
    # A second run does not touch the account at all.
    calls = len(kit.world.calls)
    kit.run()
    assert len(kit.world.calls) == calls
    # After re-auth the jobs go out.
    kit.store.save_credentials("a", {"token": "t1"}, None, now=kit.clock())
    kit.store.set_account_state("a", AccountState.OK, None, now=kit.clock())
    kit.world.refresh_error = None
    kit.run()
    assert kit.job(job.id).status == kit.job(other.id).status == JobStatus.POSTED


def test_ambiguous_goes_unknown_then_reconcile_finds_the_post(kit):
    job = kit.add("a", "lost answer")
    kit.world.script["lost answer"] = [("posted-then", err(ErrorKind.AMBIGUOUS))]
    kit.run()
    j = kit.job(job.id)
    assert j.status == JobStatus.UNKNOWN
    kit.clock.advance(10)
    summary = kit.run()
    j = kit.job(job.id)
    assert j.status == JobStatus.POSTED and kit.world.posted("lost answer") == 1
    assert summary.posted == 1
    outcomes = [a.outcome for a in kit.store.attempts_for(job.id)]
    assert outcomes == ["error", "reconciled"]


def test_ambiguous_not_posted_is_resent_once(kit):
    job = kit.add("a", "never arrived")
    kit.world.script["never arrived"] = [err(ErrorKind.AMBIGUOUS)]
    kit.run()
    kit.clock.advance(10)
    kit.run()
    assert kit.job(job.id).status == JobStatus.POSTED
    assert kit.world.posted("never arrived") == 1


def test_platform_that_cannot_tell_waits_for_the_operator(kit):
    kit.account("blind", platform="scripted-blind")
    job = kit.add("blind", "telegram-like", platform="scripted-blind")
    kit.world.script["telegram-like"] = [("posted-then", err(ErrorKind.AMBIGUOUS))]
    summary = kit.run()
    j = kit.job(job.id)
    assert j.status == JobStatus.UNKNOWN and j.next_attempt_at is None
    assert summary.needs_attention and "autopost resolve" in summary.problems[0].line()
    kit.clock.advance(3600)
    kit.run()
    assert kit.world.posted("telegram-like") == 1  # never re-sent blindly
    kit.store.resolve_job(job.id, posted_url="https://t.me/c/1/2", now=kit.clock())
    assert kit.job(job.id).status == JobStatus.POSTED


def test_duplicate_is_reconciled_and_fails_when_not_ours(kit):
    kit.world.reconcile_answer = Verdict.NOT_POSTED
    job = kit.add("a", "dup")
    kit.world.script["dup"] = [err(ErrorKind.DUPLICATE, http_status=403)]
    kit.run()
    assert kit.job(job.id).status == JobStatus.UNKNOWN
    kit.clock.advance(10)
    kit.run()
    j = kit.job(job.id)
    assert j.status == JobStatus.FAILED and kit.world.posted("dup") == 0


def test_quota_exceeded_follows_platform_policy(tmp_path):
    k = Kit(tmp_path)
    k.account("a")
    job = k.add("a", "capped")
    k.world.script["capped"] = [err(ErrorKind.QUOTA_EXCEEDED)]
    k.run()  # the default policy does not retry quota_exceeded
    assert k.job(job.id).status == JobStatus.FAILED


def test_one_account_publishes_in_scheduled_order_one_at_a_time(kit):
    for name in ("b", "c"):
        kit.account(name)
    texts = []
    for i in range(6):
        for name in ("a", "b", "c"):
            texts.append(f"{name}{i}")
            kit.add(name, f"{name}{i}", at=kit.clock() - timedelta(seconds=60 - i))
    kit.run(concurrency=3)
    assert kit.world.max_per_account == 1
    assert kit.world.max_in_flight <= 3
    for name in ("a", "b", "c"):
        order = [t for acc, t in kit.world.calls if acc == name]
        assert order == [f"{name}{i}" for i in range(6)]


def test_limit_publishes_at_most_n(kit):
    for i in range(5):
        kit.add("a", f"j{i}")
    summary = kit.run(limit=2)
    assert summary.posted == 2 and len(kit.world.ledger) == 2


def test_dry_run_changes_nothing(kit):
    job = kit.add("a", "dry")
    before = kit.path.read_bytes()
    summary = kit.run(dry_run=True)
    assert [j.id for j in summary.would_publish] == [job.id]
    assert kit.world.calls == [] and kit.path.read_bytes() == before


def test_disabled_does_nothing(tmp_path):
    k = Kit(tmp_path)
    k.account("a")
    job = k.add("a", "x")
    from dataclasses import replace

    k.settings = replace(k.settings, run=replace(k.settings.run, enabled=False))
    assert k.run().disabled
    assert k.job(job.id).status == JobStatus.PENDING


def test_missed_after_the_catch_up_window(kit):
    old = kit.add("a", "too late", at=kit.clock() - timedelta(hours=2))
    fine = kit.add("a", "recent", at=kit.clock() - timedelta(minutes=30))
    summary = kit.run()
    assert kit.job(old.id).status == JobStatus.MISSED
    assert kit.job(fine.id).status == JobStatus.POSTED
    assert summary.missed == 1 and summary.needs_attention
    kit.store.retry_job(old.id, now=kit.clock())
    kit.run()
    assert kit.job(old.id).status == JobStatus.POSTED


def test_expired_lease_of_a_dispatched_job_is_reconciled_not_resent(kit):
    job = kit.add("a", "crashed mid-call")
    claim = kit.store.claim("dead-run", now=kit.clock(), lease=60, limit=10, per_account=10,
                            limits_for=lambda a: (None, None))
    assert [j.id for j in claim.jobs] == [job.id]
    kit.store.dispatch([job.id], "dead-run", now=kit.clock())
    kit.world.ledger.append(("a", "crashed mid-call"))  # it did go out before the crash
    kit.clock.advance(61)
    summary = kit.run()
    assert kit.job(job.id).status == JobStatus.POSTED
    assert kit.world.posted("crashed mid-call") == 1 and kit.world.calls == []
    assert summary.rescued == 1


def test_expired_lease_of_an_undispatched_job_is_simply_pending_again(kit):
    job = kit.add("a", "claimed only")
    kit.store.claim("dead-run", now=kit.clock(), lease=60, limit=10, per_account=10,
                    limits_for=lambda a: (None, None))
    kit.clock.advance(61)
    kit.run()
    j = kit.job(job.id)
    assert j.status == JobStatus.POSTED and j.attempts == 1
    assert kit.world.calls == [("a", "claimed only")]


def test_a_late_result_from_a_run_that_lost_its_lease_is_refused(kit):
    from autopost.store.base import Result

    job = kit.add("a", "x")
    kit.store.claim("run-1", now=kit.clock(), lease=60, limit=1, per_account=1,
                    limits_for=lambda a: (None, None))
    kit.store.dispatch([job.id], "run-1", now=kit.clock())
    kit.clock.advance(61)
    kit.store.rescue_expired("run-2", now=kit.clock())
    kit.store.claim_unknown("run-2", now=kit.clock() + timedelta(seconds=10), lease=60, limit=5)
    late = Result(job.id, "run-1", kit.clock(), JobStatus.POSTED, "posted")
    assert kit.store.record([late]) == [False]


def test_stop_releases_claimed_but_unstarted_jobs(kit):
    stop = threading.Event()
    jobs = [kit.add("a", f"s{i}", at=kit.clock() - timedelta(seconds=10 - i)) for i in range(5)]
    kit.world.script["s0"] = [stop.set]  # SIGTERM arrives while the first is publishing
    summary = kit.engine(stop=stop).run(RunOptions())
    statuses = [kit.job(j.id).status for j in jobs]
    assert statuses[0] == JobStatus.POSTED
    assert statuses[1:] == [JobStatus.PENDING] * 4
    assert all(kit.job(j.id).attempts == 0 for j in jobs[1:])
    assert summary.released == 4


def test_linger_posts_a_job_that_falls_due_mid_linger(kit):
    due = kit.clock() + timedelta(seconds=20)
    job = kit.add("a", "mid linger", at=due)
    start = kit.clock()
    kit.run(linger=55)
    j = kit.job(job.id)
    assert j.status == JobStatus.POSTED
    # The fake clock moves only when the run sleeps: a run that treated the job falling
    # due as "not claimable" would wait a whole poll (1 s) before claiming it.
    assert (j.posted_at - due).total_seconds() < 0.1
    assert (kit.clock() - start).total_seconds() <= 55


def test_linger_never_runs_past_its_time(kit):
    kit.add("a", "next hour", at=kit.clock() + timedelta(hours=1))
    start = kit.clock()
    kit.run(linger=30)
    assert (kit.clock() - start).total_seconds() <= 30 and kit.world.calls == []


def test_runs_are_recorded(kit):
    kit.add("a", "x")
    summary = kit.run()
    last = kit.store.last_run()
    assert last.id == summary.run_id and last.counts["posted"] == 1
    assert last.finished_at is not None


def test_missing_env_secret_is_an_account_problem_not_a_failure(kit, monkeypatch):
    monkeypatch.delenv("AUTOPOST_TEST_TOKEN", raising=False)
    kit.account("envy", credentials={"token": {"env": "AUTOPOST_TEST_TOKEN"}})
    job = kit.add("envy", "from env")
    summary = kit.run()
    assert kit.job(job.id).status == JobStatus.PENDING
    assert kit.store.get_account("envy").state == AccountState.NEEDS_REAUTH
    assert any("AUTOPOST_TEST_TOKEN" in p.line() for p in summary.problems)
    monkeypatch.setenv("AUTOPOST_TEST_TOKEN", "t1")
    kit.store.set_account_state("envy", AccountState.OK, None, now=kit.clock())
    kit.run()
    assert kit.job(job.id).status == JobStatus.POSTED


def test_token_close_to_expiry_is_refreshed_before_publishing(kit):
    soon = kit.clock() + timedelta(minutes=2)
    kit.store.save_credentials("a", {"token": "t1", "refresh": "r"}, soon, now=kit.clock())
    kit.world.valid_token = "t2"  # the platform will only accept the refreshed token
    job = kit.add("a", "fresh token")
    kit.run()
    assert kit.job(job.id).status == JobStatus.POSTED
    assert kit.world.refreshes == 1
    assert kit.world.calls == [("a", "fresh token")]  # no failed call with the old token
    assert kit.store.get_account("a").credentials == {"token": "t2", "refresh": "r"}


def test_unknown_jobs_count_against_the_quota(tmp_path):
    (tmp_path / "config.toml").write_text("[platforms.default]\nhourly_limit = 1\n")
    k = Kit(tmp_path)
    k.account("a")
    k.account("blind", platform="scripted-blind")
    lost = k.add("blind", "lost", platform="scripted-blind")
    k.world.script["lost"] = [("posted-then", err(ErrorKind.AMBIGUOUS))]
    k.run()
    assert k.job(lost.id).status == JobStatus.UNKNOWN
    nxt = k.add("blind", "next", platform="scripted-blind")
    k.clock.advance(60)
    summary = k.run()
    assert summary.deferred == 1 and k.job(nxt.id).status == JobStatus.PENDING
    assert k.world.posted("next") == 0


@pytest.mark.timeout(30)
def test_lingering_run_waits_while_another_run_holds_the_account(kit):
    busy = kit.add("a", "held elsewhere")
    kit.store.claim("other-run", now=kit.clock(), lease=600, limit=1, per_account=1,
                    limits_for=lambda a: (None, None))
    assert kit.job(busy.id).status == JobStatus.RUNNING
    waiting = kit.add("a", "due but its account is busy")
    start = kit.clock()
    kit.run(linger=20)  # must pause between looks, not spin (the fake clock only moves on sleep)
    assert (kit.clock() - start).total_seconds() >= 20
    assert kit.job(waiting.id).status == JobStatus.PENDING and kit.world.calls == []


@pytest.mark.parametrize("linger", [0, 30])
def test_an_accounts_next_job_is_claimed_as_the_one_before_ends(kit, linger):
    # Each job falls due while the one before it (same account) is on the platform, so
    # it is never in the chain the claim before handed out: it must be claimed when that
    # chain ends, not after a poll (and a run without --linger must not end without it).
    start = kit.clock()
    jobs = [kit.add("a", f"step {i}", at=start + timedelta(seconds=0.05 * i))
            for i in range(4)]
    for i in range(3):
        kit.world.script[f"step {i}"] = [lambda: kit.clock.advance(0.1)]  # a 100 ms call
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        if len(kit.world.ledger) < len(jobs):
            sleeps.append(seconds)
        kit.clock.advance(seconds)

    engine = Engine(kit.store, kit.settings, store_factory=lambda: SqliteStore(kit.path),
                    clock=kit.clock, sleep=sleep, rng=kit.rng)
    summary = engine.run(RunOptions(concurrency=2, linger=linger))
    assert summary.posted == 4
    assert [kit.world.calls.count(("a", f"step {i}")) for i in range(4)] == [1, 1, 1, 1]
    assert sleeps == []  # no wait of any kind while a due job was left
    posted = [kit.job(j.id).posted_at for j in jobs]
    assert (posted[-1] - start).total_seconds() == pytest.approx(0.3)


@pytest.mark.parametrize("linger", [0, 30])
def test_jobs_past_one_claims_batch_are_claimed_without_a_poll(kit, linger):
    # More due jobs for one account than one claim hands out: the rest were due all along
    # and become claimable the moment the account's chain ends.
    start = kit.clock()
    n = engine_module.BATCH + 5
    kit.store.add_jobs([NewJob(account="a", platform="scripted", text=f"bulk {i}",
                               scheduled_at=start - timedelta(seconds=n - i))
                        for i in range(n)], now=start)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        if len(kit.world.ledger) < n:
            sleeps.append(seconds)
        kit.clock.advance(seconds)

    engine = Engine(kit.store, kit.settings, store_factory=lambda: SqliteStore(kit.path),
                    clock=kit.clock, sleep=sleep, rng=kit.rng)
    summary = engine.run(RunOptions(linger=linger))
    assert summary.posted == n and len(kit.world.ledger) == n
    assert sleeps == []


def test_a_crash_right_after_a_claim_puts_every_claimed_job_back(kit):
    """The main thread fails before any worker reached the platform (here: the progress
    callback, called once the claim is in): every claimed job is pending again at once,
    with no attempt spent, and the run is recorded as finished."""
    from autopost.errors import RunCrashed

    kit.account("b")
    jobs = [kit.add("a", f"post {i}") for i in range(3)] + [kit.add("b", "other")]

    def progress(summary, held):
        raise ValueError("injected")

    engine = Engine(kit.store, kit.settings, store_factory=lambda: SqliteStore(kit.path),
                    clock=kit.clock, sleep=kit.clock.advance, rng=kit.rng, progress=progress)
    with pytest.raises(RunCrashed, match=r"\(ValueError\).*4 claimed job\(s\) put back to "
                                         r"pending, 0 in flight"):
        engine.run(RunOptions())
    for job in jobs:
        got = kit.job(job.id)
        assert got.status == JobStatus.PENDING and got.attempts == 0
        assert got.lease_owner is None
    assert kit.store.last_run().finished_at is not None
    assert kit.world.calls == []
    kit.run()  # the next run publishes them
    assert all(kit.job(j.id).status == JobStatus.POSTED for j in jobs)


def test_trouble_the_cli_reports_itself_keeps_its_kind_and_still_puts_jobs_back(kit):
    """A locked or full database mid-run is not a bug: it reaches the CLI as it is (exit 3,
    its own message), and the claimed jobs are put back all the same."""
    from autopost.errors import EnvironmentTrouble

    job = kit.add("a", "post")

    def progress(summary, held):
        raise EnvironmentTrouble("database is locked")

    engine = Engine(kit.store, kit.settings, store_factory=lambda: SqliteStore(kit.path),
                    clock=kit.clock, sleep=kit.clock.advance, rng=kit.rng, progress=progress)
    with pytest.raises(EnvironmentTrouble, match="database is locked"):
        engine.run(RunOptions())
    assert kit.job(job.id).status == JobStatus.PENDING
    assert kit.store.last_run().finished_at is not None
