"""Tell someone when something needs a human: `[notify]` in config.toml.

    [notify]
    command = "/usr/local/bin/page-me --topic autopost"   # one JSON event on stdin each
    webhook = "https://hooks.example.com/autopost"        # POST of the same JSON
    timeout = "5s"                                        # per delivery

An event is one problem: a job failed or missed, a job's outcome is unknown and waits
for the operator, an account needs re-auth, a token or API version is about to expire,
or status found no recent run. Each occurrence is sent once: the ids of events already
sent are kept in a ledger beside the database (`autopost.db` -> `autopost.notified.json`;
see Ledger), and a later occurrence of the same problem (a job failing again after a
retry, another stale spell) is a new event. A delivery that fails is reported on stderr
and never changes the command's exit status (a condition status reports is tried again
by the next `status --notify`); each delivery has its timeout and the whole round gives
up after DEADLINE seconds, so a dead receiver cannot hold a run.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEADLINE = 15.0          # seconds for one round of deliveries
KEEP = 5000              # one-off ids remembered (the oldest are forgotten first)
MAX_LEDGER = 4 << 20     # a ledger file larger than this is not ours: start afresh


@dataclass(frozen=True)
class Target:
    command: str | None = None
    webhook: str | None = None
    timeout: float = 5.0

    @property
    def configured(self) -> bool:
        return bool(self.command or self.webhook)


@dataclass(frozen=True)
class Event:
    id: str                 # what makes this occurrence this occurrence
    kind: str               # failed, missed, unknown, needs_reauth, expiring, unhealthy, test
    message: str
    job: str | None = None
    account: str | None = None

    def to_dict(self, now: datetime) -> dict[str, Any]:
        return {"event": self.kind, "id": self.id, "job": self.job, "account": self.account,
                "message": self.message, "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "host": os.environ.get("AUTOPOST_HOST") or socket.gethostname(),
                "source": "autopost"}


def target_from(table: dict[str, Any]) -> Target:
    """Checks `[notify]` (config.py hands the table over)."""
    from autopost.errors import ConfigError
    from autopost.timeparse import parse_duration

    unknown = set(table) - {"command", "webhook", "timeout"}
    if unknown:
        raise ConfigError(f"config: unknown key notify.{sorted(unknown)[0]}")
    command, webhook = table.get("command"), table.get("webhook")
    for name, value in (("command", command), ("webhook", webhook)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigError(f"config: notify.{name} must be a non-empty string")
    if command is not None:
        try:
            if not shlex.split(command):
                raise ValueError
        except ValueError:
            raise ConfigError("config: notify.command is not a command line") from None
    if webhook is not None and not webhook.startswith(("https://", "http://")):
        raise ConfigError("config: notify.webhook must be an http(s) URL")
    try:
        timeout = parse_duration(table.get("timeout", 5), name="notify.timeout")
    except Exception:
        raise ConfigError(f"config: notify.timeout: invalid value "
                          f"{table.get('timeout')!r}") from None
    if timeout <= 0:
        raise ConfigError("config: notify.timeout must be more than zero")
    return Target(command=command, webhook=webhook, timeout=min(timeout, DEADLINE))


def _where(url: str) -> str:
    """A webhook named without its path or query (they often carry a secret)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}"


def deliver(target: Target, payload: dict[str, Any], client=None) -> list[str]:
    """Sends one event to each configured receiver; the failures, one line each."""
    body = json.dumps(payload, ensure_ascii=False)
    failures = []
    if target.command:
        try:
            done = subprocess.run(shlex.split(target.command), input=body, text=True,
                                  capture_output=True, timeout=target.timeout)
            if done.returncode != 0:
                failures.append(f"notify command exited {done.returncode}")
        except subprocess.TimeoutExpired:
            failures.append(f"notify command took longer than {target.timeout:g} s")
        except OSError as exc:
            failures.append(f"notify command could not run: {exc.strerror or exc}")
    if target.webhook:
        import httpx

        own = client is None
        client = client or httpx.Client(timeout=target.timeout)
        try:
            r = client.post(target.webhook, content=body.encode(),
                            headers={"content-type": "application/json"})
            if r.status_code >= 300:
                failures.append(f"notify webhook {_where(target.webhook)} answered "
                                f"{r.status_code}")
        except httpx.HTTPError as exc:
            failures.append(f"notify webhook {_where(target.webhook)} failed: "
                            f"{type(exc).__name__}")
        finally:
            if own:
                client.close()
    return failures


