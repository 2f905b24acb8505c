"""One "host" for the multi-host tests: `python -m tests.pg_host DSN CONFIG HOST [SKEW]`.

Runs one run-due (the engine, as the CLI would) against the PostgreSQL store with its
own host identity and, optionally, a clock SKEW seconds off the real one. Its platform
is `ledger`, a fake that keeps its whole truth in files under each account's folder,
shared by every process:

- `ledger`: one line per publish call that reached the platform ("account id start-time");
  the count of lines per job is the truth about how often it was posted.
- `tokens.json`: the account's current access and refresh tokens. Like an OAuth server
  with rotating refresh tokens, the platform expires the access token after every
  `rotate_every` posts, a refresh with the current refresh token issues a new pair (the
  old refresh token dies), and a refresh with a dead one is refused and written to
  `refreshes` as REUSE (the failure the refresh lock exists to prevent).
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from autopost.models import ErrorKind
from autopost.platforms.base import (
    AccountInfo,
    Adapter,
    PlatformError,
    Published,
    Reconciled,
    Refreshed,
    Verdict,
)


@contextmanager
def locked(folder: Path):
    with open(folder / "lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _append(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def setup_platform(folder: Path, *, rotate_every: int | None = None, delay: float = 0.003
                   ) -> dict:
    """The account's folder and its first credentials."""
    folder.mkdir(parents=True, exist_ok=True)
    creds = {"dir": str(folder)}
    settings = {"delay": delay}
    if rotate_every:
        state = {"access": "a0", "refresh": "r0", "n": 0, "posts": 0,
                 "rotate_every": rotate_every, "expired": 0}
        (folder / "tokens.json").write_text(json.dumps(state))
        creds.update(access="a0", refresh="r0")
    (folder / "settings.json").write_text(json.dumps(settings))
    return creds


def ledger_lines(folder: Path) -> list[list[str]]:
    path = folder / "ledger"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


class LedgerAdapter(Adapter):
    platform = "ledger"
    required_fields = ("dir",)
    optional_fields = ("access", "refresh")
    needs_http = False
    refreshable = True

    @property
    def folder(self) -> Path:
        return Path(self.credentials["dir"])

    def publish(self, job, save_ref):
        settings = json.loads((self.folder / "settings.json").read_text())
        tokens = self.folder / "tokens.json"
        with locked(self.folder):
            if tokens.exists():
                state = json.loads(tokens.read_text())
                if self.credentials.get("access") != state["access"]:
                    raise PlatformError(ErrorKind.AUTH_EXPIRED, "access token expired",
                                        http_status=401)
            _append(self.folder / "ledger", f"{job.account} {job.id} {time.time():.6f}")
        time.sleep(settings["delay"])
        if tokens.exists():
            with locked(self.folder):
                state = json.loads(tokens.read_text())
                state["posts"] += 1
                if state["posts"] % state["rotate_every"] == 0:
                    state["access"] = None  # expired: the next post needs a refresh
                    state["expired"] += 1
                tokens.write_text(json.dumps(state))
        _append(self.folder / "ended", f"{job.account} {job.id} {time.time():.6f}")
        return Published(post_id=job.id)

    def refresh(self):
        tokens = self.folder / "tokens.json"
        with locked(self.folder):
            state = json.loads(tokens.read_text())
            if self.credentials.get("refresh") != state["refresh"]:
                _append(self.folder / "refreshes", f"REUSE {self.credentials.get('refresh')}")
                raise PlatformError(ErrorKind.AUTH_REVOKED, "refresh token already used")
            n = state["n"] + 1
            state.update(access=f"a{n}", refresh=f"r{n}", n=n)
            tokens.write_text(json.dumps(state))
            _append(self.folder / "refreshes", f"{n}")
        time.sleep(float(os.environ.get("LEDGER_REFRESH_DELAY", "0")))
        return Refreshed({"access": f"a{n}", "refresh": f"r{n}"})

    def reconcile(self, job):
        ids = {line[1] for line in ledger_lines(self.folder)}
        if job.id in ids:
            return Reconciled(Verdict.POSTED, Published(job.id))
        return Reconciled(Verdict.NOT_POSTED)

    def check(self):
        return AccountInfo("ledger")


def register() -> None:
    from autopost.platforms import registry

    registry.register("ledger", LedgerAdapter)


def main(argv: list[str]) -> int:
    dsn, config, host = argv[:3]
    skew = float(argv[3]) if len(argv) > 3 else 0.0
    linger = float(argv[4]) if len(argv) > 4 else 0.0
    os.environ["AUTOPOST_HOST"] = host
    register()
    from autopost.config import load_settings
    from autopost.engine import Engine, RunOptions
    from autopost.store.postgres import PostgresStore

    def clock() -> datetime:
        return datetime.now(UTC) + timedelta(seconds=skew)

    settings = load_settings(config)
    store = PostgresStore(dsn)
    try:
        Engine(store, settings, store_factory=store.reopen, clock=clock).run(
            RunOptions(concurrency=4, linger=linger))
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
