"""Stored chat completions: what a ``store: true`` request to ``/v1/chat/completions`` keeps.

A stored completion is the exchange itself: the request's messages (and tools), the answer as
the client received it (the ``chat.completion`` object), the model named and the request's
``metadata``. OpenAI's stored-completion routes read it back: the completion with its
``metadata``; and its request messages, each with an id (``<completion id>-<index>``, the form
OpenAI's have). ``tunegate completions export`` makes a training file of them through those
routes (tunegate.client.completions).

A streamed answer is stored as the whole completion its chunks add up to (``assemble``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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


def assemble(chunks: Iterable[Mapping[str, Any]]) -> Json | None:
    """The ``chat.completion`` a stream of ``chat.completion.chunk`` objects adds up to: each
    choice's text joined, its tool calls put together by index, its finish reason and the
    usage chunk's counts; None for a stream that never finished (no finish reason)."""
    first: Mapping[str, Any] | None = None
    choices: dict[int, Json] = {}
    usage = None
    for chunk in chunks:
        first = first or chunk
        if chunk.get("usage") is not None:
            usage = chunk["usage"]
        for part in chunk.get("choices") or []:
            choice = choices.setdefault(part["index"], {
                "index": part["index"], "text": [], "calls": {}, "finish_reason": None,
                "logprobs": None})
            delta = part.get("delta") or {}
            if delta.get("content"):
                choice["text"].append(delta["content"])
            for call in delta.get("tool_calls") or []:
                _add_call(choice["calls"], call)
            if part.get("logprobs"):
                choice["logprobs"] = _add_logprobs(choice["logprobs"], part["logprobs"])
            if part.get("finish_reason"):
                choice["finish_reason"] = part["finish_reason"]
    if first is None or not choices or any(c["finish_reason"] is None for c in choices.values()):
        return None
    return {"id": first["id"], "object": "chat.completion", "created": first["created"],
            "model": first["model"], "system_fingerprint": first.get("system_fingerprint"),
            "choices": [_finished_choice(choices[index]) for index in sorted(choices)],
            "usage": usage}


def _add_call(calls: dict[int, Json], delta: Mapping[str, Any]) -> None:
    call = calls.setdefault(delta.get("index", 0), {"id": None, "type": "function",
                                                    "function": {"name": "", "arguments": ""}})
    if delta.get("id"):
        call["id"] = delta["id"]
    function = delta.get("function") or {}
    call["function"]["name"] += function.get("name") or ""
    call["function"]["arguments"] += function.get("arguments") or ""


def _add_logprobs(so_far: Json | None, more: Mapping[str, Any]) -> Json:
    total = so_far or {"content": None, "refusal": None}
    for key in ("content", "refusal"):
        if more.get(key) is not None:
            total[key] = (total[key] or []) + list(more[key])
    return total


def _finished_choice(choice: Json) -> Json:
    calls = [choice["calls"][index] for index in sorted(choice["calls"])]
    message = {"role": "assistant", "content": "".join(choice["text"]) if choice["text"] or
               not calls else None, "refusal": None, "tool_calls": calls or None}
    return {"index": choice["index"], "message": message, "logprobs": choice["logprobs"],
            "finish_reason": choice["finish_reason"]}
