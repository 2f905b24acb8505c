"""PostgreSQL: drain N no-op jobs with autopost's PostgreSQL store and with procrastinate,
on the same server, with 1, 2 and 4 hosts; and the idle run-due tick on PostgreSQL.

    python bench/pg.py [--dsn postgresql://...] [--jobs 10000] [--hosts 1,2,4]
                       [--accounts 100] [--concurrency 8] [--idle 15]

Without --dsn a throwaway server is started from the system's PostgreSQL binaries with
PostgreSQL's durable defaults (fsync on, synchronous_commit on), as tests/pgserver.py
does for the tests (which turn fsync off). Each measurement gets a fresh database.

autopost: accounts with the `noop` platform, N jobs due now spread over them; each host is
one process running the engine as `run-due` does (its own host identity, `concurrency`
workers, the database's clock), again until nothing is left. Every job gets its attempt
row, its quota check, its lease and its heartbeat.
procrastinate: N no-op tasks deferred (not timed); each host is one process running
procrastinate's worker with the same concurrency and wait=False, so it exits once the
queue is empty. Its defaults otherwise (jobs kept, LISTEN/NOTIFY on).

Wall time runs from the moment every host process has started (they wait on a go file)
to the moment the last job is done. Prints a Markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


# -- the host processes ---------------------------------------------------------------------

def _wait_go(go: Path) -> None:
    while not go.exists():
        time.sleep(0.001)


def host_autopost(dsn: str, go: str, host: str, concurrency: int) -> None:
    import _adapters

    from autopost.config import load_settings
    from autopost.engine import Engine, RunOptions
    from autopost.store.postgres import PostgresStore

    os.environ["AUTOPOST_HOST"] = host
    _adapters.register()
    settings = load_settings(None)
    store = PostgresStore(dsn)
    _wait_go(Path(go))
    while True:
        Engine(store, settings, store_factory=store.reopen).run(
            RunOptions(concurrency=concurrency))
        left = store.conn.execute(
            "SELECT count(*) AS n FROM jobs WHERE status IN ('pending', 'running')"
        ).fetchone()["n"]
        if not left:
            break
        time.sleep(0.01)  # other hosts hold the remaining accounts; look again
    store.close()


def _procrastinate_app(dsn: str):
    from procrastinate import App, PsycopgConnector

    app = App(connector=PsycopgConnector(conninfo=dsn))

    @app.task(name="noop")
    def noop(i: int) -> None:
        return None

    return app, noop


def host_procrastinate(dsn: str, go: str, concurrency: int) -> None:
    app, _ = _procrastinate_app(dsn)
    with app.open():
        _wait_go(Path(go))
        app.run_worker(concurrency=concurrency, wait=False, install_signal_handlers=False,
                       fetch_job_polling_interval=0.05)


# -- the driver -------------------------------------------------------------------------------

def _fresh(admin: str) -> str:
    from tests import pgserver

    return pgserver.fresh_database(admin)


def _prepare_autopost(dsn: str, jobs: int, accounts: int) -> None:
    from autopost.models import Account, NewJob
    from autopost.store.postgres import PostgresStore

    store = PostgresStore(dsn)
    now = store.database_time()
    for a in range(accounts):
        store.add_account(Account(name=f"acc{a}", platform="noop"), now=now)
    store.add_jobs([NewJob(account=f"acc{i % accounts}", platform="noop", text=f"job {i}",
                           scheduled_at=now) for i in range(jobs)], now=now)
    store.close()


def _prepare_procrastinate(dsn: str, jobs: int) -> None:
    app, noop = _procrastinate_app(dsn)
    with app.open():
        app.schema_manager.apply_schema()
        for start in range(0, jobs, 1000):
            noop.batch_defer(*[{"i": i} for i in range(start, min(jobs, start + 1000))])


def _spawn_hosts(kind: str, dsn: str, hosts: int, concurrency: int, folder: Path
                 ) -> tuple[float, list[subprocess.Popen]]:
    go = folder / f"go-{kind}-{hosts}-{time.monotonic_ns()}"
    procs = []
    for h in range(hosts):
        procs.append(subprocess.Popen(
            [sys.executable, __file__, "--host", kind, dsn, str(go), f"host-{h}",
             str(concurrency)], cwd=ROOT))
    time.sleep(2.0 + hosts)  # every process imported, connected, migrated, waiting
    t0 = time.perf_counter()
    go.write_text("go")
    for p in procs:
        if p.wait(1800) != 0:
            raise SystemExit(f"{kind} host failed with {p.returncode}")
    return time.perf_counter() - t0, procs


def _count(dsn: str, sql: str) -> int:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchone()[0]


def drain(kind: str, admin: str, jobs: int, hosts: int, accounts: int, concurrency: int,
          folder: Path) -> dict:
    dsn = _fresh(admin)
    if kind == "autopost":
        _prepare_autopost(dsn, jobs, accounts)
    else:
        _prepare_procrastinate(dsn, jobs)
    wall, _ = _spawn_hosts(kind, dsn, hosts, concurrency, folder)
    if kind == "autopost":
        done = _count(dsn, "SELECT count(*) FROM jobs WHERE status = 'posted'")
        rows = _count(dsn, "SELECT count(*) FROM attempts WHERE outcome = 'posted'")
        assert rows == done, (rows, done)
    else:
        done = _count(dsn, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'")
    assert done == jobs, f"{kind}: {done} of {jobs} done"
    return {"kind": kind, "hosts": hosts, "jobs": jobs, "wall": wall, "jobs_per_s": jobs / wall}


def idle_ticks(admin: str, n: int, folder: Path) -> dict:
    """Median wall time of a `run-due` with nothing due, PostgreSQL and SQLite."""
    from autopost.models import Account, NewJob
    from autopost.store.postgres import PostgresStore
    from autopost.store.sqlite import SqliteStore

    dsn = _fresh(admin)
    later = datetime(2100, 1, 1, tzinfo=UTC)
    db = folder / "idle.db"
    for store in (PostgresStore(dsn), SqliteStore(db)):
        store.add_account(Account(name="o", platform="outbox", credentials={"path": "/x"}),
                          now=datetime.now(UTC))
        store.add_jobs([NewJob(account="o", platform="outbox", text=f"later {i}",
                               scheduled_at=later) for i in range(1000)], now=datetime.now(UTC))
        store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPOST_")}
    env["AUTOPOST_CONFIG"] = str(folder / "none.toml")
    (folder / "none.toml").write_text("")
    out = {}
    for name, where in (("postgres", dsn), ("sqlite", str(db))):
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "autopost", "--db", where, "run-due"],
                                  env=env, capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
            assert done.returncode == 0 and done.stdout == "", done.stderr
        out[name] = statistics.median(times)
    ticks = _count(dsn, "SELECT counts::json->>'idle_ticks' FROM runs")
    assert int(ticks) == n
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--host":
        kind, dsn, go, host, conc = sys.argv[2:7]
        if kind == "autopost":
            host_autopost(dsn, go, host, int(conc))
        else:
            host_procrastinate(dsn, go, int(conc))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn")
    ap.add_argument("--jobs", type=int, default=10000)
    ap.add_argument("--hosts", default="1,2,4")
    ap.add_argument("--accounts", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--idle", type=int, default=15, help="idle ticks to time (0: none)")
    args = ap.parse_args()
    server = None
    admin = args.dsn
    if admin is None:
        from tests import pgserver

        server = pgserver.Server()
        admin = server.start(durable=True)
    folder = Path(tempfile.mkdtemp(prefix="autopost-bench-pg-"))
    results = []
    try:
        import psycopg

        with psycopg.connect(admin) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
            fsync = conn.execute("SHOW fsync").fetchone()[0]
            sync = conn.execute("SHOW synchronous_commit").fetchone()[0]
        print(f"PostgreSQL {version}, fsync={fsync}, synchronous_commit={sync}; "
              f"{args.jobs} no-op jobs, {args.accounts} accounts (autopost), "
              f"concurrency {args.concurrency} per host, {os.cpu_count()} CPUs")
        for hosts in [int(h) for h in args.hosts.split(",")]:
            for kind in ("autopost", "procrastinate"):
                r = drain(kind, admin, args.jobs, hosts, args.accounts, args.concurrency,
                          folder)
                results.append(r)
                print(f"  {kind:13} hosts={hosts}  {r['wall']:7.2f} s  "
                      f"{r['jobs_per_s']:8.0f} jobs/s", flush=True)
        idle = idle_ticks(admin, args.idle, folder) if args.idle else {}
    finally:
        if server is not None:
            server.stop()
    print()
    print("| hosts | autopost jobs/s | procrastinate jobs/s | ratio |")
    print("|---:|---:|---:|---:|")
    by = {(r["kind"], r["hosts"]): r for r in results}
    for hosts in sorted({r["hosts"] for r in results}):
        a, p = by[("autopost", hosts)], by[("procrastinate", hosts)]
        print(f"| {hosts} | {a['jobs_per_s']:.0f} | {p['jobs_per_s']:.0f} | "
              f"{a['jobs_per_s'] / p['jobs_per_s']:.2f} |")
    if idle:
        print(f"\nidle run-due tick (median of {args.idle}): "
              f"PostgreSQL {idle['postgres'] * 1000:.0f} ms, SQLite {idle['sqlite'] * 1000:.0f} ms")
    print(json.dumps({"drain": results, "idle": idle}))


if __name__ == "__main__":
    main()
