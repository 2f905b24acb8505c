"""Bad input: exactly one line on stderr, a non-zero exit (2 for the input, 3 for the
environment), no traceback, and the database file byte-for-byte unchanged."""

from __future__ import annotations

import ctypes
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autopost.cli import run
from autopost.models import Account, NewJob
from autopost.platforms import registry
from autopost.platforms.outbox import OutboxAdapter
from autopost.services import utcnow
from autopost.store.sqlite import SqliteStore

from .conftest import file_hash

pytestmark = pytest.mark.usefixtures("isolated_env")

PENDING_ID = "pendjob2"  # replaced by the real id in the fixture


class TinyAdapter(OutboxAdapter):
    platform = "tiny"
    text_limit = 10


@pytest.fixture(autouse=True)
def tiny_platform():
    registry.register("tiny", TinyAdapter)
    yield
    registry.unregister("tiny")


@pytest.fixture
def seeded(tmp_path) -> dict:
    """A database with two accounts and one pending job, plus files the cases use."""
    db = tmp_path / "data" / "autopost.db"
    store = SqliteStore(db)
    now = utcnow()
    for name, platform in (("demo", "outbox"), ("tiny", "tiny")):
        store.add_account(Account(name=name, platform=platform,
                                  credentials={"path": str(tmp_path / "out")}), now=now)
    from datetime import timedelta

    ((job, _),) = store.add_jobs([NewJob(account="demo", platform="outbox", text="pending",
                                         scheduled_at=now + timedelta(days=1))], now=now)
    store.close()
    (tmp_path / "pic.png").write_bytes(b"png")
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "bad.toml").write_text("[run]\nlease_seconds = 'soon'\n")
    files = {
        "quote.csv": 'account,at,text\ndemo,+1d,"unterminated\n',
        "fields.csv": "account,at,text\ndemo,+1d,one,two\n",
        "badrow.jsonl": '{"account": "demo", "at": "+1d", "text": "ok"}\n{"account": \n',
        "nobody.csv": "account,at,text\nnobody,+1d,hi\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return {"db": db, "tmp": tmp_path, "job": job.id}


def invoke(argv: list[str], stdin: str, capsys, monkeypatch) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = run(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# (id, argv after --db, stdin, exit code, a part of the message)
CORPUS = [
    # dates and zones
    ("impossible-date", ["add", "x", "-a", "demo", "--at", "2026-02-30"], "", 2, "valid date"),
    ("month-13", ["add", "x", "-a", "demo", "--at", "2031-13-01 10:00"], "", 2, "valid date"),
    ("gibberish-date", ["add", "x", "-a", "demo", "--at", "next blursday"], "", 2, "cannot read"),
    ("dst-gap", ["add", "x", "-a", "demo", "--at", "2031-03-30T02:30", "--tz",
                 "Europe/Berlin"], "", 2, "does not exist"),
    ("bad-unit", ["add", "x", "-a", "demo", "--at", "+5x"], "", 2, "cannot read"),
    ("bare-duration", ["add", "x", "-a", "demo", "--at", "5m"], "", 2, "'+5m'"),
    ("past", ["add", "x", "-a", "demo", "--at", "2020-01-01T00:00Z"], "", 2, "in the past"),
    ("empty-at", ["add", "x", "-a", "demo", "--at", " "], "", 2, "empty time"),
    ("unknown-zone", ["add", "x", "-a", "demo", "--at", "+1h", "--tz", "Mars/Base"], "", 2,
     "time zone"),
    ("absurd-offset", ["add", "x", "-a", "demo", "--at", "+99999999w"], "", 2, "too far"),
    # unknown names
    ("unknown-account", ["add", "x", "-a", "nobody", "--at", "+1h"], "", 2, "unknown account"),
    ("one-unknown-of-two", ["add", "x", "-a", "demo", "-a", "nobody", "--at", "+1h"], "", 2,
     "unknown account"),
    ("account-twice", ["add", "x", "-a", "demo", "-a", "demo", "--at", "+1h"], "", 2, "twice"),
    ("list-unknown-account", ["list", "--account", "nobody"], "", 2, "unknown account"),
    ("unknown-status", ["list", "--status", "sleeping"], "", 2, "unknown status"),
    ("unknown-platform", ["list", "--platform", "myspace"], "", 2, "unknown platform"),
    ("unknown-job", ["show", "zzzzzzzz"], "", 2, "unknown job"),
    ("too-short-id", ["show", "ab"], "", 2, "unknown job"),
    ("cancel-unknown", ["cancel", "{job}", "zzzzzzzz"], "", 2, "unknown job"),
    ("retry-unknown", ["retry", "zzzzzzzz"], "", 2, "unknown job"),
    ("retry-pending", ["retry", "{job}"], "", 2, "only failed, missed or cancelled"),
    ("remove-unknown", ["accounts", "remove", "nobody"], "", 2, "unknown account"),
    ("remove-busy", ["accounts", "remove", "demo"], "", 2, "pending"),
    ("add-existing", ["accounts", "add", "demo", "--platform", "outbox", "--credentials", "-"],
     '{"path": "/x"}', 2, "exists"),
    ("platform-unknown", ["accounts", "add", "n", "--platform", "myspace", "--credentials", "-"],
     '{"path": "/x"}', 2, "unknown platform"),
    ("bad-account-name", ["accounts", "add", "bad name!", "--platform", "outbox",
                          "--credentials", "-"], '{"path": "/x"}', 2, "account name"),
    # credentials
    ("creds-missing-file", ["accounts", "add", "n", "--platform", "outbox", "--credentials",
                            "{tmp}/nope.json"], "", 2, "no such file"),
    ("creds-not-json", ["accounts", "add", "n", "--platform", "outbox", "--credentials", "-"],
     "path=/x", 2, "not valid JSON"),
    ("creds-not-object", ["accounts", "add", "n", "--platform", "outbox", "--credentials", "-"],
     '["/x"]', 2, "JSON object"),
    ("creds-missing-field", ["accounts", "add", "n", "--platform", "outbox", "--credentials",
                             "-"], "{}", 2, "need: path"),
    ("creds-no-stdin-no-file", ["accounts", "add", "n", "--platform", "outbox"], "", 2,
     "--credentials"),
    ("bad-base-url", ["accounts", "add", "n", "--platform", "outbox", "--base-url", "ftp://x",
                      "--credentials", "-"], '{"path": "/x"}', 2, "http"),
    ("zero-hourly-limit", ["accounts", "add", "n", "--platform", "outbox", "--hourly-limit",
                           "0", "--credentials", "-"], '{"path": "/x"}', 2, "--hourly-limit"),
    # text and media
    ("text-over-limit", ["add", "far too long for tiny", "-a", "tiny", "--at", "+1h"], "", 2,
     "tiny allows 10"),
    ("over-limit-on-one-of-two", ["add", "far too long for tiny", "-a", "demo", "-a", "tiny",
                                  "--at", "+1h"], "", 2, "tiny allows 10"),
    ("empty-post", ["add", "  ", "-a", "demo", "--at", "+1h"], "", 2, "empty post"),
    ("media-missing", ["add", "x", "-a", "demo", "--at", "+1h", "--media", "{tmp}/nope.png"],
     "", 2, "not found"),
    ("media-folder", ["add", "x", "-a", "demo", "--at", "+1h", "--media", "{tmp}/a-folder"],
     "", 2, "not a regular file"),
    ("alt-first", ["add", "x", "-a", "demo", "--at", "+1h", "--alt", "a", "--media",
                   "{tmp}/pic.png"], "", 2, "--alt must follow"),
    ("empty-key", ["add", "x", "-a", "demo", "--at", "+1h", "--key", " "], "", 2, "empty key"),
    # numbers
    ("negative-limit", ["list", "--limit", "-1"], "", 2, "--limit"),
    ("zero-limit", ["list", "--limit", "0"], "", 2, "--limit"),
    ("not-a-number", ["list", "--limit", "ten"], "", 2, "--limit"),
    ("negative-days", ["calendar", "--days", "-3"], "", 2, "--days"),
    ("negative-age", ["prune", "--older-than", "-5d"], "", 2, "--older-than"),
    ("unreadable-age", ["prune", "--older-than", "forever"], "", 2, "--older-than"),
    ("zero-attempts", ["add", "x", "-a", "demo", "--at", "+1h", "--max-attempts", "0"], "", 2,
     "--max-attempts"),
    # import files
    ("import-missing", ["import", "{tmp}/nope.csv"], "", 2, "no such file"),
    ("import-folder", ["import", "{tmp}/a-folder"], "", 2, "folder"),
    ("import-open-quote", ["import", "{tmp}/quote.csv"], "", 2, "row 1"),
    ("import-extra-field", ["import", "{tmp}/fields.csv"], "", 2, "has 4 fields"),
    ("import-bad-json", ["import", "{tmp}/badrow.jsonl"], "", 2, "row 2 (line 2)"),
    ("import-unknown-account", ["import", "{tmp}/nobody.csv"], "", 2, "column account"),
    # configuration and usage
    ("config-missing", ["--config", "{tmp}/nope.toml", "platforms"], "", 2, "not found"),
    ("config-malformed", ["--config", "{tmp}/bad.toml", "platforms"], "", 2,
     "run.lease_seconds"),
    ("unknown-command", ["frobnicate"], "", 2, "No such command"),
    ("unknown-option", ["list", "--colour"], "", 2, "--colour"),
    ("missing-argument", ["show"], "", 2, "Missing argument"),
    ("missing-at", ["add", "x", "-a", "demo"], "", 2, "--at"),
]


def _fill(argv: list[str], seeded: dict) -> list[str]:
    return [a.format(tmp=seeded["tmp"], job=seeded["job"]) for a in argv]


@pytest.mark.parametrize(("argv", "stdin", "code", "part"),
                         [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_bad_input_is_one_line_and_changes_nothing(seeded, capsys, monkeypatch,
                                                   argv, stdin, code, part):
    db = seeded["db"]
    before = file_hash(db)
    got, out, err = invoke(["--db", str(db), *_fill(argv, seeded)], stdin, capsys, monkeypatch)
    assert got == code, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("autopost: ")
    assert part in lines[0]
    assert "Traceback" not in err + out
    assert file_hash(db) == before
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0


def test_bad_environment_variable(seeded, capsys, monkeypatch):
    monkeypatch.setenv("AUTOPOST_MAX_CONCURRENT_JOBS", "lots")
    before = file_hash(seeded["db"])
    code, _, err = invoke(["--db", str(seeded["db"]), "platforms"], "", capsys, monkeypatch)
    assert code == 2 and err.count("\n") == 1 and "AUTOPOST_MAX_CONCURRENT_JOBS" in err
    assert file_hash(seeded["db"]) == before


# -- the database itself is the problem: exit 3 ------------------------------------------------

def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(8192))


def _truncated(path: Path, source: Path) -> None:
    path.write_bytes(source.read_bytes()[:1500])


@pytest.mark.parametrize("kind", ["random-bytes", "truncated", "text-file"])
@pytest.mark.parametrize("argv", [["list"], ["add", "x", "-a", "demo", "--at", "+1h"],
                                  ["accounts", "list", "--json"]])
def test_corrupt_database_is_exit_3(seeded, tmp_path, capsys, monkeypatch, kind, argv):
    bad = tmp_path / "corrupt.db"
    if kind == "random-bytes":
        _garbage(bad)
    elif kind == "truncated":
        _truncated(bad, seeded["db"])
    else:
        bad.write_text("this is not a database\n" * 100)
    before = file_hash(bad)
    code, out, err = invoke(["--db", str(bad), *argv], "", capsys, monkeypatch)
    assert code == 3, err
    assert len(err.splitlines()) == 1 and err.startswith("autopost: ")
    assert "Traceback" not in err
    assert file_hash(bad) == before


@pytest.mark.parametrize("where", ["folder", "under-a-file"])
def test_database_path_that_cannot_be_a_database(tmp_path, capsys, monkeypatch, where):
    if where == "folder":
        path = tmp_path / "folder.db"
        path.mkdir()
    else:
        (tmp_path / "plain").write_text("x")
        path = tmp_path / "plain" / "autopost.db"
    code, _, err = invoke(["--db", str(path), "list"], "", capsys, monkeypatch)
    assert code == 3 and len(err.splitlines()) == 1 and "Traceback" not in err


# -- permissions: run the CLI without root's power to ignore them -------------------------

def _without_root_powers() -> None:  # runs in the child, before exec
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP: gone after exec
            raise OSError(ctypes.get_errno(), "cannot drop capabilities")


def run_unprivileged(db: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPOST_")}
    return subprocess.run([sys.executable, "-m", "autopost", "--db", str(db), *argv],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=60,
                          preexec_fn=_without_root_powers)


@pytest.fixture
def locked_folder(seeded):
    folder = seeded["tmp"] / "locked"
    folder.mkdir()
    db = folder / "autopost.db"
    shutil.copy(seeded["db"], db)
    yield folder, db
    os.chmod(folder, 0o700)
    os.chmod(db, 0o600)


def test_read_only_database(seeded, locked_folder):
    folder, db = locked_folder
    os.chmod(db, 0o444)
    os.chmod(folder, 0o555)
    before = file_hash(db)
    done = run_unprivileged(db, "add", "x", "-a", "demo", "--at", "+1h", cwd=seeded["tmp"])
    assert done.returncode == 3, done.stderr
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("autopost: ")
    assert "Traceback" not in done.stderr
    assert file_hash(db) == before


def test_read_only_database_in_a_writable_folder_still_lists(seeded, locked_folder):
    folder, db = locked_folder
    os.chmod(db, 0o444)
    before = file_hash(db)
    listed = run_unprivileged(db, "list", "--json", cwd=seeded["tmp"])
    assert listed.returncode == 0, listed.stderr
    assert [j["id"] for j in json.loads(listed.stdout)] == [seeded["job"]]
    added = run_unprivileged(db, "add", "x", "-a", "demo", "--at", "+1h", cwd=seeded["tmp"])
    assert added.returncode == 3 and "read-only" in added.stderr
    assert len(added.stderr.splitlines()) == 1
    assert file_hash(db) == before


def test_unreadable_database(seeded, locked_folder):
    _folder, db = locked_folder
    os.chmod(db, 0o000)
    before = file_hash(db)
    done = run_unprivileged(db, "list", cwd=seeded["tmp"])
    assert done.returncode == 3, done.stderr
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
    assert "permission denied" in done.stderr or "cannot open" in done.stderr
    assert file_hash(db) == before
