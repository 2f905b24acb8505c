"""AT Protocol pieces that need no network: record keys (TIDs), grapheme counting, rich-text
facet detection with UTF-8 byte offsets, and reading a JWT's expiry.

Grapheme clusters follow Unicode's extended grapheme cluster rules (UAX #29) through the
`regex` module's \\X, the same segmentation the reference PDS applies (Intl.Segmenter):
an emoji ZWJ family, a flag, a letter with combining marks or a skin-toned emoji each
count once. The standard library has no grapheme segmentation, and doing it by hand
needs Unicode property tables the `unicodedata` module does not expose.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import regex

from autopost.models import Job
from autopost.platforms.textcount import graphemes

# -- record keys ---------------------------------------------------------------------

TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
TID_PATTERN = regex.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")


def tid_encode(micros: int, clock_id: int) -> str:
    """A TID: 1 zero bit, 53 bits of microseconds since the epoch, 10 bits of clock id,
    written as 13 characters of base32-sortable."""
    if not 0 <= micros < 2**53 or not 0 <= clock_id < 2**10:
        raise ValueError("TID fields out of range")
    value = (micros << 10) | clock_id
    chars = []
    for _ in range(13):
        value, digit = divmod(value, 32)
        chars.append(TID_ALPHABET[digit])
    return "".join(reversed(chars))


def tid_decode(tid: str) -> tuple[int, int]:
    """(microseconds, clock id) of a TID."""
    if not TID_PATTERN.match(tid):
        raise ValueError(f"not a TID: {tid!r}")
    value = 0
    for ch in tid:
        value = value * 32 + TID_ALPHABET.index(ch)
    return value >> 10, value & 1023


def job_record_key(job: Job) -> str:
    """The record key a job's post gets, the same on every attempt and in every process.

    Its time is the job's scheduled second (so keys sort like the schedule); the
    sub-second microseconds and the clock id come from a hash of the job's id and
    idempotency key: 30 bits that keep two jobs scheduled for the same second apart.
    """
    digest = hashlib.sha256(f"{job.id}\0{job.idempotency_key}".encode()).digest()
    h = int.from_bytes(digest[:8], "big")
    seconds = max(0, int(job.scheduled_at.timestamp()))
    micros = seconds * 1_000_000 + (h >> 10) % 1_000_000
    return tid_encode(micros, h & 1023)


# -- text length ---------------------------------------------------------------------

def grapheme_count(text: str) -> int:
    return graphemes(text)


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


# -- facets --------------------------------------------------------------------------

FACET = "app.bsky.richtext.facet"


@dataclass(frozen=True)
class Span:
    """A detected link, mention or tag: code-point and UTF-8 byte ranges, and its value."""

    kind: str  # "link" | "mention" | "tag"
    value: str  # the URI, the handle (without @), or the tag (without #)
    start: int
    end: int
    byte_start: int
    byte_end: int


# An explicit http(s) URL, at the start, after whitespace or an opening parenthesis.
_LINK = regex.compile(r"(?:(?<=^)|(?<=[\s(\[]))(https?://[^\s]+)", regex.IGNORECASE)
# A handle: dot-separated DNS labels, the last one starting with a letter.
_MENTION = regex.compile(
    r"(?:(?<=^)|(?<=[\s(\[]))@((?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+"
    r"[a-zA-Z](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(?![a-zA-Z0-9@-])")
# A hashtag: not only digits and punctuation.
_TAG = regex.compile(r"(?:(?<=^)|(?<=\s))[#＃]([^\s#＃]*[^\d\s\p{P}][^\s#＃]*)")
_TRAILING = ".,;:!?'\"”’»"
MAX_TAG_GRAPHEMES = 64


def _trim_link(url: str) -> str:
    while url and url[-1] in _TRAILING:
        url = url[:-1]
    # A closing bracket that does not belong to the URL: "(see https://x.org/a)".
    while url.endswith(")") and url.count("(") < url.count(")"):
        url = url[:-1]
    return url


def _trim_tag(tag: str) -> str:
    return regex.sub(r"\p{P}+$", "", tag)


def find_spans(text: str) -> list[Span]:
    """Links, mentions and tags in reading order; overlapping candidates are dropped."""
    found: list[tuple[str, str, int, int]] = []
    for m in _LINK.finditer(text):
        url = _trim_link(m.group(1))
        if len(url) > len("https://"):
            found.append(("link", url, m.start(1), m.start(1) + len(url)))
    for m in _MENTION.finditer(text):
        found.append(("mention", m.group(1), m.start(), m.end()))
    for m in _TAG.finditer(text):
        tag = _trim_tag(m.group(1))
        if tag and grapheme_count(tag) <= MAX_TAG_GRAPHEMES and not tag.isdigit():
            found.append(("tag", tag, m.start(), m.start(1) + len(tag)))
    found.sort(key=lambda f: f[2])
    spans: list[Span] = []
    last_end = -1
    for kind, value, start, end in found:
        if start < last_end:
            continue
        spans.append(Span(kind, value, start, end, utf8_len(text[:start]), utf8_len(text[:end])))
        last_end = end
    return spans


def facet(span: Span, feature: dict[str, Any]) -> dict[str, Any]:
    return {
        "$type": FACET,
        "index": {"byteStart": span.byte_start, "byteEnd": span.byte_end},
        "features": [feature],
    }


def link_feature(uri: str) -> dict[str, Any]:
    return {"$type": f"{FACET}#link", "uri": uri}


def mention_feature(did: str) -> dict[str, Any]:
    return {"$type": f"{FACET}#mention", "did": did}


def tag_feature(tag: str) -> dict[str, Any]:
    return {"$type": f"{FACET}#tag", "tag": tag}


# -- tokens --------------------------------------------------------------------------

def jwt_claims(token: str | None) -> dict[str, Any]:
    """The payload of a JWT, unverified (only to read its expiry); {} when unreadable."""
    if not token or token.count(".") != 2:
        return {}
    payload = token.split(".")[1]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def jwt_expiry(token: str | None) -> datetime | None:
    exp = jwt_claims(token).get("exp")
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        try:
            return datetime.fromtimestamp(exp, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None
