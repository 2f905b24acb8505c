"""The files autopost keeps beside the database and writes for node_exporter: the notify
ledger (private, atomic, bounded, one per database) and the Prometheus textfile (private
when new, keeping the read access an operator gave it)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from autopost import metrics, notify
from autopost.notify import KEEP, Event, Ledger, Target, ledger_file, status_events


@pytest.fixture
def open_umask():
    old = os.umask(0)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


class Recorder:
    """Stands in for deliver(): what would have gone out."""

    def __init__(self, monkeypatch):
        self.sent: list[str] = []
        monkeypatch.setattr(notify, "deliver", lambda target, payload, client=None:
                            self.sent.append(payload["id"]) or [])


TARGET = Target(command="true")


def ev(event_id: str) -> Event:
    return Event(event_id, "failed", f"job {event_id} failed")


# -- the notify ledger ------------------------------------------------------------------------

def test_the_ledger_is_private_under_any_umask(tmp_path, open_umask, monkeypatch):
    Recorder(monkeypatch)
    db = tmp_path / "new-folder" / "autopost.db"
    notify.send(TARGET, [ev("failed:j1:r1")], db)
    ledger = ledger_file(db)
    assert ledger == tmp_path / "new-folder" / "autopost.notified.json"
    assert mode(ledger) == 0o600
    assert mode(ledger.parent) == 0o700
    assert mode(Ledger(db).lock_path) == 0o600
    # Only the ledger and its lock: no temporary file left behind.
    assert sorted(p.name for p in ledger.parent.iterdir()) == [
        ".autopost.notified.json.lock", "autopost.notified.json"]


def test_each_event_once_and_two_databases_in_one_folder_keep_their_own(tmp_path,
                                                                         monkeypatch):
    rec = Recorder(monkeypatch)
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    unhealthy = Event("cond:unhealthy:never_run", "unhealthy", "run-due has never run")
    notify.send(TARGET, [unhealthy], a, conditions=True)
    notify.send(TARGET, [unhealthy], a, conditions=True)
    notify.send(TARGET, [unhealthy], b, conditions=True)  # another database: its own news
    assert rec.sent == [unhealthy.id, unhealthy.id]
    assert ledger_file(a) != ledger_file(b)


def test_the_ledger_is_replaced_atomically_and_a_failed_write_is_one_line(
        tmp_path, monkeypatch, capsys):
    rec = Recorder(monkeypatch)
    db = tmp_path / "autopost.db"
    notify.send(TARGET, [ev("failed:j1:r1")], db)
    before = ledger_file(db).read_bytes()

    def no_rename(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    failures = notify.send(TARGET, [ev("failed:j2:r1")], db)
    assert failures == [] and rec.sent == ["failed:j1:r1", "failed:j2:r1"]
    err = capsys.readouterr().err.splitlines()
    assert err == [f"autopost: notify: could not save {ledger_file(db)}: No space left on "
                   "device"]
    assert ledger_file(db).read_bytes() == before  # the old ledger, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".autopost.notified.json.lock", "autopost.notified.json"]


def test_the_ledger_stays_bounded_and_keeps_the_conditions_that_hold(tmp_path, monkeypatch):
    Recorder(monkeypatch)
    db = tmp_path / "autopost.db"
    conditions = [Event(f"cond:needs_reauth:acct{i}", "needs_reauth", "x") for i in range(3)]
    notify.send(TARGET, conditions, db, conditions=True)
    with Ledger(db) as ledger:
        for i in range(KEEP + 250):
            ledger.add(f"failed:job{i}:run")
    kept = json.loads(ledger_file(db).read_text())["sent"]
    assert [i for i in kept if i.startswith("cond:")] == [c.id for c in conditions]
    others = [i for i in kept if not i.startswith("cond:")]
    assert len(others) == KEEP
    assert others[0] == "failed:job250:run" and others[-1] == f"failed:job{KEEP + 249}:run"
    # Forgotten conditions go as soon as status sees them cleared.
    notify.send(TARGET, conditions[:1], db, conditions=True)
    kept = json.loads(ledger_file(db).read_text())["sent"]
    assert [i for i in kept if i.startswith("cond:")] == [conditions[0].id]


@pytest.mark.parametrize("content", [b"not json", b'{"sent": 5}', b'["a"]',
                                     b'{"sent": [' + b'"x",' * (1 << 20) + b'"y"]}'])
def test_a_ledger_that_is_not_one_starts_afresh(tmp_path, monkeypatch, content):
    rec = Recorder(monkeypatch)
    db = tmp_path / "autopost.db"
    ledger_file(db).write_bytes(content)
    notify.send(TARGET, [ev("failed:j1:r1")], db)
    assert rec.sent == ["failed:j1:r1"]
    assert json.loads(ledger_file(db).read_text()) == {"sent": ["failed:j1:r1"]}


def test_a_planted_link_for_the_lock_sends_nothing_and_says_so(tmp_path, monkeypatch, capsys):
    rec = Recorder(monkeypatch)
    db = tmp_path / "autopost.db"
    target = tmp_path / "elsewhere"
    target.write_text("keep me")
    Ledger(db).lock_path.symlink_to(target)
    failures = notify.send(TARGET, [ev("failed:j1:r1")], db)
    assert rec.sent == [] and len(failures) == 1
    assert "cannot keep track of what was sent" in capsys.readouterr().err
    assert target.read_text() == "keep me"


def test_a_warning_whose_numbers_change_is_one_occurrence():
    def report(message: str) -> dict:
        return {"problems": [{"job": None, "account": "li", "kind": "expiring",
                              "message": message}], "unknown": []}

    day6 = status_events(report("account li: the LinkedIn token expires "
                                "2026-12-08T09:00:00Z (in 6 day(s)); run 'autopost ..."))
    day5 = status_events(report("account li: the LinkedIn token expires "
                                "2026-12-08T09:00:00Z (in 5 day(s)); run 'autopost ..."))
    expired = status_events(report("account li: the LinkedIn token expired "
                                   "2026-12-08T09:00:00Z; run 'autopost ..."))
    assert day6[0].id == day5[0].id
    assert expired[0].id != day5[0].id  # expired is news


# -- the Prometheus textfile --------------------------------------------------------------------

def test_a_new_metrics_file_is_private_under_any_umask(tmp_path, open_umask):
    path = tmp_path / "autopost.prom"
    metrics.write(path, "autopost_up 1\n")
    assert mode(path) == 0o600 and path.read_text() == "autopost_up 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["autopost.prom"]


@pytest.mark.parametrize(("given", "kept"), [(0o640, 0o640), (0o644, 0o644), (0o600, 0o600),
                                             (0o666, 0o644), (0o770, 0o640)])
def test_a_rewrite_keeps_the_read_access_the_operator_gave(tmp_path, given, kept):
    path = tmp_path / "autopost.prom"
    metrics.write(path, "autopost_up 1\n")
    os.chmod(path, given)
    metrics.write(path, "autopost_up 1\nautopost_healthy 1\n")
    assert mode(path) == kept
    assert path.read_text().endswith("autopost_healthy 1\n")


def test_a_rewrite_keeps_the_files_group(tmp_path, monkeypatch):
    path = tmp_path / "autopost.prom"
    metrics.write(path, "autopost_up 1\n")
    os.chmod(path, 0o640)
    real = os.lstat
    other_gid = os.getegid() + 4242

    class Stat:
        def __init__(self, st):
            self.st_mode, self.st_gid = st.st_mode, other_gid

    monkeypatch.setattr(os, "lstat", lambda p: Stat(real(p)) if Path(p) == path else real(p))
    chowned = []
    monkeypatch.setattr(os, "fchown", lambda fd, uid, gid: chowned.append(gid))
    metrics.write(path, "autopost_up 1\n")
    assert chowned == [other_gid] and mode(path) == 0o640

    def refused(fd, uid, gid):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "fchown", refused)
    os.chmod(path, 0o640)
    metrics.write(path, "autopost_up 1\n")
    assert mode(path) == 0o600  # no group read for a group the file could not keep
