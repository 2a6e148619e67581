"""Eval and eval-run requests made into what is stored: OpenAI's stored forms (the item schema
wrapped as a row schema, simple messages as EvalItems, the data source with
``sampling_params``) and the checks that need no grader or model."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunegate.domain.jsonl_text import LineTooLong, UnreadableLine, parse_line, text_lines
from tunegate.errors import InvalidRequest, clip

# What a completions run uses where ``sampling_params`` says nothing (OpenAI's defaults, and a
# completion length for local models, which have no "until done" budget to spend).
DEFAULT_SAMPLING = {"temperature": 1.0, "top_p": 1.0, "seed": 42, "max_completion_tokens": 256}
ITEM_PREFIX = "item."


def stored_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``{type: custom, item_schema, include_sample_schema}`` -> ``{type, schema}``, the schema
    of a whole row (``item`` and, when asked, ``sample``)."""
    item_schema = config.get("item_schema")
    if not isinstance(item_schema, Mapping):
        raise InvalidRequest("data_source_config.item_schema must be a JSON Schema object.",
                             param="data_source_config.item_schema")
    properties: dict[str, Any] = {"item": dict(item_schema)}
    required = ["item"]
    if config.get("include_sample_schema"):
        properties["sample"] = {"type": "object"}
        required.append("sample")
    return {"type": "custom",
            "schema": {"type": "object", "properties": properties, "required": required}}


def eval_item(message: Any, where: str) -> dict[str, Any]:
    """A message in OpenAI's stored EvalItem form: plain-text content becomes an
    ``input_text`` (or, from the assistant, ``output_text``) part."""
    if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
        raise InvalidRequest(f"{where} must be a message with role and content.", param=where)
    content = message["content"]
    if isinstance(content, str):
        kind = "output_text" if message["role"] == "assistant" else "input_text"
        content = {"type": kind, "text": content}
    return {"type": "message", "role": message["role"], "content": content}


def criterion_id(name: str) -> str:
    """OpenAI's id of a stored testing criterion, what run results name it by."""
    return f"{name}-{uuid.uuid4()}"


def message_text(content: Any) -> str:
    """The text of a message's content: a string, one part or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        return str(content.get("text", ""))
    if isinstance(content, list):
        return "".join(message_text(part) for part in content)
    return ""


def sampling(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The sampling a completions run uses: the request's values over the defaults (OpenAI's
    examples spell the token budget ``max_completions_tokens``; both are read)."""
    given = {key: value for key, value in (params or {}).items() if value is not None}
    if "max_completions_tokens" in given and "max_completion_tokens" not in given:
        given["max_completion_tokens"] = given.pop("max_completions_tokens")
    given.pop("max_completions_tokens", None)
    return {**DEFAULT_SAMPLING, **{key: given[key] for key in DEFAULT_SAMPLING if key in given}}


def check_rows(content: Any, where: str) -> list[dict[str, Any]]:
    """Inline ``file_content``: a list of ``{"item": {...}, "sample"?: {...}}`` rows."""
    if not isinstance(content, list) or not content:
        raise InvalidRequest(f"{where} must be a non-empty list of rows.", param=where)
    for index, row in enumerate(content):
        check_row(row, f"{where}.{index}")
    return content


def check_row(row: Any, where: str) -> None:
    if not isinstance(row, Mapping) or not isinstance(row.get("item"), Mapping):
        raise InvalidRequest(f"{where} must be an object with an `item` object, "
                             f'{{"item": {{...}}}}; got {clip(repr(row))}.', param=where,
                             code="invalid_data_source_row")
    if "sample" in row and not isinstance(row["sample"], Mapping):
        raise InvalidRequest(f"{where}.sample must be an object.", param=f"{where}.sample",
                             code="invalid_data_source_row")


def check_input_messages(value: Any, where: str) -> None:
    if not isinstance(value, Mapping):
        raise InvalidRequest(f"{where} is required for a completions run: a template of "
                             "messages or an item_reference.", param=where)
    if value.get("type") == "template":
        template = value.get("template")
        if not isinstance(template, list) or not template:
            raise InvalidRequest(f"{where}.template must be a non-empty list of messages.",
                                 param=f"{where}.template")
        for index, message in enumerate(template):
            eval_item(message, f"{where}.template.{index}")
    elif value.get("type") == "item_reference":
        reference = value.get("item_reference")
        if not isinstance(reference, str) or not reference.startswith(ITEM_PREFIX) \
                or len(reference) == len(ITEM_PREFIX):
            raise InvalidRequest(f"{where}.item_reference must name a message list inside the "
                                 "item, like item.messages.", param=f"{where}.item_reference")
    else:
        raise InvalidRequest(f"{where}.type must be template or item_reference.",
                             param=f"{where}.type")


def read_rows(path: Path, max_line_bytes: int, where: str) -> list[dict[str, Any]]:
    """The rows of an ``evals`` JSONL file (blank lines skipped), each checked; a line that
    is not one is a 400 naming it."""
    rows: list[dict[str, Any]] = []
    try:
        for line, text in text_lines(path, max_line_bytes):
            if not text.strip():
                continue
            row = parse_line(text, line)
            check_row(row, f"{where} line {line}")
            rows.append(row)  # type: ignore[arg-type]  # checked just above
    except UnreadableLine as exc:
        raise InvalidRequest(f"{where}: {exc.message}", param=where,
                             code="invalid_data_source_row") from exc
    except LineTooLong as exc:
        raise InvalidRequest(f"{where}: line {exc.line} is longer than {max_line_bytes} bytes.",
                             param=where, code="invalid_data_source_row") from exc
    if not rows:
        raise InvalidRequest(f"{where}: the file has no rows.", param=where,
                             code="invalid_data_source_row")
    return rows
