"""YouTube through the real CLI: `run-due` processes against the local resumable fake,
one of them killed with SIGKILL in the middle of a multi-chunk upload."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from autopost.models import JobFilter, JobStatus
from autopost.store.sqlite import SqliteStore

try:
    import googleapiclient  # noqa: F401
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("google-api-python-client is not installed", allow_module_level=True)

from tests.fakes.youtube_server import FakeYouTube  # noqa: E402

TOKEN = "ya29.cli"
MIB = 1024 * 1024
LEASE = 3


def mp4(path: Path, size: int) -> str:
    head = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
    with path.open("wb") as fh:
        fh.write(head)
        left = size - len(head)
        block = hashlib.shake_256(b"video").digest(MIB)
        while left > 0:
            fh.write(block[:left])
            left -= len(block)
    return str(path)


def wait_for(what, predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def fake():
    with FakeYouTube() as server:
        server.add_channel(TOKEN)
        yield server
        assert server.violations == []


@pytest.fixture
def setup(proc, fake, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f"[run]\nlease_seconds = {LEASE}\n"
                      "[platforms.youtube]\nhourly_limit = 0\ndaily_limit = 0\n")
    env = {"AUTOPOST_CONFIG": str(config)}
    out = proc("accounts", "add", "yt", "--platform", "youtube", "--base-url", fake.base_url,
               "--credentials", "-", input=json.dumps({"access_token": TOKEN}), env=env)
    assert out.code == 0, out.stderr
    return env


def test_add_and_run_due_uploads_the_video(proc, fake, setup, tmp_path):
    video = mp4(tmp_path / "clip.mp4", 3 * MIB)
    out = proc("add", "Launch video\nEverything about the launch.", "--account", "yt",
               "--at", "now", "--media", video, env=setup)
    assert out.code == 0, out.stderr
    out = proc("run-due", env=setup)
    assert out.code == 0, out.stdout + out.stderr
    assert out.stderr == ""  # no progress bar without a terminal
    [uploaded] = fake.ledger()
    assert uploaded.resource["snippet"]["title"] == "Launch video"
    assert uploaded.sha256 == hashlib.sha256(Path(video).read_bytes()).hexdigest()
    [job] = json.loads(proc("list", "--json", env=setup).stdout)
    assert job["status"] == "posted" and job["platform_post_id"] == uploaded.id
    assert job["platform_url"] == f"https://www.youtube.com/watch?v={uploaded.id}"
    assert TOKEN not in out.stdout + out.stderr


def test_add_refuses_what_is_not_one_video(proc, setup, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video " * 100)
    out = proc("add", "Title", "--account", "yt", "--at", "now", "--media", str(text),
               env=setup)
    assert out.code == 2 and len(out.err_lines) == 1 and "not a video" in out.stderr
    out = proc("add", "Title", "--account", "yt", "--at", "now", env=setup)
    assert out.code == 2 and "exactly one video" in out.stderr
    assert json.loads(proc("list", "--json", env=setup).stdout) == []


def _run_due(db: Path, env: dict[str, str]) -> subprocess.Popen:
    full = {**{k: v for k, v in os.environ.items() if not k.startswith("AUTOPOST_")}, **env}
    return subprocess.Popen([sys.executable, "-m", "autopost", "--db", str(db), "run-due"],
                            env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run_until_posted(db: Path, env: dict[str, str], store: SqliteStore, tries: int = 4):
    """Clean runs of run-due, at most `tries`, until the one job is posted; that job."""
    for _ in range(tries):
        out, err = _run_due(db, env).communicate(timeout=120)
        assert "Traceback" not in err, err
        if store.list_jobs(JobFilter())[0].status is JobStatus.POSTED:
            break
    [job] = store.list_jobs(JobFilter())
    return job


def test_sigkill_mid_upload_the_next_run_resumes_from_the_servers_offset(proc, fake, setup,
                                                                         tmp_path):
    size = 24 * MIB                        # three 8 MiB chunks
    video = mp4(tmp_path / "long.mp4", size)
    assert proc("add", "Long video", "--account", "yt", "--at", "now", "--media", video,
                env=setup).code == 0
    fake.read_delay = 0.03                  # per 256 KiB: about 3 s for the whole file
    first = _run_due(proc.db, setup)
    # Kill it inside the second chunk: 10 MiB have arrived, the session holds 8.
    wait_for("10 MiB at the server", lambda: fake.bytes_received >= 10 * MIB)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    wait_for("the partial chunk to be kept", lambda: fake.received() > 8 * MIB, timeout=10)
    held = fake.received()
    assert held < size and fake.ledger() == []
    fake.read_delay = 0.0
    sent_before = len(fake.seen("PUT", "/upload/youtube/v3/videos"))

    store = SqliteStore(proc.db)
    try:
        [job] = store.list_jobs(JobFilter())
        assert job.status is JobStatus.RUNNING and job.ref["upload_uri"]
        wait_for("the killed run's lease to expire",
                 lambda: store.list_jobs(JobFilter())[0].lease_expires_at < datetime.now(UTC),
                 timeout=LEASE * 5)
        job = _run_until_posted(proc.db, setup, store)
    finally:
        store.close()
    [uploaded] = fake.ledger()
    assert job.status is JobStatus.POSTED and job.platform_post_id == uploaded.id
    assert uploaded.size == size
    assert uploaded.sha256 == hashlib.sha256(Path(video).read_bytes()).hexdigest()
    assert len(fake.seen("POST", "/upload/youtube/v3/videos")) == 1  # one session, resumed
    assert fake.bytes_received < 1.3 * size
    resumed = [r.header("content-range") for r in
               fake.seen("PUT", "/upload/youtube/v3/videos")[sent_before:] if r.body]
    assert resumed[0].startswith(f"bytes {held}-")  # from where the server was, not zero


def test_status_warns_when_a_google_token_is_dead(proc, fake, setup):
    fake.expired_tokens.add(TOKEN)
    out = proc("accounts", "check", "yt", env=setup)
    assert out.code == 1 and "re-auth" in out.stdout + out.stderr
    status = proc("status", env=setup)
    assert status.code == 1 and "yt" in status.stdout


def test_a_progress_bar_on_a_terminal_only(proc, fake, setup, tmp_path):
    import pty

    video = mp4(tmp_path / "big.mp4", 17 * MIB)  # above the progress bar's threshold
    assert proc("add", "Big one", "--account", "yt", "--at", "now", "--media", video,
                env=setup).code == 0
    master, slave = pty.openpty()
    full = {**{k: v for k, v in os.environ.items() if not k.startswith("AUTOPOST_")}, **setup}
    run = subprocess.Popen([sys.executable, "-m", "autopost", "--db", str(proc.db),
                            "run-due"], env=full, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    shown = b""
    while True:
        try:
            piece = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not piece:
            break
        shown += piece
    assert run.wait(timeout=120) == 0
    os.close(master)
    text = shown.decode(errors="replace")
    assert "big.mp4" in text and "100%" in text and "17/17 MiB" in text
    assert TOKEN not in text
    assert len(fake.ledger()) == 1


def test_platforms_lists_linkedin_and_youtube_as_built(proc):
    rows = {r["platform"]: r for r in json.loads(proc("platforms", "--json").stdout)}
    assert rows["linkedin"]["supported"] and rows["youtube"]["supported"]
    table = proc("platforms").stdout
    assert "linkedin (not built)" not in table and "youtube (not built)" not in table


def test_login_playing_the_browser_then_upload(proc, fake, tmp_path):
    from urllib.parse import parse_qs, urlsplit

    from tests.oauthkit import login_through_browser

    fake.add_client("gid.apps.googleusercontent.com", "g-secret")
    fake.approver = TOKEN
    creds = {"client_id": "gid.apps.googleusercontent.com", "client_secret": "g-secret"}
    out = proc("accounts", "add", "tube", "--platform", "youtube", "--base-url", fake.base_url,
               "--credentials", "-", input=json.dumps(creds))
    assert out.code == 0, out.stderr
    code, stdout, stderr, url = login_through_browser(proc.db, "tube")
    assert code == 0, stdout + stderr
    query = parse_qs(urlsplit(url).query)
    assert urlsplit(url).path == "/o/oauth2/v2/auth"
    assert query["access_type"] == ["offline"] and query["code_challenge_method"] == ["S256"]
    assert "https://www.googleapis.com/auth/youtube.upload" in query["scope"][0]
    assert "logged in tube (youtube) as Ada's channel" in stdout
    assert fake.exchanges == 1 and "g-secret" not in stdout + stderr
    assert not any(t in stdout + stderr for t in fake.refresh_tokens)
    [row] = json.loads(proc("accounts", "list", "--json").stdout)
    assert row["state"] == "ok"
    video = mp4(tmp_path / "after-login.mp4", MIB)
    assert proc("add", "Logged in", "--account", "tube", "--at", "now", "--media", video,
                "--option", "privacy=unlisted", "--option", "tags=a,b").code == 0
    run = proc("run-due")
    assert run.code == 0, run.stdout + run.stderr
    [uploaded] = fake.ledger()
    assert uploaded.resource["status"]["privacyStatus"] == "unlisted"
    assert uploaded.resource["snippet"]["tags"] == ["a", "b"]


def test_run_due_refreshes_an_expired_token_and_a_dead_refresh_token_is_explained(
        proc, fake, setup, tmp_path):
    fake.add_client("gid", "g-secret", testing=True)
    channel = fake.tokens[TOKEN]
    fake.refresh_tokens["1//good"] = {"channel": channel, "testing": True, "at": fake.now()}
    creds = {"access_token": "ya29.expired", "refresh_token": "1//good", "client_id": "gid",
             "client_secret": "g-secret"}
    assert proc("accounts", "add", "tube", "--platform", "youtube", "--base-url",
                fake.base_url, "--credentials", "-", input=json.dumps(creds),
                env=setup).code == 0
    video = mp4(tmp_path / "v.mp4", MIB)
    assert proc("add", "First", "--account", "tube", "--at", "now", "--media", video,
                env=setup).code == 0
    run = proc("run-due", env=setup)
    assert run.code == 0, run.stdout + run.stderr
    assert len(fake.ledger()) == 1 and fake.refreshes == ["1//good"]
    # A week later the "Testing" app's refresh token is dead: the account waits, loudly.
    fake.advance(8 * 86400)
    for token in list(fake.tokens):
        if token != TOKEN:
            fake.expired_tokens.add(token)
    assert proc("add", "Second", "--account", "tube", "--at", "now", "--media",
                video, env=setup).code == 0
    run = proc("run-due", env=setup)
    assert run.code == 1
    assert '"Testing"' in run.stdout + run.stderr and "7 days" in run.stdout + run.stderr
    assert len(fake.ledger()) == 1
    status = proc("status", env=setup)
    assert status.code == 1 and "needs re-auth" in status.stdout
    [job] = json.loads(proc("list", "--status", "pending", "--json", env=setup).stdout)
    assert job["text"] == "Second"  # waits for the login, not failed


def test_answers_lost_after_the_last_chunk_the_next_run_finds_the_video(proc, fake, setup,
                                                                         tmp_path):
    video = mp4(tmp_path / "v.mp4", 2 * MIB)        # one chunk: the first PUT is the last
    assert proc("add", "Lost answer", "--account", "yt", "--at", "now", "--media", video,
                env=setup).code == 0
    # The last chunk arrives (the video is made) but no answer gets back, nor to a probe;
    # the run dies while it is still asking.
    fake.inject("drop", path="/upload/youtube/v3/videos", method="PUT", count=50)
    first = _run_due(proc.db, setup)
    wait_for("the video", lambda: len(fake.ledger()) == 1)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    fake.faults.clear()
    store = SqliteStore(proc.db)
    try:
        wait_for("the killed run's lease to expire",
                 lambda: store.list_jobs(JobFilter())[0].lease_expires_at < datetime.now(UTC),
                 timeout=LEASE * 5)
        out, err = _run_due(proc.db, setup).communicate(timeout=120)
        assert "Traceback" not in err, err
        [job] = store.list_jobs(JobFilter())
    finally:
        store.close()
    [made] = fake.ledger()
    assert job.status is JobStatus.POSTED and job.platform_post_id == made.id
    assert len(fake.seen("POST", "/upload/youtube/v3/videos")) == 1  # never uploaded again
    assert fake.bytes_received == 2 * MIB


def test_a_relative_thumbnail_option_is_kept_absolute(proc, fake, setup, tmp_path):
    from tests import images

    (tmp_path / "thumb.png").write_bytes(images.png(4, 4))
    video = mp4(tmp_path / "v.mp4", MIB)
    out = proc("add", "With a thumbnail", "--account", "yt", "--at", "now", "--media", video,
               "--option", "thumbnail=thumb.png", env=setup)
    assert out.code == 0, out.stderr
    [job] = json.loads(proc("list", "--json", env=setup).stdout)
    run = proc("run-due", env=setup)
    assert run.code == 0, run.stdout + run.stderr
    [uploaded] = fake.ledger()
    assert uploaded.thumbnail == (tmp_path / "thumb.png").read_bytes()
    bad = proc("add", "x", "--account", "yt", "--at", "now", "--media", video,
               "--option", "privacy=secret", env=setup)
    assert bad.code == 2 and "privacy" in bad.stderr and len(bad.err_lines) == 1


def test_killed_more_times_than_its_attempts_the_upload_still_finishes_once(proc, fake, setup,
                                                                           tmp_path):
    size = 40 * MIB                       # five chunks
    video = mp4(tmp_path / "long.mp4", size)
    assert proc("add", "Killed often", "--account", "yt", "--at", "now", "--media", video,
                env=setup).code == 0
    fake.read_delay = 0.03
    store = SqliteStore(proc.db)
    try:
        # max_attempts is 3. A killed client's last bytes may still sit in the socket for
        # the server to read: kills are spaced by more than a chunk.
        for n, threshold in enumerate((2, 8, 14, 20)):
            run = _run_due(proc.db, setup)
            wait_for(f"{threshold} MiB", lambda t=threshold: fake.bytes_received >= t * MIB)
            run.send_signal(signal.SIGKILL)
            run.communicate(timeout=30)
            wait_for("the lease to expire",
                     lambda: store.list_jobs(JobFilter())[0].lease_expires_at is None
                     or store.list_jobs(JobFilter())[0].lease_expires_at < datetime.now(UTC),
                     timeout=LEASE * 5)
            assert fake.ledger() == [], f"finished before kill {n + 1}"
        fake.read_delay = 0.0
        job = _run_until_posted(proc.db, setup, store)
    finally:
        store.close()
    [made] = fake.ledger()
    assert job.status is JobStatus.POSTED and job.platform_post_id == made.id
    assert made.size == size and len(fake.seen("POST", "/upload/youtube/v3/videos")) == 1
    assert fake.bytes_received < 1.3 * size
