"""Tool calls in generated text, turned back into OpenAI's ``tool_calls``.

A model fine-tuned on tool-calling examples answers the way it was trained
(:mod:`tunegate.chat.format`): Hermes ``<tool_call>`` blocks, each holding
``{"name": ..., "arguments": {...}}``. Most chat templates that render tool calls natively
(Qwen, Hermes, SmolLM3) use the same blocks, so one reader serves both.

The reading is strict on purpose: the answer becomes tool calls only when every block is a JSON
object naming a function the request offered; anything else stays plain text, so a model that
merely talks about ``<tool_call>`` is not turned into a call of a function that doesn't exist.
A last block cut off before ``</tool_call>`` (the model stopped, or hit ``max_tokens``) is read
when its JSON is whole.

A block ends where its JSON does, not at the first ``</tool_call>`` after it: the system prompt
names the tags, so a model writes them inside a string value now and then
(``{"city": "</tool_call>"}``), and such a call is still one valid call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from tunegate import ids

OPEN = "<tool_call>"
CLOSE = "</tool_call>"
_SPACE = re.compile(r"\s*")
_JSON = json.JSONDecoder()
CALL_ID = "call_"


@dataclass(frozen=True)
class Reply:
    """An assistant answer: its text (``None`` when it only calls tools) and its tool calls."""

    content: str | None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


def read_reply(text: str, offered: Collection[str]) -> Reply:
    """Split ``text`` into content and tool calls of the functions named in ``offered``."""
    start = text.find(OPEN)
    if start < 0:
        return Reply(text)
    calls, outside, position = [], [], 0
    while start >= 0:
        outside.append(text[position:start])
        block = _block(text, start + len(OPEN), offered)
        if block is None:
            return Reply(text)
        call, position = block
        calls.append(call)
        start = text.find(OPEN, position)
    outside.append(text[position:])
    content = "".join(outside).strip()
    return Reply(content or None, calls)


def _block(text: str, start: int, offered: Collection[str]) -> tuple[dict[str, Any], int] | None:
    """The call whose JSON follows ``start`` and where its block ends (after ``</tool_call>``,
    or at the end of ``text``); ``None`` when that is not one whole call of an offered function.
    The JSON is decoded to its end, so tags written inside its strings are only text."""
    try:
        payload, end = _JSON.raw_decode(text, _skip_space(text, start))
    except ValueError:
        return None
    end = _skip_space(text, end)
    if text.startswith(CLOSE, end):
        end += len(CLOSE)
    elif end != len(text):
        return None
    call = _call(payload, offered)
    return None if call is None else (call, end)


def _skip_space(text: str, position: int) -> int:
    match = _SPACE.match(text, position)
    assert match is not None  # \s* matches everywhere
    return match.end()


def _call(payload: Any, offered: Collection[str]) -> dict[str, Any] | None:
    if not isinstance(payload, dict) or payload.get("name") not in offered:
        return None
    arguments = payload.get("arguments", {})
    if not isinstance(arguments, str):  # OpenAI sends arguments as a JSON string
        arguments = json.dumps(arguments, ensure_ascii=False)
    return {"id": ids.new_id(CALL_ID), "type": "function",
            "function": {"name": payload["name"], "arguments": arguments}}


class StreamReader:
    """A streamed answer read as it comes: text is shown at once, except from the first
    ``<tool_call>`` on, which is held until the end and then read by :func:`read_reply`.

    A piece that ends in what could be the start of ``<tool_call>`` (``"<to"``) keeps that part
    back until the next piece says which it is.
    """

    def __init__(self, offered: Collection[str]):
        self.offered = offered
        self.held = ""  # a tail from <tool_call> on, or a possible start of one

    @property
    def in_call(self) -> bool:
        return self.held.startswith(OPEN)

    def feed(self, text: str) -> str:
        """Add a piece of the answer; returns the text that can be shown now."""
        buffer = self.held + text
        if self.in_call:
            self.held = buffer
            return ""
        start = buffer.find(OPEN)
        if start >= 0:
            self.held = buffer[start:]
            return buffer[:start]
        keep = next((n for n in range(min(len(OPEN) - 1, len(buffer)), 0, -1)
                     if OPEN.startswith(buffer[-n:])), 0)
        self.held = buffer[len(buffer) - keep:]
        return buffer[:len(buffer) - keep]

    def finish(self) -> Reply:
        """The rest: text still to show (if any) and the tool calls of the held tail."""
        if not self.in_call:
            return Reply(self.held or None)
        return read_reply(self.held, self.offered)
