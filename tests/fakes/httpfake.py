"""The plumbing the fake platform servers share.

LocalServer and QuietHandler, for every fake (Mastodon, Graph, LinkedIn, YouTube): a
threaded HTTP server on 127.0.0.1 (port 0 by default) with its start/stop, and a request
handler that logs nothing, answers HTTP/1.1 with headers and body in one segment and
sends JSON replies.

FakeServer, for the LinkedIn and YouTube fakes: on top of that a request log and
injected faults.

Faults apply to the next `count` requests matching `path` (a prefix) and `method`, after
letting `skip` of them through:
  status   answer `status` with `body` (JSON) and `headers`
  latency  wait `seconds`, then answer normally
  drop     do the work, then close the connection without answering
  reset    close the connection without doing anything (nothing is read or done)
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit


@dataclass
class Fault:
    kind: str = "status"            # status | latency | drop | reset
    count: int = 1
    path: str | None = None
    method: str | None = None
    status: int = 503
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    skip: int = 0                   # let this many matching requests through first

    def matches(self, method: str, path: str) -> bool:
        return (self.count > 0 and (self.path is None or path.startswith(self.path))
                and (self.method is None or self.method.upper() == method))


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    raw_query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Reply:
    status: int
    body: Any = None                # dict/list -> JSON; bytes as is; None -> empty
    headers: dict[str, str] = field(default_factory=dict)


class LocalServer:
    """A threaded HTTP server on 127.0.0.1 whose handlers reach this object as
    `self.server.fake`. stop() also ends every wait()."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int = 0, *,
                 server_class: type[ThreadingHTTPServer] = ThreadingHTTPServer):
        self._stop = threading.Event()
        self._httpd = server_class(("127.0.0.1", port), handler)
        self._httpd.daemon_threads = True
        self._httpd.fake = self  # type: ignore[attr-defined]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> Self:
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait(self, seconds: float) -> None:
        """Sleep `seconds` (an injected latency), or less if the server stops."""
        if seconds > 0:
            self._stop.wait(seconds)


class QuietHandler(BaseHTTPRequestHandler):
    """GET and POST go to handle_method(method); a subclass adds do_PUT/do_DELETE where
    its platform has them (the others answer 501)."""

    protocol_version = "HTTP/1.1"
    # Headers and body in one segment, sent at once: no 40 ms delayed-ACK stall per reply.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True
    json_type = "application/json; charset=utf-8"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_GET(self) -> None:
        self.handle_method("GET")

    def do_POST(self) -> None:
        self.handle_method("POST")

    def handle_method(self, method: str) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def send_body(self, status: int, data: bytes, content_type: str | None = None,
                  headers: Mapping[str, str] | None = None) -> None:
        """One whole reply; a Content-Type in `headers` wins over `content_type`."""
        headers = headers or {}
        self.send_response(status)
        if content_type and "Content-Type" not in headers:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def send_json(self, status: int, body: Any,
                  headers: Mapping[str, str] | None = None) -> None:
        self.send_body(status, json.dumps(body).encode(), self.json_type, headers)


class FakeServer(LocalServer):
    """Subclasses implement route(request) -> Reply."""

    server_version = "Fake/1.0"

    def __init__(self, port: int = 0):
        self.lock = threading.RLock()
        self.faults: list[Fault] = []
        self.requests: list[Request] = []
        super().__init__(_Handler, port)

    def inject(self, kind: str = "status", **options: Any) -> Fault:
        fault = Fault(kind=kind, **options)
        with self.lock:
            self.faults.append(fault)
        return fault

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    if fault.skip > 0:
                        fault.skip -= 1
                        continue
                    fault.count -= 1
                    self.faults = [f for f in self.faults if f.count > 0]
                    return fault
        return None

    def seen(self, method: str | None = None, path: str | None = None) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if (method is None or r.method == method)
                    and (path is None or r.path.startswith(path))]

    def route(self, request: Request) -> Reply:  # pragma: no cover - abstract
        raise NotImplementedError

    def read_body(self, handler: BaseHTTPRequestHandler) -> bytes:
        """The request body; subclasses may read it in pieces (to be interrupted)."""
        return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


class _Handler(QuietHandler):
    def do_PUT(self) -> None:
        self.handle_method("PUT")

    def do_DELETE(self) -> None:
        self.handle_method("DELETE")

    def _send(self, reply: Reply) -> None:
        if isinstance(reply.body, bytes):
            self.send_body(reply.status, reply.body, "application/octet-stream", reply.headers)
        elif reply.body is None:
            self.send_body(reply.status, b"", None, reply.headers)
        else:
            self.send_body(reply.status, json.dumps(reply.body).encode(), self.json_type,
                           reply.headers)

    def handle_method(self, method: str) -> None:
        fake: FakeServer = self.server.fake  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        fault = fake.take_fault(method, url.path)
        if fault is not None and fault.kind == "reset":
            self.close_connection = True
            return
        try:
            raw = fake.read_body(self)
        except ConnectionError:
            self.close_connection = True
            return
        request = Request(method, url.path, parse_qs(url.query, keep_blank_values=True),
                          url.query, {k.lower(): v for k, v in self.headers.items()}, raw)
        with fake.lock:
            fake.requests.append(request)
        if fault is not None and fault.kind == "latency":
            fake.wait(fault.seconds)
        if fault is not None and fault.kind == "status":
            self._send(Reply(fault.status, fault.body, dict(fault.headers)))
            return
        reply = fake.route(request)
        if fault is not None and fault.kind == "drop":
            self.close_connection = True
            return
        self._send(reply)
