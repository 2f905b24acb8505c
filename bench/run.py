"""autopost benchmarks. One command per figure:

    python bench/run.py idle         1. idle tick vs `python -c pass` (wall, peak RSS, imports)
    python bench/run.py scale        2. 1,000 vs 1,000,000 stored jobs; import of 100,000 rows
    python bench/run.py throughput   3. bookkeeping jobs/s at synchronous=FULL vs huey
    python bench/run.py latency      4. 1,000 jobs x 100 ms over 50 accounts: wall / ideal
    python bench/run.py linger       5. due-to-posted latency under cron + --linger
    python bench/run.py memory       6. peak RSS publishing 1,000 vs 10,000 jobs
    python bench/run.py all          everything (about 10 minutes)

Options: --trials N (repeats per series), --minutes M (linger mode). Every comparison is
measured side by side in the same run, trials interleaved, and reported as a ratio.
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _dbgen  # noqa: E402
from _util import (  # noqa: E402
    BENCH,
    PYTHON,
    ROOT,
    SERIES_HEADER,
    Series,
    bench_env,
    console_script,
    header,
    interleave,
    load,
    run_proc,
    series_rows,
    table,
    verdict,
)

ENTRY = [PYTHON, str(BENCH / "_autopost.py")]
HEAVY = ("httpx", "httpcore", "h11", "anyio", "rich", "typer", "click", "pydantic",
         "sqlite_utils", "dateutil", "autopost.engine", "autopost.platforms", "autopost.cli")


def session_dir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="autopost-bench-"))
    (d / "xdg-config").mkdir()
    (d / "xdg-data").mkdir()
    return d


def env_for(work: Path, **extra: str) -> dict[str, str]:
    # No user config file, no AUTOPOST_* from the caller: the defaults, like a fresh install.
    env = bench_env(XDG_CONFIG_HOME=str(work / "xdg-config"),
                    XDG_DATA_HOME=str(work / "xdg-data"), **extra)
    for k in list(env):
        if k.startswith("AUTOPOST_"):
            del env[k]
    return env


def cli_state() -> str:
    import importlib.util

    if importlib.util.find_spec("autopost.cli") is None:
        return ("autopost/cli is not in this checkout yet: commands that need the full "
                "CLI are driven through the store/engine the way the CLI calls them")
    return "full CLI present"


def idle_ticks(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT counts FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()
    finally:
        conn.close()
    return json.loads(row[0]).get("idle_ticks", 0) if row else 0


# -- 1. idle tick ---------------------------------------------------------------------------

def idle_db(work: Path, name: str = "idle10k") -> Path:
    def build(path: Path) -> None:
        _dbgen.create(path, _dbgen.accounts(5, "outbox"))
        _dbgen.insert_jobs(path, _dbgen.future_rows(10_000, 5, "outbox"))
    return _dbgen.copy(_dbgen.cached(name, build), work / f"{name}.db")


def imported_modules(cmd: list[str], env: dict[str, str]) -> tuple[list[str], list[str]]:
    """(every module imported, the ten with the largest self time) via -X importtime."""
    p = run_proc([cmd[0], "-X", "importtime", *cmd[1:]], env=env)
    mods, cost = [], []
    for line in p.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            mods.append(m.group(4))
            cost.append((int(m.group(1)), m.group(4)))
    top = [f"{name} {us / 1000:.1f} ms" for us, name in sorted(cost, reverse=True)[:10]]
    return mods, top


def mode_idle(args, work: Path) -> dict:
    header("idle tick (run-due with nothing due, 10,000 future jobs)")
    db = idle_db(work)
    env = env_for(work)
    script = console_script()
    bare = [PYTHON, "-c", "pass"]
    tick = [*script, "--db", str(db), "run-due"]
    tick_m = [PYTHON, "-m", "autopost", "--db", str(db), "run-due"]
    before = idle_ticks(db)
    s = {k: (Series(f"{k} wall"), Series(f"{k} peak RSS", unit="MB"))
         for k in ("python -c pass", "autopost run-due", "python -m autopost run-due")}

    def step(name, cmd):
        def go():
            p = run_proc(cmd, env=env)
            s[name][0].add(p.wall)
            s[name][1].add(p.rss_kb / 1024)
        return go

    for cmd in (bare, tick, tick_m):  # warm the page cache and .pyc files
        run_proc(cmd, env=env)
    interleave(args.trials, step("python -c pass", bare), step("autopost run-due", tick),
               step("python -m autopost run-due", tick_m))
    answered = idle_ticks(db) - before
    rows = series_rows([x for pair in s.values() for x in pair])
    print(table("idle tick: wall and peak RSS", rows, SERIES_HEADER))
    base = s["python -c pass"][0].median
    ratio = s["autopost run-due"][0].median / base
    ratio_m = s["python -m autopost run-due"][0].median / base
    rss = s["autopost run-due"][1].median
    mods, top = imported_modules(tick, env)
    heavy = sorted({m for m in mods if m.split(".")[0] in HEAVY or
                    any(m == h or m.startswith(h + ".") for h in HEAVY)})
    ours = sorted(m for m in mods if m.startswith("autopost"))
    res = [
        ["wall ratio, console script / python -c pass", f"{ratio:.2f}x", "<= 2x",
         verdict(ratio, 2, higher_is_better=False)],
        ["wall ratio, python -m autopost / python -c pass", f"{ratio_m:.2f}x", "<= 2x",
         verdict(ratio_m, 2, higher_is_better=False)],
        ["peak RSS, console script (median)", f"{rss:.1f} MB", "<= 20 MB",
         verdict(rss, 20, higher_is_better=False)],
        ["peak RSS of python -c pass (median)", f"{s['python -c pass'][1].median:.1f} MB",
         "", ""],
        ["heavy modules imported", ", ".join(heavy) or "none", "none",
         "met" if not heavy else "NOT met"],
        ["ticks answered on the idle path", f"{answered} of {2 * args.trials + 2}",
         "all", "met" if answered == 2 * args.trials + 2 else "NOT met"],
    ]
    print(table("idle tick: goals", res, ["figure", "value", "goal", ""]))
    print(f"\nmodules imported by the tick: {len(mods)} ({len(ours)} of autopost: "
          f"{', '.join(ours)})")
    print(f"largest self import times: {'; '.join(top)}")
    print(f"load average at end: {load()}")
    return {"ratio": ratio, "ratio_m": ratio_m, "rss": rss, "heavy": heavy}


# -- 2. scale ---------------------------------------------------------------------------------

LIST_SNIPPET = """
import sys, time
from autopost.config import resolve_db_path
from autopost.models import JobFilter, JobStatus
from autopost.store.sqlite import SqliteStore
store = SqliteStore(sys.argv[1])
jobs = store.list_jobs(JobFilter(status=JobStatus.PENDING, limit=50))
assert len(jobs) == 50, len(jobs)
for j in jobs:
    print(j.id, j.account, j.scheduled_at.isoformat(), j.text[:40])
