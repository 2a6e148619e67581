"""Running a checked grader on one sample."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from tunegate.graders import templates
from tunegate.graders.grades import Grade, no_errors
from tunegate.graders.models import GraderModels
from tunegate.graders.parse import Grader
from tunegate.graders.samples import Sample

Scorer = Callable[[Grader, Mapping[str, Any], "GraderModels | None"], Grade]


def grade(grader: Grader, sample: Sample, item: Mapping[str, Any],
          models: GraderModels | None = None) -> Grade:
    namespaces = {"sample": sample.as_namespace(), "item": item}
    started = time.monotonic()
    try:
        result = SCORERS[grader.type](grader, namespaces, models)
    except templates.UnknownVariable:
        result = _failed("invalid_variable_error")
    result.execution_time = time.monotonic() - started
    return result


def passed(grader: Grader, result: Grade) -> bool:
    """An eval criterion's pass rule: ``pass_threshold`` where the criterion has one, a score of
    1 otherwise (string_check, and label_model whose score is 1 for a passing label)."""
    if result.failed:
        return False
    threshold = grader.spec.get("pass_threshold")
    return result.score >= threshold if threshold is not None else result.score >= 1


def _failed(flag: str, details: tuple[str, str] | None = None) -> Grade:
    errors = no_errors()
    errors[flag] = True
    if details:
        errors[details[0]] = details[1]
    return Grade(score=0.0, errors=errors)


def _string_check(grader: Grader, namespaces: Mapping[str, Any],
                  models: GraderModels | None) -> Grade:
    given = templates.render(grader.spec["input"], namespaces)
    reference = templates.render(grader.spec["reference"], namespaces)
    operation = grader.spec["operation"]
    outcome = {"eq": given == reference, "ne": given != reference,
               "like": reference in given, "ilike": reference.lower() in given.lower()}[operation]
    return Grade(score=1.0 if outcome else 0.0)


SCORERS: dict[str, Scorer] = {"string_check": _string_check}
