"""A grader's configuration, checked once (at create time) and kept as OpenAI's JSON.

Every field a type reads is checked here, so that a grader that parses can always run: a bad
field is an ``InvalidGrader`` naming its dotted path (``grader.graders.a.operation``), which the
API answers with 400. What only running can tell (a Python exception, a model's answer) is a
flag in the grade instead.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

from tunegate.graders import formula, templates, wordnet
from tunegate.graders.errors import InvalidGrader
from tunegate.graders.kinds import GRADER_TYPES, Grader
from tunegate.graders.python_grader import check_source
from tunegate.graders.similarity import METRICS

__all__ = ["GRADER_TYPES", "Grader", "InvalidGrader", "grader_models", "model_fields",
           "parse_grader"]

# The fields each type cannot do without (OpenAI's required ones, besides type and name).
REQUIRED: Mapping[str, tuple[str, ...]] = {
    "string_check": ("input", "reference", "operation"),
    "text_similarity": ("input", "reference", "evaluation_metric"),
    "python": ("source",),
    "score_model": ("model", "input"),
    "label_model": ("model", "input", "labels", "passing_labels"),
    "multi": ("graders", "calculate_output"),
}
STRING_CHECK_OPERATIONS = ("eq", "ne", "like", "ilike")
ROLES = ("user", "assistant", "system", "developer")
PART_TYPES = ("input_text", "output_text", "input_image", "input_audio")
SAMPLING_KEYS = ("seed", "top_p", "temperature", "max_completions_tokens",
                 "max_completion_tokens", "reasoning_effort")


def parse_grader(spec: Any, where: str = "grader",
                 allowed: frozenset[str] = GRADER_TYPES) -> Grader:
    if not isinstance(spec, Mapping):
        raise InvalidGrader(where, f"{where} must be an object")
    kind = spec.get("type")
    if kind not in allowed:
        raise InvalidGrader(f"{where}.type",
                            f"{where}.type must be one of {', '.join(sorted(allowed))}; got {kind!r}")
    for key in ("name", *REQUIRED[kind]):
        if key not in spec:
            raise InvalidGrader(f"{where}.{key}", f"{where}.{key} is required for a {kind} grader")
    if not isinstance(spec["name"], str):
        raise InvalidGrader(f"{where}.name", f"{where}.name must be a string")
    if kind == "multi":
        return _parse_multi(spec, where)
    _CHECKS[kind](spec, where)
    return Grader(type=kind, name=spec["name"], spec=spec)


def grader_models(grader: Grader) -> list[str]:
    """Every grader model ``grader`` (and its parts) calls, for a check that they exist."""
    return [model for _, model in model_fields(grader)]


def model_fields(grader: Grader, where: str = "grader") -> list[tuple[str, str]]:
    """Each grader model ``grader`` calls with the path of its field (``grader.graders.a.model``),
    for a 400 that names the one that does not exist."""
    if grader.type in ("score_model", "label_model"):
        return [(f"{where}.model", grader.spec["model"])]
    shape = grader.spec.get("graders")
    found = []
    for index, (name, part) in enumerate(grader.parts):
        if isinstance(shape, list):
            path = f"{where}.graders[{index}]"
        elif isinstance(shape, Mapping) and "type" not in shape:
            path = f"{where}.graders.{name}"
        else:
            path = f"{where}.graders"
        found.extend(model_fields(part, path))
    return found


def check_template(value: Any, where: str) -> None:
    if not isinstance(value, str):
        raise InvalidGrader(where, f"{where} must be a string")
    for path in templates.paths(value):
        problem = templates.check_path(path)
        if problem:
            raise InvalidGrader(where, f"{where}: {problem}")


def _check_string_check(spec: Mapping[str, Any], where: str) -> None:
    check_template(spec["input"], f"{where}.input")
    check_template(spec["reference"], f"{where}.reference")
    if spec["operation"] not in STRING_CHECK_OPERATIONS:
        raise InvalidGrader(f"{where}.operation",
                            f"{where}.operation must be one of {', '.join(STRING_CHECK_OPERATIONS)}")


def _check_text_similarity(spec: Mapping[str, Any], where: str) -> None:
    check_template(spec["input"], f"{where}.input")
    check_template(spec["reference"], f"{where}.reference")
    metric = spec["evaluation_metric"]
    if metric not in METRICS:
        raise InvalidGrader(f"{where}.evaluation_metric",
                            f"{where}.evaluation_metric must be one of {', '.join(METRICS)}; "
                            f"got {metric!r}")
    if metric == "meteor":
        missing = wordnet.missing_reason()
        if missing:
            raise InvalidGrader(f"{where}.evaluation_metric", f"{where}.evaluation_metric: "
                                f"meteor is not available on this server: {missing}")
    _check_threshold(spec, where)


def _check_python(spec: Mapping[str, Any], where: str) -> None:
    check_source(spec["source"], f"{where}.source")
    if spec.get("image_tag") is not None and not isinstance(spec["image_tag"], str):
        raise InvalidGrader(f"{where}.image_tag", f"{where}.image_tag must be a string")
    _check_threshold(spec, where)


def _check_score_model(spec: Mapping[str, Any], where: str) -> None:
    _check_model_fields(spec, where)
    bounds = spec.get("range")
    if bounds is not None and not (
            isinstance(bounds, list) and len(bounds) == 2 and all(_is_number(b) for b in bounds)
            and bounds[0] < bounds[1]):
        raise InvalidGrader(f"{where}.range", f"{where}.range must be two numbers, the lower "
                                              f"first, e.g. [0, 1]; got {bounds!r}")
    _check_threshold(spec, where)


def _check_label_model(spec: Mapping[str, Any], where: str) -> None:
    _check_model_fields(spec, where)
    labels, passing = spec["labels"], spec["passing_labels"]
    for key, value in (("labels", labels), ("passing_labels", passing)):
        if not (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
            raise InvalidGrader(f"{where}.{key}", f"{where}.{key} must be a non-empty list of "
                                                  "strings")
    strangers = [label for label in passing if label not in labels]
    if strangers:
        raise InvalidGrader(f"{where}.passing_labels", f"{where}.passing_labels must be among "
                            f"{where}.labels; not there: {', '.join(map(repr, strangers))}")


def _check_model_fields(spec: Mapping[str, Any], where: str) -> None:
    if not isinstance(spec["model"], str) or not spec["model"]:
        raise InvalidGrader(f"{where}.model", f"{where}.model must name a model")
    messages = spec["input"]
    if not isinstance(messages, list) or not messages:
        raise InvalidGrader(f"{where}.input", f"{where}.input must be a non-empty list of "
                                              "messages ({role, content})")
    for index, message in enumerate(messages):
        _check_message(message, f"{where}.input[{index}]")
    params = spec.get("sampling_params")
    if params is None:
        return
    if not isinstance(params, Mapping):
        raise InvalidGrader(f"{where}.sampling_params", f"{where}.sampling_params must be an "
                                                        "object")
    for key, value in params.items():
        path = f"{where}.sampling_params.{key}"
        if key not in SAMPLING_KEYS:
            raise InvalidGrader(path, f"{path} is not a sampling parameter; they are "
                                      f"{', '.join(SAMPLING_KEYS)}")
        if value is None or key == "reasoning_effort":
            continue
        _check_sampling_value(key, value, path)


def _check_sampling_value(key: str, value: Any, path: str) -> None:
    if key.startswith("max_"):
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            raise InvalidGrader(path, f"{path} must be a positive integer")
    elif key == "seed":
        if not (isinstance(value, int) and not isinstance(value, bool)):
            raise InvalidGrader(path, f"{path} must be an integer")
    elif not _is_number(value):
        raise InvalidGrader(path, f"{path} must be a number")


def _check_message(message: Any, where: str) -> None:
    if not isinstance(message, Mapping):
        raise InvalidGrader(where, f"{where} must be an object {{role, content}}")
    if message.get("role") not in ROLES:
        raise InvalidGrader(f"{where}.role", f"{where}.role must be one of {', '.join(ROLES)}")
    content = message.get("content")
    parts = content if isinstance(content, list) else [content]
    for index, part in enumerate(parts):
        path = f"{where}.content" + (f"[{index}]" if isinstance(content, list) else "")
        if isinstance(part, str):
            check_template(part, path)
        elif isinstance(part, Mapping) and part.get("type") in ("input_text", "output_text"):
            check_template(part.get("text"), f"{path}.text")
        elif isinstance(part, Mapping) and part.get("type") == "input_image":
            check_template(part.get("image_url"), f"{path}.image_url")
        elif isinstance(part, Mapping) and part.get("type") == "input_audio" and isinstance(
                part.get("input_audio"), Mapping):
            continue
        else:
            raise InvalidGrader(path, f"{path} must be text or a part of type "
                                      f"{', '.join(PART_TYPES)}")


def _check_threshold(spec: Mapping[str, Any], where: str) -> None:
    threshold = spec.get("pass_threshold")
    if threshold is not None and not _is_number(threshold):
        raise InvalidGrader(f"{where}.pass_threshold", f"{where}.pass_threshold must be a number")


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _parse_multi(spec: Mapping[str, Any], where: str) -> Grader:
    parts = _parts(spec["graders"], f"{where}.graders")
    text = spec["calculate_output"]
    path = f"{where}.calculate_output"
    if not isinstance(text, str):
        raise InvalidGrader(path, f"{path} must be a string")
    try:
        tree = formula.parse(text)
    except formula.FormulaError as problem:
        raise InvalidGrader(path, f"{path}: {problem}") from None
    names = [name for name, _ in parts]
    unknown = sorted(formula.variables(tree) - set(names))
    if unknown:
        raise InvalidGrader(path, f"{path} names {', '.join(map(repr, unknown))}, which no "
                                  f"grader of {where}.graders is called; the names are "
                                  f"{', '.join(map(repr, names))}")
    return Grader(type="multi", name=spec["name"], spec=spec, parts=tuple(parts), formula=tree)


def _parts(graders: Any, where: str) -> list[tuple[str, Grader]]:
    """The parts under their formula names, from any of OpenAI's three shapes: one grader, a
    list of graders (named by their ``name``), or a name -> grader map (named by the keys)."""
    nested = GRADER_TYPES - {"multi"}
    if isinstance(graders, Mapping) and "type" not in graders:
        if not graders:
            raise InvalidGrader(where, f"{where} must hold at least one grader")
        return [(str(key), parse_grader(part, f"{where}.{key}", nested))
                for key, part in graders.items()]
    if isinstance(graders, list):
        if not graders:
            raise InvalidGrader(where, f"{where} must hold at least one grader")
        parts = [parse_grader(part, f"{where}[{index}]", nested)
                 for index, part in enumerate(graders)]
        names = [part.name for part in parts]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise InvalidGrader(where, f"{where}: the graders' names are the formula's "
                                       f"variables and must differ; twice: {', '.join(twice)}")
        return [(part.name, part) for part in parts]
    part = parse_grader(graders, where, nested)
    return [(part.name, part)]


_CHECKS = {"string_check": _check_string_check, "text_similarity": _check_text_similarity,
           "python": _check_python, "score_model": _check_score_model,
           "label_model": _check_label_model}
