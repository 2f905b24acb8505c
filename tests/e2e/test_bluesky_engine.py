"""`autopost run-due` as real processes against the real PDS (through a counting relay):
a run killed after its post was created is reconciled to posted exactly once, and
overlapping runs spend the rotating refresh token once.

Two runs never publish for one account at the same time (a claim skips an account with
a job in flight), so the refresh lock itself is also driven directly, from three
processes that all hold the expired token at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from autopost.models import Account, JobFilter, JobStatus, NewJob
from autopost.platforms.atproto import jwt_expiry
from autopost.store.sqlite import SqliteStore
from tests.e2e.pds_fixture import Pds, PdsAccount
from tests.e2e.relay import Relay
from tests.e2e.test_bluesky_pds import adapter_for

LEASE = 2.0
CREATE = "com.atproto.repo.createRecord"
REFRESH = "com.atproto.server.refreshSession"


def cli(db: Path, config: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "AUTOPOST_CONFIG": str(config)}
    return subprocess.Popen([sys.executable, "-m", "autopost", "--db", str(db), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=120)
    assert "Traceback" not in err, err
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
    return out


def bluesky_store(tmp_path: Path, pds: Pds, relay: Relay, who: PdsAccount,
                  credentials: dict | None = None, *, expiry_known: bool = True):
    """A database with one Bluesky account (as `accounts add` leaves it) whose calls go
    through the relay."""
    db, config = tmp_path / "autopost.db", tmp_path / "config.toml"
    config.write_text(f"[run]\nlease_seconds = {LEASE}\nmax_concurrent_jobs = 3\n")
    if credentials is None:
        credentials = adapter_for(pds, who.credentials()).setup().credentials
    expires = jwt_expiry(credentials["access_jwt"]) if expiry_known else None
    store = SqliteStore(db)
    store.add_account(Account(name="sky", platform="bluesky", base_url=relay.url,
                              credentials=credentials, token_expires_at=expires),
                      now=datetime.now(UTC))
    return db, config, store


def add_jobs(store: SqliteStore, *texts: str) -> list[str]:
    now = datetime.now(UTC)
    new = [NewJob(account="sky", platform="bluesky", text=text,
                  scheduled_at=now - timedelta(seconds=len(texts) - i))
           for i, text in enumerate(texts)]
    return [job.id for job, _ in store.add_jobs(new, now=now)]


def test_a_run_killed_after_the_create_is_reconciled_to_posted_exactly_once(
        pds, pds_account, tmp_path):
    who = pds_account()
    with Relay(pds.url) as relay:
        db, config, store = bluesky_store(tmp_path, pds, relay, who)
        first, second = add_jobs(store, "made, then the run died", "never started")
        relay.hold.add(CREATE)

        run = cli(db, config, "run-due")
        assert relay.held.wait(60), run.communicate(timeout=5)
        run.kill()  # SIGKILL: the post exists, the run recorded nothing about it
        run.communicate(timeout=30)
        relay.hold.clear()
        relay.release.set()
        assert store.get_job(first).status == JobStatus.RUNNING
        assert [p["value"]["text"] for p in pds.list_posts(who.did)] == [
            "made, then the run died"]

        # The dead run's leases expire, by the times the database holds.
        held = max(j.lease_expires_at
                   for j in store.list_jobs(JobFilter(status=JobStatus.RUNNING)))
        while datetime.now(UTC) <= held:
            time.sleep(0.02)
        finished(cli(db, config, "run-due"))

        posts = {p["value"]["text"]: p["uri"] for p in pds.list_posts(who.did)}
        assert sorted(posts) == ["made, then the run died", "never started"]
        jobs = {j.id: j for j in store.list_jobs(JobFilter())}
        assert {j.status for j in jobs.values()} == {JobStatus.POSTED}
        assert jobs[first].platform_post_id == posts["made, then the run died"]
        assert jobs[second].platform_post_id == posts["never started"]
        assert jobs[first].platform_url.endswith(posts["made, then the run died"][-13:])
        # One create per job, and exactly one question about the lost one.
        assert relay.count(CREATE) == 2
        assert relay.count("com.atproto.repo.getRecord") == 1
        assert [a.outcome for a in store.attempts_for(first)] == ["lost", "reconciled"]
        assert [a.outcome for a in store.attempts_for(second)] == ["posted"]
    store.close()


@pytest.mark.parametrize("expiry_known", [True, False], ids=["proactive", "on-expired-token"])
def test_overlapping_runs_refresh_the_token_once(pds, pds_account, tmp_path, expiry_known):
    who = pds_account()
    session = adapter_for(pds, who.credentials()).setup().credentials
    expired = pds.mint_access_token(who.did)
    with Relay(pds.url) as relay:
        db, config, store = bluesky_store(tmp_path, pds, relay, who,
                                          {**session, "access_jwt": expired},
                                          expiry_known=expiry_known)
        texts = [f"overlap {i}" for i in range(3)]
        add_jobs(store, *texts)
        relay.delays[REFRESH] = 1.5  # a slow refresh: the other runs arrive meanwhile

        for run in [cli(db, config, "run-due") for _ in range(3)]:
            finished(run)

        assert relay.count(REFRESH) == 1
        assert sorted(p["value"]["text"] for p in pds.list_posts(who.did)) == texts
        assert {j.status for j in store.list_jobs(JobFilter())} == {JobStatus.POSTED}
        account = store.get_account("sky")
        assert account.credentials["refresh_jwt"] != session["refresh_jwt"]
        assert account.credentials["access_jwt"] != expired
        assert account.token_expires_at == jwt_expiry(account.credentials["access_jwt"])
        assert account.state == "ok"

        # Later runs use the stored tokens: no refresh, and never a login.
        add_jobs(store, "the next day")
        finished(cli(db, config, "run-due"))
        assert len(pds.list_posts(who.did)) == 4
        assert relay.count(REFRESH) == 1
        assert relay.count("com.atproto.server.createSession") == 0
    store.close()


REFRESHER = """
import json, sys, time
from datetime import UTC, datetime
from pathlib import Path
import httpx
from autopost.accounts import refresh_account, resolve_credentials
from autopost.platforms.bluesky import BlueskyAdapter
from autopost.store.sqlite import SqliteStore

