"""`autopost import FILE`: read CSV (with a header) or JSON Lines into checked NewJobs.

Columns / fields: account, at, text (required); key, media, alt, tz, options (optional).
`options` is a JSON object of the account's platform options (as `add --option`).
Several media files go in one cell separated by '|', with their alt texts in the same
order ('a.png|b.png' and 'first|second'); in JSON Lines, media and alt may be lists.
Relative media paths are read relative to the import file's folder.

Rows are read and checked one at a time and handed to the store's import_jobs as they
come, all in one transaction: one bad row anywhere and the store rolls everything back,
so nothing is imported. Memory stays flat in the number of rows. The error names the row
(1 = the first row of data) and the column.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timezone, tzinfo
from pathlib import Path
from typing import Any

from autopost.config import PLATFORMS, Settings
from autopost.errors import NotFound, UsageError
from autopost.inputs import BadJSON, parse_json
from autopost.models import Account, Media, NewJob
from autopost.platforms.base import Adapter
from autopost.platforms.options import check_targets, from_json
from autopost.services import (
    PAST_GRACE,
    check_content,
    check_media,
    platform_adapter,
)
from autopost.store.base import Store
from autopost.timeparse import _localize, get_zone, parse_when

REQUIRED = ("account", "at", "text")
OPTIONAL = ("key", "media", "alt", "tz", "options", "thread", "part")
COLUMNS = REQUIRED + OPTIONAL


class RowError(UsageError):
    def __init__(self, row: int, column: str | None, message: str, line: int | None = None):
        self.row, self.column, self.detail, self.line = row, column, message, line
        where = f"row {row}" + (f" (line {line})" if line is not None else "")
        if column:
            where += f", column {column}"
        super().__init__(f"{where}: {message}")


@dataclass
class Parsed:
    jobs: list[NewJob]
    rows: list[int]        # the row number of each job (for messages)
    format: str


Progress = Callable[[int], None]


def detect_format(path: Path, head: str) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    return "jsonl" if head.lstrip().startswith("{") else "csv"


def read_text(path: Path) -> str:
    """The whole file as checked UTF-8 text, at most inputs.IMPORT_MAX bytes."""
    from autopost.inputs import IMPORT_MAX, check_text, read_text_file

    check_text(str(path), "import")
    return read_text_file(path, IMPORT_MAX, "import")


def open_lines(path: Path) -> tuple[str, Iterator[str]]:
    """The file's format and its lines (read as they are used: inputs.text_lines)."""
    from autopost.inputs import IMPORT_MAX, check_text, text_lines

    check_text(str(path), "import")
    lines = text_lines(path, IMPORT_MAX, "import")
    head: list[str] = []
    for line in lines:  # enough of the start to tell the format
        head.append(line)
        if sum(map(len, head)) >= 200:
            break
    fmt = detect_format(path, "".join(head)[:200])
    return fmt, _chain(head, lines)


def _chain(head: list[str], rest: Iterator[str]) -> Iterator[str]:
    yield from head
    yield from rest


def raw_rows(text: str | Iterable[str], fmt: str) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """(row number, line number, fields) for every data row, from the text or its lines."""
    lines = io.StringIO(text, newline="") if isinstance(text, str) else iter(text)
    if fmt == "jsonl":
        yield from _jsonl_rows(lines)
    else:
        yield from _csv_rows(lines)


def _jsonl_rows(lines: Iterator[str]) -> Iterator[tuple[int, int, dict[str, Any]]]:
    row = 0
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        row += 1
        try:
            data = parse_json(line)
        except BadJSON as exc:
            raise RowError(row, None, str(exc).replace(", line 1,", ","), lineno) from None
        if not isinstance(data, dict):
            raise RowError(row, None, "expected a JSON object", lineno)
        unknown = sorted(set(data) - set(COLUMNS))
        if unknown:
            raise RowError(row, unknown[0], f"unknown field (expected {', '.join(COLUMNS)})",
                           lineno)
        yield row, lineno, data


