"""Stored chat completions: what a ``store: true`` request to ``/v1/chat/completions`` keeps.

A stored completion is the exchange itself: the request's messages (and tools), the answer as
the client received it (the ``chat.completion`` object), the model named and the request's
``metadata``. OpenAI's stored-completion routes read it back: the completion with its
``metadata``; and its request messages, each with an id (``<completion id>-<index>``, the form
OpenAI's have). ``tunegate completions export`` makes a training file of them through those
routes (tunegate.client.completions).

A streamed answer is stored as the whole completion its chunks add up to
(``tunegate.domain.chat_chunks.assemble``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tunegate.domain.job_requests import check_metadata

Json = dict[str, Any]


@dataclass(frozen=True)
class StoredCompletion:
    id: str
    project_id: str
    created_at: int
    model: str
    metadata: dict[str, str]
    messages: list[Json]
    tools: list[Json] | None
    completion: Json  # the chat.completion object as it was answered

    def to_api(self) -> Json:
        """OpenAI's stored ``chat.completion``: the answer, with its ``metadata`` and the
        request's ``tools`` (when it offered some: an export's training lines need them)."""
        tools = {"tools": self.tools} if self.tools else {}
        return {**self.completion, "metadata": dict(self.metadata), **tools}

    def message_objects(self) -> list[Json]:
        """The request's messages as OpenAI lists them, oldest first."""
        return [message_object(self.id, index, message)
                for index, message in enumerate(self.messages)]


def message_object(completion_id: str, index: int, message: Mapping[str, Any]) -> Json:
    """A request message as the messages route answers it: its id, role and text; a content
    given as parts keeps them in ``content_parts`` (their text joined in ``content``)."""
    content = message.get("content")
    parts = None
    if isinstance(content, list):
        parts = [dict(part) for part in content]
        content = "".join(part.get("text", "") for part in content if isinstance(part, Mapping))
    answer: Json = {"id": f"{completion_id}-{index}", "role": message.get("role"),
                    "content": content, "content_parts": parts}
    for key in ("name", "tool_calls", "tool_call_id", "refusal"):
        if message.get(key) is not None:
            answer[key] = message[key]
    return answer


def check_update(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """The metadata an update sets (``None`` clears it), keys checked as a job's are."""
    given = dict(metadata or {})
    check_metadata(given)
    return given
