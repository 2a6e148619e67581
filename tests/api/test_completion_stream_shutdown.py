"""A completion stream open when the server shuts down ends with an error event (issue 26).

uvicorn's graceful shutdown waits for open answers, then cuts them: the client saw a stream
that simply stopped. ``tunegate.api.server.Protocol`` sets the scope's ``STOPPING_KEY`` event
when the shutdown starts; the stream must then end at once with OpenAI's streaming error shape.
Here the stream runs on the ASGI level with a generation that is stuck between two tokens (the
moment a shutdown usually meets); ``tests/e2e/test_event_stream.py`` does it with a real server.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

from tunegate.api.event_stream import STOPPING_KEY, CompletionStream


class StuckGeneration:
    """A fake generation: one event, then nothing until ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.closed = False

    def events(self) -> Iterator[str]:
        try:
            yield 'data: {"first": true}\n\n'
            self.release.wait(timeout=30)
            yield 'data: {"second": true}\n\n'
            yield "data: [DONE]\n\n"
        finally:
            self.closed = True


def test_a_stream_open_at_shutdown_ends_with_an_error_event() -> None:
    generation = StuckGeneration()
    sent: list[dict[str, Any]] = []

    async def run() -> None:
        stopping = asyncio.Event()
        scope = {"type": "http", "asgi": {"spec_version": "2.4"}, STOPPING_KEY: stopping}
        first_sent = asyncio.Event()

        async def receive() -> dict[str, Any]:
            await asyncio.Event().wait()  # the client stays
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
            if message.get("body"):
                first_sent.set()
                if b"server_shutting_down" in message["body"]:
                    generation.release.set()  # the stuck token comes, too late to be sent

        answer = asyncio.ensure_future(CompletionStream(generation.events())(scope, receive, send))
        await asyncio.wait_for(first_sent.wait(), 10)
        stopping.set()  # what Protocol.shutdown does
        await asyncio.wait_for(answer, 10)

    asyncio.run(run())
    bodies = [message["body"].decode() for message in sent[1:]]
    assert bodies[0] == 'data: {"first": true}\n\n'
    assert bodies[1].startswith("data: ") and bodies[1].endswith("\n\n")
    error = json.loads(bodies[1][len("data: "):])
    assert error == {"error": {
        "message": "The server is shutting down: the completion was cut short. Send the request "
                   "again once the server is back.",
        "type": "server_error", "param": None, "code": "server_shutting_down"}}
    assert bodies[2:] == [""] and sent[-1]["more_body"] is False  # then the stream ends
    assert generation.closed  # the generation was stopped (its model released)


def test_a_stream_that_ends_before_shutdown_is_untouched() -> None:
    sent: list[dict[str, Any]] = []

    async def run() -> None:
        scope = {"type": "http", "asgi": {"spec_version": "2.4"}, STOPPING_KEY: asyncio.Event()}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        events = iter(["data: {}\n\n", "data: [DONE]\n\n"])
        await CompletionStream(events)(scope, lambda: asyncio.sleep(3600), send)

    asyncio.run(run())
    assert [message.get("body") for message in sent[1:]] == [b"data: {}\n\n",
                                                             b"data: [DONE]\n\n", b""]
