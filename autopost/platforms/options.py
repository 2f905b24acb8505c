"""Per-platform job options: each adapter declares the options a job may carry, and what
`add --option KEY=VALUE` or an import's `options` column gives is checked against them
at add time (an unknown key or a bad value is refused, naming the option).

A key applies to every account the job goes to; `PLATFORM.KEY` (or, in JSON, an object
under the platform's name) applies to that platform's accounts only. Each job stores
the checked options of its own platform, flat, with their declared types.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from autopost.errors import UsageError

Kind = Literal["text", "bool", "int", "choice", "list", "url", "object"]
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


@dataclass(frozen=True)
class Option:
    name: str
    kind: Kind
    help: str
    choices: tuple[str, ...] = ()
    default: Any = None
    max_length: int | None = None
    pattern: str | None = None  # every item (list) or the value (text) must match

    def describe(self) -> str:
        if self.kind == "choice":
            return " | ".join(self.choices)
        return {"text": "text", "bool": "true | false", "int": "integer",
                "list": "comma-separated list", "url": "https URL",
                "object": "JSON object"}[self.kind]

    def parse(self, value: Any, platform: str) -> Any:
        """The value in its declared type; UsageError naming the option when it is bad."""
        where = f"option {self.name!r} ({platform})"
        kind = self.kind
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            raise UsageError(f"{where}: expected true or false")
        if kind == "int":
            if isinstance(value, bool):
                raise UsageError(f"{where}: expected an integer")
            from autopost.inputs import INT64_MAX, whole_number

            try:
                return whole_number(value, where, lo=-INT64_MAX - 1, hi=INT64_MAX)
            except UsageError:
                raise UsageError(f"{where}: expected an integer (64 bits at most)") from None
        if kind == "object":
            if isinstance(value, str):
                from autopost.inputs import BadJSON, parse_json

                try:
                    value = parse_json(value)
                except BadJSON as exc:
                    raise UsageError(f"{where}: expected a JSON object ({exc})") from None
            if not isinstance(value, dict):
                raise UsageError(f"{where}: expected a JSON object")
            return value
        if kind == "list":
            if isinstance(value, str):
                items = [v.strip() for v in value.split(",") if v.strip()]
            elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                items = [v.strip() for v in value if v.strip()]
            else:
                raise UsageError(f"{where}: expected a list of text values")
            for item in items:
                self._match(item, where)
            if self.max_length is not None and len(items) > self.max_length:
                raise UsageError(f"{where}: at most {self.max_length} values")
            return items
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise UsageError(f"{where}: expected text")
        text = str(value)
        if kind == "choice":
            for choice in self.choices:
                if choice.lower() == text.strip().lower():
                    return choice
            raise UsageError(f"{where}: {text[:40]!r} is not one of {', '.join(self.choices)}")
        if kind == "url" and not re.match(r"^https?://[^\s/]+\S*$", text):
            raise UsageError(f"{where}: expected an http(s) URL")
        if self.max_length is not None and len(text) > self.max_length:
            raise UsageError(f"{where}: at most {self.max_length} characters")
        self._match(text, where)
        return text

    def _match(self, text: str, where: str) -> None:
        if self.pattern is not None and not re.fullmatch(self.pattern, text):
            raise UsageError(f"{where}: {text[:40]!r} is not valid")


def parse_pairs(pairs: Sequence[str]) -> dict[str, str]:
    """`--option KEY=VALUE` arguments as a dict; UsageError on a malformed one."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--option {pair!r}: expected KEY=VALUE")
        if key in out:
            raise UsageError(f"--option {key}: given twice")
        out[key] = value
    return out


def from_json(value: Any) -> dict[str, Any]:
    """An import's `options` cell: a JSON object (text in CSV, an object in JSON Lines)."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        from autopost.inputs import BadJSON, parse_json

        try:
            value = parse_json(value)
        except BadJSON as exc:
            raise UsageError('expected a JSON object, e.g. {"visibility": "unlisted"} '
                             f"({exc})") from None
    if not isinstance(value, dict):
        raise UsageError('expected a JSON object, e.g. {"visibility": "unlisted"}')
    return value


def check_targets(raw: dict[str, Any], targets: Iterable[str], platforms: Iterable[str]
                  ) -> None:
    """Refuse options addressed to a platform none of the job's accounts is on."""
    targets, names = set(targets), set(platforms)
    for key, value in raw.items():
        head = key if key in names and isinstance(value, dict) else key.partition(".")[0]
        if head in names and head not in targets and (key in names or "." in key):
            raise UsageError(f"option {key!r}: none of the accounts is on {head}")


def for_platform(raw: dict[str, Any], platform: str, declared: Iterable[Option],
                 platforms: Iterable[str]) -> dict[str, Any]:
    """The options one platform's job carries: `raw`'s plain keys plus those addressed to
    this platform (PLATFORM.KEY, or {PLATFORM: {...}}), each checked and converted.
    Keys addressed to another platform are skipped; `platforms` is every known name."""
    known = {o.name: o for o in declared}
    names = set(platforms)
    plain: dict[str, Any] = {}
    mine: dict[str, Any] = {}
    for key, value in raw.items():
        if key in names and key not in known:
            if not isinstance(value, dict):
                raise UsageError(f"option {key!r}: expected an object of {key} options")
            if key == platform:
                mine.update(value)
            continue
        head, dot, rest = key.partition(".")
        if dot and head in names:
            if head == platform:
                mine[rest] = value
            continue
        plain[key] = value
    merged = {**plain, **mine}
    out: dict[str, Any] = {}
    for key, value in merged.items():
        option = known.get(key)
        if option is None:
            listed = ", ".join(sorted(known)) or "none"
            raise UsageError(f"{platform} has no option {key!r} (its options: {listed}; "
                             f"use PLATFORM.{key}=... for another platform's option)")
        out[key] = option.parse(value, platform)
    return out
