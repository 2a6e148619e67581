"""A grader's configuration, checked once (at create time) and kept as OpenAI's JSON."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tunegate.graders import templates
from tunegate.graders.errors import InvalidGrader

GRADER_TYPES = frozenset({"string_check", "text_similarity", "python", "score_model",
                          "label_model", "multi"})
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


@dataclass(frozen=True)
class Grader:
    """A checked grader: its ``type``, its ``name`` and the configuration as it was sent
    (``spec``, echoed back by the API)."""

    type: str
    name: str
    spec: Mapping[str, Any]


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
    _CHECKS.get(kind, _no_check)(spec, where)
    return Grader(type=kind, name=spec["name"], spec=spec)


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


def _no_check(spec: Mapping[str, Any], where: str) -> None:
    """Types whose fields are not checked beyond presence yet."""


_CHECKS = {"string_check": _check_string_check}
