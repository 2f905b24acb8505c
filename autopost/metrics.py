"""`autopost status --prometheus FILE`: the node_exporter textfile-collector format.

The file is written to a temporary name in the same folder, flushed and renamed over
FILE, so the collector never reads half a file. A new file is private (0600). The
collector usually runs as another user: give it read access once (`chgrp node_exporter
FILE; chmod 0640 FILE`) and every rewrite keeps that group and those read bits (never
write or execute bits). Metric names (all gauges):

  autopost_up                                 1 (the file was written by a status run)
  autopost_healthy                            1 when status found nothing to attend to
  autopost_problems                           how many problems status found
  autopost_status_timestamp_seconds           when this file was written
  autopost_jobs{account,status}               stored jobs
  autopost_last_run_timestamp_seconds         when the last run-due finished (or started)
  autopost_last_run_duration_seconds          how long it took (absent while it runs)
  autopost_last_run_jobs{result}              what it did (posted, retried, failed, ...)
  autopost_attempts{outcome,error_kind}       stored attempts ("" = no error)
  autopost_quota_used{account,window}         posts in the rolling hour / day
  autopost_quota_limit{account,window}        the limit (absent when there is none)
  autopost_account_needs_reauth{account}      1 when the account needs new credentials
  autopost_account_blocked{account}           1 while the platform rate-limits it
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from autopost.atomicfile import replace_text
from autopost.errors import EnvironmentTrouble, UsageError

HELP = {
    "autopost_up": "1: written by autopost status.",
    "autopost_healthy": "1 when nothing needs a human.",
    "autopost_problems": "Problems autopost status found.",
    "autopost_status_timestamp_seconds": "When this file was written.",
    "autopost_jobs": "Stored jobs by account and status.",
    "autopost_last_run_timestamp_seconds": "When the last run-due finished (or started).",
    "autopost_last_run_duration_seconds": "How long the last finished run-due took.",
    "autopost_last_run_jobs": "What the last run-due did, by result.",
    "autopost_attempts": "Stored attempts by outcome and error kind.",
    "autopost_quota_used": "Posts in the rolling window, in flight included.",
    "autopost_quota_limit": "Posts allowed in the rolling window.",
    "autopost_account_needs_reauth": "1 when the account needs new credentials.",
    "autopost_account_blocked": "1 while the platform rate-limits the account.",
}


def _label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _sample(name: str, labels: dict[str, str], value: float) -> str:
    inner = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
    number = repr(float(value)) if isinstance(value, float) else str(int(value))
    return f"{name}{{{inner}}} {number}" if inner else f"{name} {number}"


def render(samples: Iterable[tuple[str, dict[str, str], float]]) -> str:
    by_name: dict[str, list[str]] = {}
    for name, labels, value in samples:
        by_name.setdefault(name, []).append(_sample(name, labels, value))
    out = []
    for name in HELP:
        if name in by_name:
            out += [f"# HELP {name} {HELP[name]}", f"# TYPE {name} gauge", *by_name[name]]
    return "\n".join(out) + "\n"


def collect(report: dict[str, Any], store, quotas: list[dict[str, Any]], now: datetime
            ) -> list[tuple[str, dict[str, str], float]]:
    """The samples, from status's report, the store's counts and the quota rows."""
    s: list[tuple[str, dict[str, str], float]] = [
        ("autopost_up", {}, 1),
        ("autopost_healthy", {}, 0 if report["problems"] else 1),
        ("autopost_problems", {}, len(report["problems"])),
        ("autopost_status_timestamp_seconds", {}, round(now.timestamp(), 3)),
    ]
    for (account, status), n in sorted(store.count_by_account_status().items()):
        s.append(("autopost_jobs", {"account": account, "status": status}, n))
    last = store.last_run()
    if last is not None:
        seen = last.finished_at or last.started_at
        s.append(("autopost_last_run_timestamp_seconds", {}, round(seen.timestamp(), 3)))
        if last.finished_at is not None:
            s.append(("autopost_last_run_duration_seconds", {},
                      round((last.finished_at - last.started_at).total_seconds(), 3)))
        for result, n in sorted((last.counts or {}).items()):
            s.append(("autopost_last_run_jobs", {"result": result}, n))
    for (outcome, kind), n in sorted(store.count_attempts().items()):
        s.append(("autopost_attempts", {"outcome": outcome, "error_kind": kind}, n))
    needs = set(report["needs_reauth"])
    blocked = set(report["blocked"])
    for row in quotas:
        account = row["account"]
        for window in ("hour", "day"):
            labels = {"account": account, "window": window}
            s.append(("autopost_quota_used", labels, row[window]["used"]))
            if row[window]["limit"] is not None:
                s.append(("autopost_quota_limit", dict(labels), row[window]["limit"]))
        s.append(("autopost_account_needs_reauth", {"account": account},
                  1 if account in needs else 0))
        s.append(("autopost_account_blocked", {"account": account},
                  1 if account in blocked else 0))
    return s


def write(path: Path, text: str) -> None:
    """Atomically replace `path` with `text`: 0600 when new, else the read access the
    operator gave the file before (its group and read bits)."""
    path = Path(path).expanduser()
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"--prometheus: no such folder: {folder}")
    try:
        replace_text(path, text, prepare=lambda fd: _keep_access(fd, path))
    except OSError as exc:
        raise EnvironmentTrouble(f"--prometheus {path}: {exc.strerror or exc}") from None


def _keep_access(fd: int, path: Path) -> None:
    """Give the new file (fd, 0600) the group and read bits of the one it replaces."""
    import stat

    try:
        old = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(old.st_mode):
        return
    read = stat.S_IMODE(old.st_mode) & 0o044
    if read & 0o040 and old.st_gid != os.fstat(fd).st_gid:
        try:
            os.fchown(fd, -1, old.st_gid)
        except OSError:  # not a member of that group: no group read for another group
            read &= ~0o040
    os.fchmod(fd, 0o600 | read)