db, go, owner = sys.argv[1:4]
store = SqliteStore(db)
account = store.get_account("sky")
adapter = BlueskyAdapter(account, resolve_credentials(account), httpx.Client(timeout=60))
print("ready", flush=True)
while not Path(go).exists():
    time.sleep(0.005)
updated = refresh_account(store, adapter, account.credentials, owner,
                          clock=lambda: datetime.now(UTC))
print(json.dumps({"access": adapter.credentials["access_jwt"],
                  "refresh": updated.credentials["refresh_jwt"]}), flush=True)
"""


def test_refreshes_overlapping_in_separate_processes_spend_the_token_once(
        pds, pds_account, tmp_path):
    who = pds_account()
    session = adapter_for(pds, who.credentials()).setup().credentials
    expired = pds.mint_access_token(who.did)
    with Relay(pds.url) as relay:
        db, _config, store = bluesky_store(tmp_path, pds, relay, who,
                                           {**session, "access_jwt": expired})
        relay.delays[REFRESH] = 1.0
        go = tmp_path / "go"
        procs = [subprocess.Popen([sys.executable, "-c", REFRESHER, str(db), str(go), f"p{i}"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(3)]
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready", proc.communicate(timeout=30)
        go.touch()  # all three saw the expired token; now they all want a refresh
        answers = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            answers.append(json.loads(out))

        assert relay.count(REFRESH) == 1
        assert relay.count("com.atproto.server.createSession") == 0
        stored = store.get_account("sky").credentials
        assert all(a == {"access": stored["access_jwt"], "refresh": stored["refresh_jwt"]}
                   for a in answers)
        assert stored["refresh_jwt"] != session["refresh_jwt"]
        assert pds.ok("GET", "com.atproto.server.getSession",
                      token=stored["access_jwt"])["did"] == who.did
    store.close()
