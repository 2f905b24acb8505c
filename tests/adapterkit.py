"""What the adapter tests on httpx.MockTransport share: a 1x1 PNG, a multipart reader,
handlers that raise httpx's transport errors with the kind each must become, and a
port on 127.0.0.1 that nothing listens on."""

from __future__ import annotations

import email.parser
import email.policy
import socket

import httpx

from autopost.models import ErrorKind

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
