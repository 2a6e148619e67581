"""/v1/responses: the Responses API, stateless (a response is answered, never kept)."""

from __future__ import annotations

from typing import Any

from handlers import service, visible
from handlers.inference import JSON, Response
from tunegate.api.event_stream import CompletionStream, response_events
from tunegate.api.responses import not_stored


def create_response(body: dict[str, Any]) -> Response | CompletionStream:
    result = service().responses.create(visible(), body)
    if isinstance(result, dict):
        return result, 200, JSON
    return CompletionStream(response_events(result))


def retrieve_response(response_id: str) -> Response:
    raise not_stored(response_id)


def delete_response(response_id: str) -> Response:
    raise not_stored(response_id)
