"""Bad input: exactly one line on stderr, a non-zero exit (2 for the input, 3 for the
environment), no traceback, and the database file byte-for-byte unchanged."""

from __future__ import annotations

import ctypes
import io
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from autopost.cli import run
from autopost.models import Account, JobFilter, JobStatus, NewJob
from autopost.platforms import registry
from autopost.platforms.outbox import OutboxAdapter
from autopost.services import utcnow
from autopost.store.sqlite import SqliteStore

from .conftest import file_hash
from .images import gif, jpeg, png

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
    (tmp_path / "pic.png").write_bytes(png(2, 2))
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


# == generated cases, one section per class of hostile input ==================================
#
# Each case checks the whole contract: the exit code, exactly one line on stderr starting
# "autopost: ", no traceback anywhere, and the database file byte-for-byte unchanged.

GEN = settings(max_examples=20, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture,
                                      HealthCheck.too_slow])


def refused(seeded, capsys, monkeypatch, argv, *, stdin: str | bytes = "", code: int = 2,
            env: dict[str, str] | None = None, part: str | None = None,
            secret: str | None = None) -> str:
    """Run `autopost --db DB ARGV` and check the one-line contract; returns the line."""
    db = seeded["db"]
    before = file_hash(db)
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    if isinstance(stdin, bytes):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    else:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    try:
        got = run(["--db", str(db), *argv])
    finally:
        for name in env or {}:
            monkeypatch.delenv(name)
    captured = capsys.readouterr()
    out, err = captured.out, captured.err
    assert got == code, (argv, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("autopost: ")
    assert "Traceback" not in err + out
    if part is not None:
        assert part in lines[0], lines[0]
    if secret is not None:
        assert secret not in err + out
    assert file_hash(db) == before
    return lines[0]


# Byte sequences that are not UTF-8: a stray continuation byte, a truncated sequence,
# an encoded surrogate, an overlong encoding, bytes no UTF-8 text ever holds.
BAD_BYTES = st.sampled_from([b"\x80", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf",
                             b"\xff", b"\xfe\xff", b"\xf8\x88\x80\x80\x80"])
ASCII = st.text(alphabet=st.characters(min_codepoint=0x61, max_codepoint=0x7a), max_size=20)


def spliced(text: str, bad: bytes, at: int) -> bytes:
    raw = text.encode()
    at = at % (len(raw) + 1)
    return raw[:at] + bad + raw[at:]


@GEN
@given(bad=BAD_BYTES, at=st.integers(0, 200), kind=st.sampled_from(
    ["credentials-file", "credentials-stdin", "import-csv", "import-jsonl", "config"]))
def test_text_that_is_not_utf8_is_refused_where_it_enters(seeded, capsys, monkeypatch,
                                                           bad, at, kind):
    tmp = seeded["tmp"]
    creds = '{"path": "/tmp/outbox-somewhere"}'
    if kind == "credentials-file":
        (tmp / "c.json").write_bytes(spliced(creds, bad, at))
        argv, stdin = ["accounts", "add", "n", "-p", "outbox", "--credentials",
                       str(tmp / "c.json")], ""
    elif kind == "credentials-stdin":
        argv, stdin = ["accounts", "add", "n", "-p", "outbox", "--credentials", "-"], \
            spliced(creds, bad, at)
    elif kind == "import-csv":
        (tmp / "u.csv").write_bytes(spliced("account,at,text\ndemo,+1d,hello there\n", bad, at))
        argv, stdin = ["import", str(tmp / "u.csv")], ""
    elif kind == "import-jsonl":
        (tmp / "u.jsonl").write_bytes(
            spliced('{"account": "demo", "at": "+1d", "text": "hello"}\n', bad, at))
        argv, stdin = ["import", str(tmp / "u.jsonl")], ""
    else:
        (tmp / "u.toml").write_bytes(spliced('[run]\nlease_seconds = "5m"\n', bad, at))
        argv, stdin = ["--config", str(tmp / "u.toml"), "platforms"], ""
    refused(seeded, capsys, monkeypatch, argv, stdin=stdin, part="UTF-8")


@GEN
@given(point=st.integers(0xD800, 0xDFFF), prefix=ASCII,
       kind=st.sampled_from(["credentials", "import"]))
def test_json_escapes_of_lone_surrogates_are_refused(seeded, capsys, monkeypatch,
                                                     point, prefix, kind):
    escape = f"{prefix}\\u{point:04x}"
    if kind == "credentials":
        argv = ["accounts", "add", "n", "-p", "outbox", "--credentials", "-"]
        stdin = '{"path": "/tmp/' + escape + '"}'
    else:
        (seeded["tmp"] / "s.jsonl").write_text(
            '{"account": "demo", "at": "+1d", "text": "' + escape + '"}\n')
        argv, stdin = ["import", str(seeded["tmp"] / "s.jsonl")], ""
    refused(seeded, capsys, monkeypatch, argv, stdin=stdin, part="UTF-8")


@GEN
@given(name=st.sampled_from(["AUTOPOST_MAX_CONCURRENT_JOBS", "AUTOPOST_DEFAULT_MAX_DELAY",
                             "AUTOPOST_ENABLED", "AUTOPOST_BUSY_TIMEOUT"]),
       bad=BAD_BYTES)
def test_environment_variables_that_are_not_utf8(seeded, capsys, monkeypatch, name, bad):
    value = os.fsdecode(b"8" + bad)  # as Python hands over undecodable environment bytes
    refused(seeded, capsys, monkeypatch, ["platforms"], env={name: value}, part=name)


# -- numbers: past 64 bits, nan, inf, out of bounds ------------------------------------------

NUMERIC_SETTINGS = {
    # config key (in [run] or [platforms.x]) -> environment variable, if any
    "run.max_concurrent_jobs": "AUTOPOST_MAX_CONCURRENT_JOBS",
    "run.lease_seconds": None,
    "run.catch_up_window": None,
    "run.expected_interval": None,
    "run.busy_timeout": "AUTOPOST_BUSY_TIMEOUT",
    "platforms.x.max_attempts": "AUTOPOST_DEFAULT_MAX_ATTEMPTS",
    "platforms.x.base_delay": "AUTOPOST_DEFAULT_BASE_DELAY",
    "platforms.x.max_delay": "AUTOPOST_DEFAULT_MAX_DELAY",
    "platforms.x.backoff_multiplier": None,
    "platforms.x.hourly_limit": "AUTOPOST_X_HOURLY_LIMIT",
    "platforms.x.daily_limit": "AUTOPOST_MASTODON_DAILY_LIMIT",
}
HUGE = st.one_of(st.integers(2**63, 2**200), st.integers(10**12, 2**63 - 1),
                 st.integers(-(2**200), -1))
NOT_FINITE = st.sampled_from(["nan", "inf", "-inf", "+inf", "NaN", "infinity", "1e400",
                              "-1e400"])


@GEN
@given(setting=st.sampled_from(sorted(NUMERIC_SETTINGS)),
       value=st.one_of(HUGE.map(str), NOT_FINITE))
def test_config_numbers_out_of_bounds(seeded, capsys, monkeypatch, setting, value):
    section, key = setting.rsplit(".", 1)
    toml_value = value if value.lstrip("+-").isdigit() else {
        "nan": "nan", "inf": "inf", "-inf": "-inf", "+inf": "+inf"}.get(value, f'"{value}"')
    (seeded["tmp"] / "n.toml").write_text(f"[{section}]\n{key} = {toml_value}\n")
    refused(seeded, capsys, monkeypatch, ["--config", str(seeded["tmp"] / "n.toml"),
                                          "platforms"], part=key)


@GEN
@given(setting=st.sampled_from(sorted(k for k, v in NUMERIC_SETTINGS.items() if v)),
       value=st.one_of(HUGE.map(str), NOT_FINITE, st.just("9" * 5000)))
def test_environment_numbers_out_of_bounds(seeded, capsys, monkeypatch, setting, value):
    name = NUMERIC_SETTINGS[setting]
    line = refused(seeded, capsys, monkeypatch, ["platforms"], env={name: value}, part=name)
    assert len(line) < 300  # a 5,000-digit value is not echoed whole


@GEN
@given(value=st.one_of(st.integers(2**63, 2**200), st.integers(-(2**200), -(2**63) - 1),
                       st.just(10**5000 // 10**4000)),
       where=st.sampled_from(["credentials", "import"]))
def test_json_integers_past_64_bits(seeded, capsys, monkeypatch, value, where):
    if where == "credentials":
        argv = ["accounts", "add", "n", "-p", "outbox", "--credentials", "-"]
        stdin = f'{{"path": "/tmp/x", "extra": {value}}}'
    else:
        (seeded["tmp"] / "i.jsonl").write_text(
            f'{{"account": "demo", "at": "+1d", "text": "x", "key": {value}}}\n')
        argv, stdin = ["import", str(seeded["tmp"] / "i.jsonl")], ""
    refused(seeded, capsys, monkeypatch, argv, stdin=stdin)


# -- absurd sizes: caps on what is read ------------------------------------------------------

@GEN
@given(depth=st.integers(33, 200_000), kind=st.sampled_from(
    ["credentials", "import", "config"]))
def test_deep_nesting_is_refused(seeded, capsys, monkeypatch, depth, kind):
    tmp = seeded["tmp"]
    if kind == "credentials":
        argv = ["accounts", "add", "n", "-p", "outbox", "--credentials", "-"]
        stdin = '{"path": ' + "[" * depth + "]" * depth + "}"
    elif kind == "import":
        (tmp / "d.jsonl").write_text('{"account": ' + "[" * depth + "]" * depth + "}\n")
        argv, stdin = ["import", str(tmp / "d.jsonl")], ""
    else:
        (tmp / "d.toml").write_text("[run]\nenabled = " + "[" * depth + "]" * depth + "\n")
        argv, stdin = ["--config", str(tmp / "d.toml"), "platforms"], ""
    refused(seeded, capsys, monkeypatch, argv, stdin=stdin)


@pytest.mark.parametrize("argv", [
    ["import", "/dev/zero"],
    ["--config", "/dev/zero", "platforms"],
    ["accounts", "add", "n", "-p", "outbox", "--credentials", "/dev/zero"],
])
def test_endless_files_are_capped(seeded, capsys, monkeypatch, argv):
    refused(seeded, capsys, monkeypatch, argv, part="the most autopost reads")


def test_oversized_config_and_credentials_are_refused_before_parsing(seeded, capsys,
                                                                      monkeypatch):
    from autopost.inputs import CONFIG_MAX, CREDENTIALS_MAX

    (seeded["tmp"] / "big.toml").write_text("#" * CONFIG_MAX + "\n")
    refused(seeded, capsys, monkeypatch, ["--config", str(seeded["tmp"] / "big.toml"),
                                          "platforms"], part="larger than")
    refused(seeded, capsys, monkeypatch, ["accounts", "add", "n", "-p", "outbox",
                                          "--credentials", "-"],
            stdin=" " * CREDENTIALS_MAX + '{"path": "/x"}', part="larger than")


# -- every command that loads settings checks all of them -------------------------------------

@GEN
@given(command=st.sampled_from([["platforms"], ["status"], ["quota"],
                                ["run-due", "--dry-run"]]),
       env=st.sampled_from([{"AUTOPOST_BUSY_TIMEOUT": "abc"},
                            {"AUTOPOST_BUSY_TIMEOUT": "-1"},
                            {"AUTOPOST_MAX_CONCURRENT_JOBS": str(10**12)},
                            {"AUTOPOST_DEFAULT_MAX_DELAY": "nan"},
                            {"AUTOPOST_ENABLED": "perhaps"}]))
def test_every_command_checks_every_setting(seeded, capsys, monkeypatch, command, env):
    refused(seeded, capsys, monkeypatch, command, env=env, part=next(iter(env)))


@GEN
@given(name=st.builds(lambda a, c, b: a + c + b, st.sampled_from(["demo2", "x", "me"]),
                      st.sampled_from(["\n", "\r", "\t", " ", "\x00", "\x1b", "/", "\u200b"]),
                      st.sampled_from(["", "x"])))
def test_account_names_with_control_characters(seeded, capsys, monkeypatch, name):
    refused(seeded, capsys, monkeypatch,
            ["accounts", "add", name, "-p", "outbox", "--credentials", "-"],
            stdin='{"path": "/tmp/x"}', part="account name")


# -- --db that is not autopost's: exit 3, the file untouched ----------------------------------

FOREIGN_SCHEMAS = st.sampled_from([
    "CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT)",
    "CREATE TABLE jobs (id INTEGER PRIMARY KEY, payload BLOB)",
    "CREATE TABLE accounts (name TEXT); CREATE TABLE jobs (id TEXT); "
    "CREATE TABLE attempts (id INT); CREATE TABLE runs (id TEXT)",
    "PRAGMA application_id = 1234; CREATE TABLE t (x)",
    "PRAGMA user_version = 2; CREATE TABLE notes (body TEXT)",
    "PRAGMA journal_mode = WAL; CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT)",
])


@GEN
@given(schema=FOREIGN_SCHEMAS, command=st.sampled_from(
    [["list"], ["status"], ["add", "x", "-a", "demo", "--at", "+1h"],
     ["accounts", "add", "n", "-p", "outbox", "--credentials", "-"], ["run-due"]]))
def test_another_applications_sqlite_file_is_refused(seeded, capsys, monkeypatch, schema,
                                                    command):
    import sqlite3

    other = seeded["tmp"] / "other.sqlite"
    if other.exists():
        other.unlink()
    conn = sqlite3.connect(other)
    conn.executescript(schema)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    before = file_hash(other)
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"path": "/tmp/x"}'))
    code = run(["--db", str(other), *command])
    err = capsys.readouterr().err
    assert code == 3, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "another application" in err or "not make" in err, err
    assert file_hash(other) == before
    assert not Path(f"{other}-wal").exists() or Path(f"{other}-wal").stat().st_size == 0


@pytest.mark.parametrize("target", ["/dev/null", "/dev/zero", "fifo"])
def test_database_that_is_not_a_regular_file(tmp_path, capsys, monkeypatch, target):
    if target == "fifo":
        target = str(tmp_path / "pipe.db")
        os.mkfifo(target)
    code, _, err = invoke(["--db", target, "list"], "", capsys, monkeypatch)
    assert code == 3 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "not a regular file" in err


# -- accounts that cannot work are refused at `accounts add` -----------------------------------

PLACEHOLDERS = st.one_of(
    st.sampled_from(["", "   ", "...", "xxx", "XXXXXXXX", "********", "<token>", "<your token>",
                     "YOUR_TOKEN_HERE", "your-access-token", "changeme", "CHANGE_ME",
                     "${MASTODON_TOKEN}", "$TOKEN", "{{token}}", "[token]", "TODO", "token",
                     "access_token", "secret", "placeholder", "none", "null"]),
    st.builds(lambda c, n: c * n, st.sampled_from("x*.0-_#?"), st.integers(1, 40)))


@GEN
@given(token=PLACEHOLDERS, platform=st.sampled_from(["mastodon", "telegram", "bluesky"]))
def test_placeholder_secrets_are_refused(seeded, capsys, monkeypatch, token, platform):
    creds = {"mastodon": {"access_token": token},
             "telegram": {"bot_token": token, "chat_id": "42"},
             "bluesky": {"identifier": "me.example.com", "password": token}}[platform]
    argv = ["accounts", "add", "n", "-p", platform, "--credentials", "-", "--offline"]
    if platform == "mastodon":
        argv += ["--base-url", "https://mastodon.example"]
    refused(seeded, capsys, monkeypatch, argv, stdin=json.dumps(creds), part="placeholder")


@GEN
@given(token=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
       .map(lambda t: "tok" + t), sep=st.sampled_from(["\n", "\r\n", "\x00", "\t", "\x7f"]))
def test_secrets_with_control_characters_are_refused(seeded, capsys, monkeypatch, token, sep):
    creds = json.dumps({"access_token": token + sep + "more-token-text"})
    refused(seeded, capsys, monkeypatch,
            ["accounts", "add", "n", "-p", "mastodon", "--base-url", "https://m.example",
             "--credentials", "-", "--offline"], stdin=creds, part="control character",
            secret="more-token-text")


def test_mastodon_without_base_url_is_refused(seeded, capsys, monkeypatch):
    refused(seeded, capsys, monkeypatch,
            ["accounts", "add", "n", "-p", "mastodon", "--credentials", "-", "--offline"],
            stdin='{"access_token": "a-real-looking-token-0123456789"}', part="--base-url")


@GEN
@given(user=st.sampled_from(["u", "admin", ""]),
       password=st.text(alphabet="abcdefghijkXYZ0123456789-_.~", min_size=6, max_size=20),
       host=st.sampled_from(["m.example", "127.0.0.1:8080", "[::1]:9"]))
def test_a_password_in_base_url_is_never_shown(seeded, capsys, monkeypatch, user, password,
                                               host):
    refused(seeded, capsys, monkeypatch,
            ["accounts", "add", "n", "-p", "mastodon", "--base-url",
             f"https://{user}:{password}@{host}/", "--credentials", "-", "--offline"],
            stdin='{"access_token": "a-real-looking-token-0123456789"}', secret=password,
            part="password")


# -- media is checked by content ---------------------------------------------------------------

@GEN
@given(content=st.one_of(
    st.binary(min_size=0, max_size=64),
    st.sampled_from([b"root:x:0:0:root:/root:/bin/bash\n", b"hunter2\n",
                     b"-----BEGIN OPENSSH PRIVATE KEY-----\n", b"png", b"\x89PNX\r\n",
                     b"GIF88a", b"RIFF\x00\x00\x00\x00WAVE"])),
    name=st.sampled_from(["photo.png", "clip.mp4", "secret.jpg", "passwords"]))
def test_media_that_is_not_an_image_or_video(seeded, capsys, monkeypatch, content, name):
    from autopost.media import sniff

    assume(sniff(content[:32]) is None)
    path = seeded["tmp"] / name
    path.write_bytes(content)
    (seeded["tmp"] / "m.csv").write_text(f"account,at,text,media\ndemo,+1d,hi,{name}\n")
    refused(seeded, capsys, monkeypatch,
            ["add", "x", "-a", "demo", "--at", "+1h", "--media", str(path)], part="media")
    refused(seeded, capsys, monkeypatch, ["import", str(seeded["tmp"] / "m.csv")],
            part="media")


def test_media_over_the_size_cap(seeded, capsys, monkeypatch):
    from autopost.media import MAX_IMAGE_BYTES

    big = seeded["tmp"] / "huge.png"
    with open(big, "wb") as fh:
        fh.write(png(1, 1))
        fh.truncate(MAX_IMAGE_BYTES + 1)  # sparse: costs no disk
    refused(seeded, capsys, monkeypatch,
            ["add", "x", "-a", "demo", "--at", "+1h", "--media", str(big)], part="at most")


@pytest.mark.parametrize("head", [png(2, 2), jpeg(3, 2), gif(1, 1),
                                  b"RIFF\x10\x00\x00\x00WEBPVP8 ",
                                  b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom",
                                  b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  ",
                                  b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01",
                                  b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1"])
def test_real_images_and_videos_are_accepted(tmp_path, head):
    from autopost.media import inspect

    path = tmp_path / "m.bin"
    path.write_bytes(head)
    assert inspect(str(path)).kind in ("image", "video")


# -- files are private; the outbox follows no planted link -------------------------------------

def test_database_and_folders_are_private_under_umask_000(tmp_path, isolated_env):
    db = tmp_path / "a" / "b" / "autopost.db"
    old = os.umask(0)
    try:
        store = SqliteStore(db)
        store.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    for folder in (db.parent, db.parent.parent):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    for extra in (Path(f"{db}-wal"), Path(f"{db}-shm")):
        if extra.exists():
            assert stat.S_IMODE(os.stat(extra).st_mode) & 0o077 == 0


def test_a_wide_existing_database_is_made_private(seeded):
    db = seeded["db"]
    os.chmod(db, 0o666)
    for extra in (Path(f"{db}-wal"), Path(f"{db}-shm")):
        if extra.exists():
            os.chmod(extra, 0o666)
    SqliteStore(db).close()
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    for extra in (Path(f"{db}-wal"), Path(f"{db}-shm")):
        if extra.exists():
            assert stat.S_IMODE(os.stat(extra).st_mode) == 0o600


def test_the_default_data_folder_is_made_private(tmp_path, isolated_env, monkeypatch):
    from autopost.config import default_db_path

    db = default_db_path()
    db.parent.mkdir(parents=True)
    os.chmod(db.parent, 0o777)
    SqliteStore(db).close()
    assert stat.S_IMODE(os.stat(db.parent).st_mode) == 0o700


def _outbox_job(folder: Path):
    from datetime import timedelta

    from autopost.models import Job, JobStatus

    now = utcnow()
    account = Account(name="o", platform="outbox", credentials={"path": str(folder)})
    job = Job(id="abcdefgh", account="o", platform="outbox", text="hi", media=(), options={},
              scheduled_at=now, status=JobStatus.RUNNING, attempts=1, max_attempts=3,
              next_attempt_at=now, idempotency_key="k", created_at=now - timedelta(1),
              updated_at=now)
    return OutboxAdapter(account, account.credentials, None), job


def test_outbox_is_private_even_under_umask_000_and_when_it_was_wide(tmp_path):
    folder = tmp_path / "deep" / "outbox"
    adapter, job = _outbox_job(folder)
    old = os.umask(0)
    try:
        adapter.publish(job, lambda ref: None)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(folder.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(folder / "abcdefgh.json").st_mode) == 0o600
    os.chmod(folder, 0o777)
    (folder / "abcdefgh.json").unlink()
    adapter.publish(job, lambda ref: None)
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700


@pytest.mark.parametrize("planted", ["post-file", "folder"])
def test_outbox_never_follows_a_planted_symlink(tmp_path, planted):
    from autopost.platforms.base import PlatformError, Verdict

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    folder = tmp_path / "outbox"
    if planted == "folder":
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        folder.symlink_to(elsewhere)
    else:
        folder.mkdir()
        (folder / "abcdefgh.json").symlink_to(victim)
    adapter, job = _outbox_job(folder)
    with pytest.raises(PlatformError) as err:
        adapter.publish(job, lambda ref: None)
    assert "link" in err.value.message
    assert victim.read_text() == "precious\n"
    if planted == "folder":
        assert list((tmp_path / "elsewhere").iterdir()) == []
    else:
        assert adapter.reconcile(job).verdict == Verdict.NOT_POSTED


# -- platform errors that quote a secret are redacted before they are stored ---------------------

class QuotingAdapter(OutboxAdapter):
    """Fails the way a careless platform does: its error echoes what it was sent."""

    platform = "quoting"
    required_fields = ("path", "api_token")
    secret_fields = ("api_token",)

    def publish(self, job, save_ref):
        from autopost.models import ErrorKind
        from autopost.platforms.base import PlatformError

        token = self.credentials["api_token"]
        raise PlatformError(ErrorKind.INVALID,
                            f"HTTP 400: bad token {token!r} (sent as 'Bearer {token}', "
                            f"urlencoded {token.replace('/', '%2F')})")


@GEN
@given(token=st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789-_/", min_size=8,
                     max_size=40).filter(lambda t: len(set(t)) > 2))
def test_a_platform_error_quoting_a_secret_is_redacted_before_it_is_stored(
        tmp_path_factory, token):
    from autopost.config import load_settings
    from autopost.engine import Engine, RunOptions

    registry.register("quoting", QuotingAdapter)
    try:
        db = tmp_path_factory.mktemp("q") / "q.db"
        store = SqliteStore(db)
        now = utcnow()
        store.add_account(Account(name="q", platform="quoting",
                                  credentials={"path": "/nonexistent", "api_token": token}),
                          now=now)
        store.add_jobs([NewJob(account="q", platform="quoting", text="hi", scheduled_at=now)],
                       now=now)
        summary = Engine(store, load_settings(env={}),
                         store_factory=lambda: SqliteStore(db)).run(RunOptions())
        lines = [p.line() for p in summary.problems]
        (job,) = store.list_jobs(JobFilter())
        stored = [a.message or "" for a in store.attempts_for(job.id)] + [job.last_error or ""]
        store.close()
        assert job.status == "failed" and lines
        for text in stored + lines:
            assert token not in text
            assert token.replace("/", "%2F") not in text
        assert any("[redacted]" in text for text in stored)
    finally:
        registry.unregister("quoting")


# == the command line itself ===================================================================

COMMANDS_WITH_TEXT = [
    ["add", "{bad}", "-a", "demo", "--at", "+1h"],
    ["add", "x", "-a", "{bad}", "--at", "+1h"],
    ["add", "x", "-a", "demo", "--at", "{bad}"],
    ["add", "x", "-a", "demo", "--at", "+1h", "--tz", "{bad}"],
    ["add", "x", "-a", "demo", "--at", "+1h", "--key", "{bad}"],
    ["add", "x", "-a", "demo", "--at", "+1h", "--media", "{bad}"],
    ["list", "--account", "{bad}"],
    ["show", "{bad}"],
    ["accounts", "add", "{bad}", "-p", "outbox", "--credentials", "-"],
    ["import", "{bad}"],
    ["--config", "{bad}", "platforms"],
    ["resolve", "{bad}", "--not-posted"],
]


@GEN
@given(template=st.sampled_from(COMMANDS_WITH_TEXT), bad=BAD_BYTES, text=ASCII)
def test_arguments_that_are_not_utf8(seeded, capsys, monkeypatch, template, bad, text):
    value = os.fsdecode(text.encode() + bad)  # what Python makes of such bytes in argv
    argv = [value if a == "{bad}" else a for a in template]
    refused(seeded, capsys, monkeypatch, argv, stdin='{"path": "/tmp/x"}', part="UTF-8")


@GEN
@given(bad=BAD_BYTES, at=st.integers(0, 50), text=ASCII)
def test_post_text_from_stdin_that_is_not_utf8(seeded, capsys, monkeypatch, bad, at, text):
    refused(seeded, capsys, monkeypatch, ["add", "-", "-a", "demo", "--at", "+1h"],
            stdin=spliced("post " + text, bad, at), part="UTF-8")


NUMERIC_FLAGS = [
    (["run-due", "--limit", "{n}"], "--limit"),
    (["run-due", "--concurrency", "{n}"], "--concurrency"),
    (["run-due", "--linger", "{n}"], "--linger"),
    (["list", "--limit", "{n}"], "--limit"),
    (["calendar", "--days", "{n}"], "--days"),
    (["add", "x", "-a", "demo", "--at", "+1h", "--max-attempts", "{n}"], "--max-attempts"),
    (["accounts", "add", "n", "-p", "outbox", "--credentials", "-", "--hourly-limit", "{n}"],
     "--hourly-limit"),
    (["accounts", "add", "n", "-p", "outbox", "--credentials", "-", "--daily-limit", "{n}"],
     "--daily-limit"),
    (["prune", "--older-than", "{n}"], "--older-than"),
]
BAD_NUMBERS = st.one_of(HUGE.map(str), NOT_FINITE, st.just("9" * 5000),
                        st.just(str(10**12)), st.just("-0.5"))


@GEN
@given(flag=st.sampled_from(NUMERIC_FLAGS), value=BAD_NUMBERS)
def test_numeric_flags_are_bounded(seeded, capsys, monkeypatch, flag, value):
    template, name = flag
    if name in ("--linger", "--older-than") and value in ("-0.5",):
        value = "-1e400"
    argv = [value if a == "{n}" else a for a in template]
    line = refused(seeded, capsys, monkeypatch, argv, stdin='{"path": "/tmp/x"}', part=name)
    assert len(line) < 300


def test_an_absurd_time_zone_is_one_short_line(seeded, capsys, monkeypatch):
    line = refused(seeded, capsys, monkeypatch,
                   ["add", "x", "-a", "demo", "--at", "+1h", "--tz", "Z" * 10_000],
                   part="time zone")
    assert len(line) < 300


@GEN
@given(command=st.sampled_from([["list"], ["accounts", "list"], ["calendar"], ["show", "x"]]),
       env=st.sampled_from([{"AUTOPOST_BUSY_TIMEOUT": "abc"},
                            {"AUTOPOST_MAX_CONCURRENT_JOBS": str(10**12)},
                            {"AUTOPOST_DEFAULT_BASE_DELAY": "inf"}]))
def test_commands_that_only_read_check_the_settings_too(seeded, capsys, monkeypatch, command,
                                                        env):
    refused(seeded, capsys, monkeypatch, command, env=env, part=next(iter(env)))


@GEN
@given(command=st.sampled_from([["list"], ["show", "abcdefgh"], ["status"], ["quota"],
                                ["calendar"], ["accounts", "list"], ["cancel", "abcdefgh"],
                                ["retry", "abcdefgh"], ["accounts", "remove", "x"],
                                ["run-due", "--dry-run"], ["add", "x", "-a", "demo", "--at",
                                                           "+1h"],
                                ["resolve", "abcdefgh", "--not-posted"]]),
       name=st.sampled_from(["missing.db", "sub/dir/missing.db"]))
def test_commands_never_create_a_missing_database(tmp_path, capsys, monkeypatch, isolated_env,
                                                  command, name):
    db = tmp_path / "nowhere" / name
    code, out, err = invoke(["--db", str(db), *command], "", capsys, monkeypatch)
    assert code == 3, err
    assert err.splitlines() == [f"autopost: database not found: {db} (nothing was created)"]
    assert not db.exists() and not (tmp_path / "nowhere").exists()


def test_a_refused_first_account_creates_no_database(tmp_path, capsys, monkeypatch,
                                                    isolated_env):
    db = tmp_path / "new" / "autopost.db"
    code, _, err = invoke(["--db", str(db), "accounts", "add", "n", "-p", "mastodon",
                           "--credentials", "-", "--offline"], '{"access_token": "xxx"}',
                          capsys, monkeypatch)
    assert code == 2 and len(err.splitlines()) == 1
    assert not db.exists()


def test_accounts_list_never_shows_a_password_in_a_stored_base_url(seeded, capsys,
                                                                   monkeypatch):
    store = SqliteStore(seeded["db"])
    store.add_account(Account(name="old", platform="outbox", credentials={"path": "/tmp/x"},
                              base_url="https://user:pa55word-123@host.example/api"),
                      now=utcnow())
    store.close()
    for argv in (["accounts", "list"], ["accounts", "list", "--json"]):
        code, out, err = invoke(["--db", str(seeded["db"]), *argv], "", capsys, monkeypatch)
        assert code == 0, err
        assert "pa55word-123" not in out + err and "host.example" in out


# -- run-due: internal errors, re-auth, Ctrl-C ---------------------------------------------------

class BrokenAdapter(OutboxAdapter):
    """An adapter with a bug that surfaces before any platform call."""

    platform = "broken"

    def __init__(self, *args, **kwargs):
        raise RuntimeError("a bug in the adapter's set-up")


class RevokedAdapter(OutboxAdapter):
    platform = "revoked"

    def publish(self, job, save_ref):
        from autopost.models import ErrorKind
        from autopost.platforms.base import PlatformError

        raise PlatformError(ErrorKind.AUTH_REVOKED, "HTTP 401: The access token was revoked",
                            http_status=401)


@pytest.fixture
def odd_platforms():
    registry.register("broken", BrokenAdapter)
    registry.register("revoked", RevokedAdapter)
    yield
    registry.unregister("broken")
    registry.unregister("revoked")


def _due(db: Path, account: str, platform: str, n: int = 3) -> list[str]:
    store = SqliteStore(db)
    now = utcnow()
    store.add_account(Account(name=account, platform=platform,
                              credentials={"path": str(db.parent / "out")}), now=now)
    made = store.add_jobs([NewJob(account=account, platform=platform, text=f"post {i}",
                                  scheduled_at=now) for i in range(n)], now=now)
    store.close()
    return [job.id for job, _ in made]


def test_an_internal_error_in_run_due_exits_1_and_leaves_no_job_running(
        seeded, capsys, monkeypatch, odd_platforms):
    ids = _due(seeded["db"], "bug", "broken")
    code, out, err = invoke(["--db", str(seeded["db"]), "run-due"], "", capsys, monkeypatch)
    assert code == 1, err
    lines = err.splitlines()
    assert len(lines) == 1 and "internal error" in lines[0] and "bug" in lines[0], err
    assert "Traceback" not in err + out
    store = SqliteStore(seeded["db"])
    try:
        jobs = [store.get_job(i) for i in ids]
    finally:
        store.close()
    assert [j.status for j in jobs] == ["pending"] * 3
    assert all(j.attempts == 0 and j.lease_owner is None for j in jobs)


def test_a_crash_of_the_runs_main_thread_puts_undispatched_jobs_back_at_once(
        seeded, capsys, monkeypatch):
    """An unexpected error in the engine's own thread (injected in its second commit: the
    first job's dispatch mark is in, its result and the next mark are not): the jobs that
    never reached the platform are pending again at once, the dispatched one keeps its
    lease for a later run to rescue and reconcile, the run is recorded as finished, and
    the command says so in one line."""
    ids = _due(seeded["db"], "crash", "outbox")
    real = SqliteStore.dispatch_and_record
    calls = []

    def faulty(self, *args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise RuntimeError("injected fault")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SqliteStore, "dispatch_and_record", faulty)
    code, out, err = invoke(["--db", str(seeded["db"]), "run-due"], "", capsys, monkeypatch)
    monkeypatch.setattr(SqliteStore, "dispatch_and_record", real)
    assert code == 1, err
    lines = err.splitlines()
    assert len(lines) == 1 and "internal error (RuntimeError)" in lines[0], err
    assert "2 claimed job(s) put back to pending, 1 in flight" in lines[0], err
    assert "Traceback" not in err + out
    (sent,) = calls[0][0]  # the one dispatch mark committed
    store = SqliteStore(seeded["db"])
    try:
        first = store.get_job(sent)
        rest = [store.get_job(i) for i in ids if i != sent]
        assert first.status == JobStatus.RUNNING and first.attempts == 1
        assert first.lease_owner is not None
        assert [j.status for j in rest] == ["pending"] * 2
        assert all(j.attempts == 0 and j.lease_owner is None for j in rest)
        run = store.last_run()
        assert run.finished_at is not None and run.id in lines[0]
    finally:
        store.close()


def test_an_account_that_needs_reauth_is_loud_until_fixed(seeded, capsys, monkeypatch,
                                                         odd_platforms):
    _due(seeded["db"], "gone", "revoked", n=2)
    db = ["--db", str(seeded["db"])]
    code, out, err = invoke([*db, "run-due"], "", capsys, monkeypatch)
    assert code == 1 and out == "", err
    assert any("gone" in line and "revoked" in line for line in err.splitlines()), err
    for _ in range(2):  # status says so, run after run, until the account is fixed
        code, out, _ = invoke([*db, "status"], "", capsys, monkeypatch)
        assert code == 1 and "account gone needs re-auth" in out
        invoke([*db, "run-due"], "", capsys, monkeypatch)
    store = SqliteStore(seeded["db"])
    try:
        assert {j.status for j in store.list_jobs(JobFilter(account="gone"))} == {"pending"}
    finally:
        store.close()


def _wait_until_open(proc: subprocess.Popen, db: Path, timeout: float = 60) -> None:
    """Wait (on observable state, not a guess) until the process has the database open."""
    import time

    deadline = time.monotonic() + timeout
    fds = Path(f"/proc/{proc.pid}/fd")
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if any(os.readlink(fd) == str(db) for fd in fds.iterdir()):
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise AssertionError("the process never opened the database")


def _wait_until_running(proc: subprocess.Popen, db: Path, timeout: float = 60) -> None:
    """Wait until the process's run is recorded (its row in runs, not finished yet)."""
    import sqlite3
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT 1 FROM runs WHERE pid = ? AND finished_at IS NULL",
                               (proc.pid,)).fetchone()
        except sqlite3.OperationalError:
            row = None
        finally:
            conn.close()
        if row:
            return
        time.sleep(0.01)
    raise AssertionError("the run never started")


@pytest.mark.parametrize("path", ["idle-tick", "engine"])
def test_ctrl_c_during_the_linger_wait_exits_130_with_one_line(seeded, path):
    import signal

    db = seeded["db"]
    argv = [sys.executable, "-m", "autopost", "--db", str(db), "run-due", "--linger", "300"]
    if path == "engine":
        argv.append("--json")  # not the idle tick's: the full CLI and the engine wait
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPOST_")}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=seeded["tmp"])
    try:
        _wait_until_open(proc, db)
        if path == "engine":
            _wait_until_running(proc, db)  # past start-up: in the run's linger wait
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert err.splitlines() == ["autopost: interrupted"], err
