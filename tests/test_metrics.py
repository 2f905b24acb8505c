# ruff: noqa: F811  (fixtures imported from test_cli are parameters here)
"""status --prometheus: the textfile-collector format, read back with a real parser."""

from __future__ import annotations

import json
import stat

from prometheus_client.parser import text_string_to_metric_families

from autopost.models import AccountState
from autopost.store.sqlite import SqliteStore
from tests.test_cli import add_job, demo, future  # noqa: F401  (demo is a fixture)


def samples(path) -> dict:
    out = {}
    for family in text_string_to_metric_families(path.read_text()):
        assert family.type == "gauge" and family.documentation
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_status_writes_parseable_metrics(cli, tmp_path, demo):  # noqa: F811
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert cli("accounts", "add", "broken", "--platform", "outbox", "--credentials", "-",
               "--hourly-limit", "5", input=json.dumps({"path": str(blocker / "x")})).code == 0
    add_job(cli, "posted", "-a", demo, "--at", "now")
    add_job(cli, "fails", "-a", "broken", "--at", "now")
    add_job(cli, "later", "-a", demo, "--at", future(2))
    assert cli("run-due").code == 1
    store = SqliteStore(cli.db)
    try:
        store.set_account_state("broken", AccountState.NEEDS_REAUTH, "revoked",
                                now=__import__("datetime").datetime.now(
                                    __import__("datetime").UTC))
    finally:
        store.close()
    path = tmp_path / "prom" / "autopost.prom"
    path.parent.mkdir()
    done = cli("status", "--prometheus", str(path))
    assert done.code == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["autopost.prom"]
    got = samples(path)

    def value(name, **labels):
        return got[(name, tuple(sorted(labels.items())))]

    assert value("autopost_up") == 1 and value("autopost_healthy") == 0
    assert value("autopost_problems") >= 2
    assert value("autopost_jobs", account="demo", status="posted") == 1
    assert value("autopost_jobs", account="demo", status="pending") == 1
    assert value("autopost_jobs", account="broken", status="failed") == 1
    assert value("autopost_attempts", outcome="posted", error_kind="") == 1
    assert value("autopost_attempts", outcome="error", error_kind="invalid") == 1
    assert value("autopost_last_run_jobs", result="posted") == 1
    assert value("autopost_last_run_duration_seconds") >= 0
    assert value("autopost_quota_used", account="demo", window="hour") == 1
    assert value("autopost_quota_limit", account="broken", window="hour") == 5
    assert ("autopost_quota_limit", (("account", "demo"), ("window", "hour"))) not in got
    assert value("autopost_account_needs_reauth", account="broken") == 1
    assert value("autopost_account_needs_reauth", account="demo") == 0
    # Rewritten in place on the next status, atomically.
    assert cli("status", "--prometheus", str(path)).code == 1
    assert samples(path)[("autopost_up", ())] == 1


def test_a_label_with_quotes_survives(cli, tmp_path):
    from autopost.metrics import render

    text = render([("autopost_jobs", {"account": 'we"ird\\name\n', "status": "x"}, 2)])
    (family,) = text_string_to_metric_families(text)
    assert family.samples[0].labels["account"] == 'we"ird\\name\n'


def test_prometheus_into_a_missing_folder_is_one_line(cli, tmp_path):
    from autopost.store.sqlite import SqliteStore

    SqliteStore(cli.db).close()  # status reads a database; it never creates one
    done = cli("status", "--prometheus", str(tmp_path / "nope" / "x.prom"))
    assert done.code == 2 and done.err_lines == [
        f"autopost: --prometheus: no such folder: {tmp_path / 'nope'}"]
