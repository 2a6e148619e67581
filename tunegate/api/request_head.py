"""Limits on a request's head (its request line and header fields), judged before the app runs.

Neither uvicorn's httptools protocol nor llhttp limits a head: one unauthenticated client sent a
256 MB header, the API grew from 90 to 606 MB (350 MB kept), and every other client waited up
to 7.3 s, because the event loop spent seconds parsing it. The limits here are nginx's and
gunicorn's order of magnitude, far above what any SDK sends (a few hundred bytes), and they
bound both the memory a head can take and the time the loop spends on it:

- the request target (path and query) at most ``MAX_TARGET_BYTES``, else 414;
- the header fields at most ``MAX_HEADER_BYTES`` together and ``MAX_HEADER_FIELDS`` in number,
  else 431;
- the whole head within ``HEAD_TIMEOUT_S`` of its first byte, else 408: a client trickling a
  head byte by byte holds up no one, but would hold its connection (and a file descriptor) for
  as long as it likes.

The body has its own limit, checked from ``Content-Length`` by the middleware (413).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from http import HTTPStatus

from tunegate import ids
from tunegate.api.errors import envelope

MAX_TARGET_BYTES = 16 * 1024
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADER_FIELDS = 100
HEAD_TIMEOUT_S = 30.0
# What a head may still hold besides the target and the header fields (method, version, line
# ends) while it is being received: a head larger than all of it is refused before its end.
MAX_HEAD_BYTES = MAX_TARGET_BYTES + MAX_HEADER_BYTES + 1024


@dataclass(frozen=True)
class HeadRefusal:
    """The answer to a head over a limit."""

    status: int
    message: str
    code: str

    def response(self, default_headers: list[tuple[bytes, bytes]]) -> bytes:
        """The whole HTTP/1.1 response, in OpenAI's error envelope, closing the connection."""
        body = json.dumps(envelope(self.message, type="invalid_request_error",
                                   code=self.code)).encode()
        headers = [*default_headers,
                   (b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close"),
                   (b"x-request-id", ids.new_id(ids.REQUEST).encode()),
                   (b"x-content-type-options", b"nosniff"),
                   (b"cache-control", b"no-store")]
        phrase = HTTPStatus(self.status).phrase
        lines = [f"HTTP/1.1 {self.status} {phrase}".encode()]
        lines += [name + b": " + value for name, value in headers]
        return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _too_long_target(size: int) -> HeadRefusal:
    return HeadRefusal(414, f"The request's URL is {size} bytes or more; tunegate accepts at "
                            f"most {MAX_TARGET_BYTES} bytes of path and query.", "url_too_long")


def _too_large_headers(size: int) -> HeadRefusal:
    return HeadRefusal(431, f"The request's header fields are {size} bytes or more; tunegate "
                            f"accepts at most {MAX_HEADER_BYTES} bytes of headers in all.",
                       "headers_too_large")


def _too_many_headers(count: int) -> HeadRefusal:
    return HeadRefusal(431, f"The request has {count} header fields or more; tunegate accepts "
                            f"at most {MAX_HEADER_FIELDS}.", "too_many_headers")


def too_slow() -> HeadRefusal:
    return HeadRefusal(408, f"The request's head (request line and headers) did not arrive "
                            f"within {HEAD_TIMEOUT_S:.0f} s.", "request_timeout")


def judge_complete(target: bytes, headers: list[tuple[bytes, bytes]]) -> HeadRefusal | None:
    """The refusal of a whole head (``name: value`` plus its line end counted per field)."""
    if len(target) > MAX_TARGET_BYTES:
        return _too_long_target(len(target))
    if len(headers) > MAX_HEADER_FIELDS:
        return _too_many_headers(len(headers))
    size = sum(len(name) + len(value) + 4 for name, value in headers)
    if size > MAX_HEADER_BYTES:
        return _too_large_headers(size)
    return None


def judge_partial(received: int, target: bytes, fields: int) -> HeadRefusal | None:
    """The refusal of a head still arriving: ``received`` bytes of it so far, ``target`` as far
    as it was read, ``fields`` header fields complete. None while it may still fit."""
    if len(target) > MAX_TARGET_BYTES:
        return _too_long_target(len(target))
    if fields > MAX_HEADER_FIELDS:
        return _too_many_headers(fields)
    if received > MAX_HEAD_BYTES:
        return _too_large_headers(received - len(target))
    return None
