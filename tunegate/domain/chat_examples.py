"""What every example format with a message list shares: the error a file's fault raises and
the check of one example's ``messages`` (chat and preference examples in
:mod:`tunegate.domain.datasets`, reinforcement prompts in :mod:`tunegate.domain.rft_format`).

Torch-free, like the rest of the domain: the API and the worker check files with it before any
model is loaded.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from tunegate.errors import clip

CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


class DatasetError(Exception):
    """A file that cannot be trained on; ``line`` is 1-based when one line is to blame."""

    def __init__(self, message: str, *, code: str = "invalid_training_file", line: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.line = line


def text_content(content: Any) -> bool:
    """True for a non-empty string, or a list of parts with at least one non-empty text part."""
    if isinstance(content, str):
        return bool(content.strip())
    if isinstance(content, list):
        return any(
            isinstance(part, dict) and part.get("type") == "text" and str(part.get("text", "")).strip()
            for part in content
        )
    return False


def check_messages(messages: Any, line: int, *, need_assistant: bool,
                   roles: Collection[str] = CHAT_ROLES) -> None:
    """Check an example's ``messages`` on line ``line``: a non-empty list of messages, each of
    one of ``roles`` with the content its role needs."""
    if not isinstance(messages, list) or not messages:
        raise DatasetError(f"Line {line}: 'messages' must be a non-empty list.", line=line)
    has_assistant = False
    for index, message in enumerate(messages):
        where = f"Line {line}, message {index}"
        if not isinstance(message, dict):
            raise DatasetError(f"{where}: each message must be an object.", line=line)
        role = message.get("role")
        if role not in roles:
            raise DatasetError(
                f"{where}: unrecognized role {clip(repr(role))}; expected one of "
                f"{sorted(roles)}.",
                line=line,
            )
        if "weight" in message and message["weight"] not in (0, 1):
            raise DatasetError(f"{where}: 'weight' must be 0 or 1.", line=line)
        if role == "assistant":
            has_assistant = True
            if not (text_content(message.get("content")) or message.get("tool_calls")
                    or message.get("function_call")):
                raise DatasetError(
                    f"{where}: an assistant message needs non-empty 'content' or 'tool_calls'.",
                    line=line,
                )
        elif role == "tool":
            if not isinstance(message.get("content"), (str, list)):
                raise DatasetError(f"{where}: a tool message needs 'content'.", line=line)
        elif not text_content(message.get("content")):
            raise DatasetError(f"{where}: 'content' must be non-empty text.", line=line)
    if need_assistant and not has_assistant:
        raise DatasetError(f"Line {line}: the example has no assistant message to learn.", line=line)
