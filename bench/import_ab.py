"""`autopost import` of N CSV rows to Mastodon accounts, two or more versions side by side.

    python bench/import_ab.py [--rows 100000] [--trials 3] REV_OR_DIR...

Each REV is a git revision of this repository (its autopost/ is extracted to a temp
folder) or a folder holding an autopost/ package. The runs are interleaved (A, B, A,
B...), each into a fresh copy of a database with 50 Mastodon accounts made by that
version, as `python -m autopost --db DB import FILE` with PYTHONPATH set to the version.
Printed per version: the medians of wall time, CPU time (user + system) and peak RSS
(/usr/bin/time), and the least CPU time. On a shared machine CPU time is the steadier
figure, and its least the one least inflated by other processes.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _util import ROOT, load
from run import env_for, import_file

ACCOUNTS = """
import sys
from datetime import UTC, datetime
from autopost.models import Account
from autopost.store.sqlite import SqliteStore
store = SqliteStore(sys.argv[1])
now = datetime.now(UTC)
for a in range(50):
    store.add_account(Account(name=f"acct{a:03d}", platform="mastodon",
                              base_url="http://127.0.0.1:9",
                              credentials={"access_token": "x"}), now=now)
store.close()
"""


def version(spec: str, work: Path) -> Path:
    if (Path(spec) / "autopost").is_dir():
        return Path(spec).resolve()
    out = work / f"rev-{len(list(work.glob('rev-*')))}"
    out.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", spec, "autopost"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("versions", nargs="+")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--trials", type=int, default=3)
    args = ap.parse_args()
    if not shutil.which("/usr/bin/time"):
        sys.exit("needs /usr/bin/time (GNU time) for CPU time and peak RSS")
    work = Path(tempfile.mkdtemp(prefix="autopost-import-ab-"))
    try:
        env = env_for(work)
        csv = import_file(work, args.rows)
        trees = {spec: version(spec, work) for spec in args.versions}
        empty = {}
        for i, (spec, tree) in enumerate(trees.items()):
            empty[spec] = work / f"empty-{i}.db"
            subprocess.run([sys.executable, "-c", ACCOUNTS, str(empty[spec])],
                           env={**env, "PYTHONPATH": str(tree)}, cwd=work, check=True)
        runs: dict[str, list[tuple[float, float, float]]] = {spec: [] for spec in trees}
        print(load())
        for _ in range(args.trials):
            for spec, tree in trees.items():
                db = work / "import.db"
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{db}{suffix}").unlink(missing_ok=True)
                shutil.copy(empty[spec], db)
                stats = work / "time.txt"
                # cwd: not the repository, which `python -m` would put first on the path
                p = subprocess.run(
                    ["/usr/bin/time", "-q", "-f", "%e %U %S %M", "-o", str(stats),
                     sys.executable, "-m", "autopost", "--db", str(db), "import", str(csv)],
                    env={**env, "PYTHONPATH": str(tree)}, cwd=work, capture_output=True,
                    text=True)
                if p.returncode:
                    sys.exit(f"{spec}: import exited {p.returncode}: {p.stderr.strip()}")
                wall, user, system, rss = stats.read_text().split()[-4:]
                runs[spec].append((float(wall), float(user) + float(system),
                                   int(rss) / 1024))
        print(load())
        print(f"import of {args.rows:,} CSV rows to Mastodon accounts, {args.trials} "
              "interleaved runs each (medians):")
        for spec, got in runs.items():
            wall = statistics.median(w for w, _, _ in got)
            cpu = statistics.median(c for _, c, _ in got)
            least = min(c for _, c, _ in got)
            rss = statistics.median(r for _, _, r in got)
            print(f"  {spec}: wall {wall:.2f} s ({args.rows / wall:,.0f} rows/s), CPU "
                  f"{cpu:.2f} s ({args.rows / cpu:,.0f} rows/CPU-s; least {least:.2f} s), "
                  f"peak RSS {rss:.1f} MB  [walls {', '.join(f'{w:.2f}' for w, _, _ in got)}]")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
