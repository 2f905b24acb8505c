"""The record tells the truth: a job ends `failed` only when the platform said no or a
reconcile showed the post does not exist; spent attempts never fail a post that may be
live, and a post that may be live keeps counting against its account's quota."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from autopost import notify
from autopost.errors import UsageError
from autopost.models import AccountState, ErrorKind, JobStatus
from autopost.platforms.base import PlatformError, Published
from autopost.policy import MAX_FAILED_RECONCILES, MAX_FAILED_RESENDS
from tests.conftest import CliRunnerHelper
from tests.enginekit import Kit
from tests.test_notify import events, hook

DEDUPE = "scripted-dedupe"  # cannot be asked, deduplicates a resend (Mastodon-like)
ASKABLE = "scripted"        # reconcile shows whether the post exists (Bluesky-like)


@pytest.fixture
def kit(tmp_path):
    (tmp_path / "config.toml").write_text(
        "[run]\nlease_seconds = 300\ncatch_up_window = 0\n")
    k = Kit(tmp_path)
    k.account("a")
    k.account("d", platform=DEDUPE)
    yield k
    k.store.close()


def err(kind, **kw):
    return PlatformError(kind, f"scripted {kind}", **kw)


def timeout():
    return err(ErrorKind.AMBIGUOUS)


def settle(kit, job_id, *, rounds=30):
    """Run until the job leaves pending/running/unknown, walking the clock to each next
    look; the job must never be `failed` on the way unless it ends so."""
    seen = []
    for _ in range(rounds):
        job = kit.job(job_id)
        seen.append(job.status)
        if job.status not in (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.UNKNOWN):
            return job, seen
        if job.next_attempt_at is None:
            return job, seen  # waits for the operator
        kit.clock.now = max(kit.clock.now, job.next_attempt_at)
        kit.run()
    raise AssertionError(f"job {job_id} never settled: {seen}")


# -- five timeouts in a row on one job ----------------------------------------------------

@pytest.mark.parametrize("made", [True, False], ids=["each-created", "none-created"])
def test_five_timeouts_in_a_row_on_a_deduplicating_platform_end_posted_once(kit, made):
    job = kit.add("d", "five timeouts", platform=DEDUPE, max_attempts=5)
    kit.world.script["five timeouts"] = [("posted-then", timeout()) if made else timeout()
                                         for _ in range(5)]
    final, seen = settle(kit, job.id)
    assert JobStatus.FAILED not in seen
    assert final.status == JobStatus.POSTED
    assert kit.world.posted("five timeouts") == 1
    assert len(kit.world.calls) == 6  # five timeouts, then the resend that settled it
    assert final.attempts == 1  # the settling resends are not attempts


def test_five_timeouts_on_an_askable_platform_fail_only_once_absence_is_shown(kit):
    job = kit.add("a", "never arrives", max_attempts=5)
    kit.world.script["never arrives"] = [timeout() for _ in range(5)]
    final, seen = settle(kit, job.id)
    assert final.status == JobStatus.FAILED and final.attempts == 5
    assert kit.world.posted("never arrives") == 0
    assert "shows it was not posted" in kit.store.attempts_for(job.id)[-1].decision
    assert seen.count(JobStatus.FAILED) == 1  # only the very last look


def test_five_timeouts_on_an_askable_platform_the_last_one_created(kit):
    job = kit.add("a", "last one made it", max_attempts=5)
    kit.world.script["last one made it"] = [timeout()] * 4 + [("posted-then", timeout())]
    final, seen = settle(kit, job.id)
    assert JobStatus.FAILED not in seen and final.status == JobStatus.POSTED
    assert kit.world.posted("last one made it") == 1


# -- connection dropped after the create on the last attempt --------------------------------

@pytest.mark.parametrize("platform,account", [(DEDUPE, "d"), (ASKABLE, "a")])
def test_connection_dropped_after_the_create_on_the_last_attempt(kit, platform, account):
    job = kit.add(account, "dropped at the end", platform=platform, max_attempts=3)
    kit.world.script["dropped at the end"] = [
        err(ErrorKind.NETWORK), err(ErrorKind.SERVER), ("posted-then", timeout())]
    final, seen = settle(kit, job.id)
    assert JobStatus.FAILED not in seen
    assert final.status == JobStatus.POSTED and final.attempts == 3
    assert kit.world.posted("dropped at the end") == 1


def test_a_killed_run_with_every_attempt_spent_is_settled_by_a_resend(kit):
    """The reproduced case: the run died after the create, with no attempt left."""
    job = kit.add("d", "spent", platform=DEDUPE, max_attempts=1)
    kit.store.claim("dead-run", now=kit.clock(), lease=60, limit=5, per_account=5,
                    limits_for=lambda a: (None, None))
    assert kit.store.dispatch([job.id], "dead-run", now=kit.clock()) == {job.id: 1}
    # What the dead run sent before it died: the post is live.
    kit.world.ledger.append(("d", "spent"))
    kit.world.by_key[job.idempotency_key] = Published("p-live", "https://example.test/live")
    kit.clock.advance(61)
    summary = kit.run()
    final = kit.job(job.id)
    assert final.status == JobStatus.POSTED and final.platform_post_id == "p-live"
    assert final.attempts == 1 and kit.world.posted("spent") == 1
    assert summary.posted == 1 and not summary.needs_attention
    outcomes = [a.outcome for a in kit.store.attempts_for(job.id)]
    assert outcomes == ["lost", "posted"]  # the lost attempt, then the settling resend


# -- the settling resend, when it fails too ---------------------------------------------------

def _unknown_with_spent_attempts(kit, text):
    job = kit.add("d", text, platform=DEDUPE, max_attempts=1)
    kit.world.script[text] = [("posted-then", timeout())]
    kit.run()
    assert kit.job(job.id).status == JobStatus.UNKNOWN
    kit.clock.advance(10)
    return job


@pytest.mark.parametrize("kind", [ErrorKind.NETWORK, ErrorKind.SERVER, ErrorKind.AMBIGUOUS,
                                  ErrorKind.QUOTA_EXCEEDED])
def test_a_failed_resend_leaves_the_job_unknown_and_asks_again(kit, kind):
    job = _unknown_with_spent_attempts(kit, "resend fails")
    kit.world.script["resend fails"] = [err(kind)]
    kit.run()
    j = kit.job(job.id)
    assert j.status == JobStatus.UNKNOWN and j.next_attempt_at > kit.clock()
    assert j.attempts == 1
    final, seen = settle(kit, job.id)
    assert final.status == JobStatus.POSTED and kit.world.posted("resend fails") == 1


def test_a_rate_limited_resend_blocks_the_account_and_stays_unknown(kit):
    job = _unknown_with_spent_attempts(kit, "limited")
    reset = kit.clock() + timedelta(minutes=30)
    kit.world.script["limited"] = [err(ErrorKind.RATE_LIMITED, retry_at=reset)]
    kit.run()
    j = kit.job(job.id)
    assert j.status == JobStatus.UNKNOWN and j.next_attempt_at == reset
    assert kit.store.get_account("d").blocked_until == reset


def test_auth_trouble_on_a_resend_flags_the_account_and_fails_nothing(kit):
    job = _unknown_with_spent_attempts(kit, "revoked")
    kit.world.script["revoked"] = [err(ErrorKind.AUTH_REVOKED)]
    summary = kit.run()
    assert kit.job(job.id).status == JobStatus.UNKNOWN
    assert kit.store.get_account("d").state == AccountState.NEEDS_REAUTH
    assert summary.needs_attention


def test_a_resend_the_platform_refuses_fails(kit):
    job = _unknown_with_spent_attempts(kit, "refused")
    kit.world.by_key.clear()  # the first send never made it: the resend is a new create
    kit.world.script["refused"] = [err(ErrorKind.INVALID, http_status=422)]
    summary = kit.run()
    assert kit.job(job.id).status == JobStatus.FAILED and summary.failed == 1


def test_a_resend_refused_before_any_request_waits_for_the_operator(kit):
    job = _unknown_with_spent_attempts(kit, "media gone")
    kit.world.script["media gone"] = [err(ErrorKind.INVALID)]  # no HTTP status: local
    summary = kit.run()
    j = kit.job(job.id)
    assert j.status == JobStatus.UNKNOWN and j.next_attempt_at is None
    assert "autopost resolve" in " ".join(p.line() for p in summary.problems)


def _kit_with_notify(tmp_path):
    """A Kit whose config sends notify events to a hook: (kit, config path, hook's file)."""
    command, out = hook(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text("[run]\nlease_seconds = 300\ncatch_up_window = 0\n"
                      f"[notify]\ncommand = {json.dumps(command)}\n")
    return Kit(tmp_path), config, out


def test_a_resend_that_keeps_failing_stops_and_waits_for_the_operator(tmp_path, isolated_env):
    """The bound: after MAX_FAILED_RESENDS failed settling resends in a row the job is no
    longer resent; it waits for the operator (never failed: it may be live), `status`
    names it and the notify event for it goes out once."""
    k, config, out = _kit_with_notify(tmp_path)
    try:
        k.account("d", platform=DEDUPE)
        job = _unknown_with_spent_attempts(k, "never answers")
        k.world.script["never answers"] = [err(ErrorKind.NETWORK) for _ in range(50)]

        def run():
            summary = k.run()
            notify.send(k.settings.notify, notify.run_events(summary.problems,
                                                             summary.run_id), k.path)
            return summary

        resends = 0
        while k.job(job.id).next_attempt_at is not None:
            j = k.job(job.id)
            assert j.status == JobStatus.UNKNOWN
            k.clock.now = max(k.clock.now, j.next_attempt_at)
            summary = run()
            resends += 1
            assert resends <= MAX_FAILED_RESENDS
        assert resends == MAX_FAILED_RESENDS
        assert len(k.world.calls) == 1 + MAX_FAILED_RESENDS  # the attempt, then the resends
        assert summary.needs_attention and summary.unknown == 1
        final = k.job(job.id)
        assert final.status == JobStatus.UNKNOWN and final.attempts == 1
        assert f"{MAX_FAILED_RESENDS} times in a row" in final.last_error
        assert f"autopost retry --force {job.id}" in final.last_error
        # Each failed resend is in the log as such: the bound counts those rows.
        outcomes = [a.outcome for a in k.store.attempts_for(job.id)]
        assert outcomes[-MAX_FAILED_RESENDS:] == ["resend_failed"] * MAX_FAILED_RESENDS
        assert "resend_failed" not in outcomes[:-MAX_FAILED_RESENDS]
        # Later runs, however much later, leave it alone: nothing more is sent.
        for _ in range(3):
            k.clock.advance(86400)
            run()
        assert len(k.world.calls) == 1 + MAX_FAILED_RESENDS
        assert k.job(job.id).status == JobStatus.UNKNOWN
        status = CliRunnerHelper(k.path)("--config", str(config), "status", "--notify")
        assert status.code == 1 and job.id in status.stdout
        mine = [e for e in events(out) if e["job"] == job.id]
        assert [e["event"] for e in mine] == ["unknown"]
        assert "times in a row" in mine[0]["message"]
        # The operator's order starts the count again.
        k.world.by_key.clear()
        k.world.script["never answers"] = []
        assert k.store.retry_job(job.id, now=k.clock(), force=True)
        k.run()
        assert k.job(job.id).status == JobStatus.POSTED
    finally:
        k.store.close()


def test_a_read_back_that_keeps_failing_stops_and_waits_for_the_operator(tmp_path,
                                                                        isolated_env):
    """The same bound for a reconcile that cannot read the platform: after
    MAX_FAILED_RECONCILES failed read-backs in a row, each later than the one before, the
    job waits for the operator (never failed, never resent), `status` names it and the
    notify event for it goes out once."""
    k, config, out = _kit_with_notify(tmp_path)
    try:
        k.account("a")
        job = k.add("a", "cannot be read back", max_attempts=1)
        k.world.script["cannot be read back"] = [("posted-then", timeout())]
        k.run()
        assert k.job(job.id).status == JobStatus.UNKNOWN
        k.world.reconcile_faults = [err(ErrorKind.SERVER) for _ in range(50)]

        def run():
            summary = k.run()
            notify.send(k.settings.notify, notify.run_events(summary.problems,
                                                             summary.run_id), k.path)
            return summary

        waits = []
        while (j := k.job(job.id)).next_attempt_at is not None:
            assert j.status == JobStatus.UNKNOWN
            waits.append((j.next_attempt_at - k.clock()).total_seconds())
            k.clock.now = max(k.clock.now, j.next_attempt_at)
            summary = run()
            assert k.world.reconciles <= MAX_FAILED_RECONCILES
        assert k.world.reconciles == MAX_FAILED_RECONCILES
        assert waits[-1] > 4 * waits[1]  # the backoff grows with each failure
        assert len(k.world.calls) == 1  # the attempt only: never resent
        assert summary.needs_attention and summary.unknown == 1
        assert [p.job_id for p in summary.problems] == [job.id]
        final = k.job(job.id)
        assert final.status == JobStatus.UNKNOWN and final.attempts == 1
        assert f"{MAX_FAILED_RECONCILES} times in a row" in final.last_error
        for words in (f"autopost show {job.id}", "autopost resolve",
                      f"autopost retry --force {job.id}"):
            assert words in final.last_error
        outcomes = [a.outcome for a in k.store.attempts_for(job.id)]
        assert outcomes[-MAX_FAILED_RECONCILES:] == ["reconcile_error"] * MAX_FAILED_RECONCILES
        # Later runs, however much later, leave it alone.
        for _ in range(3):
            k.clock.advance(86400)
            run()
        assert k.world.reconciles == MAX_FAILED_RECONCILES and len(k.world.calls) == 1
        assert k.job(job.id).status == JobStatus.UNKNOWN
        status = CliRunnerHelper(k.path)("--config", str(config), "status", "--notify")
        assert status.code == 1 and job.id in status.stdout
        mine = [e for e in events(out) if e["job"] == job.id]
        assert [e["event"] for e in mine] == ["unknown"]
        assert "times in a row" in mine[0]["message"]
        # The operator's order starts the count again: a read-back that fails after it
        # is asked again later, not given up on.
        assert k.store.retry_job(job.id, now=k.clock(), force=True)
        k.world.script["cannot be read back"] = [timeout()]
        k.world.reconcile_faults = [err(ErrorKind.SERVER)]
        k.run()
        assert k.job(job.id).status == JobStatus.UNKNOWN
        final, _ = settle(k, job.id)
        assert k.world.reconciles == MAX_FAILED_RECONCILES + 2
        assert final.status == JobStatus.POSTED
    finally:
        k.store.close()


# -- quota: a post that may be live counts until a reconcile says it is not ---------------------

def test_a_dead_runs_post_counts_against_the_quota_after_its_lease_expired(tmp_path):
    (tmp_path / "config.toml").write_text(
        "[run]\ncatch_up_window = 0\n[platforms.default]\nhourly_limit = 1\n")
    k = Kit(tmp_path)
    k.account("d", platform=DEDUPE)
    first = k.add("d", "sent by a dead run", platform=DEDUPE)
    k.store.claim("dead-run", now=k.clock(), lease=60, limit=1, per_account=1,
                  limits_for=lambda a: (1, None))
    k.store.dispatch([first.id], "dead-run", now=k.clock())
    k.clock.advance(61)
    second = k.add("d", "next", platform=DEDUPE)
    assert k.store.quota_usage("d", now=k.clock()) == (1, 1)  # lease expired, still counted
    k.store.rescue_expired("other", now=k.clock())
    assert k.store.quota_usage("d", now=k.clock()) == (1, 1)
    k.world.script["sent by a dead run"] = [timeout()]  # the settling resend times out too
    summary = k.run()
    assert k.job(first.id).status == JobStatus.UNKNOWN
    assert k.job(second.id).status == JobStatus.PENDING and summary.deferred == 1
    assert k.world.posted("next") == 0
    k.store.close()


def test_an_established_absence_frees_the_quota(tmp_path):
    (tmp_path / "config.toml").write_text(
        "[run]\ncatch_up_window = 0\n[platforms.default]\nhourly_limit = 1\n")
    k = Kit(tmp_path)
    k.account("a")
    first = k.add("a", "never made", max_attempts=1)
    k.world.script["never made"] = [timeout()]
    k.run()
    assert k.store.quota_usage("a", now=k.clock()) == (1, 1)
    k.clock.advance(10)
    k.run()  # the reconcile shows it does not exist; no attempt left
    assert k.job(first.id).status == JobStatus.FAILED
    assert k.store.quota_usage("a", now=k.clock()) == (0, 0)
    k.store.close()


# -- retry of a job that may be live ------------------------------------------------------------

def test_retry_refuses_an_unknown_job_unless_forced(kit):
    job = kit.add("d", "maybe live", platform=DEDUPE)
    kit.world.script["maybe live"] = [("posted-then", timeout())]
    kit.run()
    assert kit.job(job.id).status == JobStatus.UNKNOWN
    before = kit.path.read_bytes()
    with pytest.raises(UsageError, match="may already be posted.*--force"):
        kit.store.retry_job(job.id, now=kit.clock())
    assert kit.path.read_bytes() == before
    fresh = kit.store.retry_job(job.id, now=kit.clock(), force=True)
    assert fresh.status == JobStatus.PENDING
    assert "forced" in kit.store.attempts_for(job.id)[-1].decision


def test_retry_refuses_a_failed_job_whose_earlier_outcome_was_never_settled(kit):
    """A record written wrongly (as older versions did after spent attempts) must not lead
    to a second post."""
    from autopost.store.base import Result

    job = kit.add("a", "recorded wrongly", max_attempts=1)
    kit.store.claim("r1", now=kit.clock(), lease=60, limit=1, per_account=1,
                    limits_for=lambda a: (None, None))
    kit.store.dispatch([job.id], "r1", now=kit.clock())
    kit.store.record([Result(job.id, "r1", kit.clock(), JobStatus.UNKNOWN, "error",
                             error_kind=ErrorKind.AMBIGUOUS, next_attempt_at=kit.clock())])
    kit.store.claim_unknown("r2", now=kit.clock(), lease=60, limit=1)
    kit.store.record([Result(job.id, "r2", kit.clock(), JobStatus.FAILED, "reconciled",
                             closes_attempt=False,
                             decision="not posted, and 1 attempt(s) are spent")])
    with pytest.raises(UsageError, match="may already be posted"):
        kit.store.retry_job(job.id, now=kit.clock())
    assert kit.job(job.id).status == JobStatus.FAILED
    assert kit.store.retry_job(job.id, now=kit.clock(), force=True).status == JobStatus.PENDING


def test_retry_of_a_failure_the_platform_gave_needs_no_force(kit):
    job = kit.add("a", "refused", max_attempts=1)
    kit.world.script["refused"] = [err(ErrorKind.INVALID, http_status=422)]
    kit.run()
    assert kit.job(job.id).status == JobStatus.FAILED
    assert kit.store.retry_job(job.id, now=kit.clock()).status == JobStatus.PENDING


def test_retry_after_an_established_absence_needs_no_force(kit):
    job = kit.add("a", "shown absent", max_attempts=1)
    kit.world.script["shown absent"] = [timeout()]
    settle(kit, job.id)
    assert kit.job(job.id).status == JobStatus.FAILED
    assert kit.store.retry_job(job.id, now=kit.clock()).status == JobStatus.PENDING


def test_mastodon_connection_dropped_after_the_create_on_the_last_attempt(kit):
    """The real adapter against the fake server: two attempts answered 408 (retried), the
    last one created and then dropped. The job is reconciled to posted, with the server's
    own status, and never recorded as failed."""
    from tests.fakes.mastodon_server import FakeMastodon

    with FakeMastodon({"token-m": "m"}) as fake:
        kit.account("m", platform="mastodon", base_url=fake.base_url,
                    credentials={"access_token": "token-m"})
        job = kit.add("m", "dropped on the last try", platform="mastodon", max_attempts=3)
        fake.inject("status", status=408, path="/api/v1/statuses", count=2)
        fake.inject("drop", path="/api/v1/statuses", count=1)
        final, seen = settle(kit, job.id)
        assert JobStatus.FAILED not in seen and JobStatus.UNKNOWN in seen
        assert final.status == JobStatus.POSTED and final.attempts == 3
        (made,) = fake.ledger()
        assert final.platform_post_id == made.id
        creates = [r for r in fake.requests if r["path"] == "/api/v1/statuses"]
        assert len(creates) == 4  # 408, 408, created-then-dropped, the deduplicated resend
        assert {r["idempotency_key"] for r in creates} == {job.idempotency_key}
