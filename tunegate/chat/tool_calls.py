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
_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.DOTALL)
CALL_ID = "call_"


@dataclass(frozen=True)
class Reply:
    """An assistant answer: its text (``None`` when it only calls tools) and its tool calls."""

    content: str | None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


def read_reply(text: str, offered: Collection[str]) -> Reply:
    """Split ``text`` into content and tool calls of the functions named in ``offered``."""
    blocks = list(_BLOCK.finditer(text))
    if not blocks:
        return Reply(text)
    calls = []
    for block in blocks:
        call = _call(block.group(1), offered)
        if call is None:
            return Reply(text)
        calls.append(call)
    content = _BLOCK.sub("", text).strip()
    return Reply(content or None, calls)


def _call(body: str, offered: Collection[str]) -> dict[str, Any] | None:
    try:
        payload = json.loads(body)
    except ValueError:
        return None
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
