"""/v1/chat/completions and /v1/completions: JSON, or server-sent events with ``stream``."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import anyio
from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from handlers import service, visible
from tunegate.api.errors import envelope
from tunegate.errors import TunegateError

log = logging.getLogger("tunegate.api")
SERVER_ERROR = "The server had an error while generating the completion."

# Both media types are declared for 200, so the JSON answer has to name its own.
Response = tuple[dict[str, Any], int, dict[str, str]]
JSON = {"content-type": "application/json"}


class EventStream(StreamingResponse):
    """``text/event-stream`` from a blocking generator, advanced in worker threads.

    Starlette leaves a body iterator to the garbage collector when the client goes away; this
    closes it as soon as the response ends, however it ends, so the generation stops and its
    model is released at once.
    """

    def __init__(self, events: Iterator[str]):
        super().__init__(events, media_type="text/event-stream",
                         headers={"cache-control": "no-cache", "x-accel-buffering": "no"})
        self._events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except ClientDisconnect:
            pass  # the client left (ASGI 2.4 servers say so by failing send): nothing to answer
        finally:
            close = getattr(self._events, "close", None)
            if close is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(close)


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
