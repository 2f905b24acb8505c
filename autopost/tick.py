"""The idle run-due tick (placeholder until the engine lands): defer to the full CLI."""

from __future__ import annotations


def try_idle(argv: list[str]) -> int | None:
    return None
