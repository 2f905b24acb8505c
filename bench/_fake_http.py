"""A tiny HTTP/1.1 platform on 127.0.0.1 for the benchmarks, with a fixed latency.

POST /post  -> sleeps LATENCY seconds, answers 200 {"id": N}. Keep-alive, one thread per
connection, so concurrent requests overlap their latency the way a real server's would.
GET /count  -> {"posts": N} (how many posts it has answered).

Run it in its own process, so it does not share the GIL with the run being measured:
    python bench/_fake_http.py [--latency 0.1]      (prints the port, then serves)
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One write per response, TCP_NODELAY: otherwise headers and body go out as two
    # segments and the second waits ~40 ms for the client's delayed ACK.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True
    server: Server

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.server.latency:
            time.sleep(self.server.latency)
        with self.server.lock:
            n = next(self.server.ids)
        self._answer({"id": str(n)})

    def do_GET(self) -> None:
        with self.server.lock:
            n = next(self.server.ids) - 1
            self.server.ids = itertools.count(n + 1)
        self._answer({"posts": n})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, latency: float, port: int = 0):
        super().__init__(("127.0.0.1", port), Handler)
        self.latency = latency
        self.lock = threading.Lock()
        self.ids = itertools.count(1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    server = Server(args.latency, args.port)
    print(server.server_address[1], flush=True)
    sys.stdout.close()
    server.serve_forever(poll_interval=0.2)


if __name__ == "__main__":
    main()
