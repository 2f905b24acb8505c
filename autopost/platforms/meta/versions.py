"""Graph API versions and when they stop working, for `autopost status` (standard library
only: status must stay cheap)."""

from __future__ import annotations

from datetime import date, timedelta

DEFAULT_VERSION = "v26.0"
# The dates Meta announced each version stops working (None: not announced yet).
# Source: Meta's Graph API version changelog, as of 2026-11.
EXPIRES: dict[str, date | None] = {
    "v24.0": date(2026, 11, 10),
    "v25.0": date(2027, 2, 23),
    "v26.0": None,
}
WARN_BEFORE = timedelta(days=45)


def version_status(version: str, today: date) -> tuple[str, str] | None:
    """("problem" | "warning", a line for `status`), or None while the version is fine."""
    fix = f'set [meta] graph_version = "{DEFAULT_VERSION}" in config.toml'
    if version not in EXPIRES:
        if _key(version) > max(_key(v) for v in EXPIRES):
            return None  # newer than anything this autopost knows of
        return ("warning", f"Graph API {version} is older than every version this autopost "
                           f"knows and may no longer work; {fix}")
    expires = EXPIRES[version]
    if expires is None:
        return None
    if expires <= today:
        return ("problem", f"Graph API {version} stopped working on {expires.isoformat()}; "
                           f"{fix}")
    if expires - today <= WARN_BEFORE:
        return ("warning", f"Graph API {version} stops working on {expires.isoformat()}; "
                           f"{fix} before then")
    return None


def _key(version: str) -> tuple[int, int]:
    major, _, minor = version.lstrip("v").partition(".")
    return int(major), int(minor or 0)
