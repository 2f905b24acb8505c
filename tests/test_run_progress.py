"""run-due's live line: drawn for a person at a terminal (a real pty), never under cron
(pipes), where a run that went well prints nothing at all."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from autopost.config import load_settings
from autopost.engine import Engine, RunOptions, RunSummary
from autopost.models import Account, JobStatus, NewJob
from autopost.progress import LiveLine, line
from autopost.store.sqlite import SqliteStore


@pytest.fixture
def db(tmp_path) -> Path:
    (tmp_path / "config.toml").write_text("")
    path = tmp_path / "autopost.db"
    store = SqliteStore(path)
    try:
        store.add_account(Account(name="o", platform="outbox",
                                  credentials={"path": str(tmp_path / "out")}),
                          now=datetime.now(UTC))
    finally:
        store.close()
    return path


def due(db: Path, n: int) -> list[str]:
    store = SqliteStore(db)
    try:
        now = datetime.now(UTC)
        made = store.add_jobs([NewJob(account="o", platform="outbox", text=f"post {i}",
                                      scheduled_at=now) for i in range(n)], now=now)
        return [job.id for job, _ in made]
    finally:
        store.close()


def env_for(db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPOST_")}
    env.update(AUTOPOST_DB=str(db), AUTOPOST_CONFIG=str(db.parent / "config.toml"),
               COLUMNS="120", TZ="UTC")
    return env


def on_terminal(db: Path, *args: str) -> tuple[int, bytes]:
    """run-due with stdout and stderr both on one pseudo-terminal: (exit code, bytes)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "autopost", *args], stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, env=env_for(db))
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=60), b"".join(chunks)


def test_a_terminal_sees_the_live_line_then_the_summary(db):
    ids = due(db, 3)
    code, out = on_terminal(db, "run-due")
    text = out.decode()
    assert code == 0, text
    assert "\rrun " in text and "3 posted, 0 left" in text, repr(text)
    # The line is wiped before the summary, which has a line of its own.
    last = text.replace("\r\n", "\n").rstrip("\n").split("\n")[-1]
    assert last.split("\r")[-1].startswith("run ") and " 3 posted in " in last, repr(last)
    store = SqliteStore(db)
    try:
        assert {store.get_job(i).status for i in ids} == {JobStatus.POSTED}
    finally:
        store.close()


def test_quiet_on_a_terminal_draws_nothing(db):
    due(db, 2)
    code, out = on_terminal(db, "-q", "run-due")
    assert code == 0 and out == b"", out


def test_under_cron_a_good_run_prints_nothing_at_all(db):
    ids = due(db, 3)
    done = subprocess.run([sys.executable, "-m", "autopost", "run-due"], capture_output=True,
                          text=True, env=env_for(db), timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    store = SqliteStore(db)
    try:
        assert {store.get_job(i).status for i in ids} == {JobStatus.POSTED}
    finally:
        store.close()


def test_json_on_a_terminal_is_only_the_document(db):
    due(db, 1)
    code, out = on_terminal(db, "run-due", "--json")
    assert code == 0 and b"\r" not in out.replace(b"\r\n", b"\n")
    assert json.loads(out.decode())["posted"] == 1


def test_the_engine_tells_progress_down_to_nothing_left(db):
    ids = due(db, 4)
    seen: list[tuple[int, int]] = []
    store = SqliteStore(db)
    try:
        engine = Engine(store, load_settings(str(db.parent / "config.toml")),
                        store_factory=lambda: SqliteStore(db),
                        progress=lambda s, left: seen.append((s.posted, left)))
        summary = engine.run(RunOptions(concurrency=2))
    finally:
        store.close()
    assert summary.posted == len(ids)
    assert seen[0] == (0, 4)  # told at the claim, before anything went out
    assert seen[-1] == (4, 0)
    assert all(p + left <= 4 for p, left in seen)
    assert [p for p, _ in seen] == sorted(p for p, _ in seen)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_live_line_redraws_in_place_throttled_and_wipes_itself():
    stream, clock = io.StringIO(), Clock()
    live = LiveLine(stream, every=0.5, clock=clock, columns=80)
    summary = RunSummary(run_id="r1")
    live(summary, 3)
    summary.posted = 1
    live(summary, 2)  # within 0.5 s of the last draw: skipped
    assert live.drawn == 1
    clock.t = 1.0
    summary.failed = 1
    live(summary, 1)
    summary.posted = 2
    live(summary, 0)  # nothing left: always drawn
    assert live.drawn == 3
    assert stream.getvalue().split("\r")[1:] == [
        "run r1: 3 left" + " " * 0,
        "run r1: 1 posted, 1 failed, 1 left",
        "run r1: 2 posted, 1 failed, 0 left",
    ]
    live.close()
    assert stream.getvalue().endswith("\r" + " " * len("run r1: 2 posted, 1 failed, 0 left") + "\r")


def test_a_shorter_line_covers_the_longer_one_and_a_long_one_fits_one_row():
    stream = io.StringIO()
    live = LiveLine(stream, every=0, columns=30)
    summary = RunSummary(run_id="r1", posted=100, retried=5, failed=7)
    live(summary, 12)
    first = stream.getvalue().split("\r")[-1]
    assert len(first) < 30 and first.endswith("…")
    live(RunSummary(run_id="r1"), 0)
    second = stream.getvalue().split("\r")[-1]
    assert second.startswith("run r1: 0 left") and len(second) == len(first)


def test_lingering_says_until_when():
    until = datetime(2026, 12, 1, 9, 1, 0)
    assert line(RunSummary(run_id="r"), 0, until).endswith(
        "0 left; watching for due posts until 09:01:00")
