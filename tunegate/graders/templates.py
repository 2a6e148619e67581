"""OpenAI's grader templates: ``{{ item.answer }}``, ``{{sample.output_json.email}}``,
``{{ sample.output_tools[0].function.name }}``.

Rendering rule (OpenAI publishes none): strings as they are, other scalars with ``str``, objects
and arrays as JSON; a path that names nothing is an ``UnknownVariable`` (reported as OpenAI's
``invalid_variable_error``), never an empty string that would grade silently wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_STEP = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_\-]*)|\[(\d+)\]")
NAMESPACES = ("item", "sample")


class UnknownVariable(LookupError):
    def __init__(self, path: str) -> None:
        super().__init__(f"'{path}' names no value")
        self.path = path


def paths(template: str) -> list[str]:
    """Every variable path a template names, in order."""
    return [match.group(1) for match in PLACEHOLDER.finditer(template)]


def check_path(path: str) -> str | None:
    """Why ``path`` can never name a value (None when it may), for checks at create time."""
    steps = _steps(path)
    if steps is None:
        return f"'{path}' is not a variable path like item.answer or sample.output_text"
    if steps[0] not in NAMESPACES:
        return f"'{path}' must start with item or sample"
    return None


def render(template: str, namespaces: Mapping[str, Any]) -> str:
    return PLACEHOLDER.sub(lambda match: _text(lookup(match.group(1), namespaces)), template)


def lookup(path: str, namespaces: Mapping[str, Any]) -> Any:
    steps = _steps(path)
    if not steps:
        raise UnknownVariable(path)
    value: Any = namespaces
    for step in steps:
        value = _step_into(value, step, path)
    return value


def _step_into(value: Any, step: str | int, path: str) -> Any:
    if isinstance(step, int) and isinstance(value, list) and step < len(value):
        return value[step]
    if isinstance(step, str) and isinstance(value, Mapping) and step in value:
        return value[step]
    raise UnknownVariable(path)


def _steps(path: str) -> list[str | int] | None:
    steps: list[str | int] = []
    position = 0
    while position < len(path):
        match = _STEP.match(path, position)
        if match is None or (position == 0 and match.group(0).startswith(".")):
            return None
        steps.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        position = match.end()
    return steps or None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else str(value)
