"""/v1/chat/completions and /v1/completions: JSON, or server-sent events with ``stream``."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from handlers import service, visible
from tunegate.api.errors import envelope
from tunegate.api.event_stream import STOPPING_KEY
from tunegate.errors import TunegateError

log = logging.getLogger("tunegate.api")
SERVER_ERROR = "The server had an error while generating the completion."
SHUTTING_DOWN = envelope(
    "The server is shutting down: the completion was cut short. Send the request again once "
    "the server is back.", type="server_error", code="server_shutting_down")

# Both media types are declared for 200, so the JSON answer has to name its own.
Response = tuple[dict[str, Any], int, dict[str, str]]
JSON = {"content-type": "application/json"}
_END = object()  # what ``next`` returns when the events are over


class EventStream(StreamingResponse):
    """``text/event-stream`` from a blocking generator, advanced in worker threads.

    Starlette leaves a body iterator to the garbage collector when the client goes away; this
    closes it as soon as the response ends, however it ends, so the generation stops and its
    model is released at once.

    When the server shuts down (``tunegate.api.server.Protocol`` sets the scope's
    ``STOPPING_KEY`` event), an open stream ends at once with an error event, OpenAI's streaming
    error shape: otherwise uvicorn would wait for it up to its grace period and then cut it, and
    the client would see a stream that simply stops, without ``[DONE]`` or a reason.
    """

    def __init__(self, events: Iterator[str]):
        self._events = events
        self._stopping: asyncio.Event | None = None
        self._pending: asyncio.Future[Any] | None = None  # a ``next`` still running in a thread
        super().__init__(self._until_stopping(), media_type="text/event-stream",
                         headers={"cache-control": "no-cache", "x-accel-buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stopping = scope.get(STOPPING_KEY)
        self._stopping = stopping if isinstance(stopping, asyncio.Event) else None
        try:
            await super().__call__(scope, receive, send)
        except ClientDisconnect:
            pass  # the client left (ASGI 2.4 servers say so by failing send): nothing to answer
        finally:
            with anyio.CancelScope(shield=True):
                if self._pending is not None:
                    # A generator runs in one thread at a time: close it once its step is over.
                    await asyncio.wait({self._pending})
                close = getattr(self._events, "close", None)
                if close is not None:
                    await anyio.to_thread.run_sync(close)

    async def _until_stopping(self) -> AsyncIterator[str]:
        """The events, each fetched in a worker thread, until they end or the server stops."""
        while True:
            step = asyncio.ensure_future(anyio.to_thread.run_sync(next, self._events, _END))
            self._pending = step
            if self._stopping is not None:
                stopped = asyncio.ensure_future(self._stopping.wait())
                await asyncio.wait({step, stopped}, return_when=asyncio.FIRST_COMPLETED)
                stopped.cancel()
                if not step.done():
                    yield f"data: {json.dumps(SHUTTING_DOWN)}\n\n"
                    return
            event = await step
            self._pending = None
            if event is _END:
                return
            assert isinstance(event, str)
            yield event


def _server_sent(chunks: Iterator[dict[str, Any]]) -> Iterator[str]:
    try:
        for chunk in chunks:
            yield f"data: {json.dumps(chunk)}\n\n"
    except TunegateError as exc:  # after the 200 is sent, errors travel as an event
        yield f"data: {json.dumps({'error': exc.to_api()})}\n\n"
        return
    except Exception:
        log.exception("Generation failed mid-stream")
        yield f"data: {json.dumps(envelope(SERVER_ERROR, type='server_error'))}\n\n"
        return
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    yield "data: [DONE]\n\n"


def _answer(result: dict[str, Any] | Iterator[dict[str, Any]]) -> Response | EventStream:
    if isinstance(result, dict):
        return result, 200, JSON
    return EventStream(_server_sent(result))


def create_chat_completion(body: dict[str, Any]) -> Response | EventStream:
    return _answer(service().completions.chat(visible(), body))


def create_completion(body: dict[str, Any]) -> Response | EventStream:
    return _answer(service().completions.text(visible(), body))
