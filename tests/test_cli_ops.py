# ruff: noqa: F811  (fixtures imported from test_cli are parameters here)
"""backup, export (round-trips with import), config, completion, -h, -q / -v, help."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading

import pytest

from autopost.platforms import registry
from autopost.platforms.options import Option
from autopost.platforms.outbox import OutboxAdapter
from autopost.store.sqlite import SqliteStore
from tests.conftest import file_hash
from tests.images import png
from tests.test_cli import add_job, demo, future, opened  # noqa: F401  (demo is a fixture)


def schedule(store) -> list[tuple]:
    """The pending schedule, as an import would rebuild it."""
    from autopost.models import JobFilter, JobStatus

    return sorted((j.account, j.scheduled_at, j.text, j.key,
                   tuple((m.path, m.alt) for m in j.media), json.dumps(j.options))
                  for j in store.list_jobs(JobFilter(status=JobStatus.PENDING)))


class OptionsOutbox(OutboxAdapter):
    platform = "optbox"
    options = (Option("visibility", "choice", "who sees it", choices=("public", "unlisted")),)


@pytest.fixture(autouse=True)
def optbox():
    registry.register("optbox", OptionsOutbox)
    yield
    registry.unregister("optbox")


@pytest.fixture
def planned(cli, tmp_path, demo):
    image = tmp_path / "dot.png"
    image.write_bytes(png(2, 2))
    add_job(cli, "plain", "-a", demo, "--at", future(1))
    add_job(cli, 'quotes "and" commas, and\na second line', "-a", demo, "--at", future(2),
            "--key", "k-2")
    add_job(cli, "with a picture", "-a", demo, "--at", future(3), "--media", str(image),
            "--alt", "a red dot", "--media", str(image))
    assert cli("accounts", "add", "opt", "--platform", "optbox", "--credentials", "-",
               input=json.dumps({"path": str(tmp_path / "optbox")})).code == 0
    add_job(cli, "with an option", "-a", "opt", "--at", future(5), "--option",
            "visibility=unlisted")
    gone = add_job(cli, "cancelled, not exported", "-a", demo, "--at", future(4))
    cli("cancel", gone["id"])
    return image


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_then_import_round_trips_the_schedule(cli, tmp_path, planned, fmt):
    out = tmp_path / f"schedule.{fmt}"
    done = cli("export", "--format", fmt, "--output", str(out))
    assert done.code == 0, done.stderr
    assert "exported 4 jobs" in done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    with opened(cli) as store:
        before = schedule(store)
    # A fresh database with the same account.
    fresh = type(cli)(tmp_path / "fresh" / "autopost.db")
    creds = json.dumps({"path": str(tmp_path / "outbox2")})
    for name, platform in (("demo", "outbox"), ("opt", "optbox")):
        assert fresh("accounts", "add", name, "--platform", platform, "--credentials", "-",
                     input=creds).code == 0
    imported = fresh("import", str(out), "--json")
    assert imported.code == 0, imported.stderr
    assert imported.json()["new"] == 4
    with opened(fresh) as store:
        assert schedule(store) == before
    # The same export on stdout.
    assert cli("export", "--format", fmt).stdout == out.read_text()


def test_export_refuses_a_bad_format(cli, demo):
    done = cli("export", "--format", "xml")
    assert done.code == 2 and done.err_lines == ["autopost: --format: expected csv or jsonl, "
                                                 "got 'xml'"]


def test_backup_is_a_consistent_private_copy_while_a_writer_goes_on(cli, tmp_path, demo):
    for i in range(20):
        add_job(cli, f"job {i}", "-a", demo, "--at", future(i + 1))
    stop = threading.Event()

    def writer():
        store = SqliteStore(cli.db)
        try:
            from datetime import UTC, datetime

            from autopost.models import NewJob

            n = 0
            while not stop.is_set():
                store.add_jobs([NewJob(account="demo", platform="outbox", text=f"w{n}",
                                       scheduled_at=datetime(2030, 1, 1, tzinfo=UTC))],
                               now=datetime.now(UTC))
                n += 1
        finally:
            store.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        target = tmp_path / "backups" / "copy.db"
        target.parent.mkdir()
        done = cli("backup", str(target))
    finally:
        stop.set()
        thread.join()
    assert done.code == 0, done.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    with sqlite3.connect(target) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        count = c.execute("SELECT count(*) FROM jobs").fetchone()[0]
    assert count >= 20
    assert [p.name for p in target.parent.iterdir()] == ["copy.db"]  # no temporary left
    copied = SqliteStore(target)
    try:
        assert len(copied.list_jobs(__import__("autopost.models").models.JobFilter())) == count
    finally:
        copied.close()
    # It does not overwrite without --force, and changes nothing when refused.
    digest = file_hash(target)
    again = cli("backup", str(target))
    assert again.code == 2 and "exists (use --force" in again.stderr
    assert file_hash(target) == digest
    assert cli("backup", str(target), "--force").code == 0


def test_backup_without_a_database(cli, tmp_path):
    done = cli("backup", str(tmp_path / "copy.db"))
    assert done.code == 2 and done.err_lines == [f"autopost: no database at {cli.db}"]
    assert not (tmp_path / "copy.db").exists()


def test_config_names_where_each_setting_comes_from(cli, tmp_path, demo):
    config = tmp_path / "config.toml"
    config.write_text('[run]\nlease_seconds = "10m"\n[platforms.default]\nmax_attempts = 3\n'
                      "[platforms.x]\ndaily_limit = 100\n")
    out = cli("--config", str(config), "config", "--json",
              env={"AUTOPOST_MASTODON_HOURLY_LIMIT": "5"})
    assert out.code == 0, out.stderr
    report = out.json()
    assert report["database"] == {"path": str(cli.db.absolute()), "exists": True,
                                  "source": "flag"}
    assert report["config"] == {"path": str(config), "exists": True, "source": "flag"}
    by_name = {s["name"]: s for s in report["settings"]}
    assert (by_name["run.lease_seconds"]["value"], by_name["run.lease_seconds"]["source"]) \
        == (600, "file")
    assert by_name["run.enabled"]["source"] == "default"
    assert by_name["platforms.x.daily_limit"]["value"] == 100
    assert by_name["platforms.x.daily_limit"]["detail"] == "[platforms.x]"
    assert by_name["platforms.mastodon.max_attempts"]["detail"] == "[platforms.default]"
    assert (by_name["platforms.mastodon.hourly_limit"]["value"],
            by_name["platforms.mastodon.hourly_limit"]["source"],
            by_name["platforms.mastodon.hourly_limit"]["detail"]) == \
        (5, "environment", "AUTOPOST_MASTODON_HOURLY_LIMIT")


def test_config_without_a_file_says_where_it_looked(cli, isolated_env):
    out = cli("config")
    assert out.code == 0
    looked = isolated_env / "config" / "autopost" / "config.toml"
    assert f"config    none (looked for {looked})" in out.stdout
    assert "run.enabled\ttrue\tdefault" in out.stdout


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o default -F"),
                                           ("zsh", "#compdef autopost"),
                                           ("fish", "complete --command autopost")])
def test_completion_scripts(shell, marker):
    env = {**os.environ, "_AUTOPOST_COMPLETE": f"source_{shell}"}
    done = subprocess.run([sys.executable, "-m", "autopost"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert marker in done.stdout


def test_completion_completes_commands():
    env = {**os.environ, "_AUTOPOST_COMPLETE": "complete_bash", "COMP_WORDS": "autopost li",
           "COMP_CWORD": "1"}
    done = subprocess.run([sys.executable, "-m", "autopost"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.stdout.split() == ["list"]


def command_paths(cli) -> list[list[str]]:
    out = cli("--help").stdout
    names = [line.split()[0] for line in out.split("Commands:")[1].splitlines() if line.strip()]
    paths = []
    for name in names:
        text = cli(name, "-h").stdout
        if "Commands:" in text:  # a group: accounts, notify
            sub = text.split("Commands:")[1]
            paths += [[name, line.split()[0]] for line in sub.splitlines() if line.strip()]
        else:
            paths.append([name])
    return paths


def test_every_command_has_h_and_an_example(cli):
    paths = command_paths(cli)
    assert len(paths) >= 20
    for path in paths:
        out = cli(*path, "-h")
        assert out.code == 0, path
        assert "Example" in out.stdout, path
        assert f"autopost {' '.join(path)}" in out.stdout.split("Example")[1], path
        assert "-q, --quiet" in out.stdout and "-v, --verbose" in out.stdout, path


def test_help_text_is_shown_as_written(cli):
    out = cli("accounts", "add", "--help")
    assert '{"env": "VAR"}' in out.stdout  # no markup eats the braces or brackets
    assert "[required]" in out.stdout


def test_quiet_prints_only_ids(cli, demo):
    first = cli("-q", "add", "one", "-a", demo, "--at", future(1))
    assert first.code == 0 and len(first.stdout.split()) == 1
    second = cli("add", "two", "-a", demo, "--at", future(2), "-q").stdout.strip()
    assert cli("list", "-q").stdout.split() == [first.stdout.strip(), second]
    assert cli("cancel", second, "-q").stdout == ""
    assert cli("-q", "cancel", "nonexistent").code == 2  # errors still speak
    assert "nonexistent" in cli("-q", "cancel", "nonexistent").stderr


def test_run_due_is_silent_under_cron_and_sums_up_with_v(cli, demo):
    add_job(cli, "due", "-a", demo, "--at", "now")
    assert cli("run-due").stdout == ""
    add_job(cli, "due too", "-a", demo, "--at", "now")
    loud = cli("run-due", "-v")
    assert loud.code == 0 and loud.stdout.startswith("run ") and "1 posted in" in loud.stdout


def test_cron_prints_mailto_notify_and_systemd_wiring(cli, demo):
    out = cli("cron").stdout
    assert "\nMAILTO=" in out
    assert f"{cli.db} status --notify -q --prometheus {cli.db.with_name('autopost.prom')}" in out
    assert "OnFailure=autopost-failed@%n.service" in out
    assert "EnvironmentFile=-%h/.config/autopost/env" in out
    assert "[Unit]\nDescription=autopost: %i failed" in out
    # systemd gets the status timer cron has: notify and metrics every 10 minutes.
    status = out.split("autopost-status.service")[1].split("autopost-status.timer")[0]
    assert f"ExecStart={sys.executable} -m autopost --db {cli.db} status --notify -q " \
           f"--prometheus {cli.db.with_name('autopost.prom')}" in status
    assert "SuccessExitStatus=1" in status and "EnvironmentFile=" in status
    assert "OnUnitActiveSec=10min" in out
    assert "enable --now autopost.timer autopost-status.timer" in out
