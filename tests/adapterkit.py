"""What the adapter tests share: a save_ref and a sleep that remember their calls, a
check of the kind of PlatformError raised, a 1x1 PNG, a multipart reader, handlers that
raise httpx's transport errors with the kind each must become, and a port on 127.0.0.1
that nothing listens on."""

from __future__ import annotations

import email.parser
import email.policy
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from autopost.models import ErrorKind
from autopost.platforms.base import PlatformError

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
       b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18"
       b"\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")

# A transport error while sending a create, and the kind it must be classified as:
# nothing sent (network) or sent with the outcome unknown (ambiguous).
TRANSPORT_ERRORS = [
    (httpx.ConnectError, ErrorKind.NETWORK),
    (httpx.ConnectTimeout, ErrorKind.NETWORK),
    (httpx.ReadTimeout, ErrorKind.AMBIGUOUS),
    (httpx.WriteTimeout, ErrorKind.AMBIGUOUS),
    (httpx.RemoteProtocolError, ErrorKind.AMBIGUOUS),
    (httpx.ReadError, ErrorKind.AMBIGUOUS),
]


class Refs:
    """A save_ref that remembers what was saved (and can check state at save time)."""

    def __init__(self, on_save: Callable[[dict[str, Any]], None] | None = None):
        self.saved: list[dict[str, Any]] = []
        self.on_save = on_save

    def __call__(self, ref: dict[str, Any]) -> None:
        if self.on_save:
            self.on_save(ref)
        self.saved.append(dict(ref))

    @property
    def last(self) -> dict[str, Any]:
        return self.saved[-1] if self.saved else {}


class Sleeper:
    """A sleep that only records how long it was asked to sleep."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def raises(kind: ErrorKind, fn: Callable[[], Any]) -> PlatformError:
    """The PlatformError fn() raises, which must be of `kind`."""
    with pytest.raises(PlatformError) as info:
        fn()
    assert info.value.kind is kind, info.value.message
    return info.value


def multipart(request: httpx.Request) -> dict[str, tuple[str | None, str, bytes]]:
    """name -> (filename, content type, payload) for a multipart/form-data request."""
    raw = request.read()
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    assert message.is_multipart()
    parts = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        parts[name] = (part.get_filename(), part.get_content_type(),
                       part.get_payload(decode=True))
    return parts


def raiser(exc_type: type[httpx.TransportError]):
    """A MockTransport handler raising exc_type with the request's URL in its text."""
    def handler(request: httpx.Request):
        # httpx exceptions often name the URL, and the URL holds the token.
        raise exc_type(f"boom while calling {request.url}", request=request)
    return handler


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
