"""Checks for everything that enters autopost from outside, in one place.

Text (command-line arguments, stdin, files, environment variables, JSON strings) must be
valid UTF-8: Python hands undecodable bytes over as lone surrogates, which SQLite, httpx
and the terminal all refuse later, far from where they came in. Numbers must be finite
and within bounds (a 64-bit column, a thread pool, a timedelta all have limits). Files
are read up to a cap, so `/dev/zero` or a runaway export is one clear line, not a hung
process. Every failure is a UsageError naming what was wrong, never quoting a secret.

Standard library only: the idle run-due path loads the config through here.
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from autopost.errors import UsageError

INT64_MAX = 2**63 - 1
# Files and streams autopost reads, at most (bytes).
CONFIG_MAX = 1 << 20            # config.toml
CREDENTIALS_MAX = 1 << 20       # --credentials FILE or stdin
TEXT_MAX = 1 << 20              # a post's text from stdin (`add -`)
IMPORT_MAX = 512 << 20          # `import FILE` (about 2 million rows)
JSON_DEPTH = 32                 # nesting in any JSON autopost is given


def shown(value: Any, limit: int = 60) -> str:
    """A value for an error message: its repr, cut short when long."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{repr(str(value)[:limit])}... ({len(str(value)):,} characters)"


def human_size(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} bytes"


# -- text ------------------------------------------------------------------------------

def bad_text_at(value: str) -> int | None:
    """The index of the first character that is not encodable UTF-8 (a lone surrogate),
    or None when the text is fine."""
    if value.isascii():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def check_text(value: str, what: str) -> str:
    """`value` unchanged, or UsageError when it holds bytes that were not UTF-8."""
    at = bad_text_at(value)
    if at is not None:
        raise UsageError(f"{what}: not valid UTF-8 text (at character {at + 1})")
    return value


def check_argv(argv: Iterable[str]) -> None:
    for i, arg in enumerate(argv, start=1):
        if bad_text_at(arg) is not None:
            raise UsageError(f"command-line argument {i} is not valid UTF-8 text")


def check_env(env: Mapping[str, str], prefix: str = "AUTOPOST_") -> None:
    """Every AUTOPOST_* variable must be valid UTF-8 (names and values)."""
    for name, value in env.items():
        if not name.startswith(prefix):
            continue
        if bad_text_at(name) is not None:
            raise UsageError("an AUTOPOST_* environment variable name is not valid UTF-8")
        check_text(value, f"environment variable {name}")


