"""The type and pixel size of an image, read from its header (PNG, JPEG, GIF, WebP).

No imaging library: only the few bytes that say what the file is and how large it is
displayed. A JPEG whose EXIF orientation turns it a quarter turn reports the displayed
size (width and height swapped), which is what an aspect ratio must describe.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ImageInfo:
    mime: str
    width: int | None
    height: int | None


# Enough for any PNG/GIF/WebP header and for JPEG segments before the frame header in
# ordinary files; a JPEG whose frame header sits further in is read in full.
HEAD = 64 * 1024


def read_image_info(path: str | Path) -> ImageInfo | None:
    """None when the file is not one of the supported image types."""
    with open(path, "rb") as fh:
        head = fh.read(HEAD)
        info = image_info(head)
        if info is not None and info.mime == "image/jpeg" and info.width is None:
            info = image_info(head + fh.read())
    return info


def image_info(data: bytes) -> ImageInfo | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png(data)
    if data[:6] in (b"GIF87a", b"GIF89a"):
        w, h = struct.unpack("<HH", data[6:10]) if len(data) >= 10 else (None, None)
        return ImageInfo("image/gif", w, h)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp(data)
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg(data)
    return None


def _png(data: bytes) -> ImageInfo:
    if len(data) >= 24 and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        return ImageInfo("image/png", w, h)
    return ImageInfo("image/png", None, None)


def _webp(data: bytes) -> ImageInfo:
    chunk = data[12:16]
    w = h = None
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        w, h = (v & 0x3FFF for v in struct.unpack("<HH", data[26:30]))
    elif chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        w, h = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif chunk == b"VP8X" and len(data) >= 30:
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
    return ImageInfo("image/webp", w, h)


# Start-of-frame markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset([0x01, *range(0xD0, 0xD9)])


def _jpeg(data: bytes) -> ImageInfo:
    i, n = 2, len(data)
    rotated = False
    while i + 4 <= n:
        if data[i] != 0xFF:
            break
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header found
            break
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        segment = data[i + 4:i + 2 + length]
        if marker == 0xE1 and segment.startswith(b"Exif\0\0"):
            rotated = _exif_orientation(segment[6:]) in (5, 6, 7, 8)
        if marker in _SOF and len(segment) >= 5:
            h, w = struct.unpack(">HH", segment[1:5])
            return ImageInfo("image/jpeg", h if rotated else w, w if rotated else h)
        i += 2 + length
    return ImageInfo("image/jpeg", None, None)


def _exif_orientation(tiff: bytes) -> int | None:
    """The Orientation tag (0x0112) of IFD0 in a TIFF-structured EXIF block."""
    if tiff[:4] not in (b"II*\0", b"MM\0*") or len(tiff) < 8:
        return None
    end = "<" if tiff[:2] == b"II" else ">"
    (ifd,) = struct.unpack(end + "I", tiff[4:8])
    if ifd + 2 > len(tiff):
        return None
    (count,) = struct.unpack(end + "H", tiff[ifd:ifd + 2])
    for k in range(count):
        entry = tiff[ifd + 2 + 12 * k: ifd + 14 + 12 * k]
        if len(entry) < 12:
            return None
        tag, kind = struct.unpack(end + "HH", entry[:4])
        if tag == 0x0112 and kind == 3:  # SHORT
            return struct.unpack(end + "H", entry[8:10])[0]
    return None
