"""A streamed chat completion's ``chat.completion.chunk`` objects put back together: a tool
call's deltas joined into the call (``join_tool_call``, also used by the Responses API's stream,
tunegate.api.response_stream), and the whole ``chat.completion`` the chunks add up to
(``assemble``: how a streamed ``store: true`` answer is stored, tunegate.api.stored_completions).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Json = dict[str, Any]


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
                join_tool_call(choice["calls"], call)
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


def join_tool_call(calls: dict[int, Json], delta: Mapping[str, Any]) -> None:
    """Add a streamed tool-call delta (OpenAI's shape: id, name and empty arguments first,
    then pieces of the arguments under the same ``index``) to the call it belongs to."""
    function = delta.get("function") or {}
    call = calls.setdefault(delta.get("index", len(calls)), {
        "id": delta.get("id"), "type": "function", "function": {"name": "", "arguments": ""}})
    call["id"] = call["id"] or delta.get("id")
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
