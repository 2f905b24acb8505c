# ruff: noqa: F811  (fixtures imported from test_cli are parameters here)
"""[notify]: a command hook and a webhook hear about each problem once; a failing or
hanging receiver never fails or holds the run."""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from autopost.store.timefmt import to_db
from tests.test_cli import add_job, demo  # noqa: F401  (demo is a fixture)


class Receiver:
    """A local webhook: records each POSTed JSON body; `status` is what it answers."""

    def __init__(self, status: int = 204, hang: bool = False):
        self.bodies: list[dict] = []
        self.status, self.hang = status, hang
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["content-length"]))
                outer.bodies.append(json.loads(body))
                if outer.hang:
                    outer.release.wait(30)
                self.send_response(outer.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook/s3cret-path"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


HOOK = """import json, sys
event = json.load(sys.stdin)
with open(sys.argv[1], "a") as fh:
    fh.write(json.dumps(event) + "\\n")
sys.exit(int(sys.argv[2]))
"""


def hook(tmp_path: Path, code: int = 0) -> tuple[str, Path]:
    script, out = tmp_path / "hook.py", tmp_path / "events.jsonl"
    script.write_text(HOOK)
    return f"{sys.executable} {script} {out} {code}", out


def events(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def configure(tmp_path: Path, **notify: str) -> Path:
    config = tmp_path / "config.toml"
    config.write_text("[notify]\n" + "".join(f"{k} = {json.dumps(v)}\n"
                                             for k, v in notify.items()))
    return config


def broken_account(cli, tmp_path: Path, config: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    creds = json.dumps({"path": str(blocker / "outbox")})  # ENOTDIR: fails for good
    assert cli("--config", str(config), "accounts", "add", "broken", "--platform", "outbox",
               "--credentials", "-", input=creds).code == 0


def test_one_event_per_failure_to_both_receivers(cli, tmp_path):
    command, out = hook(tmp_path)
    with Receiver() as web:
        config = configure(tmp_path, command=command, webhook=web.url)
        broken_account(cli, tmp_path, config)
        job = add_job(cli, "will fail", "-a", "broken", "--at", "now")
        run = cli("--config", str(config), "run-due")
        assert run.code == 1 and f"job {job['id']}" in run.stderr  # problem lines go to stderr
        (event,) = events(out)
        assert web.bodies == [event]
        assert (event["event"], event["job"], event["account"]) == ("failed", job["id"],
                                                                   "broken")
        assert event["message"].startswith(f"job {job['id']} (broken): failed:")
        assert cli("--config", str(config), "run-due").code == 0  # nothing new: no event
        assert len(events(out)) == 1
        # The same job failing again after a retry is a new occurrence.
        assert cli("retry", job["id"]).code == 0
        assert cli("--config", str(config), "run-due").code == 1
        assert [e["job"] for e in events(out)] == [job["id"], job["id"]]
        assert len(web.bodies) == 2 and web.bodies[0]["id"] != web.bodies[1]["id"]
    ledger = cli.db.with_name("autopost.notified.json")
    assert oct(ledger.stat().st_mode & 0o777) == "0o600"


def test_status_tells_once_per_stale_spell(cli, tmp_path, demo):
    command, out = hook(tmp_path)
    config = configure(tmp_path, command=command)
    assert cli("--config", str(config), "run-due").code == 0
    stale = to_db(datetime.now(UTC) - timedelta(minutes=10))

    def make_stale():
        with sqlite3.connect(cli.db) as c:
            c.execute("UPDATE runs SET started_at = ?, finished_at = ?", (stale, stale))

    make_stale()
    for _ in range(3):  # cron asks every few minutes: one event
        assert cli("--config", str(config), "status", "--notify").code == 1
    (event,) = events(out)
    assert event["event"] == "unhealthy" and "no run for" in event["message"]
    assert cli("--config", str(config), "run-due").code == 0
    assert cli("--config", str(config), "status", "--notify").code == 0  # healthy again
    make_stale()
    assert cli("--config", str(config), "status", "--notify").code == 1
    assert [e["event"] for e in events(out)] == ["unhealthy", "unhealthy"]


def test_failing_receivers_are_reported_and_never_fail_the_run(cli, tmp_path, demo):
    command, out = hook(tmp_path, code=3)
    with Receiver(status=500) as web:
        config = configure(tmp_path, command=command, webhook=web.url)
        broken_account(cli, tmp_path, config)
        bad = add_job(cli, "will fail", "-a", "broken", "--at", "now")
        good = add_job(cli, "will post", "-a", demo, "--at", "now")
        run = cli("--config", str(config), "run-due", "--json")
        assert run.code == 1  # the failed job, not the receivers
        summary = json.loads(run.stdout)
        assert (summary["posted"], summary["failed"]) == (1, 1)
        assert "autopost: notify command exited 3" in run.err_lines
        assert "autopost: notify webhook http://127.0.0.1 answered 500" in run.err_lines
        assert "s3cret-path" not in run.stderr  # the path of a webhook URL may be a secret
        assert len(events(out)) == 1 and len(web.bodies) == 1
    assert cli("show", good["id"], "--json").json()["status"] == "posted"
    assert cli("show", bad["id"], "--json").json()["status"] == "failed"


def test_a_hanging_webhook_gives_up_after_its_timeout(cli, tmp_path):
    with Receiver(hang=True) as web:
        config = configure(tmp_path, webhook=web.url, timeout="0.5s")
        broken_account(cli, tmp_path, config)
        add_job(cli, "will fail", "-a", "broken", "--at", "now")
        run = cli("--config", str(config), "run-due")
        assert run.code == 1
        assert "autopost: notify webhook http://127.0.0.1 failed: ReadTimeout" in run.err_lines


def test_notify_test_sends_a_sample(cli, tmp_path):
    command, out = hook(tmp_path)
    with Receiver() as web:
        config = configure(tmp_path, command=command, webhook=web.url)
        done = cli("--config", str(config), "notify", "test")
        assert done.code == 0 and "sent a test event to the command and the webhook" \
            in done.stdout
        assert [e["event"] for e in events(out)] == ["test"] and len(web.bodies) == 1
    failing, _ = hook(tmp_path, code=1)
    done = cli("--config", str(configure(tmp_path, command=failing)), "notify", "test")
    assert done.code == 1 and done.err_lines == ["autopost: notify command exited 1"]
    assert cli("notify", "test").code == 2


@pytest.mark.parametrize("table, why", [
    ('webhook = "ftp://example.com/x"', "notify.webhook must be an http(s) URL"),
    ('command = ""', "notify.command must be a non-empty string"),
    ('timeout = "soon"', "notify.timeout"),
    ('mail = "me@example.com"', "unknown key notify.mail"),
])
def test_bad_notify_config_is_one_line(cli, tmp_path, table, why):
    config = tmp_path / "config.toml"
    config.write_text(f"[notify]\n{table}\n")
    done = cli("--config", str(config), "status")
    assert done.code == 2 and len(done.err_lines) == 1 and why in done.stderr
