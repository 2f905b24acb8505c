"""Publishing local media where a platform can fetch it by URL (Instagram, Threads).

Those platforms cannot take a file: they download `image_url` / `video_url` themselves,
from the public internet. A job's media is either

- an `https://` URL, passed through as it is, or
- a local file, published through the media host the operator configured:

      [media]
      public_dir = "/var/www/autopost-media"        # a folder the web server serves
      public_base_url = "https://example.org/m/"    # ... at this URL

The file is copied into public_dir under a content-addressed name (sha256 of its bytes
plus its extension), written to a temporary name and renamed, so a half-written file
is never served and the same picture shared by several jobs is stored once. Its URL is
fetched before a container is made: a media host that does not answer fails the
attempt here, with a message that says so, rather than at Meta with an obscure code.

Each job that uses a copy holds a claim on it (an empty file under
`public_dir/.autopost-claims/NAME/JOB`); when the job is done with it (posted, or
failed for good) the claim goes, and the copy goes with the last claim. A job can also
finish without its adapter knowing (cancelled, failed once its retries are spent, settled
by a reconcile or the operator, pruned): release_finished, run by `cancel` and after each
`run-due`, drops the claims of every job that is posted, failed, cancelled or gone, and
the copies nobody claims any more. Copies are world-readable (the web server must read
them; they are published on purpose).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from autopost.errors import NotFound, UsageError
from autopost.models import ErrorKind, JobStatus, Media
from autopost.platforms.base import PlatformError

if TYPE_CHECKING:
    import httpx

    from autopost.config import MediaHostSettings
    from autopost.store.base import Store

CLAIMS = ".autopost-claims"
_SAFE_SUFFIX = re.compile(r"^\.[a-z0-9]{1,8}$")
CHUNK = 1 << 20
# A job in one of these needs no copy any more (a retry makes its copies again).
FINISHED = frozenset({JobStatus.POSTED, JobStatus.FAILED, JobStatus.CANCELLED})


def is_url(path: str) -> bool:
    return path.startswith("https://")


def require_host(media: tuple[Media, ...], settings: MediaHostSettings, platform: str) -> None:
    """At add time: local files for a platform that fetches by URL need a media host."""
    local = [m.path for m in media if not is_url(m.path)]
    if local and not settings.configured:
        raise UsageError(
            f"{platform} fetches media by URL and cannot take the local file {local[0]}: "
            "configure a media host ([media] public_dir and public_base_url in "
            "config.toml) or give an https:// URL")


def content_name(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    suffix = path.suffix.lower()
    if not _SAFE_SUFFIX.match(suffix):
        suffix = ""
    return digest.hexdigest()[:40] + suffix


class MediaHost:
    def __init__(self, settings: MediaHostSettings, client: httpx.Client | None = None):
        if not settings.configured:
            raise PlatformError(ErrorKind.INVALID,
                                "no media host configured ([media] public_dir and "
                                "public_base_url)")
        self.folder = Path(settings.public_dir)  # type: ignore[arg-type]
        self.base_url = str(settings.public_base_url)
        self.client = client

    # -- publishing ---------------------------------------------------------------------
    def publish(self, path: str, job_id: str) -> str:
        """The public URL of `path` for this job (copying it there first if needed)."""
        if is_url(path):
            return path
        source = Path(path)
        try:
            name = content_name(source)
            target = self.folder / name
            self._claim(name, job_id)
            if not target.exists():
                self._copy(source, target)
        except OSError as exc:
            raise PlatformError(ErrorKind.INVALID,
                                f"media host: cannot publish {source.name} into "
                                f"{self.folder}: {exc.strerror or exc}") from None
        return self.base_url + name

    def _copy(self, source: Path, target: Path) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".incoming-", dir=self.folder)
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                while chunk := src.read(CHUNK):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _claim(self, name: str, job_id: str) -> None:
        folder = self.folder / CLAIMS / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / job_id).touch()

    # -- checking ---------------------------------------------------------------------
    def check(self, url: str) -> None:
        """The URL answers 200 with content: what Meta will need when it fetches it."""
        if self.client is None or not url.startswith(self.base_url):
            return
        from autopost.platforms import http

        try:
            with self.client.stream("GET", url, headers={"Range": "bytes=0-1023"}) as answer:
                ok = answer.status_code in (200, 206)
                first = next(answer.iter_bytes(), b"") if ok else b""
        except Exception as exc:  # any transport failure: the host is not answering
            reason = http.redacted(str(exc) or type(exc).__name__)
            raise PlatformError(
                ErrorKind.SERVER,
                f"media host: {url} does not answer ({reason}); the web server must serve "
                f"{self.folder} at {self.base_url}") from None
        if not ok:
            raise PlatformError(
                ErrorKind.SERVER,
                f"media host: {url} answered HTTP {answer.status_code}; the web server must "
                f"serve {self.folder} at {self.base_url}")
        if not first:
            raise PlatformError(ErrorKind.SERVER, f"media host: {url} answered with no bytes")

    # -- cleanup ----------------------------------------------------------------------
    def release(self, job_id: str, urls: list[str]) -> None:
        """This job no longer needs these copies; remove those nobody else claims."""
        for url in urls:
            if not url.startswith(self.base_url):
                continue
            name = url[len(self.base_url):]
            if "/" in name or name.startswith("."):
                continue
            claims = self.folder / CLAIMS / name
            try:
                (claims / job_id).unlink(missing_ok=True)
                if claims.is_dir() and not any(claims.iterdir()):
                    claims.rmdir()
                    (self.folder / name).unlink(missing_ok=True)
            except OSError:
                pass  # cleanup is best effort: a copy left behind harms nothing


def release_finished(settings: MediaHostSettings, store: Store) -> int:
    """Drop the claims of jobs that are finished (posted, failed, cancelled) or no longer
    in the database, then the copies no claim holds. Returns how many copies went. Best
    effort, like release: a copy left behind harms nothing."""
    if not settings.configured:
        return 0
    folder = Path(settings.public_dir)  # type: ignore[arg-type]
    try:
        claimed = sorted((folder / CLAIMS).iterdir())
    except OSError:
        return 0  # nothing was ever copied
    removed = 0
    for claims in claimed:
        if claims.name.startswith(".") or "/" in claims.name:
            continue
        try:
            for claim in sorted(claims.iterdir()):
                try:
                    finished = store.get_job(claim.name).status in FINISHED
                except NotFound:
                    finished = True
                if finished:
                    claim.unlink(missing_ok=True)
            if not any(claims.iterdir()):
                claims.rmdir()
                (folder / claims.name).unlink(missing_ok=True)
                removed += 1
        except OSError:
            continue
    return removed
