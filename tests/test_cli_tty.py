"""What a person sees on a terminal (a real pty at 60, 80 and 200 columns) and what a
pipe gets (tab-separated rows with full values)."""

from __future__ import annotations

import json
import os
import pty
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from autopost.models import AccountState
from autopost.store.sqlite import SqliteStore
from autopost.store.timefmt import to_db
from autopost.tables import width_of

LONG = "a post whose text is much longer than any terminal is wide " * 3


def tty(db: Path, *args: str, columns: int = 80, answer: bytes | None = None) -> str:
    """Run autopost with stdout on a pseudo-terminal `columns` wide; its output. With
    `answer`, stdin is the terminal too and `answer` is typed into it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPOST_")}
    env.update(COLUMNS=str(columns), LINES="50", NO_COLOR="1", TZ="UTC",
               AUTOPOST_CONFIG=str(db.parent / "config.toml"))
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "autopost", "--db", str(db), *args],
                            stdin=subprocess.DEVNULL if answer is None else slave,
                            stdout=slave, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    if answer is not None:
        os.write(master, answer)  # the terminal buffers it until the prompt reads
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) in (0, 1), err
    return b"".join(chunks).decode().replace("\r\n", "\n")


def piped(db: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPOST_")}
    env.update(TZ="UTC", AUTOPOST_CONFIG=str(db.parent / "config.toml"))
    return subprocess.run([sys.executable, "-m", "autopost", "--db", str(db), *args],
                          capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture
def db(tmp_path) -> Path:
    db = tmp_path / "autopost.db"
    (tmp_path / "config.toml").write_text("")
    creds = json.dumps({"path": str(tmp_path / "outbox")})
    for name in ("mastodon-main", "b"):
        done = subprocess.run(
            [sys.executable, "-m", "autopost", "--db", str(db), "--config",
             str(tmp_path / "config.toml"), "accounts", "add", name, "--platform", "outbox",
             "--credentials", "-", "--hourly-limit", "1"],
            input=creds, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    return db


def add(db: Path, text: str, account: str = "mastodon-main", at: str = "+1d") -> str:
    done = piped(db, "add", text, "-a", account, "--at", at, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)[0]["id"]


@pytest.mark.parametrize("columns", [60, 80, 200])
def test_list_keeps_identifying_columns_whole(db, columns):
    ids = [add(db, LONG), add(db, "short", account="b")]
    out = tty(db, "list", columns=columns)
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ID", "STATUS", "ACCOUNT"]
    rows = [line for line in lines if line.split()[:1] and line.split()[0] in ids]
    assert [r.split()[:3] for r in rows] == [[ids[0], "pending", "mastodon-main"],
                                             [ids[1], "pending", "b"]]
    for line in lines:
        assert width_of(line) <= columns, line
    if columns == 200:
        assert LONG.strip()[:100] in out
    else:
        assert "…" in rows[0]
    left = lines[-1] if lines[-1].startswith("(left out at") else ""
    for name in ("WHEN", "TRIES", "TEXT"):  # shown, or said to be left out
        assert name in lines[0].split() or name in left


@pytest.mark.parametrize("columns", [60, 80, 200])
def test_accounts_list_keeps_names_whole(db, columns):
    out = tty(db, "accounts", "list", columns=columns)
    names = [line.split()[0] for line in out.splitlines()[1:] if line.strip()]
    assert sorted(names) == ["b", "mastodon-main"]
    assert all(width_of(line) <= columns for line in out.splitlines())


def test_piped_list_is_tab_separated_with_full_values(db):
    job = add(db, LONG)
    done = piped(db, "list")
    assert done.returncode == 0
    (line,) = done.stdout.splitlines()
    fields = line.split("\t")
    assert fields[:3] == [job, "pending", "mastodon-main"]
    assert fields[-1] == " ".join(LONG.split())
    assert "  " not in line.replace(LONG, "")  # no padding


def test_show_explains_why_a_job_waits(db):
    later = add(db, "later")
    assert "waiting  scheduled for" in tty(db, "show", later)
    # Due now with the hourly quota (1) used by a post in the last hour.
    first = add(db, "first", at="now")
    assert piped(db, "run-due").returncode == 0
    assert "posted" in piped(db, "show", first).stdout
    second = add(db, "second", at="now")
    assert "over the hourly quota of account mastodon-main (1/1" in tty(db, "show", second)
    store = SqliteStore(db)
    try:
        store.set_account_state("mastodon-main", AccountState.NEEDS_REAUTH, "token revoked",
                                now=datetime.now(UTC))
    finally:
        store.close()
    assert "account mastodon-main needs re-auth: token revoked" in tty(db, "show", second)
    other = add(db, "other", account="b", at="now")
    until = datetime.now(UTC) + timedelta(hours=2)
    with sqlite3.connect(db) as c:
        c.execute("UPDATE accounts SET blocked_until = ? WHERE name = 'b'", (to_db(until),))
    out = piped(db, "show", other).stdout
    assert "account b is rate-limited by the platform until " \
           f"{until.strftime('%Y-%m-%d %H:%M')}" in out


def test_calendar_grid_on_a_terminal_and_lines_through_a_pipe(db):
    now = datetime.now(UTC)
    at = (now + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    for n, account in enumerate(("mastodon-main", "mastodon-main", "b")):
        # distinct texts: the same text twice on one account is refused as a duplicate
        add(db, f"post {n} for {account}", account=account,
            at=at.strftime("%Y-%m-%dT%H:%MZ"))
    grid = tty(db, "calendar", columns=200)
    lines = grid.splitlines()
    day = at.strftime("%a %m-%d")
    assert lines[0].split()[0] == "TIME" and day in lines[0]
    row = next(line for line in lines if line.startswith("09:00"))
    assert "1 b 2 mastodon-main" in row
    assert "3 posts in 7 days" in grid
    narrow = tty(db, "calendar", columns=60)
    assert all(width_of(line) <= 60 for line in narrow.splitlines()[:-2])
    done = piped(db, "calendar")
    rows = [line.split("\t") for line in done.stdout.splitlines()]
    assert len(rows) == 3 and {r[0] for r in rows} == {at.date().isoformat()}
    assert {r[3] for r in rows} == {"mastodon-main", "b"}


def test_quota_bars_on_a_terminal_numbers_through_a_pipe(db):
    add(db, "one", at="now")
    assert piped(db, "run-due").returncode == 0
    out = tty(db, "quota", columns=80)
    row = next(line for line in out.splitlines() if line.startswith("mastodon-main"))
    assert "██████████ 1/1" in row
    rows = {line.split("\t")[0]: line.split("\t") for line in
            piped(db, "quota").stdout.splitlines()}
    assert rows["mastodon-main"][1:3] == ["outbox", "1/1"]
    assert rows["b"][1:3] == ["outbox", "0/1"]


def test_prune_asks_on_a_terminal(db):
    job = add(db, "old")
    assert piped(db, "cancel", job).returncode == 0
    with sqlite3.connect(db) as c:
        c.execute("UPDATE jobs SET updated_at = '2020-01-01T00:00:00.000000Z'")
    out = tty(db, "prune", answer=b"n\n")
    assert "delete 1 job and 0 run records older than" in out and "nothing deleted" in out
    assert json.loads(piped(db, "show", job, "--json").stdout)["status"] == "cancelled"
    out = tty(db, "prune", answer=b"y\n")
    assert "pruned 1 job" in out
    assert piped(db, "show", job).returncode == 2
