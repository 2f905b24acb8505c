"""Helpers for the tests that prove a secret never leaks."""

from __future__ import annotations

from autopost.platforms.base import PlatformError


def texts_of(err: BaseException | None) -> list[str]:
    """Everything an exception could show: str, repr, args, along its whole chain."""
    out: list[str] = []
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        out += [str(err), repr(err), repr(err.args)]
        if isinstance(err, PlatformError):
            out.append(err.message)
        err = err.__cause__ or err.__context__
    return out
