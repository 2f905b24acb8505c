"""A real Bluesky PDS (the AT Protocol reference implementation) on 127.0.0.1 for tests.

`start_pds()` runs tests/pds/start.mjs under node on free ports, waits for
/xrpc/_health, and returns a `Pds` handle: its base URL, accounts made with
createAccount, raw XRPC calls, read-back helpers, and tokens minted with the PDS's JWT
secret. `Pds.stop()` ends the process (SIGTERM, then SIGKILL) and its data goes with it.
The server also exits on its own when the test process dies (it watches its stdin).

When node or tests/pds/node_modules is missing the tests are skipped, except under CI
(the CI environment variable set), where a PDS that cannot run is a failure.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

PDS_DIR = Path(__file__).resolve().parents[1] / "pds"
START_TIMEOUT = 60.0
POST = "app.bsky.feed.post"
_names = itertools.count(1)


def pds_unavailable() -> str | None:
    """Why the PDS cannot run here, or None."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (PDS_DIR / "node_modules" / "@atproto" / "pds").is_dir():
        return f"the test PDS is not installed: run .ci/pds-setup.sh (npm ci in {PDS_DIR})"
    return None


def require_pds() -> None:
    """Skip (or, under CI, fail) when the PDS cannot run on this machine."""
    reason = pds_unavailable()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"the Bluesky PDS end-to-end tests must run in CI, but {reason}",
                    pytrace=False)
    pytest.skip(f"Bluesky PDS end-to-end tests: {reason}")


@dataclass
class PdsAccount:
    handle: str
    password: str  # an app password, as an operator would give autopost
    account_password: str
    email: str
    did: str
    access_jwt: str
    refresh_jwt: str

    def credentials(self) -> dict[str, str]:
        """What an operator gives `accounts add`."""
        return {"identifier": self.handle, "password": self.password}


class Pds:
    def __init__(self, process: subprocess.Popen, info: dict[str, Any], jwt_secret: str,
                 log: Path):
        self.process = process
        self.info = info
        self.url: str = info["pdsUrl"]
        self.admin_password: str = info["adminPassword"]
        self.jwt_secret = jwt_secret
        self.log = log
        self.http = httpx.Client(base_url=self.url, timeout=30.0)

    # -- raw calls ------------------------------------------------------------------
    def xrpc(self, method: str, nsid: str, *, token: str | None = None,
             **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.request(method, f"/xrpc/{nsid}", headers=headers, **kwargs)

    def ok(self, method: str, nsid: str, **kwargs: Any) -> dict[str, Any]:
        response = self.xrpc(method, nsid, **kwargs)
        assert response.status_code == 200, f"{nsid}: {response.status_code} {response.text}"
        return response.json()

    # -- accounts -------------------------------------------------------------------
    def create_account(self, prefix: str = "user", *, app_password: bool = True) -> PdsAccount:
        """A fresh account (handle <prefix><n><random>.test) and, by default, an app
        password for it, as autopost's operator would use."""
        name = f"{prefix}{next(_names)}{secrets.token_hex(3)}"[:18].lower()
        password = f"pw-{secrets.token_urlsafe(12)}"
        body = self.ok("POST", "com.atproto.server.createAccount", json={
            "handle": f"{name}.test", "email": f"{name}@example.com", "password": password})
        app = password
        if app_password:
            app = self.ok("POST", "com.atproto.server.createAppPassword",
                          token=body["accessJwt"], json={"name": "autopost"})["password"]
        return PdsAccount(handle=body["handle"], password=app, account_password=password,
                          email=f"{name}@example.com", did=body["did"],
                          access_jwt=body["accessJwt"], refresh_jwt=body["refreshJwt"])

    def mint_access_token(self, did: str, *, expires_in: float = -60.0,
                          scope: str = "com.atproto.appPass") -> str:
        """An access token for `did` signed with the PDS's secret; by default one that
        expired a minute ago."""
        now = int(time.time())
        header = {"typ": "at+jwt", "alg": "HS256"}
        claims = {"scope": scope, "aud": "did:web:localhost", "sub": did,
                  "iat": now - 7200, "exp": int(now + expires_in)}
        signing_input = f"{_b64(header)}.{_b64(claims)}"
        signature = hmac.new(self.jwt_secret.encode(), signing_input.encode(),
                             hashlib.sha256).digest()
        return signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()

    # -- reading back ---------------------------------------------------------------
    def list_posts(self, did: str, limit: int = 100) -> list[dict[str, Any]]:
        """Every post record in the repo, newest first: [{"uri", "cid", "value"}]."""
        return self.ok("GET", "com.atproto.repo.listRecords",
                       params={"repo": did, "collection": POST, "limit": limit})["records"]

    def get_post(self, did: str, rkey: str) -> dict[str, Any] | None:
        response = self.xrpc("GET", "com.atproto.repo.getRecord",
                             params={"repo": did, "collection": POST, "rkey": rkey})
        if response.status_code == 400 and response.json().get("error") == "RecordNotFound":
            return None
        assert response.status_code == 200, response.text
        return response.json()

    def get_blob(self, did: str, cid: str) -> bytes:
        response = self.xrpc("GET", "com.atproto.sync.getBlob", params={"did": did, "cid": cid})
        assert response.status_code == 200, response.text
        return response.content

    # -- lifecycle ------------------------------------------------------------------
    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        self.http.close()
        _terminate(self.process)


def start_pds(workdir: Path, *, rate_limits: bool = False,
              timeout: float = START_TIMEOUT) -> Pds:
    """Start a PDS whose files (ready file, log) go under `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / "ready.json"
    log = workdir / "pds.log"
    jwt_secret = secrets.token_hex(16)
    env = {
        **os.environ,
        "PDS_PORT": "0",
        "PLC_PORT": "0",
        "PDS_JWT_SECRET": jwt_secret,
        "PDS_ADMIN_PASSWORD": secrets.token_hex(8),
        "PDS_READY_FILE": str(ready),
        "PDS_EXIT_ON_STDIN_EOF": "true",
        "PDS_RATE_LIMITS_ENABLED": "true" if rate_limits else "false",
    }
    with open(log, "wb") as out:
        process = subprocess.Popen(["node", "start.mjs"], cwd=PDS_DIR, env=env,
                                   stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    try:
        info = _wait_ready(process, ready, deadline)
        pds = Pds(process, info, jwt_secret, log)
        _wait_healthy(pds, deadline)
    except BaseException:
        _terminate(process)
        raise
    return pds


def _wait_ready(process: subprocess.Popen, ready: Path, deadline: float) -> dict[str, Any]:
    while not ready.exists():
        if process.poll() is not None:
            raise RuntimeError(f"the PDS exited with {process.returncode} while starting; "
                               f"see {ready.parent / 'pds.log'}")
        if time.monotonic() > deadline:
            raise RuntimeError("the PDS did not start in time")
        time.sleep(0.05)
    return json.loads(ready.read_text())


def _wait_healthy(pds: Pds, deadline: float) -> None:
    while True:
        try:
            if pds.http.get("/xrpc/_health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the PDS at {pds.url} does not answer /xrpc/_health")
        time.sleep(0.05)


def _terminate(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    if process.stdin:
        process.stdin.close()


def _b64(obj: dict[str, Any]) -> str:
    raw = json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
