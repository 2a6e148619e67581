"""The scorers of the graders that need no model and no sandbox: ``string_check`` and
``text_similarity`` (cosine aside, which asks ``GraderModels.embed``)."""

from __future__ import annotations

from tunegate.graders import similarity, templates
from tunegate.graders.context import Context
from tunegate.graders.grades import Grade, failure
from tunegate.graders.kinds import Grader
from tunegate.graders.wordnet import WordNetMissing


def string_check(grader: Grader, context: Context) -> Grade:
    given = templates.render(grader.spec["input"], context.namespaces)
    reference = templates.render(grader.spec["reference"], context.namespaces)
    operation = grader.spec["operation"]
    outcome = {"eq": given == reference, "ne": given != reference,
               "like": reference in given, "ilike": reference.lower() in given.lower()}[operation]
    return Grade(score=1.0 if outcome else 0.0)


def text_similarity(grader: Grader, context: Context) -> Grade:
    given = templates.render(grader.spec["input"], context.namespaces)
    reference = templates.render(grader.spec["reference"], context.namespaces)
    metric = grader.spec["evaluation_metric"]
    if metric == "cosine":
        return _cosine(given, reference, context)
    try:
        return Grade(score=similarity.score(metric, given, reference))
    except WordNetMissing:
        # Refused at create time where WordNet is missing; reached only if it went since.
        return failure("other_error")


def _cosine(given: str, reference: str, context: Context) -> Grade:
    if context.models is None:
        return failure("model_grader_server_error", ("model_grader_server_error_details",
                                                     "no embedding model is available here"))
    try:
        vectors = context.models.embed(None, [given, reference])
    except Exception as problem:  # noqa: BLE001 - the embedding model's failure is the grade's
        return failure("model_grader_server_error",
                       ("model_grader_server_error_details", f"embedding failed: {problem}"))
    return Grade(score=similarity.cosine(vectors))
