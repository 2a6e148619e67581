"""The server's two server-sent-event answers: a job's events (``JobEventStream``) and a
completion's chunks or a response's events (``CompletionStream``). Both end when the server
starts shutting down.

``GET /v1/fine_tuning/jobs/{id}/events?stream=true``: a job's events as server-sent events.

The wire format (openapi.yaml's ``FineTuningJobEventStreamEvent``), one block per job event::

    id: ftevent-…
    event: fine_tuning.job.event
    data: {the event object, exactly as one item of the paged list}

and ``: ping`` comments after ``heartbeat`` seconds of silence. The stream ends after the job's
terminal event, when the client leaves, and when the server shuts down (uvicorn waits for open
answers to end: ``tunegate.api.server.Protocol`` sets ``STOPPING_KEY``'s event then), so an open
stream never holds a shutdown up; a client reconnects with ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
from starlette.requests import ClientDisconnect
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from tunegate.api.errors import envelope
from tunegate.api.event_feed import Follower
from tunegate.domain.jobs import JobEvent
from tunegate.errors import TunegateError

log = logging.getLogger("tunegate.api")

# Scope key of an asyncio.Event the server sets when it starts shutting down.
STOPPING_KEY = "tunegate.stopping"
EVENT_NAME = "fine_tuning.job.event"
PING = b": ping\n\n"
HEADERS = {"cache-control": "no-store", "x-accel-buffering": "no"}


def server_sent(event: JobEvent) -> bytes:
    """One job event as an SSE block: its id, the event name, the event object as JSON."""
    return (f"id: {event.id}\nevent: {EVENT_NAME}\n"
            f"data: {json.dumps(event.to_api())}\n\n").encode()


class JobEventStream(Response):
    """The ``text/event-stream`` answer for one ``Follower``, released however it ends."""

    media_type = "text/event-stream"

    def __init__(self, follower: Follower, *, heartbeat: float):
        # Not Response.__init__: it would announce a body of 0 bytes (content-length).
        self.status_code = 200
        self.background = None
        self.init_headers(HEADERS)
        self.follower = follower
        self.heartbeat = heartbeat
        self.client_left = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stopping: asyncio.Event | None = scope.get(STOPPING_KEY)
        try:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})
            async with anyio.create_task_group() as group:
                group.start_soon(self._until_client_leaves, receive, group.cancel_scope)
                if stopping is not None:
                    group.start_soon(self._until_stopping, stopping, group.cancel_scope)
                await self._events(send)
                group.cancel_scope.cancel()
            if not self.client_left:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.follower.close()

    async def _until_client_leaves(self, receive: Receive, scope: anyio.CancelScope) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.client_left = True
        scope.cancel()

    async def _until_stopping(self, stopping: asyncio.Event, scope: anyio.CancelScope) -> None:
        """End the stream when the server stops, once what was stored has been sent."""
        await stopping.wait()
        while not self.follower.replayed:
            await anyio.sleep(0.01)
        scope.cancel()

    async def _events(self, send: Send) -> None:
        while not self.follower.finished:
            events = await self.follower.next(self.heartbeat)
            if events is None:
                await send({"type": "http.response.body", "body": PING, "more_body": True})
            elif events:
                body = b"".join(server_sent(event) for event in events)
                await send({"type": "http.response.body", "body": body, "more_body": True})


# Completions ----------------------------------------------------------------------------------

SERVER_ERROR = "The server had an error while generating the completion."
SHUTTING_DOWN = envelope(
    "The server is shutting down: the completion was cut short. Send the request again once "
    "the server is back.", type="server_error", code="server_shutting_down")
_END = object()  # what ``next`` returns when the events are over


class CompletionStream(StreamingResponse):
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


def completion_events(chunks: Iterator[dict[str, Any]]) -> Iterator[str]:
    """Completion chunks as ``data:`` lines, ``[DONE]`` after the last; an error after the 200
    travels as an event in OpenAI's error shape."""
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


def response_events(events: Iterator[dict[str, Any]]) -> Iterator[str]:
    """Responses API events as named server-sent events (``event: response.created``), without
    ``[DONE]`` (OpenAI sends none there); an error after the 200 is an ``error`` event, OpenAI's
    ``ResponseErrorEvent``, numbered after the last event sent."""
    number = 0
    try:
        for event in events:
            number = event["sequence_number"] + 1
            yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"
    except TunegateError as exc:
        yield _response_error(number, exc.to_api())
    except Exception:
        log.exception("Generation failed mid-stream")
        yield _response_error(number, envelope(SERVER_ERROR, type="server_error")["error"])
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()


def _response_error(number: int, error: dict[str, Any]) -> str:
    event = {"type": "error", "sequence_number": number, "code": error["code"],
             "message": error["message"], "param": error["param"]}
    return f"event: error\ndata: {json.dumps(event)}\n\n"
