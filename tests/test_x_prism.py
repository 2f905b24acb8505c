"""The X adapter through Stoplight Prism in proxy mode, in front of the fake X server:
Prism checks every request the adapter sends and every answer the fake gives against
X's official OpenAPI description (a bad request gets 422, a bad answer 500, and the
adapter would raise). Errors are not sent through Prism: X's real error bodies (the
duplicate 403, the 429) do not follow the description's Problem schema, which is why
their tests talk to the fake directly (tests/test_x.py).

Prism comes from `bash .ci/prism-setup.sh` (tests/prism). Without it these tests skip,
except under CI=true, where they fail."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from autopost.models import Account, ErrorKind, Job, Media
from autopost.platforms import x as xmod
from autopost.platforms.base import PlatformError, Verdict
from autopost.platforms.x import XAdapter
from tests.fakes.x_server import SPEC, FakeX
from tests.images import png

PRISM = Path(__file__).resolve().parent / "prism" / "node_modules" / ".bin" / "prism"
READY_WITHIN = 180.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def fake():
    with FakeX() as server:
        yield server


@pytest.fixture(scope="module")
def prism(fake):
    if not PRISM.exists():
        message = "Prism is not installed (run: bash .ci/prism-setup.sh)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    port = _free_port()
    proc = subprocess.Popen([str(PRISM), "proxy", "-h", "127.0.0.1", "-p", str(port),
                             "--errors", str(SPEC), fake.base_url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_WITHIN
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"prism exited with {proc.returncode}")
            try:
                httpx.get(url + "/2/users/me", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    pytest.fail(f"prism did not answer within {READY_WITHIN} s")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def adapter(fake: FakeX, url: str) -> XAdapter:
    tokens = fake.issue()
    creds = {"client_id": "cid", "access_token": tokens["access_token"]}
    account = Account("xp", "x", base_url=url, credentials=creds)
    return XAdapter(account, creds, httpx.Client(timeout=30), sleep=lambda _s: None)


def job(text: str, media: tuple[Media, ...] = (), **kw) -> Job:
    now = datetime.now(UTC)
    return Job(id="prism001", account="xp", platform="x", text=text, scheduled_at=now,
               next_attempt_at=now, media=media, **kw)


def test_prism_refuses_a_request_the_spec_rejects(prism, fake):
    token = fake.issue()["access_token"]
    answer = httpx.post(prism + "/2/tweets", headers={"Authorization": f"Bearer {token}"},
                        json={"txt": "typo"})
    assert answer.status_code == 422 and "prism" in answer.text


def test_text_post_and_check_through_prism(prism, fake):
    a = adapter(fake, prism)
    published = a.publish(job("through prism"), lambda _ref: None)
    assert any(p.id == published.post_id for p in fake.posts)
    assert a.check().display == "@alice (Alice)"


def test_images_with_alt_text_and_a_chunked_video_through_prism(prism, fake, tmp_path,
                                                                 monkeypatch):
    images = []
    for i in range(2):
        path = tmp_path / f"p{i}.png"
        path.write_bytes(png(6 + i, 6))
        images.append(Media(str(path), f"alt {i}"))
    published = adapter(fake, prism).publish(job("two images via prism", tuple(images)),
                                             lambda _ref: None)
    [post] = [p for p in fake.posts if p.id == published.post_id]
    assert len(post.media_keys) == 2
    monkeypatch.setattr(xmod, "CHUNK", 700)
    video = tmp_path / "v.mp4"
    video.write_bytes(bytes(range(200)) * 10)
    published = adapter(fake, prism).publish(job("a video via prism", (Media(str(video)),)),
                                             lambda _ref: None)
    [post] = [p for p in fake.posts if p.id == published.post_id]
    assert len(post.media_keys) == 1


def test_lost_answer_then_reconcile_through_prism(prism, fake):
    ref: dict = {}
    fake.inject("drop", "/2/tweets")
    with pytest.raises(PlatformError) as err:
        adapter(fake, prism).publish(job("dropped via prism"), ref.update)
    assert err.value.kind == ErrorKind.AMBIGUOUS
    found = adapter(fake, prism).reconcile(job("dropped via prism", ref=ref))
    assert found.verdict == Verdict.POSTED
    assert found.published.post_id == [p.id for p in fake.posts
                                       if p.text == "dropped via prism"][0]


def test_a_thread_reply_through_prism(prism, fake):
    from autopost.models import PostRef, Reply

    a = adapter(fake, prism)
    first = a.publish(job("1/ a thread via prism"), lambda _ref: None)
    root = PostRef(first.post_id, first.url, {})
    second = a.publish(job("2/ the reply via prism", reply=Reply(parent=root, root=root)),
                       lambda _ref: None)
    [post] = [p for p in fake.posts if p.id == second.post_id]
    assert post.extra == {"reply": {"in_reply_to_tweet_id": first.post_id}}
