"""``GET /v1/fine_tuning/jobs/{id}/events?stream=true``: a job's events as server-sent events.

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

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tunegate.api.event_feed import Follower
from tunegate.domain.jobs import JobEvent

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
