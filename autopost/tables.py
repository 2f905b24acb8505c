"""Tables for people and for pipes, on the standard library alone.

On a terminal a table fits the terminal's width: identifying columns (ID, STATUS,
ACCOUNT, NAME) are never cut, the text column absorbs the squeeze, columns with a short
form switch to it, and a column left out is named in a note under the table. Piped, the
same rows come out as tab-separated lines with full values and no header (tabs and line
breaks inside a value become spaces), for cut, awk and sort.
"""

from __future__ import annotations

import os
import shutil
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

KEY, FLEX, EXTRA = "key", "flex", "extra"
GAP = "  "
FLEX_MIN = 12  # the text column gives way down to this before other columns do

ANSI = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33",
        "magenta": "35", "cyan": "36", "bold red": "1;31", "bold magenta": "1;35"}


@dataclass(frozen=True)
class Column:
    name: str
    role: str = EXTRA        # KEY: never cut; FLEX: absorbs the squeeze; EXTRA: may go
    right: bool = False      # right-aligned (numbers)


@dataclass(frozen=True)
class Cell:
    text: str
    short: str | None = None  # a narrower form, used when the full one does not fit
    style: str | None = None  # a key of ANSI, on a colour terminal


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def use_colour(stream: TextIO | None = None) -> bool:
    return (is_terminal(stream) and "NO_COLOR" not in os.environ
            and os.environ.get("TERM") != "dumb")


def width_of(text: str) -> int:
    """Terminal cells: wide East Asian characters take two, combining marks none."""
    if text.isascii():
        return len(text)
    return sum(_char_width(ch) for ch in text)


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch) or ch in "\u200b\u200c\u200d\ufe0f":
        return 0
    return 2 if unicodedata.east_asian_width(ch) in "WF" else 1


def cut(text: str, width: int) -> str:
    """`text` in at most `width` cells, ending in an ellipsis when shortened."""
    if width_of(text) <= width:
        return text
    if width <= 0:
        return ""
    out, used = [], 0
    for ch in text:
        w = _char_width(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def _flat(value: str) -> str:
    return " ".join(value.replace("\t", " ").splitlines()) if value else value


def _cell(value: str | Cell) -> Cell:
    return value if isinstance(value, Cell) else Cell(str(value))


def render_tsv(rows: Sequence[Sequence[str | Cell]]) -> str:
    return "".join("\t".join(_flat(_cell(v).text) for v in row) + "\n" for row in rows)


def layout(columns: Sequence[Column], rows: Sequence[Sequence[Cell]], width: int
           ) -> tuple[list[int], list[bool], list[int | None]]:
    """Which columns to show (indexes), which use their short form, and each column's
    width; identifying columns keep their natural width whatever `width` is."""
    n = len(columns)

    def natural(i: int, short: bool) -> int:
        cells = [(r[i].short if short and r[i].short is not None else r[i].text)
                 for r in rows]
        return max([width_of(columns[i].name), *(width_of(c) for c in cells)])

    shown = list(range(n))
    shorts = [False] * n
    widths: list[int | None] = [natural(i, False) for i in range(n)]
    flex = [i for i in shown if columns[i].role == FLEX]

    def total() -> int:
        return sum(widths[i] for i in shown) + len(GAP) * (len(shown) - 1)

    def squeeze_flex(floor: int) -> None:
        for i in flex:
            if i in shown and total() > width:
                widths[i] = max(min(widths[i], floor), widths[i] - (total() - width))

    squeeze_flex(FLEX_MIN)
    for i in range(n):  # short forms, left to right
        if total() <= width:
            break
        if any(r[i].short is not None for r in rows) and columns[i].role != KEY:
            shorts[i] = True
            widths[i] = natural(i, True)
    squeeze_flex(FLEX_MIN // 2)
    for i in reversed(range(n)):  # then leave out extras, the rightmost first
        if total() <= width:
            break
        if columns[i].role == EXTRA:
            shown.remove(i)
    for i in flex:  # the text takes back what a column left out freed
        if i in shown and total() < width:
            widths[i] = min(natural(i, False), widths[i] + width - total())
    squeeze_flex(1)
    for i in flex:  # a text column narrower than a few cells helps nobody
        if total() > width and i in shown and widths[i] < 4:
            shown.remove(i)
    return shown, shorts, widths


def render_table(columns: Sequence[Column], rows: Sequence[Sequence[str | Cell]],
                 width: int, colour: bool = False) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    shown, shorts, widths = layout(columns, cells, width)
    lines = []

    def paint(text: str, style: str | None) -> str:
        if not colour or not style or style not in ANSI:
            return text
        return f"\x1b[{ANSI[style]}m{text}\x1b[0m"

    def line(values: list[tuple[str, str | None]]) -> str:
        parts = []
        for k, (i, (text, style)) in enumerate(zip(shown, values, strict=True)):
            w = widths[i]
            text = cut(_flat(text), w) if columns[i].role != KEY else _flat(text)
            pad = " " * max(0, w - width_of(text))
            last = k == len(shown) - 1
            if columns[i].right:
                parts.append(pad + paint(text, style))
            else:
                parts.append(paint(text, style) + ("" if last else pad))
        return GAP.join(parts).rstrip()

    lines.append(line([(columns[i].name, "bold") for i in shown]))
    for row in cells:
        values = []
        for i in shown:
            c = row[i]
            values.append((c.short if shorts[i] and c.short is not None else c.text, c.style))
        lines.append(line(values))
    left = [columns[i].name for i in range(len(columns)) if i not in shown]
    if left:
        lines.append(f"(left out at {width} columns: {', '.join(left)}; --json has every "
                     "field)")
    return "\n".join(lines) + "\n"


def terminal_width() -> int:
    return shutil.get_terminal_size((80, 24)).columns


def emit(columns: Sequence[Column], rows: Sequence[Sequence[str | Cell]],
         stream: TextIO | None = None) -> None:
    """A table on a terminal, tab-separated rows through a pipe."""
    stream = stream or sys.stdout
    if is_terminal(stream):
        stream.write(render_table(columns, rows, terminal_width(), use_colour(stream)))
    else:
        stream.write(render_tsv(rows))
