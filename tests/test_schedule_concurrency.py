"""Queue slots and the duplicate guard under concurrent `add` processes: the check runs
inside the write transaction, so exactly one process wins a slot or passes the guard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from autopost.models import JobFilter
from autopost.store.sqlite import SqliteStore

from .conftest import outbox_credentials

PROCESSES = 4


def _start(db: Path, config: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPOST_")}
    env["AUTOPOST_CONFIG"] = str(config)
    return subprocess.Popen([sys.executable, "-m", "autopost", "--db", str(db), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _setup(tmp_path: Path, proc) -> Path:
    config = tmp_path / "config.toml"
    config.write_text('[accounts.demo]\nslots = ["tue 10:00"]\ntz = "America/New_York"\n')
    out = proc("accounts", "add", "demo", "--platform", "outbox", "--credentials", "-",
               input=outbox_credentials(tmp_path))
    assert out.code == 0, out.stderr
    return config


def _all(procs: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    done = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        done.append((p.returncode, out, err))
    return done


def test_concurrent_adds_of_the_same_text_let_exactly_one_through(tmp_path, proc):
    config = _setup(tmp_path, proc)
    for round_ in range(3):
        procs = [_start(proc.db, config, "add", f"the same news {round_}", "-a", "demo",
                        "--at", f"+{round_ + 1}h") for _ in range(PROCESSES)]
        results = _all(procs)
        assert "Traceback" not in "".join(err for _, _, err in results)
        assert sorted(code for code, _, _ in results) == [0] + [2] * (PROCESSES - 1), results
        for code, _, err in results:
            if code:
                assert "--allow-duplicate" in err and len(err.splitlines()) == 1
    store = SqliteStore(proc.db)
    try:
        texts = [j.text for j in store.list_jobs(JobFilter(account="demo"))]
    finally:
        store.close()
    assert sorted(texts) == [f"the same news {i}" for i in range(3)]


def test_concurrent_next_slot_adds_each_take_a_different_slot(tmp_path, proc):
    config = _setup(tmp_path, proc)
    first = json.loads(proc("--config", str(config), "slots", "demo", "--json").stdout)["free"]
    procs = [_start(proc.db, config, "add", f"queued {i}", "-a", "demo", "--at", "next-slot",
                    "--json") for i in range(PROCESSES)]
    results = _all(procs)
    assert [code for code, _, _ in results] == [0] * PROCESSES, results
    times = [json.loads(out)[0]["scheduled_at"] for _, out, _ in results]
    assert len(set(times)) == PROCESSES  # nobody shares a slot
    assert sorted(t[:16] for t in times) == [t[:16] for t in first[:PROCESSES]]
