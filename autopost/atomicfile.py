"""Replacing a small file atomically: the text goes to a temporary file in the same
folder (0600, as mkstemp makes it), is flushed and fsynced, then renamed over the
target, so a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def replace_text(path: Path, text: str, *,
                 prepare: Callable[[int], None] | None = None) -> None:
    """Write `text` (UTF-8) to `path` atomically. `prepare(fd)` runs on the new file
    before anything is written (to give it other permissions, say). OSError is raised
    as is; the temporary file never stays behind."""
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            if prepare is not None:
                prepare(fh.fileno())
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
