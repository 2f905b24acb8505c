"""Find the Adapter class for a platform name, importing its module only when needed."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from autopost.config import check_platform
from autopost.errors import UsageError

if TYPE_CHECKING:
    from autopost.platforms.base import Adapter

_extra: dict[str, type[Adapter]] = {}
# The platforms whose adapter has its own status_warnings. The others warn only about a
# token expiry (Adapter.status_warnings), so `status` imports their modules only for an
# account with a token_expires_at (tests/test_cli_startup.py checks both).
WARNS_IN_STATUS = frozenset({"linkedin", "youtube"})
# Platforms whose module lives in a family package sharing a client.
_MODULES = {name: f"autopost.platforms.meta.{name}"
            for name in ("facebook", "instagram", "threads")}


def module_name(platform: str) -> str:
    """The module that holds a platform's adapter (it may not exist yet)."""
    return _MODULES.get(platform, f"autopost.platforms.{platform}")


def register(name: str, adapter: type[Adapter]) -> None:
    """Add an adapter under a name (tests and benchmarks register in-process fakes)."""
    _extra[name] = adapter


def unregister(name: str) -> None:
    _extra.pop(name, None)


def warns_in_status(name: str) -> bool:
    """Whether an account on this platform may have a status warning (without importing
    the platform's module)."""
    if name in _extra:
        return True
    try:
        return check_platform(name) in WARNS_IN_STATUS
    except UsageError:
        return False


def adapter_class(name: str) -> type[Adapter]:
    if name in _extra:
        return _extra[name]
    canon = check_platform(name)
    name = module_name(canon)
    try:
        __import__(name)  # not importlib.import_module: `-X importtime` shows this one
    except ModuleNotFoundError as exc:
        if exc.name == name:
            raise UsageError(f"platform {canon!r} is not supported by this autopost yet") from None
        raise
    return sys.modules[name].ADAPTER
