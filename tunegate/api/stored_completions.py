"""The stored chat completions use cases: keeping a ``store: true`` exchange (whole, or as
its stream goes by), and OpenAI's routes over them (``client.chat.completions.list / retrieve /
update / delete`` and ``client.chat.completions.messages.list``), each within the caller's
project."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from tunegate.domain.chat_chunks import assemble
from tunegate.domain.stored_completions import StoredCompletion, check_update
from tunegate.errors import InvalidRequest, NotFound, clip
from tunegate.store.base import Page, Store

Json = dict[str, Any]


def wants_storing(body: Mapping[str, Any]) -> bool:
    return body.get("store") is True


def check_request(body: Mapping[str, Any]) -> None:
    """A ``store: true`` request's ``metadata`` keys, checked before generating (the schema
    bounds the rest)."""
    check_update(body.get("metadata"))


def with_usage(body: Mapping[str, Any]) -> dict[str, Any]:
    """A streamed request that also reports its usage, so that what is stored has it."""
    options = dict(body.get("stream_options") or {})
    options["include_usage"] = True
    return {**body, "stream_options": options}


class StoredCompletions:
    def __init__(self, store: Store):
        self.store = store

    def keep(self, project_id: str, body: Mapping[str, Any], completion: Mapping[str, Any]
             ) -> None:
        """Store a finished exchange: the request's messages, tools and metadata, the answer."""
        self.store.add_stored_completion(StoredCompletion(
            id=completion["id"], project_id=project_id, created_at=completion["created"],
            model=completion["model"], metadata=dict(body.get("metadata") or {}),
            messages=[dict(message) for message in body["messages"]],
            tools=body.get("tools"), completion=dict(completion)))

    def kept(self, project_id: str, asked: Mapping[str, Any],
             answer: Json | Iterator[Json]) -> Json | Iterator[Json]:
        """``answer`` to the request ``asked``, as the client gets it, stored in the project
        once whole: a whole answer at once, a stream once it has ended."""
        if isinstance(answer, dict):
            self.keep(project_id, asked, answer)
            return answer
        return self._keeping(project_id, asked, answer)

    def _keeping(self, project_id: str, body: Mapping[str, Any],
                 chunks: Iterator[Json]) -> Iterator[Json]:
        """``chunks`` passed on as they come (without the usage chunk the client did not ask
        for); once the stream has ended, the completion they add up to is stored. A stream
        that breaks off (the client gone, an error) stores nothing."""
        client_wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        seen: list[Json] = []
        try:
            for chunk in chunks:
                seen.append(chunk)
                if chunk.get("choices") or client_wants_usage:
                    yield chunk
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        completion = assemble(seen)
        if completion is not None:
            self.keep(project_id, body, completion)

    def list(self, project_id: str | None, *, model: str | None,
             metadata: Mapping[str, str] | None, after: str | None, limit: int,
             order: str) -> Page[StoredCompletion]:
        return self.store.list_stored_completions(project_id, model=model, metadata=metadata,
                                                  after=after, limit=limit,
                                                  ascending=order == "asc")

    def get(self, project_id: str | None, completion_id: str) -> StoredCompletion:
        stored = self.store.get_stored_completion(project_id, completion_id)
        if stored is None:
            raise not_stored(completion_id)
        return stored

    def update(self, project_id: str | None, completion_id: str,
               metadata: Mapping[str, str] | None) -> StoredCompletion:
        changed = self.store.set_stored_completion_metadata(project_id, completion_id,
                                                            check_update(metadata))
        if changed is None:
            raise not_stored(completion_id)
        return changed

    def delete(self, project_id: str | None, completion_id: str) -> Json:
        if not self.store.delete_stored_completion(project_id, completion_id):
            raise not_stored(completion_id)
        return {"object": "chat.completion.deleted", "id": completion_id, "deleted": True}

    def messages(self, project_id: str | None, completion_id: str, *, after: str | None,
                 limit: int, order: str) -> Json:
        """One page of the stored request's messages (oldest first unless ``order=desc``);
        ``after`` is a message id of this completion."""
        listed = self.get(project_id, completion_id).message_objects()
        if order == "desc":
            listed.reverse()
        if after is not None:
            position = next((i for i, message in enumerate(listed) if message["id"] == after),
                            None)
            if position is None:
                raise InvalidRequest(f"{clip(after)} is not a message of {clip(completion_id)}.",
                                     param="after", code="invalid_value")
            listed = listed[position + 1:]
        page = listed[:limit]
        return {"object": "list", "data": page, "has_more": len(listed) > limit,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None}


def not_stored(completion_id: str) -> NotFound:
    return NotFound(f"No stored chat completion {clip(completion_id)} (only completions "
                    "created with store: true are kept).", param="completion_id",
                    code="completion_not_found")