"""


def scale_dbs(work: Path) -> dict[int, Path]:
    out = {}
    for n in (1_000, 1_000_000):
        def build(path: Path, n: int = n) -> None:
            _dbgen.create(path, _dbgen.accounts(50, "outbox"))
            _dbgen.insert_jobs(path, _dbgen.history_mix(n, 50, "outbox"), attempts=True)
        out[n] = _dbgen.copy(_dbgen.cached(f"history{n}", build), work / f"history{n}.db")
    return out


def list_cmd(db: Path) -> tuple[list[str], str]:
    import importlib.util

    if importlib.util.find_spec("autopost.cli") is not None:
        return ([*console_script(), "--db", str(db), "list", "--status", "pending",
                 "--limit", "50"], "autopost list --status pending --limit 50")
    return ([PYTHON, "-c", LIST_SNIPPET, str(db)],
            "python -c <SqliteStore(db).list_jobs(status=pending, limit=50)> (no autopost/cli yet)")


def inproc_query_times(db: Path, trials: int) -> tuple[Series, Series]:
    """The store's own cost, warm, without process start-up: list_jobs and has_work."""
    from autopost.models import JobFilter, JobStatus
    from autopost.store.probe import has_work
    from autopost.store.sqlite import SqliteStore
    from autopost.store.timefmt import to_db

    store = SqliteStore(db)
    ls, hw = Series("list_jobs"), Series("has_work")
    for _ in range(trials):
        t = time.perf_counter()
        store.list_jobs(JobFilter(status=JobStatus.PENDING, limit=50))
        ls.add(time.perf_counter() - t)
        t = time.perf_counter()
        has_work(store.conn, to_db(datetime.now(UTC)))
        hw.add(time.perf_counter() - t)
    store.close()
    return ls, hw


def import_file(work: Path, n: int, fmt: str = "csv") -> Path:
    path = work / f"import{n}.{fmt}"
    rnd = random.Random(3)
    start = datetime.now(UTC) + timedelta(days=3)
    with path.open("w", encoding="utf-8") as fh:
        if fmt == "csv":
            fh.write("account,at,text\n")
        for i in range(n):
            at = (start + timedelta(seconds=rnd.randrange(365 * 86400))).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
            text = f"Post {i}: a scheduled note, with a link https://example.org/p/{i} and a #tag"
            if fmt == "csv":
                fh.write(f"acct{i % 50:03d},{at},\"{text}\"\n")
            else:
                fh.write(json.dumps({"account": f"acct{i % 50:03d}", "at": at, "text": text})
                         + "\n")
    return path