def _csv_rows(lines: Iterator[str]) -> Iterator[tuple[int, int, dict[str, Any]]]:
    first = next(lines, None)
    if first is None:
        return
    # strict: a stray quote is an error, not a field that swallows the rows after it
    reader = csv.reader(_chain([first], lines), delimiter=_delimiter(first), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise RowError(0, None, f"malformed header ({exc})", 1) from None
    header = [h.strip().lower() for h in header]
    for name in header:
        if name not in COLUMNS:
            raise UsageError(f"header: unknown column {name!r} (expected {', '.join(COLUMNS)})")
    dupes = {h for h in header if header.count(h) > 1}
    if dupes:
        raise UsageError(f"header: column {sorted(dupes)[0]!r} appears twice")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise UsageError(f"header: missing column {missing[0]!r} "
                         f"(a CSV import needs {', '.join(REQUIRED)})")
    row = 0
    while True:
        start = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise RowError(row + 1, None, f"malformed CSV ({exc})", start) from None
        if not values or (len(values) == 1 and not values[0].strip()):
            continue
        row += 1
        if len(values) != len(header):
            raise RowError(row, None, f"has {len(values)} fields; the header has "
                           f"{len(header)}", start)
        yield row, start, dict(zip(header, values, strict=True))


def _delimiter(text: str) -> str:
    """Comma, unless the header line is clearly split by tabs or semicolons."""
    first = text.split("\n", 1)[0].rstrip("\r")
    for delim in (",", "\t", ";"):
        names = [n.strip().strip('"').lower() for n in first.split(delim)]
        if "account" in names and all(n in COLUMNS for n in names):
            return delim
    return ","


class _Bad(Exception):
    """A bad value in the current row (turned into a RowError with the row's position)."""

    def __init__(self, column: str | None, message: str):
        super().__init__(message)
        self.column, self.message = column, message


_NO_OPTIONS: dict[str, Any] = {}
_UTC_NAMES = {"UTC", "Etc/UTC", "Etc/UCT", "Etc/Universal", "Etc/Zulu", "Universal", "Zulu",
              "Etc/GMT", "GMT"}


def _check_types(data: dict[str, Any]) -> None:
    for column, value in data.items():
        if value is None or isinstance(value, str):
            continue
        if column in ("media", "alt") and isinstance(value, list) \
                and all(isinstance(v, str) for v in value):
            continue
        if column == "options" and isinstance(value, dict):
            continue
        if column in ("key", "part", "thread") and isinstance(value, int) \
                and not isinstance(value, bool):
            data[column] = str(value)
            continue
        raise _Bad(column, f"expected a string, got {type(value).__name__}")


class RowChecker:
    """Checks rows one by one, caching what rows share (accounts, adapters, zones, media)."""

    def __init__(self, store: Store, settings: Settings, *, now: datetime, base: Path,
                 default_tz: str | None, typed: bool = False):
        self.store, self.settings, self.now, self.base = store, settings, now, base
        self.earliest = now - PAST_GRACE
        self.typed = typed  # JSON values may be other than strings: check them
        self.default_tz = default_tz
        self.accounts: dict[str, Account] = {}
        self.adapters: dict[str, type[Adapter]] = {}
        self.attempts: dict[str, int] = {}
        self.zones: dict[str | None, tzinfo] = {}
        self.fixed: set[tzinfo] = set()  # zones with one offset all year
        self.media: dict[str, str] = {}
        self.keys: dict[tuple[str, str], int] = {}
        # Rows in the past are fine only if their (account, key) was imported before.
        self.past: list[tuple[int, int | None, NewJob]] = []

    def account(self, name: str) -> Account:
        found = self.accounts.get(name)
        if found is None:
            found = self.store.get_account(name)
            _, cls = platform_adapter(found.platform)
            self.adapters[name] = cls
            self.attempts[name] = self.settings.policy(found.platform).max_attempts
            self.accounts[name] = found
        return found

    def zone(self, name: str | None) -> tzinfo:
        zone = self.zones.get(name)
        if zone is None:
            zone = self.zones[name] = get_zone(name)
            if isinstance(zone, timezone) or getattr(zone, "key", None) in _UTC_NAMES:
                self.fixed.add(zone)
        return zone

    def media_path(self, path: str) -> str:
        found = self.media.get(path)
        if found is None:
            found = self.media[path] = check_media(path, self.base)
        return found

    def when(self, at: str, tz: str | None, zone: tzinfo) -> datetime:
        """parse_when, with a fast path for the ISO 8601 times machine-made files hold."""
        try:
            iso = datetime.fromisoformat(at)
        except ValueError:
            return parse_when(at, now=self.now, tz=tz)
        if iso.tzinfo is not None:
            return iso.astimezone(UTC)
        if zone in self.fixed:
            return iso.replace(tzinfo=zone).astimezone(UTC)  # no DST: nothing to check
        return _localize(iso, zone, at).astimezone(UTC)

    def check(self, row: int, line: int | None, data: dict[str, Any]) -> NewJob:
        try:
            return self._check(row, line, data)
        except _Bad as bad:
            raise RowError(row, bad.column, bad.message, line) from None

    def _check(self, row: int, line: int | None, data: dict[str, Any]) -> NewJob:
        get = data.get
        if self.typed:
            _check_types(data)
        name = (get("account") or "").strip()
        if not name:
            raise _Bad("account", "empty")
        account = self.accounts.get(name)
        if account is None:
            try:
                account = self.account(name)
            except NotFound:
                raise _Bad("account", f"unknown account {name!r}") from None
            except UsageError as exc:
                raise _Bad("account", str(exc)) from None
        tz = (get("tz") or "").strip() or self.default_tz
        try:
            zone = self.zone(tz)
        except UsageError as exc:
            raise _Bad("tz", str(exc)) from None
        at = (get("at") or "").strip()
        if not at:
            raise _Bad("at", "empty")
        try:
            when = self.when(at, tz, zone)
        except UsageError as exc:
            raise _Bad("at", str(exc).removeprefix("--at: ")) from None
        media = self._media(get("media"), get("alt")) if get("media") or get("alt") else ()
        text = get("text") or ""
        options = _NO_OPTIONS
        if get("options"):
            try:
                raw = from_json(get("options"))
                check_targets(raw, (account.platform,), PLATFORMS)
                options = self.adapters[name].check_options(raw)
            except UsageError as exc:
                raise _Bad("options", str(exc)) from None
        try:
            check_content(self.adapters[name], self.settings, text, media, options)
        except UsageError as exc:
            raise _Bad("text", str(exc)) from None
        key = get("key")
        if key is not None:
            key = key.strip() or None
        if key is not None:
            first = self.keys.setdefault((name, key), row)
            if first != row:
                raise _Bad("key", f"key {key!r} for {name} is already used on row {first}")
        thread, part = self._thread(get("thread"), get("part"), name)
        if part is not None and part > 1:
            try:
                self.adapters[name].validate_reply(options)
            except UsageError as exc:
                raise _Bad("options", str(exc)) from None
        job = NewJob(account=name, platform=account.platform, text=text, scheduled_at=when,
                     media=media, options=dict(options), max_attempts=self.attempts[name],
                     key=key, thread_id=thread, thread_part=part)
        if when < self.earliest:
            if key is None:
                raise _Bad("at", f"{at!r} is in the past")
            self.past.append((row, line, job))
        return job

    def _thread(self, thread: str | None, part: str | None, account: str
                ) -> tuple[str | None, int | None]:
        """The row's thread name and part number (linked into a thread by link_threads)."""
        thread = (thread or "").strip() or None
        part_text = (part or "").strip()
        if thread is None:
            if part_text:
                raise _Bad("part", "a part number needs a thread")
            return None, None
        if not self.adapters[account].supports_replies:
            raise _Bad("thread", f"{self.accounts[account].platform} has no replies, so it "
                                 "cannot post a thread")
        if not (part_text.isascii() and part_text.isdigit()) or int(part_text) < 1:
            raise _Bad("part", f"expected a part number (1, 2, ...), got {part_text!r}")
        return thread, int(part_text)

    def _media(self, media: str | list[str] | None, alt: str | list[str] | None
               ) -> tuple[Media, ...]:
        paths = _split(media)
        alts = _split(alt, keep_empty=True)
        if len(alts) > len(paths):
            raise _Bad("alt", f"{len(alts)} alt texts for {len(paths)} media file(s)")
        out = []
        for i, path in enumerate(paths):
            try:
                full = self.media_path(path)
            except UsageError as exc:
                raise _Bad("media", str(exc)) from None
            text = alts[i] if i < len(alts) and alts[i] else None
            out.append(Media(full, text))
        return tuple(out)

    def check_past(self) -> None:
        """Past rows must all be re-imports of jobs that already exist."""
        if not self.past:
            return
        known = self.store.find_keys((job.account, job.key) for _, _, job in self.past)
        for row, line, job in self.past:
            if (job.account, job.key) not in known:
                raise RowError(row, "at", "is in the past", line)


def link_threads(jobs: list[NewJob], rows: list[int]) -> list[NewJob]:
    """Rows of one account that share a `thread` value become one thread, ordered by
    `part`: part numbers must differ, and every part has the same `at`."""
    import secrets
    from dataclasses import replace

    groups: dict[tuple[str, str], list[int]] = {}
    for i, job in enumerate(jobs):
        if job.thread_id is not None:
            groups.setdefault((job.account, job.thread_id), []).append(i)
    if not groups:
        return jobs
    out = list(jobs)
    for (_account, name), members in groups.items():
        members.sort(key=lambda i: jobs[i].thread_part or 0)
        first = jobs[members[0]]
        seen: dict[int, int] = {}
        for i in members:
            part = jobs[i].thread_part or 0
            if part in seen:
                raise RowError(rows[i], "part", f"thread {name!r} has part {part} twice "
                                                f"(also row {seen[part]})")
            seen[part] = rows[i]
            if jobs[i].scheduled_at != first.scheduled_at:
                raise RowError(rows[i], "at", f"every part of thread {name!r} needs the same "
                                              f"time as its first part (row {rows[members[0]]})")
        thread_id = secrets.token_hex(8)
        for n, i in enumerate(members, start=1):
            out[i] = replace(jobs[i], thread_id=thread_id, thread_part=n)
    return out


def _split(value: str | list[str] | None, *, keep_empty: bool = False) -> list[str]:
    if value is None:
        return []
    parts = value if isinstance(value, list) else value.split("|")
    parts = [p.strip() for p in parts]
    if keep_empty:
        while parts and not parts[-1]:
            parts.pop()
        return parts
    return [p for p in parts if p]


class CheckedRows:
    """The file's jobs, each checked as it is read: iterate it (once) to get them in file
    order. Past the last row it raises a UsageError naming the first bad row (with how
    many more there were), or saying there were none; the store's import_jobs then rolls
    back whatever it had added, so one bad row anywhere means nothing is imported.

    A row in the past is fine only when its (account, key) was imported before: those
    are looked up in batches, before their batch is handed on."""

    BATCH = 500

    def __init__(self, path: Path, store: Store, settings: Settings, *, now: datetime,
                 default_tz: str | None = None, progress: Progress | None = None,
                 text: str | None = None, opened: tuple[str, Iterator[str]] | None = None):
        self.path, self.store, self.progress = path, store, progress
        if opened is not None:  # open_lines(path), called before the store was opened
            self.format, lines = opened
        elif text is None:
            self.format, lines = open_lines(path)
        else:
            self.format, lines = detect_format(path, text[:200]), text
        self._rows = raw_rows(lines, self.format)
        self.checker = RowChecker(store, settings, now=now, base=path.parent.absolute(),
                                  default_tz=default_tz, typed=self.format == "jsonl")
        self.count = 0
        self.held_at: list[int] = []  # file positions of the thread parts (handed on last)
        self.numbers: list[int] | None = None  # row numbers, when parse_file wants them

    def __iter__(self) -> Iterator[NewJob]:
        checker, progress = self.checker, self.progress
        first_error: UsageError | None = None
        bad = 0
        batch: list[NewJob] = []
        # Thread parts wait for the end: a thread's order and id need all its rows.
        held: list[tuple[int, int, NewJob]] = []
        index = 0
        try:
            for row, line, data in self._rows:
                try:
                    job = checker.check(row, line, data)
                except UsageError as exc:
                    # Keep counting so the message can say how many rows need fixing.
                    bad += 1
                    first_error = first_error or exc
                    continue
                if first_error is not None:
                    continue
                if progress is not None and row % 1000 == 0:
                    progress(row)
                if job.thread_id is not None:
                    held.append((index, row, job))
                    index += 1
                    continue
                index += 1
                batch.append(job)
                if self.numbers is not None:
                    self.numbers.append(row)
                if len(batch) >= self.BATCH:
                    self._check_past()
                    yield from batch
                    self.count += len(batch)
                    batch.clear()
        except UsageError as exc:
            # A broken file (header, quoting, a line that is not JSON): stop at once.
            bad += 1
            first_error = first_error or exc
        if first_error is not None:
            more = f" ({bad - 1} more bad row{'s' if bad > 2 else ''})" if bad > 1 else ""
            raise UsageError(f"{self.path.name} {first_error}{more}; nothing was imported")
        self._check_past()
        yield from batch
        self.count += len(batch)
        if held:
            try:
                linked = link_threads([job for _, _, job in held], [r for _, r, _ in held])
            except UsageError as exc:
                raise UsageError(f"{self.path.name} {exc}; nothing was imported") from None
            self.held_at = [i for i, _, _ in held]
            if self.numbers is not None:
                self.numbers += [r for _, r, _ in held]
            yield from linked
            self.count += len(linked)
        if not self.count:
            raise UsageError(f"{self.path.name}: no rows to import")

    def in_file_order(self, items: list[Any]) -> list[Any]:
        """What was handed on (or made from it, one per job, in that order) put back in
        file order: the thread parts came last."""
        if not self.held_at:
            return items
        tail = len(items) - len(self.held_at)
        main, parts = iter(items[:tail]), iter(items[tail:])
        held = set(self.held_at)
        return [next(parts) if i in held else next(main) for i in range(len(items))]

    def _check_past(self) -> None:
        try:
            self.checker.check_past()
        except UsageError as exc:
            raise UsageError(f"{self.path.name} {exc}; nothing was imported") from None
        self.checker.past.clear()


def parse_file(path: Path, store: Store, settings: Settings, *, now: datetime,
               default_tz: str | None = None, progress: Progress | None = None,
               text: str | None = None) -> Parsed:
    """Read and check every row into a list, in file order (the import command streams
    them instead: CheckedRows). Raises UsageError naming the first bad row and column."""
    checked = CheckedRows(path, store, settings, now=now, default_tz=default_tz,
                          progress=progress, text=text)
    checked.numbers = []
    jobs = checked.in_file_order(list(checked))
    return Parsed(jobs=jobs, rows=checked.in_file_order(checked.numbers),
                  format=checked.format)
