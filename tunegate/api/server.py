"""How ``tunegate serve`` runs uvicorn: idle connections kept longer than clients keep theirs,
and every request the server leaves unanswered logged.

With uvicorn's default of 5 s, the server closed an idle keep-alive connection exactly when
httpx (the openai SDK's client) still considered it reusable, since httpx keeps idle
connections 5 s too: a request sent at that moment found the connection closing and failed
(``RemoteProtocolError`` / ``ReadError`` in the client), with nothing in the server's log. A
busy server or a starved client makes such idle gaps common (bench/api_load.py (b2)
reproduces them: 3 of 400 requests). Keeping idle connections longer than clients do
(``TUNEGATE_KEEP_ALIVE``, 75 s like nginx, above httpx's 5 s, aiohttp's 15 s and the usual load
balancers' 60 s) lets the client close first.

On SIGTERM/SIGINT uvicorn waits for every request still being answered, with no limit by
default: one open chat stream kept ``serve`` (and its worker) running for over ten minutes.
``TUNEGATE_SHUTDOWN_GRACE`` (10 s) bounds that wait; what is still open then is closed.

``Protocol`` also holds a request's head to the limits of ``tunegate.api.request_head`` (408,
414 and 431, before the app, hence before authentication): it counts a head's bytes as they arrive,
so a client sending an endless header is refused once it is over the limit, not at its end. The
refused client's further bytes are read and dropped for up to ``LINGER_SECONDS`` before the
connection closes: closing at once, with its bytes unread, would reset the connection, and the
client would see the reset instead of the answer.

It logs a request whose connection closed before its answer was complete: uvicorn
drops that answer silently, without an access-log line (a client that timed out, say). It also
tells long answers that the server is stopping: on SIGTERM uvicorn waits for every open answer
to end, and a live event stream (``tunegate.api.event_stream``) would never end by itself.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from typing import Any

from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tunegate.api import request_head
from tunegate.api.event_stream import STOPPING_KEY
from tunegate.api.middleware import REQUEST_ID_KEY
from tunegate.api.request_head import HeadRefusal, judge_complete, judge_partial
from tunegate.api.url_secrets import RedactSecrets
from tunegate.logs import JsonFormatter
from tunegate.settings import Settings

log = logging.getLogger("tunegate.api")
RECEIVED_KEY = "tunegate.received"  # scope: when the request's headers had arrived
LINGER_SECONDS = 2.0


class Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with limits on a request's head, never leaving a request
    unanswered without saying so."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.head_bytes = 0  # of the head being received, as far as counted
        self.reading_head = True  # False from a head's end to its message's end
        self.heads = 0  # heads received whole on this connection
        self.refused = False
        self.head_deadline: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return  # dropped: the answer is sent, the connection closes soon
        reading_head, heads = self.reading_head, self.heads
        super().data_received(data)
        # Counted only while one head is being received from before to after these bytes: a
        # chunk that also holds a body or another head is not, so a head may pass its limit
        # by one chunk before it is refused (a chunk is at most 256 KiB), never be refused
        # for bytes that are not its own.
        if (self.refused or self.transport.is_closing() or not reading_head
                or not self.reading_head or heads != self.heads):
            return
        self.head_bytes += len(data)
        refusal = judge_partial(self.head_bytes, getattr(self, "url", b""),
                                len(self.headers or ()))
        if refusal is not None:
            self.refuse(refusal)

    def refuse(self, refusal: HeadRefusal) -> None:
        """Answer ``refusal`` and close the connection once the client is done sending."""
        self.refused = True
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.warning("%s: refused a request before reading it whole: %s %s",
                    client, refusal.status, refusal.message)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # An earlier (pipelined) request is still being answered on this connection: a
            # second answer cannot be written in the middle of it.
            self.transport.close()
            return
        self.transport.write(refusal.response(self.server_state.default_headers))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def eof_received(self) -> None:
        if self.refused:
            self.transport.close()
        super().eof_received()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # Read at call time, so that a test can shorten it.
        self.head_deadline = self.loop.call_later(request_head.HEAD_TIMEOUT_S,
                                                  self.head_too_slow)

    def head_too_slow(self) -> None:
        if self.reading_head and not self.refused and not self.transport.is_closing():
            self.refuse(request_head.too_slow())

    def on_headers_complete(self) -> None:
        if self.head_deadline is not None:
            self.head_deadline.cancel()
        self.heads += 1
        self.reading_head = False
        self.head_bytes = 0
        refusal = judge_complete(self.url, self.headers)
        if refusal is not None:
            self.refuse(refusal)
            return
        self.scope[RECEIVED_KEY] = time.monotonic()  # type: ignore[literal-required]
        self.scope[STOPPING_KEY] = asyncio.Event()  # type: ignore[literal-required]
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self.refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self.reading_head = True
        if not self.refused:
            super().on_message_complete()

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: an answer still streaming is asked to end now."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            stopping = cycle.scope.get(STOPPING_KEY)
            if isinstance(stopping, asyncio.Event):
                stopping.set()
        super().shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.head_deadline is not None:
            self.head_deadline.cancel()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            scope: Any = cycle.scope
            seconds = time.monotonic() - scope.get(RECEIVED_KEY, time.monotonic())
            request = f"{scope.get('method')} {scope.get('path')} ({scope.get(REQUEST_ID_KEY)})"
            if cycle.response_started:  # e.g. a client that stopped reading a stream
                log.info("%s: the connection closed %.1f s after the request, before the end "
                         "of the answer", request, seconds)
            else:
                log.warning("%s: the connection closed %.1f s after the request, before any "
                            "answer (%s); none was sent", request, seconds,
                            exc or "closed by the client, e.g. its timeout")
        super().connection_lost(exc)


def log_config(log_format: str = "text") -> dict[str, Any]:
    """uvicorn's logging configuration, with keys in URLs redacted from its access log (and
    from its error log, which quotes URLs too): tunegate.api.url_secrets. In JSON, uvicorn's
    lines are JSON too, and its access log gives way to tunegate's (``tunegate.access``, written
    by the middleware with the request's id, which uvicorn's line cannot know)."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_secrets"] = {"()": RedactSecrets}
    for logger in ("uvicorn.access", "uvicorn.error"):
        config["loggers"].setdefault(logger, {})["filters"] = ["redact_secrets"]
    if log_format == "json":
        for formatter in config["formatters"].values():
            formatter.clear()
            formatter["()"] = JsonFormatter
    return config


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """``uvicorn.run`` keyword arguments for ``tunegate serve``."""
    return {"host": settings.host, "port": settings.port, "log_level": "info",
            "log_config": log_config(settings.log_format), "http": Protocol,
            # In JSON, tunegate.access writes each request's line (with its operationId).
            "access_log": settings.log_format != "json",
            "timeout_keep_alive": settings.keep_alive,
            "timeout_graceful_shutdown": settings.shutdown_grace}