class Ledger:
    """The ids already sent, under a lock so overlapping runs do not both send one event.

    The file is private (0600, in a folder made 0700), replaced atomically (a temporary
    file in the same folder, fsynced, then renamed) and bounded: ids of conditions
    (`cond:...`) stay while the condition holds and go when status sees it cleared;
    every other id names one occurrence, and only the newest KEEP of those are kept.
    One ledger per database: two databases in one folder keep separate ones."""

    def __init__(self, db_path: Path | str):
        self.path = ledger_file(db_path)
        self.lock_path = self.path.with_name(f".{self.path.name}.lock")

    def __enter__(self) -> Ledger:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Take the lock and read the ids (OSError when the folder is not writable)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        self._lock = fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        self.sent: list[str] = _read_ids(self.path)
        self._seen = set(self.sent)

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._seen

    def add(self, event_id: str) -> None:
        self.sent.append(event_id)
        self._seen.add(event_id)

    def forget_cleared(self, current: set[str]) -> None:
        """Conditions (ids starting "cond:") that no longer hold are forgotten, so the
        next time one holds it is a new occurrence."""
        self.sent = [i for i in self.sent if not i.startswith("cond:") or i in current]
        self._seen = set(self.sent)

    def kept(self) -> list[str]:
        """What is written back: every condition, and the newest KEEP other ids."""
        others = [i for i in self.sent if not i.startswith("cond:")]
        drop = set(others[:-KEEP]) if len(others) > KEEP else set()
        return [i for i in dict.fromkeys(self.sent) if i not in drop]

    def close(self) -> None:
        """Write the ids back and let the lock go."""
        from autopost.atomicfile import replace_text

        try:
            replace_text(self.path, json.dumps({"sent": self.kept()}))
        except OSError as exc:  # the events went out; forgetting them only risks a repeat
            sys.stderr.write(f"autopost: notify: could not save {self.path}: "
                             f"{exc.strerror or exc}\n")
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            os.close(self._lock)


def ledger_file(db_path: Path | str) -> Path:
    """`DIR/NAME.db` -> `DIR/NAME.notified.json`."""
    path = Path(db_path)
    return path.with_name(f"{path.stem}.notified.json")


def _read_ids(path: Path) -> list[str]:
    """The ids in a ledger file; none when it is missing, unreadable, too big or not a
    ledger (the next write replaces it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return []
    try:
        with os.fdopen(fd, "rb") as fh:
            raw = fh.read(MAX_LEDGER + 1)
        if len(raw) > MAX_LEDGER:
            return []
        ids = json.loads(raw)["sent"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []


def send(target: Target, events: Sequence[Event], db_path: Path, *,
         now: datetime | None = None, client=None, conditions: bool = False) -> list[str]:
    """Each event not sent before, once; returns the failures (already on stderr).
    With `conditions`, `events` holds every condition now true (status), and conditions
    no longer among them are forgotten."""
    if not target.configured:
        return []
    now = now or datetime.now(UTC)
    failures: list[str] = []
    deadline = time.monotonic() + DEADLINE
    ledger = Ledger(db_path)
    try:
        ledger.open()
    except OSError as exc:  # without the ledger every run would send everything again
        line = (f"notify: cannot keep track of what was sent ({exc.strerror or exc}: "
                f"{ledger_file(db_path)}); nothing sent")
        sys.stderr.write(f"autopost: {line}\n")
        return [line]
    try:
        if conditions:
            ledger.forget_cleared({e.id for e in events})
        for event in events:
            if event.id in ledger:
                continue
            if time.monotonic() > deadline:
                failures.append("notify: out of time; the rest go out with the next run")
                break
            problems = deliver(target, event.to_dict(now), client)
            if problems:
                failures += problems
            else:
                ledger.add(event.id)
    finally:
        ledger.close()
    for line in dict.fromkeys(failures):
        sys.stderr.write(f"autopost: {line}\n")
    return failures


# -- the events of run-due and status ---------------------------------------------------

def run_events(problems: Sequence[Any], run_id: str) -> list[Event]:
    """One event per run-due problem (publisher.Problem: job_id, account, status, message)."""
    events = []
    for p in problems:
        if p.job_id is None:
            events.append(Event(f"cond:{p.status}:{p.account}", p.status, p.line(),
                                account=p.account))
        elif p.status == "unknown":
            events.append(Event(f"unknown:{p.job_id}", "unknown", p.line(), p.job_id,
                                p.account))
        else:
            events.append(Event(f"{p.status}:{p.job_id}:{run_id}", p.status, p.line(),
                                p.job_id, p.account))
    return events


_UNHEALTHY = ("never_run", "no_recent_run", "overdue")


def status_events(report: dict[str, Any], waiting: Sequence[str] = ()) -> list[Event]:
    """The conditions status found that a person should hear about once; `waiting`: the
    unknown jobs that wait for the operator (not those a run will ask about again)."""
    events = []
    for p in report["problems"]:
        kind = p["kind"]
        if kind in _UNHEALTHY:
            events.append(Event(f"cond:unhealthy:{kind}", "unhealthy", p["message"]))
        elif kind in ("needs_reauth", "expiring"):
            # A warning's numbers move from day to day ("in 5 day(s)", "11 months old"):
            # the same warning with other numbers is the same occurrence.
            tail = "" if kind == "needs_reauth" else ":" + re.sub(r"\d+", "#", p["message"])
            events.append(Event(f"cond:{kind}:{p['account']}{tail}", kind, p["message"],
                                account=p["account"]))
    for job_id in waiting:
        events.append(Event(f"unknown:{job_id}", "unknown",
                            f"job {job_id}: its outcome is unknown; check the platform, then "
                            f"'autopost resolve {job_id} --posted URL' or '--not-posted'",
                            job=job_id))
    return events
