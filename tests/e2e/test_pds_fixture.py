"""The PDS fixture's own rules: skipped without node or the install, never under CI."""

from __future__ import annotations

import pytest

from tests.e2e import pds_fixture


@pytest.fixture
def no_install(monkeypatch, tmp_path):
    monkeypatch.setattr(pds_fixture, "PDS_DIR", tmp_path / "pds")


def test_missing_install_is_a_skip_outside_ci(no_install, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not installed: run .ci/pds-setup.sh"):
        pds_fixture.require_pds()


def test_missing_install_is_a_failure_in_ci(no_install, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="must run in CI"):
        pds_fixture.require_pds()


def test_missing_node_is_named(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(pds_fixture.shutil, "which", lambda name: None)
    with pytest.raises(pytest.skip.Exception, match="node is not installed"):
        pds_fixture.require_pds()
