"""Media files checked by what they contain, at `add` and `import`, before anything is stored.

A file is accepted only when its first bytes are an image (PNG, JPEG, GIF, WebP, AVIF,
HEIC) or a video (MP4/MOV/3GP and the other ISO base media files, WebM/Matroska), and
it is neither empty nor larger than autopost uploads. A name ending in .png proves
nothing: a password file given as --media is refused here, so it is never copied into
the database nor sent to a platform. Each platform adds its own limits in its adapter.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from autopost.errors import UsageError

MAX_IMAGE_BYTES = 50 * 1000 * 1000
MAX_VIDEO_BYTES = 2 * 1000 * 1000 * 1000
HEAD = 32

# ISO base media brands that are still images (HEIF family); any other brand is a video.
_IMAGE_BRANDS = {b"avif", b"avis", b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx",
                 b"mif1", b"msf1"}
# QuickTime files that start with another atom than ftyp.
_QUICKTIME_ATOMS = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}


@dataclass(frozen=True)
class MediaFile:
    path: str        # absolute
    kind: str        # "image" or "video"
    mime: str
    size: int


def sniff(head: bytes) -> tuple[str, str] | None:
    """(kind, mime) from a file's first bytes, or None when it is neither image nor video."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "image/jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image", "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image", "image/webp"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _IMAGE_BRANDS:
            return "image", "image/avif" if brand in (b"avif", b"avis") else "image/heic"
        if brand.startswith(b"qt"):
            return "video", "video/quicktime"
        if brand.startswith(b"3g"):
            return "video", "video/3gpp"
        return "video", "video/mp4"
    if head[4:8] in _QUICKTIME_ATOMS:
        return "video", "video/quicktime"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video", "video/webm"
    return None


def inspect(path: str, base: Path | None = None) -> MediaFile:
    """Check one media file; UsageError (naming the file, never its content) when unfit."""
    if not path.strip():
        raise UsageError("--media: empty file name")
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = (base or Path.cwd()) / p
    try:
        st = os.stat(p)
        if not stat.S_ISREG(st.st_mode):
            raise UsageError(f"media {path}: not a regular file")
        with open(p, "rb") as fh:
            head = fh.read(HEAD)
    except FileNotFoundError:
        raise UsageError(f"media file not found: {path}") from None
    except PermissionError:
        raise UsageError(f"media {path}: permission denied") from None
    except OSError as exc:
        raise UsageError(f"media {path}: cannot read ({exc.strerror or exc})") from None
    if not head:
        raise UsageError(f"media {path}: the file is empty")
    found = sniff(head)
    if found is None:
        raise UsageError(f"media {path}: not a video or an image (PNG, JPEG, GIF, WebP, "
                         "AVIF, HEIC, MP4, MOV or WebM, judged by its content)")
    kind, mime = found
    most = MAX_IMAGE_BYTES if kind == "image" else MAX_VIDEO_BYTES
    if st.st_size > most:
        raise UsageError(f"media {path}: {st.st_size:,} bytes; autopost takes {kind}s of at "
                         f"most {most:,} bytes")
    return MediaFile(str(p.absolute()), kind, mime, st.st_size)


def check_media(path: str, base: Path | None = None) -> str:
    """The absolute path of an acceptable media file (see `inspect`)."""
    return inspect(path, base).path
