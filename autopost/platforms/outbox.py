"""The local outbox: each post becomes a JSON file in a folder. No account needed.

Credentials: {"path": DIR}. A post is written to DIR/<job id>.json atomically (a temp
file, fsync, rename), so a reader never sees half a post and a crash never leaves one.
The file's existence is the proof of posting, which makes reconcile exact.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from autopost.models import ErrorKind, Job
from autopost.platforms.base import (
    AccountInfo,
    Adapter,
    PlatformError,
    Published,
    Reconciled,
    SaveRef,
    Verdict,
)
from autopost.timeparse import format_utc


class OutboxAdapter(Adapter):
    platform = "outbox"
    required_fields = ("path",)
    max_media = 10
    needs_http = False

    @property
    def folder(self) -> Path:
        return Path(str(self.credentials["path"])).expanduser()

    def _file(self, job: Job) -> Path:
        return self.folder / f"{job.id}.json"

    def publish(self, job: Job, save_ref: SaveRef) -> Published:
        target = self._file(job)
        if target.exists():
            return self._published(target)
        doc = {
            "job_id": job.id,
            "account": job.account,
            "text": job.text,
            "media": [m.to_dict() for m in job.media],
            "options": job.options,
            "scheduled_at": format_utc(job.scheduled_at),
            "posted_at": format_utc(self.clock()),
            "idempotency_key": job.idempotency_key,
        }
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{job.id}.", dir=self.folder)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(doc, fh, ensure_ascii=False, indent=2)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
            _fsync_dir(self.folder)
        except OSError as exc:
            kind = ErrorKind.INVALID if exc.errno in (13, 20, 21, 30) else ErrorKind.NETWORK
            raise PlatformError(kind, f"outbox {self.folder}: {exc.strerror}") from None
        return self._published(target)

    def _published(self, target: Path) -> Published:
        return Published(post_id=target.stem, url=target.resolve().as_uri())

    def reconcile(self, job: Job) -> Reconciled:
        target = self._file(job)
        if target.exists():
            return Reconciled(Verdict.POSTED, self._published(target), "file is in the outbox")
        return Reconciled(Verdict.NOT_POSTED, None, "no file in the outbox")

    def check(self) -> AccountInfo:
        folder = self.folder
        if folder.exists() and not os.access(folder, os.W_OK):
            raise PlatformError(ErrorKind.AUTH_REVOKED, f"outbox {folder} is not writable")
        return AccountInfo(display=str(folder), url=folder.resolve().as_uri())


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


ADAPTER = OutboxAdapter
