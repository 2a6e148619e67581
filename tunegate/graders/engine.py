"""Running a checked grader on one sample."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from tunegate.graders import model_graders, multi, python_grader, scorers, templates
from tunegate.graders.context import Context
from tunegate.graders.grades import Grade, failure
from tunegate.graders.kinds import Grader
from tunegate.graders.models import GraderModels
from tunegate.graders.samples import Sample
from tunegate.graders.sandbox import SandboxLimits

Scorer = Callable[[Grader, Context], Grade]


def grade(grader: Grader, sample: Sample, item: Mapping[str, Any],
          models: GraderModels | None = None, *, limits: SandboxLimits | None = None) -> Grade:
    """``grader``'s grade of ``sample`` for ``item``; never raises for the grader's own
    failure (the flags of ``Grade.errors``). ``limits`` are the Python sandbox's (OpenAI's by
    default)."""
    namespaces = {"sample": sample.as_namespace(), "item": item}
    sandbox_limits = limits or SandboxLimits()

    def run(part: Grader) -> Grade:
        started = time.monotonic()
        try:
            result = SCORERS[part.type](part, context)
        except templates.UnknownVariable:
            result = failure("invalid_variable_error")
        result.execution_time = time.monotonic() - started
        return result

    context = Context(namespaces=namespaces, models=models, limits=sandbox_limits,
                      grade_part=run)
    return run(grader)


def passed(grader: Grader, result: Grade) -> bool:
    """An eval criterion's pass rule: ``pass_threshold`` where the criterion has one, a score of
    1 otherwise (string_check, and label_model whose score is 1 for a passing label)."""
    if result.failed:
        return False
    threshold = grader.spec.get("pass_threshold")
    return result.score >= threshold if threshold is not None else result.score >= 1


SCORERS: dict[str, Scorer] = {
    "string_check": scorers.string_check,
    "text_similarity": scorers.text_similarity,
    "python": python_grader.python,
    "score_model": model_graders.score_model,
    "label_model": model_graders.label_model,
    "multi": multi.multi,
}
