"""Turn an OpenAI chat example into messages a Hugging Face chat template can render (torch-free).

OpenAI's shapes differ from what templates expect in three ways, handled here:

- ``content`` may be a list of parts: text parts are joined; other parts (images, audio) are
  refused, since tunegate's bases are text-only.
- ``tool_calls[].function.arguments`` is a JSON *string*; templates that support tool calls
  expect a mapping, so it is parsed (a string that does not parse to an object stays a string).
- Templates without tool support (SmolLM2's ChatML template among them) silently drop ``tools``
  and ``tool_calls``. Then the **fallback** applies, the Hermes/Qwen convention that llama.cpp
  and most tool-call parsers understand:

  * the tool list goes at the end of the system message (one is added if there is none)::

        # Tools
        You may call one or more functions to assist with the user query.
        You are provided with function signatures within <tools></tools> XML tags:
        <tools>
        {"type": "function", "function": {...}}
        </tools>
        For each function call, return a json object with function name and arguments within
        <tool_call></tool_call> XML tags:
        <tool_call>
        {"name": <function-name>, "arguments": <args-json-object>}
        </tool_call>

  * each assistant tool call becomes ``<tool_call>\\n{"name": ..., "arguments": ...}\\n</tool_call>``
    appended to the assistant text (one block per call, separated by a newline);
  * ``tool`` messages keep their role and content (a generic template renders any role).

Inference must render prompts the same way for a tool-trained model to answer in kind:
:func:`to_template_messages` is the one function both sides should call.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tunegate.errors import clip

TOOLS_HEADER = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_FOOTER = (
    "</tools>\n\nFor each function call, return a json object with function name and arguments "
    "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)

# Message keys a template may see; everything else (weight, refusal, audio, ...) is dropped.
_TEMPLATE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id")


class ChatFormatError(ValueError):
    """The example cannot be rendered; the message says why (the caller adds the line number)."""


@dataclass(frozen=True)
class TemplateSupport:
    """What a tokenizer's chat template renders natively."""

    tools: bool
    tool_calls: bool


@dataclass(frozen=True)
class TemplateInput:
    """Messages (and tools, when the template takes them) ready for ``apply_chat_template``.

    ``trained[i]`` says whether message ``i`` is an assistant message to train on.
    """

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    trained: list[bool]


Render = Callable[[list[dict[str, Any]], list[dict[str, Any]] | None], str]


def probe_support(render: Render) -> TemplateSupport:
    """Whether a chat template renders ``tools`` and ``tool_calls`` itself.

    ``render(messages, tools)`` is the template, whoever runs it: the tokenizer's
    ``apply_chat_template`` when training, llama.cpp's Jinja formatter when serving. Both
    sides probe with the same messages, so they make the same choice for the same template.
    """
    user = [{"role": "user", "content": "hi"}]
    probe_tool = {"type": "function", "function": {"name": "tunegate_probe_tool",
                                                   "description": "probe", "parameters": {}}}
    call = {"role": "assistant", "content": "",
            "tool_calls": [{"type": "function", "id": "call_0", "function": {
                "name": "tunegate_probe_call", "arguments": {"x": 1}}}]}
    try:
        tools = "tunegate_probe_tool" in render(user, [probe_tool])
    except Exception:  # templates raise anything from jinja; "unsupported" is the safe answer
        tools = False
    try:
        calls = "tunegate_probe_call" in render([*user, call], None)
    except Exception:
        calls = False
    return TemplateSupport(tools=tools, tool_calls=calls)


def text_of(content: Any) -> str:
    """The text of an OpenAI ``content`` value (``None``, a string or a list of text parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ChatFormatError(f"content part of type {clip(repr(kind))} is not supported "
                                      "(text-only base model)")
            texts.append(str(part.get("text", "")))
        return "".join(texts)
    raise ChatFormatError(f"content must be a string or a list of parts, not {type(content).__name__}")


def parse_arguments(arguments: Any) -> Any:
    """OpenAI's JSON-string ``arguments`` as an object when it holds one, else unchanged.

    A string that decodes to another JSON string is decoded again (OpenAI's own drone example
    file double-encodes some arguments), so the model learns one consistent form.
    """
    value = arguments
    for _ in range(3):
        if not isinstance(value, str):
            break
        try:
            value = json.loads(value)
        except ValueError:
            return arguments
    return value if isinstance(value, dict) else arguments


def tool_call_text(tool_calls: list[dict[str, Any]]) -> str:
    """The fallback rendering of assistant tool calls (Hermes ``<tool_call>`` blocks)."""
    blocks = []
    for call in tool_calls:
        function = call.get("function") or {}
        payload = {"name": function.get("name"), "arguments": parse_arguments(function.get("arguments"))}
        blocks.append("<tool_call>\n" + json.dumps(payload, ensure_ascii=False) + "\n</tool_call>")
    return "\n".join(blocks)


def tools_system_text(tools: list[dict[str, Any]]) -> str:
    """The fallback description of ``tools`` appended to the system message."""
    lines = [json.dumps(tool, ensure_ascii=False) for tool in tools]
    return "\n".join([TOOLS_HEADER, *lines, TOOLS_FOOTER])


def to_template_messages(example: dict[str, Any], support: TemplateSupport) -> TemplateInput:
    """Normalise ``example["messages"]`` (+ ``tools``/``functions``) for a chat template.

    Promises: string contents (tool calls in the fallback form when the template lacks them),
    ``trained`` true exactly for assistant messages without ``weight: 0``.
    Raises ``ChatFormatError`` for shapes that cannot be rendered.
    """
    raw = example.get("messages")
    if not isinstance(raw, list) or not raw:
        raise ChatFormatError("'messages' must be a non-empty list")
    tools = example.get("tools") or [{"type": "function", "function": f}
                                     for f in example.get("functions") or []]
    messages: list[dict[str, Any]] = []
    trained: list[bool] = []
    for index, message in enumerate(raw):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ChatFormatError(f"message {index} has no 'role'")
        out = {key: message[key] for key in _TEMPLATE_KEYS if message.get(key) is not None}
        out["content"] = text_of(message.get("content"))
        calls = list(message.get("tool_calls") or [])
        if message.get("function_call"):  # the deprecated single-call form
            calls.append({"type": "function", "function": message["function_call"]})
        if calls and support.tool_calls:
            out["tool_calls"] = [_template_call(call) for call in calls]
        elif calls:
            out.pop("tool_calls", None)
            out["content"] = "\n".join(t for t in (out["content"], tool_call_text(calls)) if t)
        if message["role"] == "function":  # deprecated: the result of a function_call
            out["role"] = "tool"
        elif message["role"] == "developer":  # OpenAI's newer name for the system role
            out["role"] = "system"
        messages.append(out)
        trained.append(message["role"] == "assistant" and message.get("weight", 1) != 0)
    if tools and not support.tools:
        if messages[0]["role"] == "system":
            described = messages[0]["content"] + "\n\n" + tools_system_text(tools)
            messages[0] = {**messages[0], "content": described}
        else:
            messages.insert(0, {"role": "system", "content": tools_system_text(tools)})
            trained.insert(0, False)
        tools = []
    return TemplateInput(messages, tools or None, trained)


def _template_call(call: dict[str, Any]) -> dict[str, Any]:
    function = dict(call.get("function") or {})
    function["arguments"] = parse_arguments(function.get("arguments"))
    return {**call, "type": call.get("type", "function"), "function": function}
