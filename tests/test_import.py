"""`autopost import`: CSV and JSON Lines, every row checked first, all or nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from autopost.config import load_settings
from autopost.errors import UsageError
from autopost.importer import detect_format, parse_file
from autopost.models import Account, JobFilter
from autopost.platforms import registry
from autopost.platforms.outbox import OutboxAdapter
from autopost.store.sqlite import SqliteStore

from .conftest import file_hash
from .images import jpeg, png

pytestmark = pytest.mark.usefixtures("isolated_env")

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
FUTURE = "2030-07-01T09:00:00Z"  # the CLI tests run on the real clock


class TinyAdapter(OutboxAdapter):
    """A platform with a 10-character limit and one media file per post."""

    platform = "tiny"
    text_limit = 10
    max_media = 1


@pytest.fixture(autouse=True)
def tiny_platform():
    registry.register("tiny", TinyAdapter)
    yield
    registry.unregister("tiny")


@pytest.fixture
def db(tmp_path) -> Path:
    path = tmp_path / "data" / "autopost.db"
    store = SqliteStore(path)
    for name, platform in (("alice", "outbox"), ("bob", "outbox"), ("tiny", "tiny")):
        store.add_account(Account(name=name, platform=platform,
                                  credentials={"path": str(tmp_path / "out")}), now=NOW)
    store.close()
    return path


@pytest.fixture
def store(db):
    s = SqliteStore(db)
    yield s
    s.close()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def parse(path: Path, store, now: datetime = NOW, **kw):
    return parse_file(path, store, load_settings(env={}), now=now, **kw)


def test_csv_rows_become_jobs(tmp_path, store):
    (tmp_path / "img").mkdir()
    for name in ("a.png", "b.png"):
        (tmp_path / "img" / name).write_bytes(png(2, 2))
    path = write(tmp_path, "posts.csv",
                 "account,at,text,key,media,alt,tz\n"
                 f"alice,{FUTURE},\"Hello, world\",k1,img/a.png|img/b.png,first|,\n"
                 "bob,2026-07-01 09:00,Wall time,k2,,,Europe/Berlin\n"
                 "alice,2026-07-02T10:00,\"multi\nline\",,,,\n")
    parsed = parse(path, store)
    assert parsed.format == "csv"
    assert parsed.rows == [1, 2, 3]
    first, second, third = parsed.jobs
    assert (first.account, first.key, first.text) == ("alice", "k1", "Hello, world")
    assert first.scheduled_at == datetime(2030, 7, 1, 9, tzinfo=UTC)
    assert [(m.path, m.alt) for m in first.media] == [
        (str(tmp_path / "img" / "a.png"), "first"), (str(tmp_path / "img" / "b.png"), None)]
    assert first.max_attempts == 5
    assert second.scheduled_at == datetime(2026, 7, 1, 7, tzinfo=UTC)  # CEST
    assert third.text == "multi\nline" and third.key is None
    assert third.scheduled_at == datetime(2026, 7, 2, 10, tzinfo=UTC)  # default zone: UTC


def test_default_zone_option(tmp_path, store):
    path = write(tmp_path, "p.csv", "account,at,text\nalice,2026-07-01T09:00,x\n")
    (job,) = parse(path, store, default_tz="America/New_York").jobs
    assert job.scheduled_at == datetime(2026, 7, 1, 13, tzinfo=UTC)


def test_jsonl_rows_become_jobs(tmp_path, store):
    (tmp_path / "c.jpg").write_bytes(jpeg(4, 3))
    rows = [
        {"account": "alice", "at": FUTURE, "text": "one", "key": 7},
        {"account": "bob", "at": "+2h", "text": "two", "media": ["c.jpg"], "alt": ["a cat"]},
    ]
    path = write(tmp_path, "posts.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    parsed = parse(path, store)
    assert parsed.format == "jsonl"
    one, two = parsed.jobs
    assert one.key == "7"
    assert two.scheduled_at == NOW + timedelta(hours=2)
    assert [(m.path, m.alt) for m in two.media] == [(str(tmp_path / "c.jpg"), "a cat")]


@pytest.mark.parametrize(("name", "head", "expected"), [
    ("a.csv", "{", "csv"), ("a.jsonl", "account", "jsonl"), ("a.ndjson", "", "jsonl"),
    ("a.txt", '  {"account": 1}', "jsonl"), ("a.txt", "account,at,text", "csv"),
    ("noext", "account;at;text", "csv"),
])
def test_format_detection(name, head, expected):
    assert detect_format(Path(name), head) == expected


def test_semicolon_and_tab_files_and_bom(tmp_path, store):
    semi = write(tmp_path, "s.txt", "\ufeffaccount;at;text\nalice;2026-07-01T09:00;a, b\n")
    tab = write(tmp_path, "t.tsv", "account\tat\ttext\nbob\t2026-07-01T09:00\tc; d\n")
    assert parse(semi, store).jobs[0].text == "a, b"
    assert parse(tab, store).jobs[0].text == "c; d"


BAD_CSV = [
    ("nobody,{t},x", "row 2", "column account", "unknown account"),
    ("alice,tomorrow-ish,x", "row 2", "column at", "cannot read"),
    ("alice,2026-02-30T10:00,x", "row 2", "column at", "not a valid date"),
    ("alice,2026-03-29T02:30,x,,,,Europe/Berlin", "row 2", "column at", "does not exist"),
    ("alice,{t},x,,,,Mars/Base", "row 2", "column tz", "time zone"),
    ("tiny,{t},this is far too long", "row 2", "column text", "tiny allows 10"),
    ("alice,{t},,", "row 2", "column text", "empty post"),
    ("alice,{t},x,,missing.png", "row 2", "column media", "not found"),
    ("alice,{t},x,,,an alt", "row 2", "column alt", "1 alt texts for 0"),
    ("alice,{t},x,k1", "row 2", "column key", "already used on row 1"),
    ("alice,2020-01-01T00:00,x", "row 2", "column at", "in the past"),
    ("alice,{t}", "row 2 (line 3)", "has 2 fields", "header has 7"),
    ("alice,,x", "row 2", "column at", "empty"),
    (",{t},x", "row 2", "column account", "empty"),
]


@pytest.mark.parametrize(("row", "where", "column", "why"), BAD_CSV)
def test_bad_csv_row_is_named_and_nothing_imported(cli, tmp_path, db, row, where, column, why):
    if "fields" not in column:
        row += "," * (6 - row.count(","))  # pad to the header's 7 fields
    path = write(tmp_path, "posts.csv", "account,at,text,key,media,alt,tz\n"
                 f"alice,{FUTURE},fine,k1,,,\n" + row.format(t=FUTURE) + "\n"
                 f"bob,{FUTURE},also fine,,,,\n")
    before = file_hash(db)
    out = cli("import", str(path))
    assert out.code == 2
    (line,) = out.err_lines
    assert line.startswith("autopost: posts.csv ")
    for part in (where, column, why, "nothing was imported"):
        assert part in line
    assert file_hash(db) == before
    assert cli("list", "--json").json() == []


@pytest.mark.parametrize(("content", "why"), [
    ("account,at,text,colour\nalice,2026-07-01,x,red\n", "unknown column 'colour'"),
    ("account,text\nalice,x\n", "missing column 'at'"),
    ("account,at,text,at\nalice,2026-07-01,x,y\n", "appears twice"),
    ("", "no rows to import"),
    ("account,at,text\n", "no rows to import"),
])
def test_bad_csv_header(cli, tmp_path, db, content, why):
    path = write(tmp_path, "p.csv", content)
    before = file_hash(db)
    out = cli("import", str(path))
    assert out.code == 2
    assert len(out.err_lines) == 1 and why in out.stderr
    assert file_hash(db) == before


@pytest.mark.parametrize(("line", "why"), [
    ('{"account": "alice", "at": "' + FUTURE + '", "text": 5}', "column text: expected a string"),
    ('{"account": "alice", "at": "' + FUTURE + '", "text": "x", "colour": 1}',
     "column colour: unknown field"),
    ('{"account": "alice", "at": ', "not valid JSON"),
    ('["alice", "2026-07-01", "x"]', "expected a JSON object"),
    ('{"account": "alice", "at": "' + FUTURE + '", "text": "x", "media": [1]}', "column media"),
])
def test_bad_jsonl_line(cli, tmp_path, db, line, why):
    good = json.dumps({"account": "bob", "at": FUTURE, "text": "fine"})
    path = write(tmp_path, "p.jsonl", good + "\n\n" + line + "\n")
    before = file_hash(db)
    out = cli("import", str(path))
    assert out.code == 2
    (err,) = out.err_lines
    assert "row 2 (line 3)" in err and why in err
    assert file_hash(db) == before


def test_error_counts_the_other_bad_rows(tmp_path, store):
    path = write(tmp_path, "p.csv", "account,at,text\nnobody,x,y\nalice,bad,z\n"
                 f"alice,{FUTURE},ok\nbob,also bad,w\n")
    with pytest.raises(UsageError) as err:
        parse(path, store)
    assert str(err.value).startswith(
        "p.csv row 1 (line 2), column account: unknown account 'nobody'")
    assert "(2 more bad rows)" in str(err.value)


def test_reimport_with_keys_is_a_no_op(cli, tmp_path, db):
    path = write(tmp_path, "p.csv", "account,at,text,key\n"
                 f"alice,{FUTURE},one,k1\nbob,{FUTURE},two,k2\n")
    first = cli("import", str(path), "--json")
    assert first.code == 0, first.stderr
    summary = first.json()
    assert (summary["rows"], summary["new"], summary["existing"]) == (2, 2, 0)
    again = cli("import", str(path), "--json")
    assert again.code == 0
    assert again.json()["new"] == 0 and again.json()["existing"] == 2
    assert again.json()["ids"] == summary["ids"]
    text = cli("import", str(path))
    assert "imported 0 new jobs" in text.stdout and "2 already existed" in text.stdout
    assert len(cli("list", "--json").json()) == 2


def test_reimport_after_the_times_passed_is_still_a_no_op(tmp_path, store):
    path = write(tmp_path, "p.csv", f"account,at,text,key\nalice,{FUTURE},one,k1\n")
    store.add_jobs(parse(path, store).jobs, now=NOW)
    later = datetime(2030, 8, 1, tzinfo=UTC)
    (again,) = store.add_jobs(parse(path, store, now=later).jobs, now=later)
    assert again[1] is False
    # A past row whose key is new is refused: it would be posted late.
    path2 = write(tmp_path, "p2.csv", f"account,at,text,key\nalice,{FUTURE},one,k9\n")
    with pytest.raises(UsageError, match=r"row 1 \(line 2\), column at: is in the past"):
        parse(path2, store, now=later)


def test_missing_or_unreadable_file(cli, tmp_path, db):
    before = file_hash(db)
    out = cli("import", str(tmp_path / "nope.csv"))
    assert out.code == 2 and "no such file" in out.stderr and len(out.err_lines) == 1
    out = cli("import", str(tmp_path))
    assert out.code == 2 and "folder" in out.stderr
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"account,at,text\n\xff\xfe\xfa,x,y\n")
    out = cli("import", str(binary))
    assert out.code == 2 and "UTF-8" in out.stderr
    assert file_hash(db) == before


def test_import_prints_a_summary_and_no_progress_off_terminal(cli, tmp_path, db):
    path = write(tmp_path, "p.csv", f"account,at,text\nalice,{FUTURE},one\nbob,+1d,two\n")
    out = cli("import", str(path))
    assert out.code == 0
    assert out.stdout.strip() == "imported 2 new jobs from p.csv"
    assert out.stderr == ""
    jobs = cli("list", "--json").json()
    assert sorted(j["account"] for j in jobs) == ["alice", "bob"]


def test_large_import(cli, tmp_path, db):
    rows = ["account,at,text,key"]
    rows += [f"{'alice' if i % 2 else 'bob'},2027-01-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d},"
             f"post {i},k{i}" for i in range(100_000)]
    path = write(tmp_path, "big.csv", "\n".join(rows) + "\n")
    out = cli("import", str(path), "--json")
    assert out.code == 0, out.stderr
    summary = out.json()
    assert summary["new"] == 100_000 and len(set(summary["ids"])) == 100_000
    store = SqliteStore(cli.db)
    try:
        assert store.count_by_status()["pending"] == 100_000
        job = store.get_job(summary["ids"][12345])
        assert (job.text, job.key, job.account) == ("post 12345", "k12345", "alice")
        assert len(store.list_jobs(JobFilter(account="bob", limit=10))) == 10
    finally:
        store.close()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_bad_last_row_of_a_large_file_imports_nothing(cli, tmp_path, db, fmt):
    """Rows go to the store as they are checked: the 5,000th being bad must still undo
    the 4,999 before it (several of the store's batches)."""
    good = [("alice" if i % 2 else "bob", f"2030-07-{1 + i % 28:02d}T10:{i % 60:02d}:00Z",
             f"post {i}", f"k{i}") for i in range(4999)]
    bad = ("alice", "2030-02-30T10:00", "the last one", "k-last")
    rows = [*good, bad]
    if fmt == "csv":
        text = "account,at,text,key\n" + "".join(f"{a},{t},{x},{k}\n" for a, t, x, k in rows)
    else:
        text = "".join(json.dumps({"account": a, "at": t, "text": x, "key": k}) + "\n"
                       for a, t, x, k in rows)
    path = write(tmp_path, f"big.{fmt}", text)
    before = file_hash(db)
    out = cli("import", str(path))
    assert out.code == 2
    assert out.err_lines == [f"autopost: big.{fmt} row 5000 (line {5001 if fmt == 'csv' else 5000}"
                             "), column at: '2030-02-30T10:00' is not a valid date; nothing was "
                             "imported"]
    assert cli("list", "--json").json() == []
    store = SqliteStore(db)
    try:
        assert store.find_keys([("alice", "k1"), ("bob", "k0")]) == {}
    finally:
        store.close()
    assert file_hash(db) == before
    # The same file without its bad row goes in whole.
    path.write_text(text.rsplit("the last one", 1)[0].rsplit("\n", 1)[0] + "\n")
    ok = cli("import", str(path), "--json")
    assert ok.code == 0, ok.stderr
    assert ok.json()["new"] == 4999


def test_import_results_are_kept_compactly_and_read_as_a_list():
    from autopost.store.rows import Imported

    got = Imported()
    assert len(got) == 0 and list(got) == [] and got == []
    got.add(["aaaaaaaa", "bb"], [True, False])
    assert got[1] == ("bb", False) and got[-2] == ("aaaaaaaa", True)
    got.add(["cccccccc"], [True])  # after a read: the new batch is still found
    assert list(got) == [("aaaaaaaa", True), ("bb", False), ("cccccccc", True)]
    assert got[1:] == [("bb", False), ("cccccccc", True)]
    assert got == [("aaaaaaaa", True), ("bb", False), ("cccccccc", True)]
    assert got != [("aaaaaaaa", True), ("bb", True), ("cccccccc", True)]
    assert sum(made for _, made in got) == 2 and len(got) == 3
    with pytest.raises(IndexError):
        got[3]


def test_the_duplicate_key_of_ascii_text_is_the_normalised_digest():
    """duplicate_key's ASCII fast path gives the key NFKC + casefold would."""
    import hashlib
    import unicodedata

    from autopost.store.base import duplicate_key

    def reference(text):
        norm = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
        return hashlib.sha256(norm.encode()).hexdigest()[:24] if norm else None

    ascii_chars = "".join(map(chr, range(128)))
    samples = ["Big  News", " \t\r\n", "", "A\x1fB", "x\x0bY", ascii_chars, ascii_chars[::-1],
               "Straße", "ＢＩＧ news", "ﬁne"]
    for text in samples:
        assert duplicate_key(text) == reference(text), repr(text)
    assert duplicate_key("BIG\tnews ") == duplicate_key("big news") == duplicate_key(
        "ＢＩＧ news")
