"""Test kit for the engine: a scripted in-process platform, a fake clock, a store factory."""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from autopost.config import Settings, load_settings
from autopost.engine import Engine, RunOptions
from autopost.models import Account, ErrorKind, Job, NewJob
from autopost.platforms import registry
from autopost.platforms.base import (
    AccountInfo,
    Adapter,
    PlatformError,
    Published,
    Reconciled,
    Refreshed,
    Verdict,
)
from autopost.store.sqlite import SqliteStore

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self, start: datetime = T0):
        self.now = start
        self.lock = threading.Lock()

    def __call__(self) -> datetime:
        with self.lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.now += timedelta(seconds=seconds)


class Platform:
    """The world the scripted adapter talks to: a ledger of posts and a script of faults.

    script[text] is a list of outcomes consumed one per publish call: "ok", a
    PlatformError to raise, or ("posted-then", PlatformError) to post and still fail
    (the post went out but the answer was lost)."""

    def __init__(self) -> None:
        self.ledger: list[tuple[str, str]] = []  # (account, text)
        self.script: dict[str, list[Any]] = defaultdict(list)
        self.calls: list[tuple[str, str]] = []
        self.refreshes = 0
        self.refresh_error: PlatformError | None = None
        self.reconcile_answer: Verdict | None = None
        # Errors raised by reconcile, one per call, before it answers.
        self.reconcile_faults: list[PlatformError] = []
        self.reconciles = 0
        self.valid_token = "t1"
        self.lock = threading.Lock()
        self.in_flight: dict[str, int] = defaultdict(int)
        self.max_in_flight = 0
        self.max_per_account = 0
        self.total_in_flight = 0
        self.by_key: dict[str, Published] = {}  # idempotency key -> the post it made

    def posted(self, text: str) -> int:
        return sum(1 for _, t in self.ledger if t == text)


class ScriptedAdapter(Adapter):
    platform = "scripted"
    required_fields = ("token",)
    optional_fields = ("refresh",)
    needs_http = False
    refreshable = True
    world: Platform = Platform()

    def publish(self, job: Job, save_ref) -> Published:
        w = self.world
        with w.lock:
            w.calls.append((job.account, job.text))
            w.in_flight[job.account] += 1
            w.total_in_flight += 1
            w.max_per_account = max(w.max_per_account, w.in_flight[job.account])
            w.max_in_flight = max(w.max_in_flight, w.total_in_flight)
            step = w.script[job.text].pop(0) if w.script[job.text] else "ok"
        try:
            if self.credentials.get("token") != w.valid_token:
                raise PlatformError(ErrorKind.AUTH_EXPIRED, "token expired", http_status=401)
            if isinstance(step, tuple) and step[0] == "posted-then":
                with w.lock:
                    w.ledger.append((job.account, job.text))
                    w.by_key.setdefault(job.idempotency_key,
                                        Published(f"p{len(w.ledger)}",
                                                  f"https://example.test/{job.id}"))
                raise step[1]
            if isinstance(step, PlatformError):
                raise step
            if callable(step):
                step()
            with w.lock:
                w.ledger.append((job.account, job.text))
            return Published(post_id=f"p{len(w.ledger)}", url=f"https://example.test/{job.id}")
        finally:
            with w.lock:
                w.in_flight[job.account] -= 1
                w.total_in_flight -= 1

    def reconcile(self, job: Job) -> Reconciled:
        w = self.world
        with w.lock:
            w.reconciles += 1
            fault = w.reconcile_faults.pop(0) if w.reconcile_faults else None
        if fault is not None:
            raise fault
        if w.reconcile_answer is not None:
            return Reconciled(w.reconcile_answer, None, "scripted")
        if w.posted(job.text):
            return Reconciled(Verdict.POSTED, Published("p-found", "https://example.test/f"),
                              "found")
        return Reconciled(Verdict.NOT_POSTED, None, "not found")

    def check(self) -> AccountInfo:
        return AccountInfo(display="scripted")

    def refresh(self) -> Refreshed:
        w = self.world
        with w.lock:
            w.refreshes += 1
        if w.refresh_error is not None:
            raise w.refresh_error
        return Refreshed({"token": w.valid_token})


class NoReconcileAdapter(ScriptedAdapter):
    platform = "scripted-blind"
    can_reconcile = False

    def reconcile(self, job: Job) -> Reconciled:
        return Reconciled(Verdict.CANNOT_TELL, None, "no way to ask")


class DedupeAdapter(ScriptedAdapter):
    """A platform that cannot be asked but deduplicates a resend, as Mastodon does with
    an Idempotency-Key inside its hour: a create carrying a key it has seen answers with
    the post it already made."""

    platform = "scripted-dedupe"

    def publish(self, job: Job, save_ref) -> Published:
        w = self.world
        with w.lock:
            made = w.by_key.get(job.idempotency_key)
        if made is None:
            published = super().publish(job, save_ref)
            with w.lock:
                w.by_key.setdefault(job.idempotency_key, published)
            return published
        with w.lock:
            w.calls.append((job.account, job.text))
            step = w.script[job.text].pop(0) if w.script[job.text] else "ok"
        if isinstance(step, tuple):
            step = step[1]  # the original post is still there; only the answer is lost
        if isinstance(step, PlatformError):
            raise step
        return made

    def reconcile(self, job: Job) -> Reconciled:
        return Reconciled(Verdict.RESEND, None, "a resend is deduplicated")


def install(world: Platform) -> None:
    ScriptedAdapter.world = world
    registry.register("scripted", ScriptedAdapter)
    registry.register("scripted-blind", NoReconcileAdapter)
    registry.register("scripted-dedupe", DedupeAdapter)


class Kit:
    """A database with accounts, an engine factory and helpers."""

    def __init__(self, tmp: Path, *, settings: Settings | None = None, seed: int = 7):
        self.path = tmp / "autopost.db"
        self.store = SqliteStore(self.path)
        self.clock = Clock()
        self.world = Platform()
        install(self.world)
        self.settings = settings or _settings(tmp)
        self.rng = random.Random(seed)

    def account(self, name: str, platform: str = "scripted", **kw: Any) -> Account:
        creds = kw.pop("credentials", {"token": "t1"})
        return self.store.add_account(Account(name=name, platform=platform, credentials=creds,
                                              **kw), now=self.clock())

    def add(self, account: str, text: str, *, at: datetime | None = None,
            platform: str = "scripted", max_attempts: int = 5) -> Job:
        job = NewJob(account=account, platform=platform, text=text,
                     scheduled_at=at or self.clock(), max_attempts=max_attempts)
        return self.store.add_jobs([job], now=self.clock())[0][0]

    def engine(self, stop: threading.Event | None = None) -> Engine:
        return Engine(self.store, self.settings, store_factory=lambda: SqliteStore(self.path),
                      clock=self.clock, sleep=self.clock.advance, rng=self.rng, stop=stop)

    def run(self, **opts: Any):
        return self.engine().run(RunOptions(**opts))

    def job(self, job_id: str) -> Job:
        return self.store.get_job(job_id)


def _settings(tmp: Path) -> Settings:
    return load_settings(str(_write_config(tmp)), env={})


def _write_config(tmp: Path) -> Path:
    path = tmp / "config.toml"
    if not path.exists():
        path.write_text("[run]\nlease_seconds = 300\ncatch_up_window = \"1h\"\n")
    return path
