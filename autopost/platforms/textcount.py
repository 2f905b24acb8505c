"""Counting user-perceived characters (extended grapheme clusters, UAX #29).

`regex`'s \\X is the segmentation the platforms themselves apply (the Bluesky PDS uses
Intl.Segmenter, Mastodon counts grapheme clusters). Plain ASCII text, the common case,
is counted without it: there every character is a cluster except CR LF, which is one.
"""

from __future__ import annotations

import regex

_GRAPHEME = regex.compile(r"\X")


def graphemes(text: str) -> int:
    if text.isascii():
        return len(text) - text.count("\r\n")
    return sum(1 for _ in _GRAPHEME.finditer(text))
