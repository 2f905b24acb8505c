"""Platforms the benchmarks register in-process.

noop      publish returns at once: only autopost's own bookkeeping is timed.
benchhttp one HTTP POST per job to the account's base_url (the bench's local server),
          through the run's shared httpx.Client, like a real adapter.

Registering them imports no HTTP library: a real platform's module (and httpx with it)
is imported when a run first needs its adapter, so the bench's must not load httpx on
the main thread at process start either.
"""

from __future__ import annotations

from autopost.models import ErrorKind, Job
from autopost.platforms import registry
from autopost.platforms.base import (
    AccountInfo,
    Adapter,
    PlatformError,
    Published,
    Reconciled,
    SaveRef,
    Verdict,
)


class NoopAdapter(Adapter):
    platform = "noop"
    needs_http = False

    def publish(self, job: Job, save_ref: SaveRef) -> Published:
        return Published(post_id=job.id)

    def reconcile(self, job: Job) -> Reconciled:
        return Reconciled(Verdict.NOT_POSTED, None, "noop")

    def check(self) -> AccountInfo:
        return AccountInfo(display="noop")


class BenchHttpAdapter(Adapter):
    platform = "benchhttp"
    needs_http = True

    def publish(self, job: Job, save_ref: SaveRef) -> Published:
        from autopost.platforms import http  # with httpx, at the first call (see above)

        request = self.client.build_request(
            "POST", self.base_url + "/post",
            json={"id": job.id, "account": job.account, "text": job.text},
            headers={"Idempotency-Key": job.idempotency_key})
        response = http.send(self.client, request, is_create=True)
        if response.status_code != 200:
            raise PlatformError(http.classify_status(response.status_code, is_create=True),
                                f"bench server answered {response.status_code}",
                                http_status=response.status_code)
        return Published(post_id=response.json()["id"])

    def reconcile(self, job: Job) -> Reconciled:
        return Reconciled(Verdict.CANNOT_TELL, None, "bench server keeps no ledger")

    def check(self) -> AccountInfo:
        return AccountInfo(display=self.base_url)


def register() -> None:
    registry.register("noop", NoopAdapter)
    registry.register("benchhttp", BenchHttpAdapter)


__all__ = ["BenchHttpAdapter", "ErrorKind", "NoopAdapter", "register"]
