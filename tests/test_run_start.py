"""How run-due starts.

The run's first platform call waits for the shared HTTP client, and the first client of
a process is slow to build (the TLS context, httpcore's import): run-due builds its TLS
context on a thread of its own from its first moment.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import httpx
import pytest

from autopost.models import Account, JobStatus, NewJob
from autopost.platforms import http, tlsprefetch
from autopost.store.sqlite import SqliteStore
from tests.fakes.mastodon_server import FakeMastodon


@pytest.fixture
def mastodon(cli):
    with FakeMastodon() as fake:
        store = SqliteStore(cli.db)
        now = datetime.now(UTC)
        store.add_account(Account(name="alice", platform="mastodon", base_url=fake.base_url,
                                  credentials={"access_token": "token-alice"}), now=now)
        job = store.add_jobs([NewJob(account="alice", platform="mastodon", text="hello",
                                     scheduled_at=now)], now=now)[0][0]
        yield fake, store, job
        store.close()


@pytest.fixture
def contexts(monkeypatch):
    """Every TLS context httpx builds in this process: (thread name, context)."""
    built: list[tuple[str, object]] = []
    real = httpx.create_ssl_context

    def create(*args, **kwargs):
        context = real(*args, **kwargs)
        built.append((threading.current_thread().name, context))
        return context

    monkeypatch.setattr(httpx, "create_ssl_context", create)
    return built


@pytest.fixture
def clients(monkeypatch):
    """The keyword arguments of every make_client call."""
    calls: list[dict] = []
    real = http.make_client

    def make(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(http, "make_client", make)
    return calls


def test_the_runs_client_uses_the_tls_context_built_on_the_prefetch_thread(
        cli, mastodon, contexts, clients):
    fake, store, job = mastodon
    out = cli("run-due")
    assert out.code == 0, out.stderr
    assert store.get_job(job.id).status == JobStatus.POSTED
    # One context, built off the workers' path, and the run's one client trusts it.
    assert [name for name, _ in contexts] == ["tls-prefetch"]
    assert len(clients) == 1 and clients[0].get("verify") is contexts[0][1]


def test_a_prefetch_that_fails_leaves_the_client_to_build_its_own(
        cli, mastodon, contexts, clients, monkeypatch):
    fake, store, job = mastodon
    real = httpx.create_ssl_context

    def flaky(*args, **kwargs):
        if threading.current_thread().name == "tls-prefetch":
            raise OSError("CA bundle unreadable just now")
        return real(*args, **kwargs)

    monkeypatch.setattr(httpx, "create_ssl_context", flaky)
    out = cli("run-due")
    assert out.code == 0, out.stderr
    assert store.get_job(job.id).status == JobStatus.POSTED
    assert clients == [{}]  # the ordinary client, with httpx's own context


def test_a_dry_run_prefetches_nothing(cli, mastodon, monkeypatch):
    started = []
    monkeypatch.setattr(tlsprefetch.TlsPrefetch, "_build", lambda self: started.append(self))
    out = cli("run-due", "--dry-run")
    assert out.code == 0 and "would publish" in out.stdout
    assert started == []
