"""Graph API version expiry, as `autopost status` reports it."""

from __future__ import annotations

from datetime import date

from autopost.platforms.meta.versions import DEFAULT_VERSION, EXPIRES, version_status


def test_a_version_far_from_expiry_is_fine():
    assert version_status("v25.0", date(2026, 12, 1)) is None
    assert version_status(DEFAULT_VERSION, date(2026, 12, 1)) is None


def test_a_version_near_expiry_warns_and_an_expired_one_is_a_problem():
    severity, line = version_status("v25.0", date(2027, 1, 20))
    assert severity == "warning" and "2027-02-23" in line and DEFAULT_VERSION in line
    severity, line = version_status("v25.0", date(2027, 2, 23))
    assert severity == "problem" and "stopped working" in line


def test_unknown_versions():
    assert version_status("v99.0", date(2026, 12, 1)) is None
    severity, _ = version_status("v18.0", date(2026, 12, 1))
    assert severity == "warning"


def test_the_default_is_the_newest_known_version():
    assert DEFAULT_VERSION == max(EXPIRES, key=lambda v: tuple(map(int, v[1:].split("."))))
