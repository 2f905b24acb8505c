"""run-due's live line on a terminal: what the run has done so far and what is left.

Only a person at a terminal sees it (the CLI decides: stderr is a terminal, no -q, no
--json); under cron nothing is drawn, so a run that went well stays silent. The line is
redrawn in place (carriage return, padded over the previous text) at most every
`every` seconds, and always when nothing is left in hand; `close` wipes it, so the
summary line and any problem lines that follow start on a clean line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TextIO

# The counters a person cares about while a run goes on, in the order shown.
SHOWN = ("posted", "retried", "deferred", "failed", "unknown", "missed", "reconciled")


def line(summary: Any, in_hand: int, watching_until: datetime | None = None) -> str:
    """`3 posted, 1 failed, 2 left`, and `watching until 09:01:00` while lingering."""
    counts = summary.counts()
    parts = [f"{counts[name]} {name}" for name in SHOWN if counts.get(name)]
    parts.append(f"{in_hand} left")
    text = f"run {summary.run_id}: " + ", ".join(parts)
    if watching_until is not None:
        text += f"; watching for due posts until {watching_until.strftime('%H:%M:%S')}"
    return text


class LiveLine:
    """The engine's `progress` callback, drawing `line(...)` on `stream`."""

    def __init__(self, stream: TextIO, *, watching_until: datetime | None = None,
                 every: float = 0.1, clock: Callable[[], float] = time.monotonic,
                 columns: int | None = None):
        self.stream = stream
        # One row of the terminal: a line that wrapped could not be redrawn in place.
        self.columns = columns or _columns(stream)
        self.watching_until = watching_until
        self.every = every
        self.clock = clock
        self._last_at: float | None = None
        self._width = 0
        self.drawn = 0  # how many times the line was drawn

    def __call__(self, summary: Any, in_hand: int) -> None:
        at = self.clock()
        if in_hand and self._last_at is not None and at - self._last_at < self.every:
            return
        self._last_at = at
        self._draw(line(summary, in_hand, self.watching_until))

    def _draw(self, text: str) -> None:
        if len(text) >= self.columns:
            text = text[: max(1, self.columns - 2)] + "…"
        pad = " " * max(0, self._width - len(text))
        self.stream.write("\r" + text + pad)
        self.stream.flush()
        self._width = len(text)
        self.drawn += 1

    def close(self) -> None:
        """Wipe the line (nothing to do if it was never drawn)."""
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


def _columns(stream: TextIO) -> int:
    import os

    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (AttributeError, OSError, ValueError):
        return 80
