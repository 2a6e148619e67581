"""``multi``: several graders scored on the same sample, combined by ``calculate_output``.

Each part is graded; the formula's variables are the parts' names (the keys of a name ->
grader map, else each grader's ``name``). A part that fails makes the whole fail with its
flags (score 0); a formula without a value for these scores (a division by zero...) is
``other_error``. ``sub_scores`` holds every part's score by name.
"""

from __future__ import annotations

from tunegate.graders import formula
from tunegate.graders.context import Context
from tunegate.graders.grades import Grade, add_usage, failure, merged_errors
from tunegate.graders.kinds import Grader


def multi(grader: Grader, context: Context) -> Grade:
    parts = {name: context.grade_part(part) for name, part in grader.parts}
    usage: dict[str, dict[str, int]] = {}
    for part in parts.values():
        add_usage(usage, part.usage)
    scores = {name: part.score for name, part in parts.items()}
    if any(part.failed for part in parts.values()):
        result = Grade(score=0.0, errors=merged_errors(list(parts.values())))
    else:
        try:
            result = Grade(score=formula.evaluate(grader.formula, scores))
        except formula.MathError:
            result = failure("other_error")
    result.sub_scores = scores
    result.usage = usage
    return result
