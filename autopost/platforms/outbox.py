"""The local outbox: each post becomes a JSON file in a folder. No account needed.

Credentials: {"path": DIR}. A post is written to DIR/<job id>.json atomically (a temp
file, fsync, rename), so a reader never sees half a post and a crash never leaves one.
The file's existence is the proof of posting, which makes reconcile exact.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
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
    supports_replies = True  # a part's file names the post it replies to

    @property
    def folder(self) -> Path:
        return Path(str(self.credentials["path"])).expanduser()

    def _file(self, job: Job) -> Path:
        return self.folder / f"{job.id}.json"

    def publish(self, job: Job, save_ref: SaveRef) -> Published:
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
        if job.reply is not None:
            doc["in_reply_to"] = job.reply.parent.post_id
            doc["thread_root"] = job.reply.root.post_id
        name = f"{job.id}.json"
        try:
            dfd = self._open_folder()
            try:
                if self._entry(dfd, name) is not None:
                    return self._published(self._file(job))
                tmp = f".{job.id}.{os.urandom(4).hex()}.tmp"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                             0o600, dir_fd=dfd)
                try:
                    with os.fdopen(fd, "w", encoding="utf-8") as fh:
                        json.dump(doc, fh, ensure_ascii=False, indent=2)
                        fh.flush()
                        os.fsync(fh.fileno())
                    os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp, dir_fd=dfd)
                    raise
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            if exc.errno == errno.ELOOP or (exc.errno == errno.ENOTDIR
                                            and os.path.islink(self.folder)):
                raise PlatformError(ErrorKind.INVALID, f"outbox {self.folder} is a symbolic "
                                    "link; autopost does not follow it") from None
            kind = ErrorKind.INVALID if exc.errno in (13, 20, 21, 30) else ErrorKind.NETWORK
            raise PlatformError(kind, f"outbox {self.folder}: {exc.strerror}") from None
        return self._published(self._file(job))

    def _open_folder(self) -> int:
        """The outbox folder, opened without following a symbolic link, created 0700 if
        missing and made 0700 if it is ours and wider."""
        folder = self.folder
        missing = []
        probe = folder
        while not os.path.lexists(probe):
            missing.append(probe)
            probe = probe.parent
        for part in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o700)
                os.chmod(part, 0o700)
        dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        st = os.fstat(dfd)
        if st.st_mode & 0o077 and st.st_uid == os.geteuid():
            os.fchmod(dfd, stat.S_IMODE(st.st_mode) & 0o700)
        return dfd

    def _entry(self, dfd: int, name: str) -> os.stat_result | None:
        """The post's file if it is there; a symbolic link planted in its place is refused."""
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(st.st_mode):
            raise PlatformError(ErrorKind.INVALID, f"outbox {self.folder}: {name} is not a "
                                "regular file (a symbolic link?); autopost does not follow it")
        return st

    def _published(self, target: Path) -> Published:
        return Published(post_id=target.stem, url=target.absolute().as_uri())

    def reconcile(self, job: Job) -> Reconciled:
        target = self._file(job)
        try:
            st = os.lstat(target)
        except OSError:
            st = None
        if st is not None and stat.S_ISREG(st.st_mode):
            return Reconciled(Verdict.POSTED, self._published(target), "file is in the outbox")
        return Reconciled(Verdict.NOT_POSTED, None, "no file in the outbox")

    def check(self) -> AccountInfo:
        folder = self.folder
        if folder.is_symlink():
            raise PlatformError(ErrorKind.AUTH_REVOKED, f"outbox {folder} is a symbolic link")
        if folder.exists() and not os.access(folder, os.W_OK):
            raise PlatformError(ErrorKind.AUTH_REVOKED, f"outbox {folder} is not writable")
        return AccountInfo(display=str(folder), url=folder.absolute().as_uri())


ADAPTER = OutboxAdapter
