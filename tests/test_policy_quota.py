"""Property tests for backoff bounds, the decision table, and rolling quota windows."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autopost.config import PlatformPolicy
from autopost.models import ErrorKind, Job, JobStatus
from autopost.platforms.base import PlatformError, Verdict
from autopost.policy import (
    MAX_FAILED_RECONCILES,
    MAX_FAILED_RESENDS,
    backoff_delay,
    decide_error,
    decide_reconcile,
    decide_reconcile_error,
    decide_resend_error,
    retry_time,
    unsettled_attempt,
)
from autopost.quota import DAY, HOUR, next_free_slot, window_slot

T0 = datetime(2026, 12, 1, tzinfo=UTC)

policies = st.builds(
    PlatformPolicy,
    max_attempts=st.integers(1, 10),
    base_delay=st.floats(0.1, 3600),
    max_delay=st.floats(1, 86400),
    backoff_multiplier=st.floats(1, 4),
)


@given(policies, st.integers(1, 60), st.integers(0, 2**32))
def test_backoff_is_within_half_and_whole_of_the_capped_exponential(policy, attempt, seed):
    delay = backoff_delay(policy, attempt, random.Random(seed))
    capped = min(policy.max_delay, policy.base_delay * policy.backoff_multiplier ** (attempt - 1))
    assert capped / 2 - 1e-9 <= delay <= capped + 1e-9
    assert delay <= policy.max_delay + 1e-9


@given(policies, st.integers(1, 20), st.floats(0, 10**6))
def test_retry_is_never_earlier_than_the_platform_reset(policy, attempt, reset_in):
    reset = T0 + timedelta(seconds=reset_in)
    at = retry_time(policy, attempt, T0, random.Random(1), reset)
    assert at >= reset and at > T0 - timedelta(seconds=1)


def _job(**kw):
    base = dict(id="j", account="a", platform="x", text="t", scheduled_at=T0,
                next_attempt_at=T0, max_attempts=3)
    base.update(kw)
    return Job(**base)


TABLE = [
    (ErrorKind.AUTH_EXPIRED, JobStatus.PENDING),
    (ErrorKind.AUTH_REVOKED, JobStatus.PENDING),
    (ErrorKind.RATE_LIMITED, JobStatus.PENDING),
    (ErrorKind.NETWORK, JobStatus.PENDING),
    (ErrorKind.SERVER, JobStatus.PENDING),
    (ErrorKind.AMBIGUOUS, JobStatus.UNKNOWN),
    (ErrorKind.DUPLICATE, JobStatus.UNKNOWN),
    (ErrorKind.INVALID, JobStatus.FAILED),
]


def test_decision_table():
    policy = PlatformPolicy()
    for kind, status in TABLE:
        d = decide_error(PlatformError(kind, "m"), job=_job(), attempt=1, policy=policy,
                         now=T0, rng=random.Random(0), can_reconcile=True)
        assert d.status == status, kind
    revoked = decide_error(PlatformError(ErrorKind.AUTH_REVOKED, "m"), job=_job(), attempt=3,
                           policy=policy, now=T0, rng=random.Random(0), can_reconcile=True)
    assert revoked.refund_attempt and revoked.account_state == "needs_reauth"
    spent = decide_error(PlatformError(ErrorKind.NETWORK, "m"), job=_job(), attempt=3,
                         policy=policy, now=T0, rng=random.Random(0), can_reconcile=True)
    assert spent.status == JobStatus.FAILED
    blind = decide_error(PlatformError(ErrorKind.AMBIGUOUS, "m"), job=_job(), attempt=1,
                         policy=policy, now=T0, rng=random.Random(0), can_reconcile=False)
    assert blind.status == JobStatus.UNKNOWN and blind.next_attempt_at is None
    quota_retry = PlatformPolicy(retryable=frozenset({ErrorKind.QUOTA_EXCEEDED}))
    q = decide_error(PlatformError(ErrorKind.QUOTA_EXCEEDED, "m"), job=_job(), attempt=1,
                     policy=quota_retry, now=T0, rng=random.Random(0), can_reconcile=True)
    assert q.status == JobStatus.PENDING and q.block_until is not None
    q2 = decide_error(PlatformError(ErrorKind.QUOTA_EXCEEDED, "m"), job=_job(), attempt=1,
                      policy=PlatformPolicy(), now=T0, rng=random.Random(0), can_reconcile=True)
    assert q2.status == JobStatus.FAILED


stamps_st = st.lists(st.floats(0, 2 * 86400), max_size=60)


def _count(stamps, t, window):
    return sum(1 for s in stamps if t - window < s <= t)


@settings(max_examples=300)
@given(stamps_st, st.integers(1, 20), st.integers(1, 80))
def test_quota_slot_is_the_first_moment_with_room(offsets, hourly, daily):
    now = T0 + timedelta(days=2)
    stamps = [T0 + timedelta(seconds=o) for o in offsets]
    slot = next_free_slot(stamps, now, hourly=hourly, daily=daily)
    past = [s for s in stamps if s <= now]
    if slot is None:
        assert _count(past, now, HOUR) < hourly and _count(past, now, DAY) < daily
        return
    assert slot > now
    # At the slot there is room in both windows...
    assert _count(past, slot, HOUR) < hourly and _count(past, slot, DAY) < daily
    # ...and a moment earlier there was not.
    before = slot - timedelta(microseconds=1)
    assert _count(past, before, HOUR) >= hourly or _count(past, before, DAY) >= daily


@given(st.lists(st.floats(0, 3599), min_size=0, max_size=30), st.integers(1, 30))
def test_posting_at_each_offered_slot_never_exceeds_the_limit(offsets, limit):
    now = T0 + timedelta(hours=1)
    stamps = sorted(now - timedelta(seconds=o) for o in offsets)[-limit:]
    # Greedily take every slot offered for the next 3 hours; the window never overflows.
    t = now
    taken = list(stamps)
    for _ in range(3 * limit):
        slot = window_slot(taken, t, HOUR, limit)
        t = slot or t
        taken.append(t)
        assert _count(taken, t, HOUR) <= limit


# -- jitter spreads retries out ------------------------------------------------------------------

def test_backoff_jitter_spreads_evenly_over_half_to_whole_of_the_delay():
    """Equal jitter: uniform over [d/2, d]. Ten equal bins of 5,000 draws each hold close
    to a tenth (a constant delay, or one stuck at either end, fails)."""
    policy = PlatformPolicy(base_delay=100, max_delay=10_000, backoff_multiplier=2)
    rng = random.Random(20261201)
    d = 400.0  # attempt 3
    draws = [backoff_delay(policy, 3, rng) for _ in range(5000)]
    bins = [0] * 10
    for x in draws:
        assert d / 2 <= x <= d
        bins[min(9, int((x - d / 2) / (d / 20)))] += 1
    assert all(400 <= n <= 600 for n in bins), bins
    mean = sum(draws) / len(draws)
    assert abs(mean - 0.75 * d) < 0.01 * d


def test_jobs_failing_together_retry_at_different_times():
    policy = PlatformPolicy(base_delay=60, max_delay=3600, backoff_multiplier=2)
    rng = random.Random(3)
    times = [decide_error(PlatformError(ErrorKind.SERVER, "m"), job=_job(), attempt=1,
                          policy=policy, now=T0, rng=rng, can_reconcile=True).next_attempt_at
             for _ in range(200)]
    assert len(set(times)) == 200
    spread = (max(times) - min(times)).total_seconds()
    assert spread > 0.8 * 30  # most of the [30 s, 60 s] range is used


# -- the reconcile decision table, row by row ----------------------------------------------------

def _reconciled(verdict, message="m"):
    from autopost.platforms.base import Published, Reconciled

    published = Published("p1", "https://x/p1") if verdict == Verdict.POSTED else None
    return Reconciled(verdict, published, message)


RECONCILE_TABLE = [
    # verdict, last error, attempts used of 3 -> status, next look, resend
    (Verdict.POSTED, ErrorKind.AMBIGUOUS, 1, JobStatus.POSTED, None, False),
    (Verdict.POSTED, ErrorKind.AMBIGUOUS, 3, JobStatus.POSTED, None, False),
    (Verdict.POSTED, ErrorKind.DUPLICATE, 1, JobStatus.POSTED, None, False),
    (Verdict.NOT_POSTED, ErrorKind.AMBIGUOUS, 1, JobStatus.PENDING, T0, False),
    (Verdict.NOT_POSTED, ErrorKind.AMBIGUOUS, 3, JobStatus.FAILED, None, False),
    (Verdict.NOT_POSTED, ErrorKind.DUPLICATE, 1, JobStatus.FAILED, None, False),
    (Verdict.RESEND, ErrorKind.AMBIGUOUS, 1, JobStatus.UNKNOWN, T0, True),
    (Verdict.RESEND, ErrorKind.AMBIGUOUS, 3, JobStatus.UNKNOWN, T0, True),
    (Verdict.RESEND, ErrorKind.AMBIGUOUS, 9, JobStatus.UNKNOWN, T0, True),
    (Verdict.CANNOT_TELL, ErrorKind.AMBIGUOUS, 1, JobStatus.UNKNOWN, None, False),
    (Verdict.CANNOT_TELL, ErrorKind.AMBIGUOUS, 3, JobStatus.UNKNOWN, None, False),
]


@pytest.mark.parametrize("verdict,last,used,status,next_at,resend", RECONCILE_TABLE)
def test_reconcile_decision_table(verdict, last, used, status, next_at, resend):
    job = _job(attempts=used, last_error_kind=last)
    d = decide_reconcile(_reconciled(verdict), job=job, now=T0)
    assert (d.status, d.next_attempt_at, d.resend) == (status, next_at, resend)
    assert not d.refund_attempt and d.block_until is None


@pytest.mark.parametrize("used", [1, 3])
def test_a_failed_reconcile_stays_unknown_and_asks_again(used):
    policy = PlatformPolicy(base_delay=60, max_delay=600)
    d = decide_reconcile_error(PlatformError(ErrorKind.NETWORK, "m"), job=_job(attempts=used),
                               policy=policy, now=T0, rng=random.Random(1))
    assert d.status == JobStatus.UNKNOWN and d.next_attempt_at > T0
    later = T0 + timedelta(hours=2)
    limited = decide_reconcile_error(
        PlatformError(ErrorKind.RATE_LIMITED, "m", retry_at=later), job=_job(attempts=used),
        policy=policy, now=T0, rng=random.Random(1))
    assert limited.status == JobStatus.UNKNOWN and limited.next_attempt_at == later


def test_failed_reconciles_back_off_then_stop_and_wait_for_the_operator():
    policy = PlatformPolicy(base_delay=60, max_delay=86400)

    def decide(before):
        return decide_reconcile_error(PlatformError(ErrorKind.SERVER, "m"), job=_job(attempts=1),
                                      policy=policy, now=T0, rng=random.Random(1),
                                      failed_before=before)

    assert decide(3).next_attempt_at - T0 > 2 * (decide(0).next_attempt_at - T0)
    assert decide(MAX_FAILED_RECONCILES - 2).next_attempt_at is not None
    assert not decide(MAX_FAILED_RECONCILES - 2).gave_up
    last = decide(MAX_FAILED_RECONCILES - 1)
    assert last.status == JobStatus.UNKNOWN and last.next_attempt_at is None and last.gave_up
    assert "autopost show j" in last.why and "retry --force" in last.why


RESEND_TABLE = [
    # error kind, HTTP status -> status, asked again, account state, blocked
    (ErrorKind.INVALID, 422, JobStatus.FAILED, False, None, False),
    (ErrorKind.INVALID, None, JobStatus.UNKNOWN, False, None, False),
    (ErrorKind.NETWORK, None, JobStatus.UNKNOWN, True, None, False),
    (ErrorKind.SERVER, 503, JobStatus.UNKNOWN, True, None, False),
    (ErrorKind.AMBIGUOUS, None, JobStatus.UNKNOWN, True, None, False),
    (ErrorKind.DUPLICATE, 403, JobStatus.UNKNOWN, True, None, False),
    (ErrorKind.RATE_LIMITED, 429, JobStatus.UNKNOWN, True, None, True),
    (ErrorKind.QUOTA_EXCEEDED, 403, JobStatus.UNKNOWN, True, None, True),
    (ErrorKind.AUTH_EXPIRED, 401, JobStatus.UNKNOWN, True, "needs_reauth", False),
    (ErrorKind.AUTH_REVOKED, 401, JobStatus.UNKNOWN, True, "needs_reauth", False),
]


@pytest.mark.parametrize("kind,http,status,again,state,blocked", RESEND_TABLE)
def test_settling_resend_decision_table(kind, http, status, again, state, blocked):
    """Whatever the attempts spent, a failed resend never fails a job that may be live,
    unless the platform itself refused the post."""
    d = decide_resend_error(PlatformError(kind, "m", http_status=http),
                            job=_job(attempts=3), policy=PlatformPolicy(), now=T0,
                            rng=random.Random(1))
    assert d.status == status
    assert (d.next_attempt_at is not None) == again
    assert d.account_state == state and (d.block_until is not None) == blocked
    assert not d.refund_attempt


@pytest.mark.parametrize("kind", [ErrorKind.NETWORK, ErrorKind.SERVER, ErrorKind.AMBIGUOUS,
                                  ErrorKind.RATE_LIMITED])
def test_settling_resends_stop_after_the_bound_and_wait_for_the_operator(kind):
    def decide(before):
        return decide_resend_error(PlatformError(kind, "m"), job=_job(attempts=1),
                                   policy=PlatformPolicy(), now=T0, rng=random.Random(1),
                                   failed_before=before)

    assert decide(MAX_FAILED_RESENDS - 2).next_attempt_at is not None
    last = decide(MAX_FAILED_RESENDS - 1)
    assert last.status == JobStatus.UNKNOWN and last.next_attempt_at is None
    assert "retry --force" in last.why and last.block_until is None
    # A refusal by the platform still fails it, whatever the count.
    refused = decide_resend_error(PlatformError(ErrorKind.INVALID, "m", http_status=422),
                                  job=_job(), policy=PlatformPolicy(), now=T0,
                                  rng=random.Random(1), failed_before=MAX_FAILED_RESENDS)
    assert refused.status == JobStatus.FAILED


@pytest.mark.parametrize("kind", [ErrorKind.AMBIGUOUS, ErrorKind.DUPLICATE])
def test_an_outcome_that_may_be_live_is_unknown_even_on_the_last_attempt(kind):
    for can_reconcile in (True, False):
        d = decide_error(PlatformError(kind, "m"), job=_job(attempts=3), attempt=3,
                         policy=PlatformPolicy(), now=T0, rng=random.Random(0),
                         can_reconcile=can_reconcile)
        assert d.status == JobStatus.UNKNOWN


def test_unsettled_attempt_reads_the_log():
    from autopost.models import Attempt

    def row(outcome, kind=None, decision=None, finished=True):
        return Attempt("j", 1, "r", T0, T0 if finished else None, outcome, kind, None, None,
                       None, decision)

    lost = row("lost", ErrorKind.AMBIGUOUS)
    assert unsettled_attempt([]) is None
    assert unsettled_attempt([row("error", ErrorKind.INVALID)]) is None
    assert unsettled_attempt([lost]) is lost
    assert unsettled_attempt([lost, row("not_posted")]) is None
    assert unsettled_attempt([lost, row("resolved")]) is None
    assert unsettled_attempt([lost, row("cannot_tell")]) is lost
    assert unsettled_attempt([lost, row("reconcile_error", ErrorKind.NETWORK)]) is lost
    # A settling resend that timed out may be live itself; one refused before any request
    # leaves the earlier doubt in place.
    timed_out = row("resend_failed", ErrorKind.AMBIGUOUS)
    assert unsettled_attempt([row("not_posted"), timed_out]) is timed_out
    assert unsettled_attempt([lost, row("resend_failed", ErrorKind.INVALID)]) is lost
    # Older versions wrote "reconciled" for every reconcile; only a posted one settles.
    assert unsettled_attempt([lost, row("reconciled", decision="not posted, and 3 attempt(s) "
                                        "are spent")]) is lost
    assert unsettled_attempt([lost, row("reconciled", decision="reconciled: posted (x)")]) \
        is None
    sent = row(None, finished=False)
    assert unsettled_attempt([row("not_posted"), sent]) is sent
