"""Helpers shared by the Meta tests: the fake Graph server checked against the SDK's
parameter tables, a static web server playing the media host, jobs and adapters."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from autopost.config import MediaHostSettings, MetaSettings, Settings
from autopost.models import Account, ErrorKind, Job, Media
from autopost.platforms.base import Adapter, PlatformError
from autopost.platforms.meta import graph
from tests import meta_params
from tests.fakes.graph_server import FakeGraph


class Refs:
    """Collects what an adapter saves with save_ref, as the engine would merge it."""

    def __init__(self, on_save: Callable[[dict[str, Any]], None] | None = None):
        self.saved: list[dict[str, Any]] = []
        self.ref: dict[str, Any] = {}
        self.on_save = on_save

    def __call__(self, ref: dict[str, Any]) -> None:
        self.saved.append(dict(ref))
        self.ref = {**self.ref, **ref}
        if self.on_save is not None:
            self.on_save(ref)


class Sleeper:
    def __init__(self, fake: FakeGraph | None = None):
        self.calls: list[float] = []
        self.fake = fake

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self.fake is not None:
            self.fake.advance(seconds)


def make_job(text: str = "Hello from autopost", *, platform: str = "facebook",
             media: tuple[Media, ...] = (), **kw: Any) -> Job:
    now = datetime.now(UTC)
    fields = dict(id="job00001", account="acct", platform=platform, text=text,
                  scheduled_at=now, next_attempt_at=now, media=media, created_at=now)
    fields.update(kw)
    return Job(**fields)


def with_ref(job: Job, refs: Refs, kind: ErrorKind | None = ErrorKind.AMBIGUOUS) -> Job:
    return replace(job, ref={**job.ref, **refs.ref}, last_error_kind=kind)


def settings(media_dir: Path | None = None, media_url: str | None = None, *,
             publish_wait: float = 0.0, version: str = "v26.0") -> Settings:
    return Settings(meta=MetaSettings(graph_version=version, threads_publish_wait=publish_wait),
                    media=MediaHostSettings(public_dir=media_dir, public_base_url=media_url))


def adapter(cls: type[Adapter], fake: FakeGraph, credentials: dict[str, Any], *,
            name: str = "acct", config: Settings | None = None,
            sleep: Callable[[float], None] | None = None,
            clock: Callable[[], datetime] | None = None) -> Any:
    account = Account(name=name, platform=cls.platform, base_url=fake.base_url,
                      credentials=credentials)
    return cls(account, credentials, httpx.Client(timeout=20), settings=config or settings(),
               sleep=sleep or Sleeper(fake), clock=clock or fake.now)


def raises(kind: ErrorKind, fn: Callable[[], Any]) -> PlatformError:
    with pytest.raises(PlatformError) as info:
        fn()
    assert info.value.kind == kind, (info.value.kind, info.value.message)
    return info.value


@pytest.fixture
def fake() -> Iterator[FakeGraph]:
    """A running fake Graph API; every request checked against the SDK's tables."""
    meta_params.require_sdk()
    graph.COOLDOWNS.clear()
    with FakeGraph() as server:
        server.param_check = meta_params.check
        yield server
    graph.COOLDOWNS.clear()
    assert server.violations == [], server.violations


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class StaticHost:
    """A web server on 127.0.0.1 serving one folder: the operator's media host."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        handler = functools.partial(_Quiet, directory=str(folder))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/media/"

    def __enter__(self) -> StaticHost:
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def media_host(tmp_path) -> Iterator[tuple[Path, str]]:
    """(public_dir, public_base_url) served by a local web server."""
    root = tmp_path / "www"
    with StaticHost(root) as host:
        yield root / "media", host.base_url
