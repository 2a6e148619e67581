"""``score_model`` and ``label_model``: a grader model reads the rendered messages and answers
through a JSON schema (llama.cpp's constrained decoding, as OpenAI's structured outputs), so
that its answer always parses unless it is cut short.

- ``score_model`` asks for ``{"steps": [{"description", "conclusion"}...], "result": number}``
  (the reasoning first, so that the number comes after it); ``result`` is clipped to ``range``.
- ``label_model`` asks for ``{"steps": [...], "result": one of labels}``; the score is 1 when the
  label is among ``passing_labels``, else 0.

An answer that is not JSON of that shape (cut by the token limit) scores 0 with
``model_grader_parse_error``; a refusal with ``model_grader_refusal_error``; a failing model
call with ``model_grader_server_error`` and its details.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from tunegate.graders import templates
from tunegate.graders.context import Context
from tunegate.graders.grades import Grade, failure
from tunegate.graders.kinds import Grader
from tunegate.graders.models import ModelAnswer

DEFAULT_RANGE = (0.0, 1.0)
_STEPS = {"type": "array", "items": {
    "type": "object", "properties": {"description": {"type": "string"},
                                     "conclusion": {"type": "string"}},
    "required": ["description", "conclusion"], "additionalProperties": False}}
# Sampling parameters a grader model takes, by their name in OpenAI's grader object -> chat's.
SAMPLING = {"seed": "seed", "top_p": "top_p", "temperature": "temperature",
            "max_completions_tokens": "max_completion_tokens",
            "max_completion_tokens": "max_completion_tokens"}


def score_schema() -> dict[str, Any]:
    return _format("score", {"type": "number"})


def label_schema(labels: Sequence[str]) -> dict[str, Any]:
    return _format("label", {"type": "string", "enum": list(labels)})


def _format(name: str, result: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": {
        "type": "object", "properties": {"steps": _STEPS, "result": result},
        "required": ["steps", "result"], "additionalProperties": False}}}


def score_model(grader: Grader, context: Context) -> Grade:
    low, high = grader.spec.get("range") or DEFAULT_RANGE
    asked = _ask(grader, context, score_schema())
    if isinstance(asked, Grade):
        return asked
    result, usage = asked
    if isinstance(result, bool) or not isinstance(result, (int, float)) or not math.isfinite(
            result):
        return _with_usage(failure("model_grader_parse_error"), usage)
    return _with_usage(Grade(score=min(float(high), max(float(low), float(result)))), usage)


def label_model(grader: Grader, context: Context) -> Grade:
    asked = _ask(grader, context, label_schema(grader.spec["labels"]))
    if isinstance(asked, Grade):
        return asked
    label, usage = asked
    if not isinstance(label, str) or label not in grader.spec["labels"]:
        return _with_usage(failure("model_grader_parse_error"), usage)
    return _with_usage(Grade(score=1.0 if label in grader.spec["passing_labels"] else 0.0),
                       usage)


def _ask(grader: Grader, context: Context, response_format: dict[str, Any]
         ) -> Grade | tuple[Any, dict[str, dict[str, int]]]:
    """The grader model's ``result`` and its usage, or the failed grade."""
    if context.models is None:
        return failure("model_grader_server_error", ("model_grader_server_error_details",
                                                     "no grader model is available here"))
    model = grader.spec["model"]
    messages = [chat_message(message, context.namespaces) for message in grader.spec["input"]]
    try:
        answer = context.models.complete(model, messages, response_format=response_format,
                                         sampling=sampling(grader.spec.get("sampling_params")))
    except Exception as problem:  # noqa: BLE001 - the model's failure is the grade's
        return failure("model_grader_server_error",
                       ("model_grader_server_error_details", f"{model}: {problem}"))
    usage = {model: _usage(answer)}
    if answer.refusal:
        return _with_usage(failure("model_grader_refusal_error"), usage)
    try:
        parsed = json.loads(answer.text)
    except ValueError:
        return _with_usage(failure("model_grader_parse_error"), usage)
    if not isinstance(parsed, dict) or "result" not in parsed:
        return _with_usage(failure("model_grader_parse_error"), usage)
    return parsed["result"], usage


def sampling(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The chat request's sampling arguments from a grader's ``sampling_params`` (its
    ``max_completions_tokens`` spelling too); ``reasoning_effort`` is dropped: no local model
    reasons on request."""
    return {SAMPLING[key]: value for key, value in (params or {}).items()
            if key in SAMPLING and value is not None}


def chat_message(message: Mapping[str, Any], namespaces: Mapping[str, Any]) -> dict[str, Any]:
    """An EvalItem (``{role, content, type?}``, content a string, one part or a list of parts)
    as a chat message, its text rendered."""
    content = message.get("content")
    parts = content if isinstance(content, list) else [content]
    rendered = [_part(part, namespaces) for part in parts]
    if all(part["type"] == "text" for part in rendered):
        return {"role": message["role"], "content": "".join(part["text"] for part in rendered)}
    return {"role": message["role"], "content": rendered}


def _part(part: Any, namespaces: Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(part, str):
        return {"type": "text", "text": templates.render(part, namespaces)}
    kind = part.get("type")
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": templates.render(part["text"], namespaces)}
    if kind == "input_image":
        return {"type": "image_url", "image_url": {
            "url": templates.render(part["image_url"], namespaces)}}
    return {"type": "input_audio", "input_audio": part["input_audio"]}


def _usage(answer: ModelAnswer) -> dict[str, int]:
    return {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens + answer.completion_tokens, "cached_tokens": 0}


def _with_usage(result: Grade, usage: dict[str, dict[str, int]]) -> Grade:
    result.usage = usage
    return result
