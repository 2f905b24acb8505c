"""The run's token refresh path: proactive refresh that hits a platform hiccup, and a
reconcile whose read-back needs a refreshed token."""

from __future__ import annotations

from datetime import timedelta

import pytest

from autopost.models import AccountState, ErrorKind, Job, JobStatus
from autopost.platforms import registry
from autopost.platforms.base import PlatformError, Reconciled
from tests.enginekit import Kit, ScriptedAdapter


class TokenCheckingReconcile(ScriptedAdapter):
    """Like the scripted platform, but its read-back also refuses a stale token."""

    platform = "scripted-read"

    def reconcile(self, job: Job) -> Reconciled:
        if self.credentials.get("token") != self.world.valid_token:
            raise PlatformError(ErrorKind.AUTH_EXPIRED, "token expired", http_status=401)
        return super().reconcile(job)


@pytest.fixture
def kit(tmp_path):
    k = Kit(tmp_path)
    registry.register("scripted-read", TokenCheckingReconcile)
    k.account("a")
    yield k
    registry.unregister("scripted-read")
    k.store.close()


def test_proactive_refresh_that_fails_transiently_keeps_the_account_posting(kit):
    soon = kit.clock() + timedelta(minutes=2)
    kit.store.save_credentials("a", {"token": "t1", "refresh": "r"}, soon, now=kit.clock())
    kit.world.refresh_error = PlatformError(ErrorKind.NETWORK, "cannot connect")
    job = kit.add("a", "still valid token")
    summary = kit.run()
    assert kit.world.refreshes == 1
    assert kit.job(job.id).status == JobStatus.POSTED
    assert kit.store.get_account("a").state == AccountState.OK
    assert not summary.needs_attention


def test_proactive_refresh_refused_still_means_needs_reauth(kit):
    soon = kit.clock() + timedelta(minutes=2)
    kit.store.save_credentials("a", {"token": "t1", "refresh": "r"}, soon, now=kit.clock())
    kit.world.refresh_error = PlatformError(ErrorKind.AUTH_REVOKED, "invalid_grant")
    job = kit.add("a", "waits")
    kit.run()
    assert kit.store.get_account("a").state == AccountState.NEEDS_REAUTH
    assert kit.job(job.id).status == JobStatus.PENDING and kit.job(job.id).attempts == 0


def test_reconcile_refreshes_an_expired_token_once_and_finds_the_post(kit):
    kit.account("r", platform="scripted-read")
    job = kit.add("r", "lost answer", platform="scripted-read")
    kit.world.script["lost answer"] = [
        ("posted-then", PlatformError(ErrorKind.AMBIGUOUS, "timeout"))]
    kit.run()
    assert kit.job(job.id).status == JobStatus.UNKNOWN
    kit.world.valid_token = "t2"  # the token expired meanwhile; a refresh gives t2
    kit.clock.advance(60)
    kit.run()
    assert kit.world.refreshes == 1
    assert kit.job(job.id).status == JobStatus.POSTED
    assert kit.world.posted("lost answer") == 1
    assert kit.store.get_account("r").credentials["token"] == "t2"
