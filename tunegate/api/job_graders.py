"""A reinforcement job's grader, checked when the job is created.

The graders' own parser (:func:`tunegate.graders.parse_grader`) checks every field, so a bad
one is a 400 naming its path under ``method.reinforcement.grader``; a grader model is checked
against what this server serves (as an eval's criteria are), so that a typo is a 400 now and
not a job that fails at its first step.
"""

from __future__ import annotations

from tunegate.api.evals import ModelCheck, check_model
from tunegate.domain.methods import Method
from tunegate.errors import InvalidRequest
from tunegate.graders import GRADER_TYPES, InvalidGrader, parse_grader
from tunegate.graders.parse import model_fields

WHERE = "method.reinforcement.grader"
# OpenAI's reward graders: every type but label_model, which picks a label rather than giving
# a score (it may still sit inside a multi, whose formula turns its pass into a number).
REWARD_GRADER_TYPES = GRADER_TYPES - {"label_model"}


def check_reward_grader(method: Method, project_id: str, model_check: ModelCheck | None) -> None:
    """400 unless ``method``'s grader (a reinforcement method's; others have none) can reward
    a sample: every field checked, every grader model one this server serves to the project
    (``model_check`` None: an external endpoint serves them, which this server cannot ask)."""
    if method.grader is None:
        return
    if method.grader.get("type") == "label_model":
        raise InvalidRequest(
            f"{WHERE}.type: a label_model grader cannot reward a reinforcement job on its own, "
            "since it picks a label rather than a score. Use score_model, or put the "
            "label_model inside a multi grader whose calculate_output turns it into a number.",
            param=f"{WHERE}.type", code="invalid_grader")
    try:
        grader = parse_grader(method.grader, WHERE, REWARD_GRADER_TYPES)
    except InvalidGrader as exc:
        raise InvalidRequest(exc.message, param=exc.param, code="invalid_grader") from exc
    for where, model in model_fields(grader, WHERE):
        check_model(model_check, project_id, model, where)
