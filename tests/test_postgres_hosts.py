"""Several hosts on one PostgreSQL: run-due processes, each with its own host identity,
some SIGKILLed at random moments, some with clocks minutes off. The fake platform's
files (tests/pg_host.py) are the truth about what was posted and refreshed."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from autopost.models import Account, JobFilter, JobStatus, NewJob
from autopost.store.postgres import PostgresStore
from tests import pg_host

ROOT = Path(__file__).resolve().parent.parent


def _spawn(dsn: str, config: Path, host: str, skew: float = 0.0, linger: float = 0.0
           ) -> subprocess.Popen:
    full = dict(os.environ)
    full["PYTHONPATH"] = os.pathsep.join([str(ROOT), full.get("PYTHONPATH", "")])
    err = open(config.parent / f"stderr-{host}-{time.monotonic_ns()}", "w+")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.pg_host", dsn, str(config), host, str(skew), str(linger)],
        cwd=ROOT, env=full, stdout=subprocess.DEVNULL, stderr=err, text=True)
    proc.err_file = err  # type: ignore[attr-defined]
    return proc


def _setup(tmp_path: Path, dsn: str, *, accounts: int, jobs: int, config: str,
           rotate_every: int | None = None, start: datetime | None = None,
           spacing: float = 0.001):
    cfg = tmp_path / "config.toml"
    cfg.write_text(config)
    store = PostgresStore(dsn)
    t0 = start or store.database_time() - timedelta(seconds=jobs * spacing + 1)
    folders = {}
    new = []
    for a in range(accounts):
        name = f"acc{a}"
        folders[name] = tmp_path / "platform" / name
        creds = pg_host.setup_platform(folders[name], rotate_every=rotate_every)
        store.add_account(Account(name=name, platform="ledger", credentials=creds),
                          now=datetime.now(UTC))
        new += [NewJob(account=name, platform="ledger", text=f"post {a}-{i}",
                       scheduled_at=t0 + timedelta(seconds=i * spacing)) for i in range(jobs)]
    store.add_jobs(new, now=datetime.now(UTC))
    return store, cfg, folders


def _settled(store: PostgresStore) -> bool:
    """Nothing running or unknown, and nothing due within minutes by the database's clock
    (retries come within seconds; what waits longer waits for its quota window)."""
    counts = store.count_by_status()
    if counts[JobStatus.RUNNING] or counts[JobStatus.UNKNOWN]:
        return False
    return not store.due_jobs(now=store.database_time() + timedelta(minutes=5), limit=1)


def _check_stderr(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.err_file.seek(0)  # type: ignore[attr-defined]
        err = p.err_file.read()  # type: ignore[attr-defined]
        p.err_file.close()  # type: ignore[attr-defined]
        assert "Traceback" not in err, err


def test_hosts_killed_at_random_post_each_job_once_within_quota(pg_dsn, tmp_path):
    rng = random.Random(12)
    store, cfg, folders = _setup(
        tmp_path, pg_dsn, accounts=8, jobs=30,
        config="[run]\nlease_seconds = 15\ncatch_up_window = 0\n"
               "[platforms.default]\nhourly_limit = 20\ndaily_limit = 40\n"
               "base_delay = 1\nmax_delay = 2\nmax_attempts = 20\n")
    procs: list[subprocess.Popen] = []
    live: list[subprocess.Popen] = []
    killed = 0
    spawned = 0
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        live = [p for p in live if p.poll() is None]
        while len(live) < 4:
            p = _spawn(pg_dsn, cfg, f"host-{spawned % 6}")
            spawned += 1
            procs.append(p)
            live.append(p)
        if killed < 6:
            time.sleep(rng.uniform(0.3, 1.5))
            victim = rng.choice(live)
            if victim.poll() is None:
                victim.kill()  # SIGKILL: no cleanup, leases left behind
                victim.wait()
                killed += 1
            continue
        if _settled(store):
            break
        time.sleep(0.2)
    for p in live:
        p.wait(60)
    assert killed == 6 and _settled(store), (killed, store.count_by_status())
    _check_stderr([p for p in procs if p.returncode == 0])
    for p in procs:
        p.err_file.close()  # type: ignore[attr-defined]

    jobs = store.list_jobs(JobFilter())
    posted = {j.id for j in jobs if j.status == JobStatus.POSTED}
    calls = Counter(line[1] for f in folders.values() for line in pg_host.ledger_lines(f))
    assert max(calls.values()) == 1, [j for j, n in calls.items() if n > 1]  # never twice
    assert set(calls) == posted  # every call recorded as posted, nothing posted unseen
    per_account = Counter(j.account for j in jobs if j.status == JobStatus.POSTED)
    # the hourly limit, exactly
    assert per_account == {name: 20 for name in folders}, (
        per_account, Counter(j.status for j in jobs),
        [(a.outcome, a.decision) for j in jobs for a in store.attempts_for(j.id)
         if a.outcome not in ("posted", "deferred")])
    pending = [j for j in jobs if j.status == JobStatus.PENDING]
    assert len(pending) == 8 * 10
    db_now = store.database_time()
    assert all(j.next_attempt_at > db_now + timedelta(minutes=50) for j in pending)
    hosts = {r["host"] for r in store.conn.execute("SELECT host FROM runs")}
    assert len(hosts) >= 3
    store.close()


def test_hosts_keep_each_accounts_order_one_at_a_time_and_refresh_once_per_rotation(
        pg_dsn, tmp_path):
    store, cfg, folders = _setup(
        tmp_path, pg_dsn, accounts=4, jobs=25, rotate_every=6, spacing=0.01,
        config="[run]\nlease_seconds = 60\ncatch_up_window = 0\n")
    procs = [_spawn(pg_dsn, cfg, f"host-{i}") for i in range(4)]
    for p in procs:
        assert p.wait(120) == 0
    _check_stderr(procs)
    deadline = time.monotonic() + 120
    while not _settled(store):  # runs that ended while others held accounts
        assert time.monotonic() < deadline
        p = _spawn(pg_dsn, cfg, "host-late")
        assert p.wait(120) == 0
    jobs = store.list_jobs(JobFilter())
    assert all(j.status == JobStatus.POSTED for j in jobs)
    order = {j.id: j.scheduled_at for j in jobs}
    for folder in folders.values():
        started = pg_host.ledger_lines(folder)
        ids = [line[1] for line in started]
        assert len(ids) == len(set(ids)) == 25
        assert ids == sorted(ids, key=order.__getitem__)  # the account's order, across hosts
        ended = {line[1]: float(line[2]) for line in
                 (ln.split() for ln in (folder / "ended").read_text().splitlines())}
        spans = sorted((float(line[2]), ended[line[1]]) for line in started)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))  # one at a time
        refreshes = (folder / "refreshes").read_text().split()
        assert "REUSE" not in refreshes
        assert len(refreshes) == (25 - 1) // 6  # one refresh per rotation
    runs = defaultdict(int)
    for r in store.conn.execute("SELECT host FROM runs"):
        runs[r["host"]] += 1
    assert {f"host-{i}" for i in range(4)} <= set(runs)
    store.close()


def test_concurrent_refreshes_of_one_account_call_the_platform_once(pg_dsn, tmp_path):
    store, _cfg, folders = _setup(tmp_path, pg_dsn, accounts=1, jobs=0, rotate_every=1,
                                  config="")
    script = (
        "import json, sys, time\n"
        "from datetime import UTC, datetime\n"
        "from autopost.accounts import refresh_account\n"
        "from autopost.store.postgres import PostgresStore\n"
        "from tests import pg_host\n"
        "s = PostgresStore(sys.argv[1])\n"
        "account = s.get_account('acc0')\n"
        "seen = json.loads(sys.argv[4])  # the first pair, as every host last read it\n"
        "adapter = pg_host.LedgerAdapter(account, seen, None)\n"
        "while time.time() < float(sys.argv[2]):\n"
        "    time.sleep(0.001)\n"
        "done = refresh_account(s, adapter, seen, sys.argv[3],\n"
        "                       clock=lambda: datetime.now(UTC))\n"
        "print(done.credentials['refresh'])\n")
    at = time.time() + 3
    env = {**os.environ, "LEDGER_REFRESH_DELAY": "0.3",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    first = json.dumps(store.get_account("acc0").credentials)
    procs = [subprocess.Popen([sys.executable, "-c", script, pg_dsn, str(at), f"p{i}", first],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(5)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    assert {o.strip() for o, _ in outs} == {"r1"}  # everyone ends with the one new pair
    assert (folders["acc0"] / "refreshes").read_text().split() == ["1"]
    assert store.get_account("acc0").credentials["refresh"] == "r1"
    store.close()


def test_clock_skew_neither_steals_live_leases_nor_posts_early(pg_dsn, tmp_path):
    # Jobs fall due 10 to 13 seconds from now by the database's clock. One host's clock
    # runs 5 minutes fast, another's 5 minutes slow; both linger and publish. A fast clock
    # trusted would post everything at once and treat the slow host's leases (30 s) as
    # expired long ago.
    probe = PostgresStore(pg_dsn)
    start = probe.database_time() + timedelta(seconds=10)
    probe.close()
    store, cfg, folders = _setup(
        tmp_path, pg_dsn, accounts=3, jobs=6, start=start, spacing=0.5,
        config="[run]\nlease_seconds = 30\ncatch_up_window = 0\n")
    for folder in folders.values():  # slow posts: leases are live while the hosts overlap
        (folder / "settings.json").write_text('{"delay": 0.4}')
    procs = [_spawn(pg_dsn, cfg, "fast", skew=300, linger=20),
             _spawn(pg_dsn, cfg, "slow", skew=-300, linger=20)]
    for p in procs:
        assert p.wait(120) == 0
    _check_stderr(procs)
    jobs = {j.id: j for j in store.list_jobs(JobFilter())}
    assert all(j.status == JobStatus.POSTED for j in jobs.values()), \
        Counter(j.status for j in jobs.values())
    for folder in folders.values():
        for _account, job_id, at in pg_host.ledger_lines(folder):
            # This machine's clock is the database's (one host): no call before its time.
            assert float(at) >= jobs[job_id].scheduled_at.timestamp() - 0.05
    calls = Counter(line[1] for f in folders.values() for line in pg_host.ledger_lines(f))
    assert set(calls) == set(jobs) and max(calls.values()) == 1
    attempts = [a for j in jobs for a in store.attempts_for(j)]
    assert all(a.outcome == "posted" for a in attempts)  # nothing lost, rescued or retried
    assert len(attempts) == len(jobs)
    hosts = {r["host"] for r in store.conn.execute("SELECT host FROM runs")}
    assert hosts == {"fast", "slow"}
    store.close()
