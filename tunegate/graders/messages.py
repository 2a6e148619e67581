"""Message lists filled from a data item, for eval runs' ``input_messages``: a template whose
``{{ item.… }}`` placeholders are rendered (with the graders' own rendering rule), or an
``item_reference`` naming a message list inside the item. Only ``item`` is in scope, as at
OpenAI: a run's inputs exist before any sample does."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tunegate.graders import templates

UnknownVariable = templates.UnknownVariable


def render_template(template: Sequence[Mapping[str, Any]],
                    item: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each message with every text in its content rendered; ``UnknownVariable`` for a
    placeholder that names nothing in the item."""
    namespaces = {"item": item}
    return [{**message, "content": _render_content(message.get("content"), namespaces)}
            for message in template]


def referenced(reference: str, item: Mapping[str, Any]) -> Any:
    """The value ``item.<path>`` names (``UnknownVariable`` when it names nothing)."""
    return templates.lookup(reference, {"item": item})


def _render_content(content: Any, namespaces: Mapping[str, Any]) -> Any:
    if isinstance(content, str):
        return templates.render(content, namespaces)
    if isinstance(content, list):
        return [_render_content(part, namespaces) for part in content]
    if isinstance(content, Mapping) and isinstance(content.get("text"), str):
        return {**content, "text": templates.render(content["text"], namespaces)}
    return content
