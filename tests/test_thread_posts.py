"""Threads: each part a reply to the one before, posted only after it is confirmed, never
twice, and stopped loudly at a failed part (kill -9 between parts included)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from autopost.models import Account, JobFilter, JobStatus, NewJob, PostRef, Reply
from autopost.store.sqlite import SqliteStore
from tests.fakes.mastodon_server import FakeMastodon
from tests.test_bluesky import DID, FakePds, adapter, created, job, record_of

from .conftest import outbox_credentials
from .crashkit import engine_files, finish
from .test_schedule_cli import refused

LEASE = 2.0


@pytest.fixture
def demo(cli, tmp_path):
    out = cli("accounts", "add", "demo", "--platform", "outbox", "--credentials", "-",
              input=outbox_credentials(tmp_path))
    assert out.code == 0, out.stderr
    return tmp_path / "outbox"


def posted_files(outbox: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in outbox.glob("*.json")}


# -- add and import ----------------------------------------------------------------------------

def test_add_thread_posts_each_part_as_a_reply_in_order(cli, demo):
    out = cli("add", "--thread", "one", "two", "three", "-a", "demo", "--at", "now", "--json")
    assert out.code == 0, out.stderr
    parts = out.json()
    assert [p["text"] for p in parts] == ["one", "two", "three"]
    run = cli("run-due")
    assert run.code == 0, run.stderr
    files = posted_files(demo)
    ids = [p["id"] for p in parts]
    assert set(files) == set(ids)
    shown = cli("show", ids[2], "--json").json()
    chain = {p["part"]: p for p in shown["thread"]}
    assert [chain[n]["status"] for n in (1, 2, 3)] == ["posted"] * 3
    assert "in_reply_to" not in files[ids[0]]
    assert files[ids[1]]["in_reply_to"] == chain[1]["platform_post_id"]
    assert files[ids[2]]["in_reply_to"] == chain[2]["platform_post_id"]
    assert files[ids[2]]["thread_root"] == chain[1]["platform_post_id"]
    # Each part went out after the one it replies to was recorded as posted.
    assert files[ids[0]]["posted_at"] <= files[ids[1]]["posted_at"] <= files[ids[2]]["posted_at"]


def test_thread_keys_and_refusals(cli, demo, tmp_path):
    out = cli("accounts", "add", "tg", "--platform", "telegram", "--credentials", "-",
              input='{"bot_token": "123:abc", "chat_id": "1"}')
    assert out.code == 0, out.stderr
    refused(cli, "add", "--thread", "a", "b", "-a", "tg", "--at", "+1h", match="no replies")
    refused(cli, "add", "--thread", "only one", "-a", "demo", "--at", "+1h",
            match="at least two")
    refused(cli, "add", "a", "b", "-a", "demo", "--at", "+1h", match="--thread")
    first = cli("add", "--thread", "a", "b", "-a", "demo", "--at", "+1h", "--key", "t",
                "--json").json()
    assert [p["key"] for p in first] == ["t", "t#2"]
    again = cli("add", "--thread", "a", "b", "-a", "demo", "--at", "+1h", "--key", "t",
                "--json").json()
    assert [p["created"] for p in again] == [False, False]


def test_import_links_rows_sharing_a_thread_by_part(cli, demo, tmp_path):
    at = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    path = tmp_path / "t.csv"
    path.write_text(f"account,at,text,thread,part\ndemo,{at},third,t1,30\n"
                    f"demo,{at},first,t1,1\ndemo,{at},alone,,\ndemo,{at},second,t1,2\n")
    out = cli("import", str(path))
    assert out.code == 0, out.stderr
    store = SqliteStore(cli.db)
    try:
        jobs = {j.text: j for j in store.list_jobs(JobFilter())}
    finally:
        store.close()
    assert jobs["alone"].thread_id is None
    assert jobs["first"].thread_id == jobs["second"].thread_id == jobs["third"].thread_id
    assert [jobs[t].thread_part for t in ("first", "second", "third")] == [1, 2, 3]
    bad = tmp_path / "bad.csv"
    bad.write_text(f"account,at,text,thread,part\ndemo,{at},x,t,1\ndemo,{at},y,t,1\n")
    refused(cli, "import", str(bad), match="part 1 twice")
    bad.write_text(f"account,at,text,thread,part\ndemo,{at},x,,2\n")
    refused(cli, "import", str(bad), match="needs a thread")
    bad.write_text(f"account,at,text,thread,part\ndemo,{at},x,t,\u0663\n", encoding="utf-8")
    refused(cli, "import", str(bad), match="expected a part number")


# -- the engine: order, failure, crashes ------------------------------------------------------

def _cli(db: Path, config: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "AUTOPOST_CONFIG": str(config)}
    return subprocess.Popen([sys.executable, "-m", "autopost", "--db", str(db), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _setup(tmp_path: Path, fake: FakeMastodon, threads: int, parts: int, accounts: int):
    db, config, store = engine_files(tmp_path, "mastodon", LEASE)
    now = datetime.now(UTC)
    new = []
    for a in range(accounts):
        fake.add_account(f"token-{a}", f"user{a}")
        store.add_account(Account(name=f"m{a}", platform="mastodon", base_url=fake.base_url,
                                  credentials={"access_token": f"token-{a}"}), now=now)
        for t in range(threads):
            new += [NewJob(account=f"m{a}", platform="mastodon", text=f"thread {a}/{t} part {n}",
                           scheduled_at=now, thread_id=f"th-{a}-{t}", thread_part=n)
                    for n in range(1, parts + 1)]
    store.add_jobs(new, now=now)
    return db, config, store


def _assert_threads_whole(fake: FakeMastodon, store: SqliteStore) -> None:
    """Every part posted exactly once, after and in reply to the part before it."""
    ledger = fake.ledger()
    counts = Counter(c.text for c in ledger)
    assert counts and max(counts.values()) == 1, [t for t, n in counts.items() if n > 1]
    order = {c.text: i for i, c in enumerate(ledger)}
    by_id = {c.id: c for c in ledger}
    jobs = store.list_jobs(JobFilter())
    assert {j.status for j in jobs} == {JobStatus.POSTED}, store.count_by_status()
    threads: dict[str, list] = {}
    for j in jobs:
        threads.setdefault(j.thread_id, []).append(j)
    for parts in threads.values():
        parts.sort(key=lambda j: j.thread_part)
        for before, part in zip(parts, parts[1:], strict=False):
            made = by_id[part.platform_post_id]
            assert made.in_reply_to_id == before.platform_post_id
            assert order[before.text] < order[part.text]
        assert by_id[parts[0].platform_post_id].in_reply_to_id is None


def _finish(db: Path, config: Path, store: SqliteStore, rounds: int = 20) -> None:
    finish(store, lambda: _cli(db, config, "run-due").communicate(timeout=120)[1], LEASE,
           rounds)


@pytest.mark.parametrize("seed", [3, 4])
def test_threads_survive_kill_9_between_parts(tmp_path, seed):
    rng = random.Random(seed)
    with FakeMastodon(latency=0.03) as fake:
        db, config, store = _setup(tmp_path, fake, threads=3, parts=4, accounts=3)
        for _ in range(12):
            proc = _cli(db, config, "run-due")
            time.sleep(rng.uniform(0.05, 0.8))
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
            if rng.random() < 0.3:
                time.sleep(LEASE + 0.1)
        _finish(db, config, store)
        _assert_threads_whole(fake, store)
        assert len(fake.ledger()) == 36


def test_a_failed_part_stops_the_thread_loudly(tmp_path):
    with FakeMastodon() as fake:
        db, config, store = _setup(tmp_path, fake, threads=1, parts=3, accounts=1)
        parts = store.list_jobs(JobFilter(account="m0"))
        parts.sort(key=lambda j: j.thread_part)
        out, err = _cli(db, config, "run-due", "--limit", "1").communicate(timeout=60)
        assert store.get_job(parts[0].id).status == JobStatus.POSTED, err
        # The second part is refused (422), as an instance refuses bad content.
        fake.inject("status", path="/api/v1/statuses", method="POST", status=422, count=1,
                    message="Validation failed: Text character limit of 500 exceeded")
        run = _cli(db, config, "run-due")
        out, err = run.communicate(timeout=60)
        assert run.returncode == 1, (out, err)
        assert f"job {parts[1].id}" in err and "failed" in err  # problem lines: stderr
        second, third = store.get_job(parts[1].id), store.get_job(parts[2].id)
        assert second.status == third.status == JobStatus.FAILED
        assert "part 2 of its thread" in third.last_error and third.attempts == 0
        assert len(fake.ledger()) == 1  # nothing after the failed part went out
        shown = subprocess.run([sys.executable, "-m", "autopost", "--db", str(db), "show",
                                parts[2].id], capture_output=True, text=True, timeout=60)
        first = store.get_job(parts[0].id)
        assert first.platform_url and first.platform_url in shown.stdout
        # Retrying the failed part sends the rest after it, in order.
        assert subprocess.run([sys.executable, "-m", "autopost", "--db", str(db), "retry",
                               parts[1].id], capture_output=True, timeout=60).returncode == 0
        assert store.get_job(parts[2].id).status == JobStatus.PENDING
        _cli(db, config, "run-due").communicate(timeout=60)
        _assert_threads_whole(fake, store)


def test_a_cancelled_part_cancels_the_rest_of_its_thread(cli, demo):
    parts = cli("add", "--thread", "a", "b", "c", "-a", "demo", "--at", "+1h", "--json").json()
    out = cli("cancel", parts[1]["id"])
    assert out.code == 0, out.stderr
    statuses = [cli("show", p["id"], "--json").json()["status"] for p in parts]
    assert statuses == ["pending", "cancelled", "cancelled"]


# -- the store: claim order and reply refs ------------------------------------------------------

def test_bluesky_reply_names_root_and_parent_with_their_cids():
    fake = FakePds()
    root_uri = f"at://{DID}/app.bsky.feed.post/3root"
    parent_uri = f"at://{DID}/app.bsky.feed.post/3parent"

    def get_record(request: httpx.Request) -> httpx.Response:
        rkey = request.url.params["rkey"]
        assert request.url.params["repo"] == DID
        return httpx.Response(200, json={"uri": f"at://{DID}/app.bsky.feed.post/{rkey}",
                                         "cid": f"cid-{rkey}", "value": {}})

    fake.on("com.atproto.repo.getRecord", get_record)
    fake.on("com.atproto.repo.createRecord", created("3child"))
    part = job("third part", reply=Reply(parent=PostRef(parent_uri), root=PostRef(root_uri)))
    adapter(fake).publish(part, lambda ref: None)
    (sent,) = fake.sent("com.atproto.repo.createRecord")
    assert record_of(sent)["record"]["reply"] == {
        "root": {"uri": root_uri, "cid": "cid-3root"},
        "parent": {"uri": parent_uri, "cid": "cid-3parent"}}


def test_mastodon_part_is_sent_in_reply_to_its_parent(tmp_path):
    with FakeMastodon() as fake:
        db, config, store = _setup(tmp_path, fake, threads=1, parts=2, accounts=1)
        out, err = _cli(db, config, "run-due").communicate(timeout=60)
        _assert_threads_whole(fake, store)
        first, second = fake.ledger()
        assert second.in_reply_to_id == first.id
