"""Start-up time of the interactive commands, beside `python -c pass`.

    python bench/startup.py [--runs N] [--hyperfine] [--root CHECKOUT]

Each command runs N times (interleaved, so load drifts hit every command alike) against
a small database made first. A process is timed from spawn to the exit reaped by
os.wait4: no polling interval rounds the figure. With --hyperfine (and hyperfine on
PATH) hyperfine measures the same command lines instead. --root times another checkout
of autopost (an older commit unpacked with `git archive`) for a before/after figure.

Goal: every interactive command within 4x `python -c pass`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL = 4.0


def commands(db: str, job: str) -> dict[str, list[str]]:
    py = sys.executable
    ap = [py, "-m", "autopost", "--db", db]
    return {
        "python -c pass": [py, "-c", "pass"],
        "autopost --help": [py, "-m", "autopost", "--help"],
        # the same text every time: --allow-duplicate passes the duplicate guard
        "autopost add": [*ap, "add", "hello", "-a", "bench", "--at", "+1d",
                         "--allow-duplicate"],
        "autopost list": [*ap, "list"],
        "autopost show": [*ap, "show", job],
        "autopost status": [*ap, "status"],
    }


def spawn_time(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds from spawn to reaped exit, and the child's CPU seconds (user + sys:
    much steadier than wall time on a loaded machine)."""
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        actions = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
                   (os.POSIX_SPAWN_DUP2, devnull, 2)]
        t0 = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
        _, status, usage = os.wait4(pid, 0)
        elapsed = time.perf_counter() - t0
    finally:
        os.close(devnull)
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):  # status exits 1 when a fresh install needs attention
        raise SystemExit(f"{' '.join(argv)} exited {code}")
    return elapsed, usage.ru_utime + usage.ru_stime


def setup(folder: Path, env: dict[str, str]) -> tuple[str, str]:
    db = str(folder / "autopost.db")
    base = [sys.executable, "-m", "autopost", "--db", db]
    creds = json.dumps({"path": str(folder / "outbox")})
    subprocess.run([*base, "accounts", "add", "bench", "--platform", "outbox",
                    "--credentials", "-"], input=creds, text=True, env=env, check=True,
                   capture_output=True)
    added = subprocess.run([*base, "add", "first", "-a", "bench", "--at", "+1d", "--json"],
                           text=True, env=env, check=True, capture_output=True)
    return db, json.loads(added.stdout)[0]["id"]


def with_hyperfine(cmds: dict[str, list[str]], runs: int, env: dict[str, str]) -> dict:
    import shlex

    out = Path(tempfile.mkstemp(suffix=".json")[1])
    argv = ["hyperfine", "-N", "--warmup", "3", "--runs", str(runs), "--export-json", str(out)]
    for name, cmd in cmds.items():
        argv += ["-n", name, shlex.join(cmd)]
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    results = json.loads(out.read_text())["results"]
    out.unlink()
    return {r["command"]: (r["median"], r["min"], r["user"] + r["system"])
            for r in results}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--hyperfine", action="store_true")
    ap.add_argument("--root", type=Path, default=ROOT, help="the autopost checkout to time")
    args = ap.parse_args()
    # PYTHONDONTWRITEBYTECODE is dropped: the warm-up writes the bytecode, as pip does
    # at install, so no timed start compiles autopost's modules.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AUTOPOST_") and k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(args.root.resolve()),
                                                      env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text("")
        env["AUTOPOST_CONFIG"] = str(config)
        db, job = setup(Path(tmp), env)
        cmds = commands(db, job)
        if args.hyperfine:
            if not shutil.which("hyperfine"):
                raise SystemExit("hyperfine is not on PATH")
            figures = with_hyperfine(cmds, args.runs, env)
            method = "hyperfine -N"
        else:
            for argv in cmds.values():  # warm the page cache and the bytecode
                spawn_time(argv, env)
            walls: dict[str, list[float]] = {name: [] for name in cmds}
            cpus: dict[str, list[float]] = {name: [] for name in cmds}
            for _ in range(args.runs):
                for name, argv in cmds.items():
                    wall, cpu = spawn_time(argv, env)
                    walls[name].append(wall)
                    cpus[name].append(cpu)
            figures = {n: (statistics.median(walls[n]), min(walls[n]),
                           statistics.median(cpus[n])) for n in cmds}
            method = "posix_spawn + wait4"
    base, _, base_cpu = figures["python -c pass"]
    load = os.getloadavg()
    print(f"{args.root.resolve()}: start-up, {args.runs} runs each ({method}); load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs")
    print(f"{'command':<18} {'wall ms':>8} {'min ms':>7} {'x pass':>7} {'cpu ms':>7} "
          f"{'x pass':>7}  goal <= {GOAL:g}x")
    for name, (median, low, cpu) in figures.items():
        ratio, cpu_ratio = median / base, cpu / base_cpu
        mark = "" if name == "python -c pass" else ("ok" if ratio <= GOAL else "over")
        print(f"{name:<18} {median * 1000:>8.1f} {low * 1000:>7.1f} {ratio:>7.2f} "
              f"{cpu * 1000:>7.1f} {cpu_ratio:>7.2f}  {mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
