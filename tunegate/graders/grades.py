"""What grading one sample gives: a score, the failures flagged OpenAI's way, and the usage of
any grader model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# OpenAI's metadata.errors: eleven booleans and three nullable strings, all always present.
ERROR_FLAGS: tuple[str, ...] = (
    "formula_parse_error", "sample_parse_error", "truncated_observation_error",
    "unresponsive_reward_error", "invalid_variable_error", "other_error",
    "python_grader_server_error", "python_grader_server_error_type",
    "python_grader_runtime_error", "python_grader_runtime_error_details",
    "model_grader_server_error", "model_grader_refusal_error", "model_grader_parse_error",
    "model_grader_server_error_details",
)
_TEXT_FLAGS = frozenset({"python_grader_server_error_type", "python_grader_runtime_error_details",
                         "model_grader_server_error_details"})


def no_errors() -> dict[str, Any]:
    return {flag: (None if flag in _TEXT_FLAGS else False) for flag in ERROR_FLAGS}


@dataclass
class Grade:
    """``score`` is 0 whenever a flag in ``errors`` is set. ``sub_scores`` holds a multi grader's
    parts by name; ``usage`` maps a grader model's name to its token counts
    (prompt_tokens, completion_tokens, total_tokens, cached_tokens)."""

    score: float
    errors: dict[str, Any] = field(default_factory=no_errors)
    sub_scores: dict[str, float] = field(default_factory=dict)
    usage: dict[str, dict[str, int]] = field(default_factory=dict)
    execution_time: float = 0.0
    sampled_model_name: str | None = None

    @property
    def failed(self) -> bool:
        return any(bool(value) for value in self.errors.values())


def failure(flag: str, details: tuple[str, str] | None = None) -> Grade:
    """A grade of 0 with ``flag`` set, and ``details`` (flag, text) for the text flags."""
    errors = no_errors()
    errors[flag] = True
    if details:
        errors[details[0]] = details[1]
    return Grade(score=0.0, errors=errors)


def merged_errors(grades: list[Grade]) -> dict[str, Any]:
    """The flags of several grades together (a multi grader's): any set flag, the first text."""
    errors = no_errors()
    for part in grades:
        for flag, value in part.errors.items():
            if value and not errors[flag]:
                errors[flag] = value
    return errors


def add_usage(total: dict[str, dict[str, int]], more: dict[str, dict[str, int]]) -> None:
    for model, counts in more.items():
        into = total.setdefault(model, {})
        for key, value in counts.items():
            into[key] = into.get(key, 0) + value
