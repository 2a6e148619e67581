"""/v1/chat/completions and /v1/completions: JSON, or server-sent events with ``stream``;
/v1/embeddings: JSON."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from handlers import project, service, visible
from tunegate.api.event_stream import CompletionStream, completion_events

# Both media types are declared for 200, so the JSON answer has to name its own.
Response = tuple[dict[str, Any], int, dict[str, str]]
JSON = {"content-type": "application/json"}


def _answer(result: dict[str, Any] | Iterator[dict[str, Any]]) -> Response | CompletionStream:
    if isinstance(result, dict):
        return result, 200, JSON
    return CompletionStream(completion_events(result))


def create_chat_completion(body: dict[str, Any]) -> Response | CompletionStream:
    return _answer(service().completions.chat(visible(), body, keep_for=project()))


def create_completion(body: dict[str, Any]) -> Response | CompletionStream:
    return _answer(service().completions.text(visible(), body))


def create_embedding(body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    return service().embeddings.create(visible(), body), 200
