"""kill -9 of a real `run-due` in the middle of publishing an Instagram or Threads
container: between the container and the publish, and after the publish before the
result was recorded. Afterwards exactly one post exists and the job is `posted`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autopost.models import JobFilter, JobStatus
from autopost.store.sqlite import SqliteStore
from tests import metakit
from tests.images import jpeg

fake = metakit.fake
media_host = metakit.media_host
LEASE = 2


def _env(tmp_path: Path, media: tuple[Path, str]) -> dict[str, str]:
    config = tmp_path / "config.toml"
    folder, url = media
    config.write_text(f"[run]\nlease_seconds = {LEASE}\n[meta]\nthreads_publish_wait = 0\n"
                      f'[media]\npublic_dir = "{folder}"\npublic_base_url = "{url}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPOST_")}
    return {**env, "AUTOPOST_CONFIG": str(config)}


def _cli(db: Path, env: dict[str, str], *args: str, stdin: str | None = None,
         wait: bool = True):
    argv = [sys.executable, "-m", "autopost", "--db", str(db), *args]
    if not wait:
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    done = subprocess.run(argv, env=env, input=stdin, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def _setup(tmp_path, fake, media_host, platform):
    env = _env(tmp_path, media_host)
    db = tmp_path / "autopost.db"
    if platform == "instagram":
        page = fake.add_page("ig-crash-token-01", "Shop", ig_username="shop")
        owner = fake.pages[page]["ig"]
        creds = {"ig_user_id": owner, "access_token": "ig-crash-token-01"}
        edge = "/media_publish"
    else:
        owner = fake.add_threads_user("th-crash-token-01", "poster")
        creds = {"threads_user_id": owner, "access_token": "th-crash-token-01"}
        edge = "/threads_publish"
    _cli(db, env, "accounts", "add", "acct", "--platform", platform, "--base-url",
         fake.base_url, "--credentials", "-", stdin=json.dumps(creds))
    photo = tmp_path / "p.jpg"
    photo.write_bytes(jpeg(16, 16))
    _cli(db, env, "add", "crash me", "--account", "acct", "--at", "now", "--media", str(photo))
    return env, db, owner, edge


def _kill_at(fake, db, env, fragment: str) -> None:
    """Start run-due, wait until the fake holds the request, then kill -9 the run."""
    seen = fake.seen(fragment)
    run = _cli(db, env, "run-due", wait=False)
    try:
        assert seen.wait(60), "the publish request never arrived"
    finally:
        run.send_signal(signal.SIGKILL)
        run.communicate(timeout=30)


def _settle(db, env, deadline: float = 90.0) -> SqliteStore:
    """Run again until the job is settled (leases expire, then the reconcile is due)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        store = SqliteStore(db)
        [job] = store.list_jobs(JobFilter())
        if job.status in (JobStatus.POSTED, JobStatus.FAILED):
            return store
        store.close()
        out = _cli(db, env, "run-due")
        assert "Traceback" not in out.stderr
        time.sleep(0.5)  # polling the database between runs, not waiting for an event
    raise AssertionError(f"job not settled: {store.list_jobs(JobFilter())}")


@pytest.mark.parametrize("platform", ["instagram", "threads"])
@pytest.mark.parametrize("moment", ["hold", "hold_after"])
def test_kill_9_around_the_publish_leaves_exactly_one_post(tmp_path, fake, media_host,
                                                          platform, moment):
    env, db, owner, edge = _setup(tmp_path, fake, media_host, platform)
    # "hold": the publish never reaches Meta (killed between container and publish);
    # "hold_after": Meta publishes, the answer never comes back (killed before the record).
    fake.inject(moment, path=edge, method="POST")
    _kill_at(fake, db, env, edge)
    store = SqliteStore(db)
    [job] = store.list_jobs(JobFilter())
    store.close()
    assert job.status == JobStatus.RUNNING and job.ref.get("container")
    assert len(fake.published(owner)) == (1 if moment == "hold_after" else 0)
    fake.release()
    store = _settle(db, env)
    [job] = store.list_jobs(JobFilter())
    live = fake.published(owner)
    assert len(live) == 1, live
    assert job.status == JobStatus.POSTED and job.platform_post_id == live[0]["id"]
    assert live[0]["container"] == job.ref["container"]
    assert len([c for c in fake.containers.values() if not c["carousel_item"]]) == 1
