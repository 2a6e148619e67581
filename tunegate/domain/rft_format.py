"""Reinforcement fine-tuning's example line, OpenAI's RFT format, read in one place.

A line is a JSON object whose ``messages`` are the prompt (developer, system, user, assistant
and tool messages; the last one the user's, which the model answers), with optional ``tools``
the model may call. ``messages`` and ``tools`` are the only reserved keys: every other key is
the grader's ``item`` (``{{item.reference_answer}}``), handed over as written.

The API's file check (the worker's ``validating_files`` stage, through
:func:`tunegate.domain.datasets.validate_dataset`) and the trainer's data reader both read lines
with :func:`rft_example`, so a file that passes validation is the file the trainer reads. Torch
free: the API and the worker import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tunegate.domain.chat_examples import DatasetError, check_messages
from tunegate.errors import clip

# The format's name in a FileReport and in messages.
RFT = "reinforcement"
RESERVED_KEYS = frozenset({"messages", "tools"})
# OpenAI's RFT prompt roles: a chat example's, less the legacy "function".
PROMPT_ROLES = frozenset({"developer", "system", "user", "assistant", "tool"})


@dataclass(frozen=True)
class RftExample:
    """One checked line: the prompt, the tools the model may call, and the grader's item."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    item: dict[str, Any]


def rft_example(example: Mapping[str, Any], line: int) -> RftExample:
    """Check one line (``example``, read from line ``line``) of a reinforcement file; raise
    ``DatasetError`` naming the line on the first fault."""
    if "messages" not in example:
        raise DatasetError(
            f"Line {line}: a reinforcement example needs 'messages', the prompt the model "
            f"answers; found only {_keys(example)}.", line=line)
    messages = example["messages"]
    check_messages(messages, line, need_assistant=False, roles=PROMPT_ROLES)
    last = messages[-1].get("role")
    if last != "user":
        raise DatasetError(
            f"Line {line}: the last message must be the user's, the prompt the model answers; "
            f"it is {clip(repr(last))}. A reinforcement example holds no answer: the grader "
            "scores the model's own.", line=line)
    tools = example.get("tools")
    if tools is not None:
        _check_tools(tools, line)
    item = {key: value for key, value in example.items() if key not in RESERVED_KEYS}
    return RftExample(messages=messages, tools=tools, item=item)


def _check_tools(tools: Any, line: int) -> None:
    """``tools`` as chat completions take them: a list of ``{"type": "function", "function":
    {"name": ..., ...}}``."""
    if not isinstance(tools, list):
        raise DatasetError(f"Line {line}: 'tools' must be a list of tools.", line=line)
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" \
                or not isinstance(function, dict) or not isinstance(function.get("name"), str) \
                or not function["name"]:
            raise DatasetError(
                f"Line {line}, tool {index}: a tool must be {{\"type\": \"function\", "
                "\"function\": {\"name\": ..., \"parameters\": {...}}}.", line=line)


def _keys(example: Mapping[str, Any]) -> str:
    names = sorted(str(key) for key in example)
    if not names:
        return "an empty object"
    return clip(", ".join(repr(name) for name in names[:8]) + (", ..." if len(names) > 8 else ""))
