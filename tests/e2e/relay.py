"""A loopback HTTP relay in front of the PDS that counts XRPC calls and injects the
failures end-to-end tests need: hold the answer to a call that the PDS already carried
out (the post exists, the client never hears so), or delay an answer (to make
overlapping runs meet in a refresh)."""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length",
        "host", "proxy-connection", "te", "trailer", "upgrade"}


class Relay:
    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.delays: dict[str, float] = {}
        self.hold: set[str] = set()
        self.held = threading.Event()  # set once a held call reached the PDS
        self.release = threading.Event()
        self.client = httpx.Client(timeout=60.0)
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def _any(self) -> None:
                relay._serve(self)

            do_GET = do_POST = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Relay:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.client.close()

    def count(self, nsid: str) -> int:
        with self.lock:
            return self.calls[nsid]

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        nsid = handler.path.split("?", 1)[0].removeprefix("/xrpc/")
        with self.lock:
            self.calls[nsid] += 1
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP}
        answer = self.client.request(handler.command, self.upstream + handler.path,
                                     headers=headers, content=body)
        if nsid in self.hold:
            # The PDS did it; the caller never learns. Keep the connection open until
            # the test lets go (it kills the caller meanwhile), then drop it.
            self.held.set()
            self.release.wait(120)
            handler.close_connection = True
            return
        delay = self.delays.get(nsid)
        if delay:
            threading.Event().wait(delay)
        handler.send_response(answer.status_code)
        for key, value in answer.headers.items():
            if key.lower() not in _HOP:
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(answer.content)))
        handler.end_headers()
        handler.wfile.write(answer.content)
