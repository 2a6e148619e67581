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

``Protocol`` logs a request whose connection closed before its answer was complete: uvicorn
drops that answer silently, without an access-log line (a client that timed out, say). It also
tells long answers that the server is stopping: on SIGTERM uvicorn waits for every open answer
to end, and a live event stream (``tunegate.api.event_stream``) would never end by itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tunegate.api.event_stream import STOPPING_KEY
from tunegate.api.middleware import REQUEST_ID_KEY
from tunegate.settings import Settings

log = logging.getLogger("tunegate.api")
RECEIVED_KEY = "tunegate.received"  # scope: when the request's headers had arrived


class Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, never leaving a request unanswered without saying so."""

    def on_headers_complete(self) -> None:
        self.scope[RECEIVED_KEY] = time.monotonic()  # type: ignore[literal-required]
        self.scope[STOPPING_KEY] = asyncio.Event()  # type: ignore[literal-required]
        super().on_headers_complete()

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: an answer still streaming is asked to end now."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            stopping = cycle.scope.get(STOPPING_KEY)
            if isinstance(stopping, asyncio.Event):
                stopping.set()
        super().shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
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


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """``uvicorn.run`` keyword arguments for ``tunegate serve``."""
    return {"host": settings.host, "port": settings.port, "log_level": "info",
            "http": Protocol, "timeout_keep_alive": settings.keep_alive}
