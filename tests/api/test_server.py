"""How ``serve`` runs uvicorn (tunegate/api/server.py): the keep-alive setting, an answer
nobody waited for is logged, and a shutdown does not wait forever for an endless answer."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn

from tests.conftest import free_port
from tunegate.api import request_head
from tunegate.api.request_head import (
    MAX_HEAD_BYTES,
    MAX_HEADER_BYTES,
    MAX_HEADER_FIELDS,
    MAX_TARGET_BYTES,
)
from tunegate.api.server import uvicorn_options
from tunegate.settings import Settings

REQUEST = b"GET /%s HTTP/1.1\r\nHost: test\r\n\r\n"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/slow`` answers after 0.5 s, ``/endless`` after an hour, any other path at once."""
    assert scope["type"] == "http"
    if scope["path"] == "/slow":
        await asyncio.sleep(0.5)
    if scope["path"] == "/endless":
        await asyncio.sleep(3600)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def started(settings: Settings) -> tuple[uvicorn.Server, threading.Thread]:
    """uvicorn serving ``app`` as ``serve`` would, in a thread, once it accepts connections."""
    server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(settings)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    return server, thread


@contextmanager
def running(keep_alive: float) -> Iterator[int]:
    settings = Settings(port=free_port(), keep_alive=keep_alive)
    server, thread = started(settings)
    try:
        yield settings.port
    finally:
        server.should_exit = True
        thread.join(10)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def answer(sock: socket.socket) -> bytes:
    """One whole response (they all end with the 2-byte body ``ok``), or what came before EOF."""
    data = b""
    while not data.endswith(b"\r\n\r\nok"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_a_shutdown_closes_an_endless_answer_after_the_grace_period() -> None:
    assert uvicorn_options(Settings.from_env({"TUNEGATE_SHUTDOWN_GRACE": "3"})) \
        ["timeout_graceful_shutdown"] == 3
    settings = Settings(port=free_port(), shutdown_grace=0.5)
    server, thread = started(settings)
    with connect(settings.port) as sock:
        sock.sendall(REQUEST % b"endless")
        time.sleep(0.3)  # the request is being answered
        asked = time.monotonic()
        server.should_exit = True
        thread.join(15)
        assert not thread.is_alive(), "the shutdown waited for the endless answer"
        assert time.monotonic() - asked < 5


def test_the_keep_alive_setting_is_honoured() -> None:
    assert uvicorn_options(Settings.from_env({"TUNEGATE_KEEP_ALIVE": "12.5"})) \
        ["timeout_keep_alive"] == 12.5
    assert uvicorn_options(Settings())["timeout_keep_alive"] > 5  # above httpx's idle expiry
    with running(keep_alive=0.3) as port, connect(port) as short, connect(port) as long_lived:
        for sock in (short, long_lived):
            sock.sendall(REQUEST % b"a")
            assert answer(sock).startswith(b"HTTP/1.1 200")
        time.sleep(1.0)
        assert short.recv(1) == b""  # closed by the server after 0.3 s idle
    with running(keep_alive=30) as port, connect(port) as sock:
        sock.sendall(REQUEST % b"a")
        assert answer(sock).startswith(b"HTTP/1.1 200")
        time.sleep(1.0)
        sock.sendall(REQUEST % b"b")  # still open after 1 s idle
        assert answer(sock).startswith(b"HTTP/1.1 200")


def test_an_answer_the_client_did_not_wait_for_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tunegate.api")
    with running(keep_alive=5) as port:
        with connect(port) as sock:
            sock.sendall(REQUEST % b"slow")
        time.sleep(1.0)  # the app answers after 0.5 s, to a closed connection
    dropped = [record for record in caplog.records if record.name == "tunegate.api"]
    assert len(dropped) == 1 and dropped[0].levelno == logging.WARNING
    assert "GET /slow" in dropped[0].getMessage()
    assert "before any answer" in dropped[0].getMessage()


def response_head(sock: socket.socket) -> tuple[bytes, dict[str, Any]]:
    """The status line of a refusal and its JSON body (the server closes after it)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0], json.loads(body)


def test_a_1_mb_header_gets_431_while_another_client_is_answered() -> None:
    with running(keep_alive=5) as port, connect(port) as flooder:
        flooder.sendall(b"GET /a HTTP/1.1\r\nHost: test\r\nX-Big: ")
        sent = 0
        try:  # never ends its head: the refusal cannot wait for the end
            while sent < 1024 * 1024:
                flooder.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pytest.fail(f"the connection was reset after {sent} bytes, before the answer")
        with connect(port) as other:  # the flooder's connection is still open
            other.sendall(REQUEST % b"b")
            assert answer(other).startswith(b"HTTP/1.1 200")
        status, body = response_head(flooder)
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert body["error"]["code"] == "headers_too_large"
    assert body["error"]["type"] == "invalid_request_error"
    assert str(MAX_HEADER_BYTES) in body["error"]["message"]


@pytest.mark.parametrize(("head", "status", "code"), [
    (b"GET /a HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (MAX_HEADER_BYTES + 1) + b"\r\n\r\n",
     b"431", "headers_too_large"),
    (b"GET /a HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % n for n in range(MAX_HEADER_FIELDS + 1))
     + b"\r\n", b"431", "too_many_headers"),
    (b"GET /" + b"a" * (MAX_TARGET_BYTES + 1) + b" HTTP/1.1\r\nHost: t\r\n\r\n",
     b"414", "url_too_long"),
])
def test_a_head_over_a_limit_is_refused_in_the_error_envelope(head: bytes, status: bytes,
                                                              code: str) -> None:
    with running(keep_alive=5) as port, connect(port) as sock:
        sock.sendall(head)
        line, body = response_head(sock)
    assert line.split(b" ")[1] == status
    assert body["error"]["code"] == code


def test_heads_and_bodies_within_the_limits_are_answered() -> None:
    big_header = b"X-Big: " + b"a" * (MAX_HEADER_BYTES // 2) + b"\r\n"
    fields = b"".join(b"X-%d: 1\r\n" % n for n in range(MAX_HEADER_FIELDS - 1))
    body = b"b" * (2 * MAX_HEAD_BYTES)  # a body is not a head, whatever its size
    with running(keep_alive=5) as port, connect(port) as sock:
        for _ in range(3):  # on one connection: no head is charged for another's bytes
            sock.sendall(b"GET /a HTTP/1.1\r\nHost: t\r\n" + big_header + b"\r\n")
            assert answer(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /a HTTP/1.1\r\n" + fields + b"\r\n")
        assert answer(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body)
                     + body)
        assert answer(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /" + b"a" * (MAX_TARGET_BYTES - 1) + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        assert answer(sock).startswith(b"HTTP/1.1 200")


def test_a_slow_head_holds_up_no_other_client() -> None:
    head = b"GET /a HTTP/1.1\r\nHost: test\r\nX-Slow: " + b"s" * 1000 + b"\r\n\r\n"
    with running(keep_alive=5) as port, connect(port) as slow:
        for start in range(0, len(head) - 1, 100):  # all but the last byte, in pieces
            slow.sendall(head[start:min(start + 100, len(head) - 1)])
            with connect(port) as other:  # answered while the slow head is unfinished
                other.sendall(REQUEST % b"b")
                assert answer(other).startswith(b"HTTP/1.1 200")
        slow.sendall(head[-1:])
        assert answer(slow).startswith(b"HTTP/1.1 200")


def test_a_head_that_never_ends_gets_408(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(request_head, "HEAD_TIMEOUT_S", 0.5)
    with running(keep_alive=30) as port, connect(port) as sock:
        sock.sendall(REQUEST % b"a")  # a whole request first: its connection stays open
        assert answer(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /b HTTP/1.1\r\nHost: te")  # then a head that never ends
        line, body = response_head(sock)
    assert line == b"HTTP/1.1 408 Request Timeout"
    assert body["error"]["code"] == "request_timeout"
