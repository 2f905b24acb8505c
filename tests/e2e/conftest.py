"""Fixtures for the end-to-end tests against a real Bluesky PDS on 127.0.0.1.

    pds          the session's PDS (rate limits off), started once, stopped at the end
    pds_limited  a second PDS with the PDS's own rate limits on (started on first use)
    pds_account  a factory: pds_account(pds=None, prefix="user") -> a fresh PdsAccount

Without node or tests/pds/node_modules these tests are skipped, unless CI is set: then
they fail (see pds_fixture.require_pds).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.e2e.pds_fixture import Pds, PdsAccount, require_pds, start_pds


def _running(tmp_path_factory: pytest.TempPathFactory, name: str, **kwargs) -> Iterator[Pds]:
    require_pds()
    server = start_pds(tmp_path_factory.mktemp(name), **kwargs)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pds]:
    yield from _running(tmp_path_factory, "pds")


@pytest.fixture(scope="session")
def pds_limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pds]:
    yield from _running(tmp_path_factory, "pds-limited", rate_limits=True)


@pytest.fixture
def pds_account(pds: Pds) -> Callable[..., PdsAccount]:
    def make(server: Pds | None = None, prefix: str = "user") -> PdsAccount:
        return (server or pds).create_account(prefix)

    return make