def decode(data: bytes, what: str) -> str:
    """Strict UTF-8 (a leading byte-order mark is dropped)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what}: not UTF-8 text (byte {exc.start})") from None


# -- reading with a cap ----------------------------------------------------------------

def read_capped(path: Path | str, limit: int, what: str) -> bytes:
    """At most `limit` bytes of a file (a pipe or device works too); more is an error."""
    path = Path(path)
    try:
        with _open(path, limit, what) as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise _unreadable(what, path, exc) from None
    if len(data) > limit:
        raise _too_big(what, path, limit)
    return data


def text_lines(path: Path | str, limit: int, what: str) -> Iterator[str]:
    """The lines of a text file, newlines kept (split at \\n, \\r and \\r\\n, as csv
    wants), read as it goes: read_text_file's checks (a folder, a missing file, more than
    `limit` bytes, strict UTF-8 with the byte named) without holding the file in memory.
    Opening errors are raised here; later ones while iterating."""
    path = Path(path)
    return _lines(_open(path, limit, what), path, limit, what)


def _open(path: Path, limit: int, what: str) -> Any:
    """The file open for reading bytes, once it is known to be no folder and (when its
    size is known) no larger than `limit`; every refusal one UsageError line."""
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{what} {path}: is a folder, not a file")
        if stat.S_ISREG(st.st_mode) and st.st_size > limit:
            raise _too_big(what, path, limit)
        return open(path, "rb")  # noqa: SIM115  (the caller closes it)
    except OSError as exc:
        raise _unreadable(what, path, exc) from None


def _unreadable(what: str, path: Path, exc: OSError) -> UsageError:
    if isinstance(exc, FileNotFoundError):
        return UsageError(f"{what} {path}: no such file")
    if isinstance(exc, PermissionError):
        return UsageError(f"{what} {path}: permission denied")
    return UsageError(f"{what} {path}: cannot read ({exc.strerror or exc})")


class _Capped(io.RawIOBase):
    """A binary file that refuses to yield more than `limit` bytes."""

    def __init__(self, fh: Any, limit: int, what: str, path: Path):
        self.fh, self.left, self.what, self.path, self.limit = fh, limit, what, path, limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.fh.readinto(buffer)
        self.left -= n or 0
        if self.left < 0:
            raise _too_big(self.what, self.path, self.limit)
        return n


def _lines(fh: Any, path: Path, limit: int, what: str) -> Iterator[str]:
    with fh:
        text = io.TextIOWrapper(io.BufferedReader(_Capped(fh, limit, what, path), 1 << 16),
                                encoding="utf-8-sig", errors="strict", newline="")
        try:
            yield from text
        except UnicodeDecodeError:
            # Name the byte as read_text_file does (reading it all, on this error only).
            decode(read_capped(path, limit, what), f"{what} {path}")
            raise UsageError(f"{what} {path}: not UTF-8 text") from None
        except OSError as exc:
            raise UsageError(f"{what} {path}: cannot read ({exc.strerror or exc})") from None


def _too_big(what: str, path: Path, limit: int) -> UsageError:
    return UsageError(f"{what} {path}: larger than {human_size(limit)}, the most autopost "
                      "reads; nothing was read")


def read_stdin(limit: int, what: str) -> str:
    """stdin as checked text, at most `limit` bytes."""
    stream = sys.stdin
    buffer = getattr(stream, "buffer", None)
    if buffer is not None:
        data = buffer.read(limit + 1)
        if len(data) > limit:
            raise UsageError(f"{what} from stdin: larger than {human_size(limit)}, the most "
                             "autopost reads")
        return decode(data, f"{what} from stdin")
    text = stream.read(limit + 1)
    if len(text) > limit:
        raise UsageError(f"{what} from stdin: larger than {human_size(limit)}, the most "
                         "autopost reads")
    return check_text(text, f"{what} from stdin")


def read_text_file(path: Path | str, limit: int, what: str) -> str:
    return decode(read_capped(path, limit, what), f"{what} {path}")


# -- JSON --------------------------------------------------------------------------------

class BadJSON(ValueError):
    """Why a JSON text was refused; the message never quotes the text itself."""


def _no_constant(name: str) -> Any:
    raise BadJSON(f"{name} is not a number autopost accepts")


def _int(text: str) -> int:
    if len(text.lstrip("-")) > 19:
        raise BadJSON("a whole number is too large (over 64 bits)")
    number = int(text)
    if not -INT64_MAX - 1 <= number <= INT64_MAX:
        raise BadJSON("a whole number is too large (over 64 bits)")
    return number


def _float(text: str) -> float:
    if len(text) > 400:
        raise BadJSON("a number is too long")
    number = float(text)
    if not math.isfinite(number):
        raise BadJSON("a number is too large to be finite")
    return number


def parse_json(text: str, *, max_depth: int = JSON_DEPTH) -> Any:
    """json.loads that refuses NaN/Infinity, integers past 64 bits, nesting deeper than
    `max_depth`, and strings that are not valid UTF-8 (lone \\ud800 escapes)."""
    _check_depth(text, max_depth)
    try:
        data = json.loads(text, parse_int=_int, parse_float=_float,
                          parse_constant=_no_constant)
    except BadJSON:
        raise
    except json.JSONDecodeError as exc:
        raise BadJSON(f"not valid JSON ({exc.msg}, line {exc.lineno}, column {exc.colno})"
                      ) from None
    except (ValueError, RecursionError) as exc:
        raise BadJSON(f"not valid JSON ({type(exc).__name__})") from None
    _check_strings(data)
    return data


def _check_depth(text: str, max_depth: int) -> None:
    """Refuse deep nesting before the parser recurses into it. Brackets inside strings
    count too, which can only over-estimate, so a cheap upper bound comes first."""
    if text.count("[") + text.count("{") <= max_depth:
        return
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > max_depth:
                raise BadJSON(f"nested more than {max_depth} levels deep")
        elif ch in "]}":
            depth -= 1


def _check_strings(data: Any) -> None:
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if bad_text_at(item) is not None:
                raise BadJSON("a string is not valid UTF-8 text (a lone \\ud800-style escape)")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


# -- numbers -------------------------------------------------------------------------------

def whole_number(value: Any, name: str, *, lo: int, hi: int) -> int:
    """An int in [lo, hi] from an int or its text; bools, floats and others refused."""
    if isinstance(value, bool):
        raise UsageError(f"{name}: expected a whole number, got {shown(value)}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if not text or len(text.lstrip("+-")) > 19 or not text.lstrip("+-").isdigit():
            if text.lstrip("+-").isdigit():
                raise UsageError(f"{name}: {shown(value, 30)} is too large (at most {hi:,})")
            raise UsageError(f"{name}: expected a whole number, got {shown(value)}")
        number = int(text)
    else:
        raise UsageError(f"{name}: expected a whole number, got {shown(value)}")
    if number < lo:
        raise UsageError(f"{name}: must be at least {lo}, got {number}")
    if number > hi:
        raise UsageError(f"{name}: must be at most {hi:,}, got {shown(number, 30)}")
    return number


def real_number(value: Any, name: str, *, lo: float, hi: float) -> float:
    """A finite float in [lo, hi]; nan, inf and bools refused."""
    if isinstance(value, bool):
        raise UsageError(f"{name}: expected a number, got {shown(value)}")
    if isinstance(value, int | float):
        number = float(value) if not isinstance(value, int) or abs(value) < 2**1000 \
            else math.inf
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > 40:
            raise UsageError(f"{name}: expected a number, got {shown(value)}")
        try:
            number = float(text)
        except ValueError:
            raise UsageError(f"{name}: expected a number, got {shown(value)}") from None
    else:
        raise UsageError(f"{name}: expected a number, got {shown(value)}")
    if not math.isfinite(number):
        raise UsageError(f"{name}: must be a finite number, got {shown(value)}")
    if number < lo:
        raise UsageError(f"{name}: must be at least {lo:g}, got {number:g}")
    if number > hi:
        raise UsageError(f"{name}: must be at most {hi:g}, got {number:g}")
    return number
