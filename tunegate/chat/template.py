"""A GGUF's chat template, rendered as Hugging Face's ``apply_chat_template`` renders it.

The template is Jinja stored in the GGUF (``tokenizer.chat_template``). It runs here, in the API
process, in Jinja's sandbox, with the same environment as transformers (trimmed blocks, the
``generation`` tag ignored, ``tojson`` without ASCII escapes), so that a model is served exactly
the prompt layout it was trained on. Tools and tool calls go through ``to_template_messages``,
as in training: a template without tool support gets tunegate's fallback rendering.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from tunegate.chat.format import (
    ChatFormatError,
    TemplateSupport,
    probe_support,
    to_template_messages,
)

TEMPLATE_KEY = "tokenizer.chat_template"


class TemplateError(Exception):
    """The messages cannot be rendered with the model's chat template."""


class _IgnoreGeneration(jinja2.ext.Extension):
    """Hugging Face's ``{% generation %}`` marks the trained part; rendering ignores it."""

    tags = {"generation"}

    def parse(self, parser: Any) -> Any:
        parser.stream.skip(1)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _raise(message: str) -> None:
    raise ValueError(message)  # what a template's raise_exception() means: it refuses


def compile_template(source: str) -> jinja2.Template:
    """A chat template compiled in the environment transformers renders templates in; render
    it with ``raise_exception`` and ``strftime_now`` among the variables (:data:`GLOBALS`)."""
    environment = ImmutableSandboxedEnvironment(
        loader=jinja2.BaseLoader(), trim_blocks=True, lstrip_blocks=True,
        extensions=[_IgnoreGeneration, jinja2.ext.loopcontrols])
    environment.filters["tojson"] = _tojson
    return environment.from_string(source)


# The functions transformers gives every template.
GLOBALS: dict[str, Any] = {"raise_exception": _raise,
                           "strftime_now": lambda f: datetime.now().strftime(f)}


class ChatTemplate:
    """One model's template with its BOS/EOS texts; probed once for tool support."""

    def __init__(self, source: str, bos_token: str, eos_token: str):
        self._template = compile_template(source)
        self.bos_token, self.eos_token = bos_token, eos_token
        self.support: TemplateSupport = probe_support(self.render)

    def render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
        """The prompt text for ``messages`` (ending with the assistant's turn opening)."""
        try:
            return self._template.render(
                messages=messages, tools=tools, bos_token=self.bos_token,
                eos_token=self.eos_token, add_generation_prompt=True, **GLOBALS)
        # Templates refuse e.g. non-alternating roles with raise_exception, or fail in Jinja.
        except (jinja2.TemplateError, ValueError, TypeError) as exc:
            raise TemplateError(f"the model's chat template refused these messages: {exc}") from exc

    def chat_text(self, messages: list[dict[str, Any]],
                  tools: list[dict[str, Any]] | None = None) -> str:
        """``messages`` and ``tools`` prepared as training prepares them, then rendered."""
        try:
            prepared = to_template_messages({"messages": messages, "tools": tools}, self.support)
        except ChatFormatError as exc:
            raise TemplateError(str(exc)) from exc
        return self.render(prepared.messages, prepared.tools)
