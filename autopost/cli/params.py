"""Numeric command-line options with bounds: whole numbers that fit their use and finite
numbers (never nan or inf), checked by the same rules as the settings they override."""

from __future__ import annotations

from typing import Any

try:  # newer typer releases vendor their own click
    from typer._click.types import ParamType
except ImportError:  # pragma: no cover - typer on top of the click package
    from click import ParamType

from autopost.errors import UsageError
from autopost.inputs import real_number, whole_number


class WholeNumber(ParamType):
    name = "integer"

    def __init__(self, lo: int, hi: int):
        self.lo, self.hi = lo, hi

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        try:
            return whole_number(value, "value", lo=self.lo, hi=self.hi)
        except UsageError as exc:
            self.fail(str(exc).removeprefix("value: "), param, ctx)


class FiniteNumber(ParamType):
    name = "number"

    def __init__(self, lo: float, hi: float):
        self.lo, self.hi = lo, hi

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        try:
            return real_number(value, "value", lo=self.lo, hi=self.hi)
        except UsageError as exc:
            self.fail(str(exc).removeprefix("value: "), param, ctx)


# The bounds of each kind of flag.
LIMIT = WholeNumber(1, 10**9)                  # --limit
DAYS = WholeNumber(1, 3660)                    # calendar --days (ten years)
PLAN_DAYS = FiniteNumber(0.0, 3660.0)          # plan --days
REPEAT_COUNT = WholeNumber(1, 100_000)         # add --repeat --count
SLOTS = WholeNumber(1, 1000)                   # slots --count


def concurrency() -> WholeNumber:
    from autopost.config import MAX_CONCURRENCY

    return WholeNumber(1, MAX_CONCURRENCY)


def attempts() -> WholeNumber:
    from autopost.config import MAX_ATTEMPTS

    return WholeNumber(1, MAX_ATTEMPTS)


def posts_limit() -> WholeNumber:
    from autopost.config import MAX_POSTS_LIMIT

    return WholeNumber(1, MAX_POSTS_LIMIT)


def linger() -> FiniteNumber:
    from autopost.tick import MAX_LINGER

    return FiniteNumber(0.0, MAX_LINGER)
