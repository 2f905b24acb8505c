"""Ctrl-C during `python -m autopost`'s start-up: whenever it lands once autopost's own
code runs, the process ends with exit 130 and one line, never a traceback, never by the
signal itself.

Two ways in: an interrupt raised exactly where Python raises one that is hard to handle
(inside a string exec, as a dataclass or namedtuple is made, which makes `python -m` end
by SIGINT after all when it ends through sys.exit; inside a __set_name__, which Python
3.11 wraps in a RuntimeError), injected by a sitecustomize in the child; and real SIGINTs
at a sweep of moments, each sent once the child has reported (with -X importtime) that it
got that far.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime

import pytest

from autopost.models import Account
from autopost.store.sqlite import SqliteStore

FAULT = '''
import os
import sys

_mode, _, _target = os.environ.get("AUTOPOST_TEST_FAULT", "").partition(":")


class _Named:
    def __set_name__(self, owner, name):
        raise KeyboardInterrupt


class _Fault:
    """Raises KeyboardInterrupt when `_target` is imported, the way _mode says."""

    def find_spec(self, name, path=None, target=None):
        if name != _target:
            return None
        sys.meta_path.remove(self)
        if _mode == "exec":
            exec("raise KeyboardInterrupt")
        else:
            class _Owner:
                attr = _Named()
        return None


if _target:
    sys.meta_path.insert(0, _Fault())
if _mode == "exec":
    # A thread that is not a daemon, alive until the interpreter shuts down: the process
    # ends through sys.exit (as whenever such a thread runs), where Python looks for the
    # mark a string exec's KeyboardInterrupt leaves, not through the quick os._exit.
    import threading

    threading.Thread(target=lambda: threading.main_thread().join()).start()
'''


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "autopost.db"
    store = SqliteStore(path)
    store.add_account(Account(name="demo", platform="outbox",
                              credentials={"path": str(tmp_path / "out")}),
                      now=datetime.now(UTC))
    store.close()
    return path


def _env(tmp_path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPOST_")}
    env["AUTOPOST_CONFIG"] = str(tmp_path / "none.toml")
    (tmp_path / "none.toml").write_text("")
    return {**env, **extra}


def _lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if not line.startswith("import time:")]


def _jobs(db) -> int:
    store = SqliteStore(db)
    try:
        return sum(store.count_by_status().values())
    finally:
        store.close()


@pytest.mark.parametrize("mode", ["exec", "set_name"])
@pytest.mark.parametrize("target, command", [
    ("autopost.tick", ["list"]),               # imported before anything else
    ("autopost.cli.app", ["list"]),            # the CLI's own import
    ("autopost.render", ["list"]),             # a command's lazy import, under its guard
    ("autopost.store.probe", ["run-due"]),     # the idle tick's
])
def test_an_interrupt_while_importing_exits_130_with_one_line(tmp_path, db, mode, target,
                                                              command):
    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "sitecustomize.py").write_text(FAULT)
    path = os.pathsep.join(p for p in (str(faults), os.environ.get("PYTHONPATH")) if p)
    env = _env(tmp_path, PYTHONPATH=path, AUTOPOST_TEST_FAULT=f"{mode}:{target}")
    done = subprocess.run([sys.executable, "-m", "autopost", "--db", str(db), *command],
                          capture_output=True, text=True, env=env, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert (done.returncode, done.stderr.splitlines(), done.stdout) == (
        130, ["autopost: interrupted"], "")


def _start(tmp_path, db) -> subprocess.Popen:
    """`add -`: it waits for the text on stdin (kept open), so the process cannot end
    before the signal does."""
    return subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "autopost", "--db", str(db),
         "add", "-", "-a", "demo", "--at", "+1h"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_env(tmp_path))


def _reached_autopost(line: str) -> bool:
    """The import-time line of the autopost package: its own code is running from here."""
    return line.startswith("import time:") and line.rstrip().endswith("| autopost")


def test_ctrl_c_at_any_moment_of_start_up_exits_130_with_one_line(tmp_path, db):
    # Where the start-up goes: the modules imported after the package, up to the wait.
    with _start(tmp_path, db) as probe:
        out, err = probe.communicate("hello\n", timeout=120)
    assert probe.returncode == 0, err
    names = [line.rsplit("|", 1)[1].strip() for line in err.splitlines()
             if line.startswith("import time:") and "|" in line]
    steps = names[names.index("autopost") + 1:names.index("autopost.inputs") + 1]
    assert len(steps) > 20
    jobs = _jobs(db)
    outcomes = []
    for k in sorted({*range(0, len(steps), max(1, len(steps) // 16)), len(steps) - 1}):
        with _start(tmp_path, db) as proc:
            lines: queue.SimpleQueue[str] = queue.SimpleQueue()
            reader = threading.Thread(
                target=lambda p=proc, q=lines: [q.put(x) for x in p.stderr], daemon=True)
            reader.start()
            try:
                line = lines.get(timeout=60)
                while not _reached_autopost(line):
                    line = lines.get(timeout=60)
                for _ in range(k):  # k more imports done, then the signal
                    line = lines.get(timeout=60)
                proc.send_signal(signal.SIGINT)
                out = proc.stdout.read()
                proc.wait(timeout=60)
                reader.join(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
        rest = []
        while not lines.empty():
            rest.append(lines.get().rstrip("\n"))
        outcomes.append((k, proc.returncode, _lines("\n".join(rest)), out))
    assert all(o[1:] == (130, ["autopost: interrupted"], "") for o in outcomes), outcomes
    assert _jobs(db) == jobs  # nothing was added
