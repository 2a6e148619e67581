"""A streamed chat completion's chunks as the Responses API's events, in OpenAI's order::

    response.created, response.in_progress
    per message:       output_item.added, content_part.added, output_text.delta …,
                       output_text.done, content_part.done, output_item.done
    per function call: output_item.added, function_call_arguments.delta,
                       function_call_arguments.done, output_item.done
    response.completed (or response.incomplete, cut by max_output_tokens)

each with its ``sequence_number`` (0, 1, 2, … in the order sent). The chat stream holds a tool
call back until it is whole (:class:`tunegate.chat.tool_calls.StreamReader`) and then sends it
in OpenAI's delta shape; the deltas are joined here, so a call's arguments arrive in one
delta. Whitespace before anything else is held until text follows it, so an answer that is
only tool calls has no message item, as in the answer without ``stream``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

from tunegate.api.response_objects import finish, function_call_item, message_item, output_text
from tunegate.domain.chat_chunks import join_tool_call

Json = dict[str, Any]


class _Events:
    """The events of one response, numbered as they are made."""

    def __init__(self, response: Json):
        self.response = response
        self.number = 0
        self.message: Json | None = None  # the open message item
        self.text = ""  # its text so far
        self.pending = ""  # leading whitespace not shown yet

    def event(self, type: str, **fields: Any) -> Json:
        made = {"type": type, "sequence_number": self.number, **fields}
        self.number += 1
        return made

    def whole(self, type: str) -> Json:
        return self.event(type, response=copy.deepcopy(self.response))

    def text_delta(self, text: str) -> Iterator[Json]:
        if self.message is None:
            if not (self.pending + text).strip():
                self.pending += text
                return
            text, self.pending = self.pending + text, ""
            yield from self.open_message()
        assert self.message is not None
        self.text += text
        yield self.event("response.output_text.delta", item_id=self.message["id"],
                         output_index=self.index, content_index=0, delta=text, logprobs=[])

    @property
    def index(self) -> int:
        return len(self.response["output"]) - 1

    def open_message(self) -> Iterator[Json]:
        self.message = message_item("", "in_progress")
        self.message["content"] = []
        self.response["output"].append(self.message)
        yield self.event("response.output_item.added", output_index=self.index,
                         item=copy.deepcopy(self.message))
        yield self.event("response.content_part.added", item_id=self.message["id"],
                         output_index=self.index, content_index=0,
                         part={"type": "output_text", "text": "", "annotations": []})

    def close_message(self, status: str) -> Iterator[Json]:
        message = self.message
        if message is None:
            return
        self.message = None
        part = output_text(self.text)
        message["content"] = [part]
        message["status"] = status
        where = {"item_id": message["id"], "output_index": self.index}
        yield self.event("response.output_text.done", **where, content_index=0, text=self.text,
                         logprobs=[])
        yield self.event("response.content_part.done", **where, content_index=0,
                         part=copy.deepcopy(part))
        yield self.event("response.output_item.done", output_index=self.index,
                         item=copy.deepcopy(message))

    def function_call(self, call: Mapping[str, Any]) -> Iterator[Json]:
        yield from self.close_message("completed")
        item = function_call_item(call)
        arguments = item["arguments"]
        self.response["output"].append({**item, "arguments": "", "status": "in_progress"})
        where = {"item_id": item["id"], "output_index": self.index}
        yield self.event("response.output_item.added", output_index=self.index,
                         item=copy.deepcopy(self.response["output"][-1]))
        yield self.event("response.function_call_arguments.delta", **where, delta=arguments)
        yield self.event("response.function_call_arguments.done", **where, arguments=arguments)
        self.response["output"][-1] = item
        yield self.event("response.output_item.done", output_index=self.index,
                         item=copy.deepcopy(item))


def events(response: Json, chunks: Iterator[Json]) -> Iterator[Json]:
    """The events of ``response`` (its skeleton, :func:`response_objects.skeleton`) made from
    ``chunks``, a chat completion stream with ``include_usage``. Closing this closes
    ``chunks`` (the generation stops)."""
    made = _Events(response)
    finish_reason: str | None = None
    chat_usage: Mapping[str, Any] | None = None
    calls: dict[int, Json] = {}  # tool calls by index, joined from their deltas
    try:
        yield made.whole("response.created")
        yield made.whole("response.in_progress")
        for chunk in chunks:
            if chunk.get("usage"):
                chat_usage = chunk["usage"]
            for choice in chunk["choices"]:
                delta = choice["delta"]
                if delta.get("content"):
                    yield from made.text_delta(delta["content"])
                for call in delta.get("tool_calls") or []:
                    join_tool_call(calls, call)
                if choice["finish_reason"] is not None:
                    for index in sorted(calls):  # every call is whole once the choice ends
                        yield from made.function_call(calls[index])
                    calls.clear()
                    finish_reason = choice["finish_reason"]
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    status = "incomplete" if finish_reason == "length" else "completed"
    if made.message is None and not response["output"]:
        yield from made.open_message()  # an empty answer is still one message
        if made.pending:
            yield from made.text_delta(made.pending)
    yield from made.close_message(status)
    finish(response, finish_reason, chat_usage)
    yield made.whole(f"response.{response['status']}")
