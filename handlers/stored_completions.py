"""/v1/chat/completions (GET) and /v1/chat/completions/{completion_id}…: the chat completions
kept with ``store: true``, OpenAI's stored-completion routes."""

from __future__ import annotations

from typing import Any

from handlers import service, visible

Response = tuple[dict[str, Any], int]


async def list_completions(model: str | None = None, metadata: dict[str, str] | None = None,
                           after: str | None = None, limit: int = 20,
                           order: str = "asc") -> Response:
    page = service().stored_completions.list(visible(), model=model, metadata=metadata,
                                             after=after, limit=limit, order=order)
    return page.to_api(), 200


async def retrieve_completion(completion_id: str) -> Response:
    return service().stored_completions.get(visible(), completion_id).to_api(), 200


def update_completion(completion_id: str, body: dict[str, Any]) -> Response:
    stored = service().stored_completions.update(visible(), completion_id, body["metadata"])
    return stored.to_api(), 200


def delete_completion(completion_id: str) -> Response:
    return service().stored_completions.delete(visible(), completion_id), 200


async def list_messages(completion_id: str, after: str | None = None, limit: int = 20,
                        order: str = "asc") -> Response:
    page = service().stored_completions.messages(visible(), completion_id, after=after,
                                                 limit=limit, order=order)
    return page, 200
