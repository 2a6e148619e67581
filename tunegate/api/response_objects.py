"""The Responses API's objects (``response``, its output items, its usage), made from a chat
completion's parts. Every key OpenAI's SDK reads is always sent (``null`` when empty)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from tunegate import ids

Json = dict[str, Any]
RESPONSE_ID = "resp_"
MESSAGE_ID = "msg_"
FUNCTION_CALL_ID = "fc_"


def skeleton(body: Mapping[str, Any]) -> Json:
    """The response object before generation: the request's settings echoed, no output."""
    return {
        "id": ids.new_id(RESPONSE_ID), "object": "response", "created_at": int(time.time()),
        "status": "in_progress", "background": False, "error": None, "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {}, "model": body["model"], "output": [],
        "parallel_tool_calls": _given(body, "parallel_tool_calls", True),
        "previous_response_id": None, "reasoning": {"effort": None, "summary": None},
        "store": False,  # accepted, never kept: this server is stateless
        "temperature": _given(body, "temperature", 1.0), "top_p": _given(body, "top_p", 1.0),
        "text": {"format": (body.get("text") or {}).get("format") or {"type": "text"}},
        "tool_choice": body.get("tool_choice") or "auto", "tools": list(body.get("tools") or []),
        "truncation": body.get("truncation") or "disabled", "usage": None, "user": None,
    }


def _given(body: Mapping[str, Any], name: str, default: Any) -> Any:
    value = body.get(name)
    return default if value is None else value


def usage(chat_usage: Mapping[str, Any]) -> Json:
    """A chat completion's usage in the Responses names, with their (zero) details."""
    return {"input_tokens": chat_usage["prompt_tokens"],
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": chat_usage["completion_tokens"],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": chat_usage["total_tokens"]}


def message_item(text: str, status: str = "completed") -> Json:
    return {"id": ids.new_id(MESSAGE_ID), "type": "message", "role": "assistant",
            "status": status, "content": [output_text(text)]}


def output_text(text: str) -> Json:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def function_call_item(call: Mapping[str, Any], status: str = "completed") -> Json:
    """A chat ``tool_calls`` entry as a ``function_call`` output item (its ``call_…`` id is
    the ``call_id`` a ``function_call_output`` answers)."""
    function = call["function"]
    return {"id": ids.new_id(FUNCTION_CALL_ID), "type": "function_call", "status": status,
            "call_id": call["id"], "name": function["name"],
            "arguments": function["arguments"]}


def finish(response: Json, finish_reason: str | None, chat_usage: Mapping[str, Any] | None
           ) -> Json:
    """``response`` as it ends: incomplete when cut by ``max_output_tokens``."""
    cut = finish_reason == "length"
    response["status"] = "incomplete" if cut else "completed"
    response["incomplete_details"] = {"reason": "max_output_tokens"} if cut else None
    response["usage"] = usage(chat_usage) if chat_usage else None
    return response


def to_response(body: Mapping[str, Any], completion: Mapping[str, Any]) -> Json:
    """A finished chat completion as the Responses object: a message item (unless the answer
    is only tool calls), then one ``function_call`` item per call."""
    choice = completion["choices"][0]
    message = choice["message"]
    calls = message.get("tool_calls") or []
    response = skeleton(body)
    status = "incomplete" if choice["finish_reason"] == "length" else "completed"
    if message.get("content") or not calls:
        response["output"].append(message_item(message.get("content") or "", status))
    response["output"] += [function_call_item(call) for call in calls]
    return finish(response, choice["finish_reason"], completion.get("usage"))
