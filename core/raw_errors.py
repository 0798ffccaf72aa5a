"""JSON answers for requests Tornado refuses before the application sees them.

Tornado's HTTP/1 server answers a request it cannot parse (a bad request
line or header, a negative or non-numeric ``Content-Length``, a bad chunk)
with a bare ``HTTP/1.1 400 Bad Request`` and no body, and closes a
connection whose header block exceeds ``max_header_size`` without any
answer. Neither has a hook: the 400 is a constant written in
``HTTP1Connection._read_message_inner`` and the header limit is enforced by
the stream itself (``UnsatisfiableReadError``, then ``close``).

`answer_malformed_requests` gives each accepted stream two small instance
overrides instead of a copy of those private methods:

* ``write`` swaps exactly that constant for a JSON 400 in the one error format;
* ``close`` called for a header block over the limit first sends a JSON 431
  (Request Header Fields Too Large) straight to the socket, best effort:
  the bytes are few and a fresh connection's send buffer is empty.

What stays as Tornado does it: a header block over the limit that arrives
faster than the server reads may make the client see a reset instead of the
431 (the connection is closed with bytes it never read), and the reason
Tornado logs for a 400 is not in the answer (it is not passed on).
"""

from __future__ import annotations

import socket
from typing import Any

from tornado.iostream import IOStream, UnsatisfiableReadError

TORNADO_BARE_400 = b"HTTP/1.1 400 Bad Request\r\n\r\n"
BAD_REQUEST_MESSAGE = "Malformed HTTP request: the request line, a header or the body framing could not be read."
HEADERS_TOO_LARGE_MESSAGE = "Request headers are too large."


def _response(status: str, message: str) -> bytes:
    body = b'{"message": "' + message.encode() + b'"}'
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json; charset=UTF-8\r\nContent-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
    ).encode() + body


JSON_400 = _response("400 Bad Request", BAD_REQUEST_MESSAGE)
JSON_431 = _response("431 Request Header Fields Too Large", HEADERS_TOO_LARGE_MESSAGE)


def answer_malformed_requests(stream: IOStream) -> None:
    """Make ``stream`` answer Tornado's protocol-level refusals with JSON (see the module docstring)."""
    write, close = stream.write, stream.close

    def json_write(data: Any) -> Any:
        if len(data) == len(TORNADO_BARE_400) and data == TORNADO_BARE_400:
            data = JSON_400
        return write(data)

    def answering_close(exc_info: Any = False) -> None:
        if isinstance(exc_info, UnsatisfiableReadError) and not stream.closed() and stream.socket is not None:
            # Only the header block is read up to a regex (its error names the compiled pattern);
            # a chunk-size line is read up to a plain delimiter.
            reply = JSON_431 if "re.compile(" in str(exc_info) else JSON_400
            try:
                stream.socket.send(reply)
                stream.socket.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        close(exc_info)

    stream.write = json_write  # type: ignore[method-assign]
    stream.close = answering_close  # type: ignore[method-assign]