IMPORT_SNIPPET = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from autopost.config import load_settings
from autopost.importer import parse_file
from autopost.store.sqlite import SqliteStore
store = SqliteStore(sys.argv[1])
now = datetime.now(UTC)
parsed = parse_file(Path(sys.argv[2]), store, load_settings(None), now=now)
made = store.add_jobs(parsed.jobs, now=now)
print(sum(1 for _, created in made if created))
"""


def import_cmd(db: Path, csv: Path) -> tuple[list[str], str]:
    import importlib.util

    if importlib.util.find_spec("autopost.cli") is not None:
        return [*console_script(), "--db", str(db), "import", str(csv)], "autopost import FILE"
    return ([PYTHON, "-c", IMPORT_SNIPPET, str(db), str(csv)],
            "python -c <importer.parse_file + store.add_jobs> (no autopost/cli yet)")


def mode_scale(args, work: Path) -> dict:
    header("scale: 1,000 vs 1,000,000 stored jobs; import of 100,000 rows")
    print(cli_state())
    dbs = scale_dbs(work)
    env = env_for(work)
    script = console_script()
    series: dict[tuple[str, int], Series] = {}
    steps = []
    for n, db in dbs.items():
        for what, (cmd, _) in (("idle tick", ([*script, "--db", str(db), "run-due"], "")),
                               ("list", list_cmd(db)),
                               ("status", ([*script, "--db", str(db), "status"], ""))):
            s = series[(what, n)] = Series(f"{what}, {n:,} jobs")
            check = what != "status"  # status exits 1: the mix has failed jobs
            run_proc(cmd, env=env, check=check)  # warm

            def go(cmd=cmd, s=s, check=check):
                s.add(run_proc(cmd, env=env, check=check).wall)
            steps.append(go)
    interleave(args.trials, *steps)
    print(table("command wall time (process start to exit)",
                series_rows(list(series.values())), SERIES_HEADER))
    inproc = {}
    for n, db in dbs.items():
        inproc[n] = inproc_query_times(db, max(20, args.trials))
    rows = []
    names = ("list_jobs(status=pending, limit=50)", "has_work (the tick's query)")
    for i, name in enumerate(names):
        for n in dbs:
            s = inproc[n][i]
            rows.append([f"{name}, {n:,} jobs", str(len(s.values)), *s.cells()])
    print(table("the store's query alone, in process, warm", rows, SERIES_HEADER))
    r_tick = series[("idle tick", 1_000_000)].median / series[("idle tick", 1_000)].median
    r_list = series[("list", 1_000_000)].median / series[("list", 1_000)].median
    r_status = series[("status", 1_000_000)].median / series[("status", 1_000)].median
    r_q = inproc[1_000_000][0].median / inproc[1_000][0].median
    r_hw = inproc[1_000_000][1].median / inproc[1_000][1].median

    # import of 100,000 rows into a database holding only the accounts: to Mastodon
    # accounts (each text measured the way Mastodon counts: graphemes, URLs as 23) and to
    # outbox accounts (code points), to show what the platform's validation costs.
    csv = import_file(work, 100_000)
    imp_series, rates, label = {}, {}, ""
    for platform, base, creds in (("mastodon", "http://127.0.0.1:9", {"access_token": "x"}),
                                  ("outbox", None, {"path": str(work / "out")})):
        empty = work / f"import-empty-{platform}.db"
        _dbgen.create(empty, [(f"acct{a:03d}", platform, base, creds) for a in range(50)])
        s = imp_series[platform] = Series(f"import 100,000 rows to {platform} accounts")
        for _ in range(max(1, min(3, args.trials))):
            db = _dbgen.copy(empty, work / "import.db")
            cmd, label = import_cmd(db, csv)
            s.add(run_proc(cmd, env=env).wall)
            conn = sqlite3.connect(db)
            count = conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
            conn.close()
            assert count == 100_000, count
        rates[platform] = 100_000 / s.median
    print(table("import (wall of the whole command)",
                [[*series_rows([imp_series[p]])[0], f"{rates[p]:,.0f} rows/s"]
                 for p in imp_series], [*SERIES_HEADER, "rate (median)"]))
    print(f"import command: {label}")
    print(f"list command: {list_cmd(dbs[1000])[1]}")
    rate = rates["mastodon"]
    res = [
        ["idle tick, 1M / 1k stored jobs", f"{r_tick:.2f}x", "<= 1.2",
         verdict(r_tick, 1.2, higher_is_better=False)],
        ["list --status pending --limit 50, 1M / 1k", f"{r_list:.2f}x", "<= 1.2",
         verdict(r_list, 1.2, higher_is_better=False)],
        ["status, 1M / 1k", f"{r_status:.2f}x", "<= 1.2",
         verdict(r_status, 1.2, higher_is_better=False)],
        ["  list_jobs query alone, 1M / 1k", f"{r_q:.2f}x", "(cost follows the page)", ""],
        ["  has_work query alone, 1M / 1k", f"{r_hw:.2f}x", "(cost follows due jobs)", ""],
        ["import 100,000 rows, mastodon accounts", f"{rate:,.0f} rows/s", ">= 20,000 rows/s",
         verdict(rate, 20_000, higher_is_better=True)],
        ["import 100,000 rows, outbox accounts", f"{rates['outbox']:,.0f} rows/s",
         ">= 20,000 rows/s", verdict(rates["outbox"], 20_000, higher_is_better=True)],
    ]
    print(table("scale: goals", res, ["figure", "value", "goal", ""]))
    print(f"load average at end: {load()}")
    return {"tick": r_tick, "list": r_list, "status": r_status, "import": rate}


# -- 3. throughput ------------------------------------------------------------------------------

def disk_commits(work: Path, n: int = 2000) -> float:
    """Committed transactions per second on this disk at WAL + synchronous=FULL."""
    db = work / "fsync.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    t = time.perf_counter()
    for _ in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (v) VALUES (?)", ("x" * 200,))
        conn.execute("COMMIT")
    rate = n / (time.perf_counter() - t)
    conn.close()
    return rate


class FakeServer:
    """bench/_fake_http.py in its own process."""

    def __init__(self, latency: float):
        self.proc = subprocess.Popen([PYTHON, str(BENCH / "_fake_http.py"), "--latency",
                                      str(latency)], stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def due_db(path: Path, n: int, n_accounts: int, platform: str, base_url: str | None = None,
           creds: dict | None = None) -> Path:
    _dbgen.create(path, [(f"acct{a:03d}", platform, base_url, dict(creds or {}))
                         for a in range(n_accounts)])
    _dbgen.insert_jobs(path, _dbgen.due_rows(n, n_accounts, platform))
    return path


def engine_run(db: Path, env: dict[str, str], concurrency: int | None = None) -> dict:
    cmd = [PYTHON, str(BENCH / "_engine_run.py"), str(db)]
    if concurrency:
        cmd += ["--concurrency", str(concurrency)]
    p = run_proc(cmd, env=env)
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["rss_mb"] = p.rss_kb / 1024
    return out


def sql_ceiling(db: Path, env: dict[str, str], group: int) -> dict:
    p = run_proc([PYTHON, str(BENCH / "_sql_ceiling.py"), str(db), str(group)], env=env)
    return json.loads(p.stdout.strip().splitlines()[-1])


def mode_throughput(args, work: Path) -> dict:
    from autopost.config import load_settings

    concurrency = args.concurrency or load_settings(None, env={}).run.max_concurrent_jobs
    header(f"bookkeeping throughput at synchronous=FULL (10,000 jobs, concurrency "
           f"{concurrency})")
    n, accounts = 10_000, 50
    env = env_for(work)
    commits = Series("disk: fsync'd commits/s (WAL, FULL)", unit="/s")
    ours, ours_http = Series("autopost, no-op platform", unit="/s"), \
        Series("autopost, local HTTP platform", unit="/s")
    ceiling = Series(f"bare SQL ceiling, {concurrency} jobs per commit", unit="/s")
    huey_loop = Series("huey SqliteHuey, dequeue+execute loop", unit="/s")
    huey_cons = Series(f"huey SqliteHuey, consumer {concurrency} threads", unit="/s")
    cpu = Series("autopost no-op: CPU s per 1,000 jobs", unit="ms")
    server = FakeServer(0.0)
    checks = []
    arg = None if args.concurrency is None else concurrency

    def autopost_noop():
        db = due_db(work / "tp.db", n, accounts, "noop")
        r = engine_run(db, env, arg)
        ours.add(n / r["wall"])
        cpu.add(r["cpu"] / n * 1000 * 1000)
        checks.append(r["statuses"] == {"posted": n} and r["posted_attempts"] == n
                      and r["synchronous"] == 2)

    def bare_sql():
        db = due_db(work / "tps.db", n, accounts, "noop")
        r = sql_ceiling(db, env, concurrency)
        assert r["jobs"] == n
        ceiling.add(n / r["wall"])

    def autopost_http():
        db = due_db(work / "tph.db", n, accounts, "benchhttp", server.url)
        r = engine_run(db, env, arg)
        ours_http.add(n / r["wall"])
        checks.append(r["statuses"] == {"posted": n} and r["posted_attempts"] == n)

    def huey(how, s):
        def go():
            p = run_proc([PYTHON, str(BENCH / "_huey_drain.py"), str(work / "huey"), str(n),
                          how, str(concurrency)], env=env)
            r = json.loads(p.stdout.strip().splitlines()[-1])
            assert r["executed"] == n
            s.add(n / r["wall"])
        return go

    steps = [lambda: commits.add(disk_commits(work)), autopost_noop,
             huey("loop", huey_loop), huey("consumer", huey_cons), bare_sql]
    if not args.skip_http:
        steps.append(autopost_http)
    try:
        interleave(args.trials, *steps)
    finally:
        server.close()
    shown = [ours, huey_loop, huey_cons, ceiling] + ([] if args.skip_http else [ours_http])
    print(table("throughput (jobs/s; higher is better)",
                series_rows([*shown, commits]), SERIES_HEADER))
    print(f"\nautopost no-op CPU per 1,000 jobs (all threads): {cpu.median:.0f} ms median")
    best_huey = max(huey_loop.median, huey_cons.median)
    ratio = ours.median / best_huey
    r_cons = ours.median / huey_cons.median
    res = [
        ["autopost, no-op platform (median)", f"{ours.median:,.0f} jobs/s", ">= 4,000/s",
         verdict(ours.median, 4000, higher_is_better=True)],
        ["autopost / huey consumer", f"{r_cons:.2f}x", ">= 1.5x" if concurrency > 1
         else ">= 1.0x", verdict(r_cons, 1.5 if concurrency > 1 else 1.0,
                                 higher_is_better=True)],
        ["autopost / huey's faster mode", f"{ratio:.2f}x", "report", ""],
        ["autopost / bare SQL ceiling", f"{ours.median / ceiling.median:.2f}",
         "report", ""],
        ["every job posted once, attempts recorded, synchronous=FULL",
         "yes" if all(checks) else "NO", "yes", "met" if all(checks) else "NOT met"],
    ]
    if not args.skip_http:
        res.insert(4, ["autopost, local HTTP platform (median)",
                       f"{ours_http.median:,.0f} jobs/s", "report", ""])
    print(table("throughput: goals", res, ["figure", "value", "goal", ""]))
    print(f"{accounts} accounts, {n // accounts} jobs each, all due; concurrency "
          f"{concurrency} (huey's consumer: as many threads); timed around Engine.run "
          "(claim, dispatch mark, publish, record, commit).")
    print(f"load average at end: {load()}")
    return {"jobs_s": ours.median, "huey": best_huey, "ratio": ratio, "ratio_consumer": r_cons,
            "ceiling": ceiling.median, "http": ours_http.median if ours_http.values else None}


# -- 4. latency-bound ---------------------------------------------------------------------------

def run_span(db: Path) -> float:
    """The newest run row's finished_at - started_at, in seconds (the engine's own span)."""
    conn = sqlite3.connect(db)
    try:
        a, b = conn.execute("SELECT started_at, finished_at FROM runs ORDER BY started_at DESC "
                            "LIMIT 1").fetchone()
    finally:
        conn.close()
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def due_csv(path: Path, n: int, accounts: int) -> Path:
    """n rows round-robin over the accounts, due over the last 40 to 20 seconds (inside
    import's one-minute grace for the past), so that all are due when run-due starts."""
    start = datetime.now(UTC) - timedelta(seconds=40)
    with path.open("w", encoding="utf-8") as fh:
        fh.write("account,at,text\n")
        for i in range(n):
            at = (start + timedelta(seconds=20 * i / n)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            fh.write(f"acct{i % accounts:03d},{at},latency bench post {i}\n")
    return path


def mode_latency(args, work: Path) -> dict:
    n, accounts, latency = 1_000, 50, 0.1
    concurrency = args.concurrency or 16
    header(f"latency-bound: {n:,} jobs, {accounts} accounts, {latency * 1000:.0f} ms per "
           f"request, --concurrency {concurrency}")
    print(cli_state())
    ideal = n * latency / concurrency
    env = env_for(work)
    server = FakeServer(latency)
    wall, span = Series("run-due command wall"), Series("engine run span (runs row)")
    rss = Series("peak RSS", unit="MB")
    masto_wall = Series("mastodon adapter vs fake Mastodon: command wall")
    masto_span = Series("mastodon adapter vs fake Mastodon: run span")
    masto = None
    tests_fake = (ROOT / "tests" / "fakes" / "mastodon_server.py").exists()
    tokens = [f"tok{a:03d}" for a in range(accounts)]
    if tests_fake and not args.skip_mastodon:
        masto = subprocess.Popen(
            [PYTHON, "-m", "tests.fakes.mastodon_server", "--latency", str(latency),
             *[f"--token={t}=user{t[3:]}" for t in tokens]],
            stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
        masto_url = masto.stdout.readline().strip()

    def ours():
        # Through the CLI, as an operator would: import the rows, then time run-due.
        db = work / "lat.db"
        _dbgen.create(db, [(f"acct{a:03d}", "benchhttp", server.url, {})
                           for a in range(accounts)])
        csv = due_csv(work / "lat.csv", n, accounts)
        run_proc([*ENTRY, "--db", str(db), "import", str(csv)], env=env)
        p = run_proc([*ENTRY, "--db", str(db), "run-due", "--concurrency", str(concurrency)],
                     env=env)
        wall.add(p.wall)
        span.add(run_span(db))
        rss.add(p.rss_kb / 1024)
        conn = sqlite3.connect(db)
        assert conn.execute("SELECT count(*) FROM jobs WHERE status = 'posted'"
                            ).fetchone()[0] == n
        conn.close()

    def mastodon():
        db = work / "lat-masto.db"
        _dbgen.create(db, [(f"acct{a:03d}", "mastodon", masto_url, {"access_token": t})
                           for a, t in enumerate(tokens)])
        _dbgen.insert_jobs(db, _dbgen.due_rows(n, accounts, "mastodon"))
        p = run_proc([*ENTRY, "--db", str(db), "run-due", "--concurrency", str(concurrency)],
                     env=env)
        masto_wall.add(p.wall)
        masto_span.add(run_span(db))

    steps = [ours] + ([mastodon] if masto else [])
    try:
        interleave(args.trials, *steps)
    finally:
        server.close()
        if masto:
            masto.terminate()
            masto.wait(timeout=10)
    out = [wall, span, rss] + ([masto_wall, masto_span] if masto else [])
    print(table("latency-bound run", series_rows(out), SERIES_HEADER))
    r_wall, r_span = wall.median / ideal, span.median / ideal
    res = [
        ["ideal = jobs x latency / concurrency", f"{ideal:.2f} s",
         f"{n} x {latency * 1000:.0f} ms / {concurrency}", ""],
        ["command wall / ideal (median)", f"{r_wall:.3f}", "<= 1.15",
         verdict(r_wall, 1.15, higher_is_better=False)],
        ["engine run span / ideal (median)", f"{r_span:.3f}", "<= 1.15",
         verdict(r_span, 1.15, higher_is_better=False)],
    ]
    if masto:
        res.append(["mastodon adapter: command wall / ideal", f"{masto_wall.median / ideal:.3f}",
                    "report", ""])
    print(table("latency-bound: goals", res, ["figure", "value", "goal", ""]))
    print("bench platform: one POST per job through the run's shared httpx.Client, to "
          "bench/_fake_http.py (own process). mastodon: the real adapter against "
          "tests/fakes/mastodon_server.py (latency on every request, so also on the "
          "instance-limits read each account's chain makes).")
    print(f"load average at end: {load()}")
    return {"wall": r_wall, "span": r_span}


# -- 5. linger ------------------------------------------------------------------------------------

def mode_linger(args, work: Path) -> dict:
    minutes, interval = args.minutes, args.interval
    header(f"due-to-posted latency: a run every {interval:g} s, {minutes} runs, "
           f"{args.jobs} jobs at random moments")
    print(cli_state())
    env = env_for(work)
    variants = {f"--linger {v:g}": v for v in args.lingers}
    rnd = random.Random(11)
    t0 = datetime.now(UTC) + timedelta(seconds=3)
    span = minutes * interval
    offsets = sorted(rnd.uniform(0.5, span) for _ in range(args.jobs))
    dbs = {}
    for name in variants:
        db = work / f"linger{variants[name]:g}.db"
        _dbgen.create(db, _dbgen.accounts(10, "noop"))
        rows = (_dbgen.row(i, f"acct{i % 10:03d}", "noop", t0 + timedelta(seconds=o))
                for i, o in enumerate(offsets))
        _dbgen.insert_jobs(db, rows)
        dbs[name] = db
    procs: list[subprocess.Popen] = []
    starts: list[datetime] = []
    # (variant, start, end) of every run process: a job fell due "while a run was
    # watching" if a process of its variant was alive then.
    windows: list[list] = []

    def watch(p: subprocess.Popen, window: list) -> None:
        p.wait()
        window[2] = datetime.now(UTC)
    print(f"started {datetime.now(UTC):%H:%M:%S}; runs start every {interval:g} s "
          f"(the bench plays cron); ~{(minutes + 1) * interval / 60:.1f} min", flush=True)
    for k in range(minutes + 1):
        at = t0 + timedelta(seconds=k * interval)
        delay = (at - datetime.now(UTC)).total_seconds()
        if delay > 0:
            time.sleep(delay)
        starts.append(datetime.now(UTC))
        for name, linger in variants.items():
            p = subprocess.Popen(
                [*ENTRY, "--db", str(dbs[name]), "run-due", "--linger", str(linger)],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            procs.append(p)
            window = [name, datetime.now(UTC), None]
            windows.append(window)
            threading.Thread(target=watch, args=(p, window), daemon=True).start()
        if k == minutes:
            break
    # The last tick only sweeps up the last interval's stragglers: stop it once all posted.
    deadline = time.time() + interval
    while time.time() < deadline:
        if all(_posted(db) == args.jobs for db in dbs.values()):
            break
        time.sleep(0.5)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
    time.sleep(0.2)  # let the watcher threads note the last exits
    for w in windows:
        w[2] = w[2] or datetime.now(UTC)
    rows, res, out = [], [], {}
    for name in variants:
        lat, covered, gap = [], [], []
        conn = sqlite3.connect(dbs[name])
        for sched, posted in conn.execute(
                "SELECT scheduled_at, posted_at FROM jobs WHERE status = 'posted'"):
            s, p = datetime.fromisoformat(sched), datetime.fromisoformat(posted)
            d = (p - s).total_seconds()
            lat.append(d)
            # Was a run of this variant alive (watching) when the job fell due?
            alive = any(v == name and a <= s <= b for v, a, b in windows)
            (covered if alive else gap).append(d)
        left = conn.execute("SELECT count(*) FROM jobs WHERE status != 'posted'").fetchone()[0]
        conn.close()
        q = _quantiles(lat)
        rows.append([name, f"{len(lat)}", f"{q[50]:.3f} s", f"{q[95]:.3f} s", f"{q[99]:.3f} s",
                     f"{max(lat):.3f} s", str(left)])
        for label, part in (("  due while a run was watching", covered),
                            ("  due in the gap between runs", gap)):
            if part:
                qq = _quantiles(part)
                rows.append([label, str(len(part)), f"{qq[50]:.3f} s", f"{qq[95]:.3f} s",
                             f"{qq[99]:.3f} s", f"{max(part):.3f} s", ""])
        res.append([f"p99, {name}", f"{q[99]:.3f} s", "<= 1.5 s",
                    verdict(q[99], 1.5, higher_is_better=False)])
        out[name] = q
    print(table("posted_at - scheduled_at", rows,
                ["variant", "jobs", "p50", "p95", "p99", "max", "not posted"]))
    print(table("linger: goals", res, ["figure", "value", "goal", ""]))
    errs = [p.stderr.read().decode(errors="replace").strip() for p in procs]
    errs = [e for e in errs if e]
    if errs:
        print("stderr of runs:", *errs[:3], sep="\n")
    print(f"load average at end: {load()}")
    return out


def _posted(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT count(*) FROM jobs WHERE status = 'posted'").fetchone()[0]
    finally:
        conn.close()


def _quantiles(values: list[float]) -> dict[int, float]:
    v = sorted(values)
    if len(v) == 1:
        return {50: v[0], 95: v[0], 99: v[0]}
    qs = statistics.quantiles(v, n=100, method="inclusive")
    return {50: qs[49], 95: qs[94], 99: qs[98]}


# -- 6. memory -------------------------------------------------------------------------------------

def mode_memory(args, work: Path) -> dict:
    header("memory: peak RSS of a run-due publishing 1,000 vs 10,000 jobs")
    print(cli_state())
    env = env_for(work)
    s = {n: Series(f"run-due publishing {n:,} jobs: peak RSS", unit="MB")
         for n in (1_000, 10_000)}
    base = Series("run-due with nothing due (tick): peak RSS", unit="MB")
    db_idle = idle_db(work)

    def step(n):
        def go():
            db = due_db(work / f"mem{n}.db", n, 50, "noop")
            p = run_proc([*ENTRY, "--db", str(db), "run-due"], env=env)
            assert _posted(db) == n
            s[n].add(p.rss_kb / 1024)
        return go

    interleave(args.trials, step(1_000), step(10_000),
               lambda: base.add(run_proc([*ENTRY, "--db", str(db_idle), "run-due"],
                                         env=env).rss_kb / 1024))
    print(table("peak RSS", series_rows([s[1_000], s[10_000], base]), SERIES_HEADER))
    big, small = s[10_000].median, s[1_000].median
    growth = big / small - 1
    res = [
        ["peak RSS publishing 10,000 jobs (median)", f"{big:.1f} MB", "<= 50 MB",
         verdict(big, 50, higher_is_better=False)],
        ["10,000 vs 1,000 jobs", f"{growth * 100:+.1f}%", "within 10%",
         verdict(abs(growth), 0.10, higher_is_better=False)],
    ]
    print(table("memory: goals", res, ["figure", "value", "goal", ""]))
    print("no-op platform, 50 accounts, default concurrency; the process is "
          "bench/_autopost.py (the autopost entry point plus the bench's platforms).")
    print(f"load average at end: {load()}")
    return {"rss10k": big, "growth": growth}


def mode_import(args, work: Path) -> dict:
    header("import: peak RSS and rows/s of importing 100,000 rows (CSV and JSON Lines)")
    print(cli_state())
    env = env_for(work)
    n = 100_000
    empty = work / "import-empty.db"
    _dbgen.create(empty, [(f"acct{a:03d}", "mastodon", "http://127.0.0.1:9",
                           {"access_token": "x"}) for a in range(50)])
    walls: dict[str, Series] = {}
    rss: dict[str, Series] = {}
    files = {fmt: import_file(work, n, fmt) for fmt in ("csv", "jsonl")}
    for fmt in files:
        walls[fmt] = Series(f"import {n:,} rows ({fmt}), wall")
        rss[fmt] = Series(f"import {n:,} rows ({fmt}), peak RSS", unit="MB")

    def step(fmt):
        def go():
            db = _dbgen.copy(empty, work / "import.db")
            cmd, what = import_cmd(db, files[fmt])
            p = run_proc(cmd, env=env)
            conn = sqlite3.connect(db)
            count = conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
            conn.close()
            assert count == n, count
            walls[fmt].add(p.wall)
            rss[fmt].add(p.rss_kb / 1024)
            labels.append(what)
        return go

    labels: list[str] = []
    interleave(args.trials, step("csv"), step("jsonl"))
    label = labels[-1] if labels else ""
    print(table("import to Mastodon accounts (the whole command)",
                series_rows([walls["csv"], rss["csv"], walls["jsonl"], rss["jsonl"]]),
                SERIES_HEADER))
    print(f"import command: {label}; sizes: "
          + ", ".join(f"{fmt} {p.stat().st_size / 1e6:.1f} MB" for fmt, p in files.items()))
    res = []
    for fmt in files:
        rate = n / walls[fmt].median
        res.append([f"peak RSS, {n:,} rows ({fmt})", f"{rss[fmt].median:.1f} MB", "< 80 MB",
                    verdict(rss[fmt].median, 80, higher_is_better=False)])
        res.append([f"rate, {n:,} rows ({fmt})", f"{rate:,.0f} rows/s", ">= 20,000 rows/s",
                    verdict(rate, 20_000, higher_is_better=True)])
    print(table("import: goals", res, ["figure", "value", "goal", ""]))
    print(f"load average at end: {load()}")
    return {fmt: (rss[fmt].median, n / walls[fmt].median) for fmt in files}


MODES = {"idle": mode_idle, "scale": mode_scale, "throughput": mode_throughput,
         "latency": mode_latency, "linger": mode_linger, "memory": mode_memory,
         "import": mode_import}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=[*MODES, "all"])
    ap.add_argument("--trials", type=int, default=None,
                    help="repeats per series (default: 20 idle/scale, 5 throughput, "
                         "3 latency/memory)")
    ap.add_argument("--minutes", type=int, default=4, help="linger: number of cron intervals")
    ap.add_argument("--interval", type=float, default=60.0, help="linger: seconds between runs")
    ap.add_argument("--lingers", type=float, nargs="+", default=[55.0, 60.0],
                    help="linger: the --linger values run side by side")
    ap.add_argument("--jobs", type=int, default=200, help="linger: jobs at random moments")
    ap.add_argument("--skip-mastodon", action="store_true",
                    help="latency: leave out the Mastodon adapter variant")
    ap.add_argument("--skip-http", action="store_true",
                    help="throughput: leave out the local HTTP platform series")
    ap.add_argument("--concurrency", type=int, default=None,
                    help="throughput: the run's concurrency and huey's consumer threads "
                         "(default: the config default, 8); latency: the run's (default 16)")
    args = ap.parse_args()
    defaults = {"idle": 20, "scale": 10, "throughput": 5, "latency": 3, "linger": 1,
                "memory": 3, "import": 3}
    modes = list(MODES) if args.mode == "all" else [args.mode]
    trials = args.trials
    for mode in modes:
        args.trials = trials or defaults[mode]
        work = session_dir()
        t = time.perf_counter()
        MODES[mode](args, work)
        took = time.perf_counter() - t
        print(f"({mode}: {took:.0f} s; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC)\n")
        _cleanup(work)


def _cleanup(work: Path) -> None:
    import shutil

    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
