"""The run's TLS context, built on a thread of its own while the run starts up.

Before a run's first platform call, the shared httpx.Client needs a TLS context, and
building the first client of a process is the costliest step of a run's start: loading
the CA bundle into a TLS context, and importing httpx and httpcore (together 150-250 ms
on a small machine). OpenSSL loads the bundle without holding the GIL, so run-due starts
all of it first thing on a thread of its own, and it overlaps importing the engine,
opening the store and claiming. The first worker that needs the client builds it around
this context (waiting for it if it is not ready yet), in well under a millisecond.

Nothing here changes what the client trusts: the context is the one httpx would build
itself (`httpx.create_ssl_context()`, which honours SSL_CERT_FILE and SSL_CERT_DIR). If
building it fails, the client is built the ordinary way and meets the same error there.
Standard library only at import time: starting the thread costs nothing measurable.
"""

from __future__ import annotations

import threading
from typing import Any


class TlsPrefetch:
    """Builds the TLS context at once on a daemon thread; `client()` makes the run's
    client with it (the engine's client_factory)."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._context: Any = None
        self._thread = threading.Thread(target=self._build, daemon=True,
                                        name="tls-prefetch")
        self._thread.start()

    def _build(self) -> None:
        try:
            import httpx

            context = httpx.create_ssl_context()
            # A process's first transport imports httpcore (and the async libraries it
            # finds installed), which costs as much again: done here too, and thrown away.
            httpx.HTTPTransport(verify=context).close()
            self._context = context
        except Exception:  # built again (and failing loudly) where the client is made
            self._context = None
        finally:
            self._ready.set()

    def context(self) -> Any:
        """The prefetched context (waiting for it), or None when it could not be built."""
        self._ready.wait()
        return self._context

    def client(self) -> Any:
        """The run's shared httpx.Client, trusting what httpx trusts by default."""
        context = self.context()  # first: httpx is imported by then, on that thread
        from autopost.platforms.http import make_client

        return make_client() if context is None else make_client(verify=context)
