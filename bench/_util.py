"""Shared helpers for the benchmarks: timing subprocesses, peak RSS, tables, machine facts."""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PYTHON = sys.executable
TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
CACHE = Path(os.environ.get("AUTOPOST_BENCH_CACHE",
                            Path(tempfile.gettempdir()) / "autopost-bench-cache"))


def console_script() -> list[str]:
    """The installed `autopost` console script, run by this Python (never a pyenv shim)."""
    script = Path(PYTHON).parent / "autopost"
    if script.exists():
        return [PYTHON, str(script)]
    found = shutil.which("autopost")
    if found and "shims" not in found:
        return [found]
    return [PYTHON, "-m", "autopost"]


# -- measuring -------------------------------------------------------------------------

@dataclass
class Proc:
    wall: float           # seconds
    rss_kb: int           # peak resident set size of the child (ru_maxrss)
    code: int
    stdout: str = ""
    stderr: str = ""


def run_proc(cmd: Sequence[str], *, env: dict[str, str] | None = None,
             cwd: Path | None = None, timeout: float = 600.0,
             check: bool = True) -> Proc:
    """Run a command; its wall time and its own peak RSS.

    Peak RSS comes from /usr/bin/time -f %M, which forks from a small process: a
    child forked from this (larger) Python would report our pages in ru_maxrss too.
    Without /usr/bin/time, os.wait4's ru_maxrss is used (an overestimate)."""
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    rss_file = None
    argv = list(cmd)
    if TIME:
        fd, rss_file = tempfile.mkstemp(prefix="rss-")
        os.close(fd)
        argv = [TIME, "-q", "-f", "%M", "-o", rss_file, *argv]
    start = time.perf_counter()
    p = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=cwd)
    wall, p.returncode = wait_exact(p, timeout, start)
    rss = 0
    if rss_file:
        text = Path(rss_file).read_text().split()
        os.unlink(rss_file)
        rss = int(text[-1]) if text and text[-1].isdigit() else 0
    out.seek(0)
    err.seek(0)
    res = Proc(wall, rss, p.returncode, out.read().decode(errors="replace"),
               err.read().decode(errors="replace"))
    out.close()
    err.close()
    if check and res.code != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {res.code}:\n{res.stdout}\n{res.stderr}")
    return res


def wait_exact(p: subprocess.Popen, timeout: float, start: float) -> tuple[float, int]:
    """Block in waitpid until the child exits; the wall time is read at that moment.

    Popen.wait(timeout=...) polls with growing sleeps, so it notices an exit only at its
    polling points (about 63.5, 113.5, 163.5 ms ...) and every figure would be rounded up
    to one of them. A blocking waitpid returns as the child exits; a timer thread kills a
    child that runs past the timeout."""
    timer = threading.Timer(timeout, p.kill)
    timer.daemon = True
    timer.start()
    try:
        _, status = os.waitpid(p.pid, 0)
        wall = time.perf_counter() - start
    finally:
        timer.cancel()
    return wall, os.waitstatus_to_exitcode(status)


def fsync_rate(seconds: float = 1.0) -> float:
    """fsyncs per second of a one-byte write in the temp folder: the ceiling for commits."""
    fd, path = tempfile.mkstemp(prefix="fsync-")
    try:
        n = 0
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            os.write(fd, b"x")
            os.fsync(fd)
            n += 1
        return n / seconds
    finally:
        os.close(fd)
        os.unlink(path)


def bench_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # As installed: pip writes the bytecode, so a start never compiles autopost's modules
    # (with PYTHONDONTWRITEBYTECODE=1 every start would, ~20 ms per command).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("AUTOPOST_CONFIG", None)
    env.pop("AUTOPOST_DB", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


# -- reporting ---------------------------------------------------------------------------

@dataclass
class Series:
    name: str
    values: list[float] = field(default_factory=list)
    unit: str = "s"

    def add(self, v: float) -> None:
        self.values.append(v)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def cells(self) -> list[str]:
        v = self.values
        return [fmt(min(v), self.unit), fmt(statistics.median(v), self.unit),
                fmt(max(v), self.unit)]


def fmt(v: float, unit: str) -> str:
    if unit == "s":
        return f"{v * 1000:.1f} ms" if v < 10 else f"{v:.2f} s"
    if unit == "ms":
        return f"{v:.1f} ms"
    if unit == "MB":
        return f"{v:.1f} MB"
    if unit == "/s":
        return f"{v:,.0f}/s"
    if unit == "x":
        return f"{v:.2f}x"
    return f"{v:.3g} {unit}"


def table(title: str, rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    def fmt_row(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    line = fmt_row(header)
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [fmt_row(r) for r in rows]
    return "\n".join([f"\n### {title}\n", line, sep, *body])


def series_rows(series: Sequence[Series]) -> list[list[str]]:
    return [[s.name, str(len(s.values)), *s.cells()] for s in series]


SERIES_HEADER = ["measure", "n", "min", "median", "max"]


def verdict(value: float, goal: float, *, higher_is_better: bool) -> str:
    ok = value >= goal if higher_is_better else value <= goal
    return "met" if ok else "NOT met"


def load() -> str:
    a, b, c = os.getloadavg()
    return f"{a:.2f} {b:.2f} {c:.2f}"


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import sqlite3

    return (f"nproc {os.cpu_count()}, CPU {cpu or 'unknown'}, Python "
            f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
            f"{platform.system()} {platform.release()}")


def header(mode: str) -> None:
    print(f"## bench: {mode}")
    print(f"machine: {machine()}")
    print(f"load average at start: {load()}; fsync rate here: {fsync_rate():,.0f}/s")


def interleave(trials: int, *steps: Callable[[], None]) -> None:
    """Run the steps round-robin, so drift in machine load hits every series alike."""
    for _ in range(trials):
        for step in steps:
            step()
