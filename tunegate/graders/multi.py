"""``multi``: several graders scored on the same sample, combined by ``calculate_output``.

Each part is graded; the formula's variables are the parts' names (the keys of a name ->
grader map, else each grader's ``name``). A part that fails makes the whole fail with its
flags (score 0); a formula without a value for these scores (a division by zero...) is
``other_error``. ``sub_scores`` holds every part's score by name.

Parts that ask a grader model (``score_model``, ``label_model``, a ``cosine`` similarity) are
asked at once, up to ``MODEL_CALLS_AT_ONCE``, so that the serving pool's parallel slots (or an
external endpoint) batch them: a multi of three judges takes about one judge's time, not three.
The other parts are graded in the calling thread meanwhile: a Python part's sandbox is given
one core, and two sandboxes at once would take two.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

from tunegate.graders import formula
from tunegate.graders.context import Context
from tunegate.graders.grades import Grade, add_usage, failure, merged_errors
from tunegate.graders.kinds import Grader

# The serving pool's parallel slots (TUNEGATE_EVAL_CONCURRENCY's default).
MODEL_CALLS_AT_ONCE = 4


def multi(grader: Grader, context: Context) -> Grade:
    parts = _grade_parts(grader.parts, context)
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


def asks_a_model(grader: Grader) -> bool:
    """Whether grading ``grader`` waits on a model (a request worth sending beside others)."""
    return grader.type in ("score_model", "label_model") or (
        grader.type == "text_similarity" and grader.spec.get("evaluation_metric") == "cosine")


def _grade_parts(parts: tuple[tuple[str, Grader], ...], context: Context) -> dict[str, Grade]:
    """Every part's grade by name, in the parts' order; model parts concurrently when there
    are several."""
    asking = [(name, part) for name, part in parts if asks_a_model(part)]
    if len(asking) < 2 or context.models is None:
        return {name: context.grade_part(part) for name, part in parts}
    graded: dict[str, Grade] = {}
    with ThreadPoolExecutor(max_workers=min(len(asking), MODEL_CALLS_AT_ONCE),
                            thread_name_prefix="multi-grader") as pool:
        pending: dict[str, Future[Grade]] = {
            name: pool.submit(context.grade_part, part) for name, part in asking}
        for name, part in parts:
            if name not in pending:
                graded[name] = context.grade_part(part)
        for name, future in pending.items():
            graded[name] = future.result()
    return {name: graded[name] for name, _ in parts}
