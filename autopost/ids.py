"""Short random ids for jobs and runs (the same on every store)."""

from __future__ import annotations

import os

_ID_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
_ID_LENGTH = 8

# Random bytes mapped onto the alphabet (a slight skew towards its first letters is
# harmless for ids; a clash is retried). One urandom read per id keeps large imports fast.
_ID_TABLE = bytes(ord(_ID_ALPHABET[b % len(_ID_ALPHABET)]) for b in range(256))


def new_id(length: int = _ID_LENGTH) -> str:
    return os.urandom(length).translate(_ID_TABLE).decode("ascii")
