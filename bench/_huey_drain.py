"""The peer: huey (SqliteHuey, immediate=False) draining N no-op tasks.

    python bench/_huey_drain.py DIR N loop|consumer [WORKERS]

Enqueueing is not timed. Storage: SqliteHuey's own WAL database with fsync=True
(synchronous=FULL), the same durability setting autopost runs with.
  loop      the fastest way huey can drain: dequeue() + execute() in one thread, no
            polling delay (huey's consumer does the same per worker).
  consumer  huey's own consumer with WORKERS threads (default 8), stopped once the queue
            is empty and every task has run.
Prints one JSON line: {"tasks", "wall", "cpu", "executed"}.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from huey import SqliteHuey


def main() -> None:
    folder, n, how = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    workers = int(sys.argv[4]) if len(sys.argv) > 4 else 8
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "huey.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    huey = SqliteHuey("bench", filename=str(db), fsync=True, immediate=False)
    done = [0]
    lock = threading.Lock()

    @huey.task()
    def noop(i: int) -> None:
        with lock:
            done[0] += 1

    for i in range(n):
        noop(i)
    assert huey.pending_count() == n

    c0 = time.process_time()
    t0 = time.perf_counter()
    if how == "loop":
        while (task := huey.dequeue()) is not None:
            huey.execute(task)
    else:
        consumer = huey.create_consumer(workers=workers, worker_type="thread", periodic=False,
                                        initial_delay=0.001, max_delay=0.01,
                                        check_worker_health=False)
        consumer.start()
        while True:
            with lock:
                if done[0] >= n:
                    break
            time.sleep(0.001)
        wall = time.perf_counter() - t0
        consumer.stop(graceful=True)
    wall = time.perf_counter() - t0 if how == "loop" else wall
    print(json.dumps({"tasks": n, "wall": wall, "cpu": time.process_time() - c0,
                      "executed": done[0], "how": how}))


if __name__ == "__main__":
    main()
