"""`autopost export`: jobs as rows in the import format (CSV or JSON Lines), so that
`export` then `import` on a fresh database (with the same accounts) gives back the same
schedule: account, at (UTC), text, key, media, alt and options."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from autopost.models import Job
from autopost.timeparse import format_utc

FORMATS = ("csv", "jsonl")
CSV_COLUMNS = ("account", "at", "text", "key", "media", "alt", "options")


def row(job: Job) -> dict[str, Any]:
    """One job as an import row (JSON Lines form: media and alt as lists)."""
    out: dict[str, Any] = {"account": job.account, "at": format_utc(job.scheduled_at),
                           "text": job.text}
    if job.key is not None:
        out["key"] = job.key
    if job.media:
        out["media"] = [m.path for m in job.media]
        if any(m.alt for m in job.media):
            out["alt"] = [m.alt or "" for m in job.media]
    if job.options:
        out["options"] = dict(job.options)
    return out


def lines(jobs: Iterable[Job], fmt: str) -> Iterator[str]:
    """The export file, a line (or a CSV record) at a time."""
    if fmt == "jsonl":
        for job in jobs:
            yield json.dumps(row(job), ensure_ascii=False) + "\n"
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for job in jobs:
        r = row(job)
        for name in ("media", "alt"):
            if name in r:
                if any("|" in part for part in r[name]):
                    raise ValueError(f"job {job.id}: a {name} value contains '|', which "
                                     "the CSV format cannot carry (use --format jsonl)")
                r[name] = "|".join(r[name])
        if "options" in r:
            r["options"] = json.dumps(r["options"], ensure_ascii=False)
        writer.writerow(r)
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
    if buf.getvalue():
        yield buf.getvalue()
