"""Property tests for backoff bounds, the decision table, and rolling quota windows."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from autopost.config import PlatformPolicy
from autopost.models import ErrorKind, Job, JobStatus
from autopost.platforms.base import PlatformError
from autopost.policy import backoff_delay, decide_error, retry_time
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
