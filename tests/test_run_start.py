"""How run-due starts and how the command ends.

The run's first platform call waits for the shared HTTP client, and the first client of
a process is slow to build (the TLS context, httpcore's import): run-due builds its TLS
context on a thread of its own from its first moment. A finished command ends without
the interpreter's teardown, but never at the cost of output, atexit handlers or a thread
Python would have waited for.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime

import httpx
import pytest

from autopost.models import Account, JobStatus, NewJob
from autopost.platforms import http, tlsprefetch
from autopost.store.sqlite import SqliteStore
from tests.fakes.mastodon_server import FakeMastodon


@pytest.fixture
def mastodon(cli):
    with FakeMastodon() as fake:
        store = SqliteStore(cli.db)
        now = datetime.now(UTC)
        store.add_account(Account(name="alice", platform="mastodon", base_url=fake.base_url,
                                  credentials={"access_token": "token-alice"}), now=now)
        job = store.add_jobs([NewJob(account="alice", platform="mastodon", text="hello",
                                     scheduled_at=now)], now=now)[0][0]
        yield fake, store, job
        store.close()


@pytest.fixture
def contexts(monkeypatch):
    """Every TLS context httpx builds in this process: (thread name, context)."""
    built: list[tuple[str, object]] = []
    real = httpx.create_ssl_context

    def create(*args, **kwargs):
        context = real(*args, **kwargs)
        built.append((threading.current_thread().name, context))
        return context

    monkeypatch.setattr(httpx, "create_ssl_context", create)
    return built


@pytest.fixture
def clients(monkeypatch):
    """The keyword arguments of every make_client call."""
    calls: list[dict] = []
    real = http.make_client

    def make(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(http, "make_client", make)
    return calls


def test_the_runs_client_uses_the_tls_context_built_on_the_prefetch_thread(
        cli, mastodon, contexts, clients):
    fake, store, job = mastodon
    out = cli("run-due")
    assert out.code == 0, out.stderr
    assert store.get_job(job.id).status == JobStatus.POSTED
    # One context, built off the workers' path, and the run's one client trusts it.
    assert [name for name, _ in contexts] == ["tls-prefetch"]
    assert len(clients) == 1 and clients[0].get("verify") is contexts[0][1]


def test_a_prefetch_that_fails_leaves_the_client_to_build_its_own(
        cli, mastodon, contexts, clients, monkeypatch):
    fake, store, job = mastodon
    real = httpx.create_ssl_context

    def flaky(*args, **kwargs):
        if threading.current_thread().name == "tls-prefetch":
            raise OSError("CA bundle unreadable just now")
        return real(*args, **kwargs)

    monkeypatch.setattr(httpx, "create_ssl_context", flaky)
    out = cli("run-due")
    assert out.code == 0, out.stderr
    assert store.get_job(job.id).status == JobStatus.POSTED
    assert clients == [{}]  # the ordinary client, with httpx's own context


def test_a_dry_run_prefetches_nothing(cli, mastodon, monkeypatch):
    started = []
    monkeypatch.setattr(tlsprefetch.TlsPrefetch, "_build", lambda self: started.append(self))
    out = cli("run-due", "--dry-run")
    assert out.code == 0 and "would publish" in out.stdout
    assert started == []


def test_a_publishing_run_loads_httpx_without_its_command_line_tool_or_trio(tmp_path):
    from tests.test_idle import _imported

    with FakeMastodon() as fake:
        db = tmp_path / "autopost.db"
        store = SqliteStore(db)
        now = datetime.now(UTC)
        store.add_account(Account(name="alice", platform="mastodon", base_url=fake.base_url,
                                  credentials={"access_token": "token-alice"}), now=now)
        job = store.add_jobs([NewJob(account="alice", platform="mastodon", text="hello",
                                     scheduled_at=now)], now=now)[0][0]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPOST_")}
        env["AUTOPOST_CONFIG"] = str(tmp_path / "none.toml")
        (tmp_path / "none.toml").write_text("")
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "autopost", "--db",
                               str(db), "run-due"], capture_output=True, text=True, env=env,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert store.get_job(job.id).status == JobStatus.POSTED
        store.close()
    imported = _imported(done.stderr)
    assert {"httpx", "httpcore", "autopost.platforms.mastodon"} <= imported
    # What httpx's command-line tool (httpx._main) and trio would have loaded. (-X
    # importtime lists a refused import too, as a bare name that took no time.)
    unused = {m for m in imported if m.startswith(("rich", "pygments", "trio."))}
    assert not unused, sorted(unused)


# -- the end of the process --------------------------------------------------------------

def run_python(code: str, tmp_path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPOST_")}
    env["AUTOPOST_DB"] = str(tmp_path / "autopost.db")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=60)


def test_leaving_keeps_buffered_output_and_runs_atexit_handlers(tmp_path):
    done = run_python(
        "import atexit, sys\n"
        "from autopost.__main__ import main\n"
        "atexit.register(lambda: print('atexit ran'))\n"
        "sys.stdout.write('x' * 100000)\n"  # more than a pipe's buffer, not flushed
        "main(['--version'])\n", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("x" * 100000)
    assert done.stdout[100000:].splitlines()[0].startswith("autopost ")
    assert done.stdout.splitlines()[-1] == "atexit ran"


def test_leaving_waits_for_a_thread_python_would_wait_for(tmp_path):
    done = run_python(
        "import threading, time\n"
        "from autopost.__main__ import main\n"
        "def late():\n"  # finishes only once the main thread has begun to exit
        "    while threading.main_thread().is_alive():\n"
        "        time.sleep(0.01)\n"
        "    print('thread finished', flush=True)\n"
        "threading.Thread(target=late).start()\n"
        "main(['--version'])\n", tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "thread finished"


def test_leaving_keeps_the_exit_code(tmp_path):
    done = run_python("from autopost.__main__ import main\nmain(['lsit'])\n", tmp_path)
    assert done.returncode == 2
    assert "No such command 'lsit'" in done.stderr


def test_leaving_lets_a_profiler_write_its_figures(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOPOST_")}
    out = tmp_path / "run.prof"
    done = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), "-m", "autopost",
                           "--version"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("autopost ")
    assert out.exists() and out.stat().st_size > 0
