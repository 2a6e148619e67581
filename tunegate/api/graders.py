"""``POST /v1/fine_tuning/alpha/graders/run`` and ``/validate``: OpenAI's grader endpoints over
tunegate's grader engine (``tunegate.graders``), with grader models served by the same pool as
chat completions (``PoolGraderModels``), or, when ``TUNEGATE_EVAL_ENDPOINT`` names an external
OpenAI-compatible endpoint, asked there as eval runs ask theirs (``EndpointModels``). A
``multi`` grader's model parts are asked at once (tunegate.graders.multi)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tunegate.api.inference import Completions, Embeddings
from tunegate.domain.catalog import EMBEDDED_MODEL_ID
from tunegate.errors import InvalidRequest, NotFound, clip
from tunegate.graders import (
    GRADER_TYPES,
    Grade,
    Grader,
    GraderModels,
    InvalidGrader,
    ModelAnswer,
    Sample,
    SandboxLimits,
    grade,
    parse_grader,
)
from tunegate.graders.endpoint import EndpointModels
from tunegate.graders.parse import model_fields
from tunegate.settings import Settings

# OpenAI's graders/run and validate take every type but a bare label_model (it is for evals
# and inside multi).
RUNNABLE = GRADER_TYPES - {"label_model"}


class PoolGraderModels:
    """``GraderModels`` for one project's request: chat completions and embeddings through the
    serving pool (the same use cases, and so the same models and rules, as
    ``/v1/chat/completions`` and ``/v1/embeddings``)."""

    def __init__(self, completions: Completions, project_id: str | None):
        self.completions = completions
        self.embeddings = Embeddings(completions)
        self.project_id = project_id

    def complete(self, model: str, messages: Sequence[Mapping[str, Any]], *,
                 response_format: Mapping[str, Any] | None = None,
                 sampling: Mapping[str, Any] | None = None) -> ModelAnswer:
        body: dict[str, Any] = {"model": model, "messages": list(messages), **(sampling or {})}
        if response_format is not None:
            body["response_format"] = dict(response_format)
        answer = self.completions.chat(self.project_id, body)
        assert isinstance(answer, dict)  # not streamed
        return ModelAnswer.of_chat_completion(answer)

    def embed(self, model: str | None, texts: Sequence[str]) -> list[list[float]]:
        # OpenAI's cosine grader names no model (it uses its own embedding model): here it is
        # the embedded base, which every tunegate serves.
        return self.embeddings.embed(model or EMBEDDED_MODEL_ID, texts, self.project_id)

    def exists(self, model: str) -> bool:
        try:
            self.completions.servable(self.project_id, model)
        except (NotFound, InvalidRequest):
            return False
        return True


class Graders:
    def __init__(self, settings: Settings, completions: Completions):
        self.completions = completions
        self.limits = SandboxLimits.configured(settings.python_grader_seconds,
                                               settings.python_grader_memory_mb)
        # One endpoint for every project: what it serves, and to whom, is its own business
        # (its key is TUNEGATE_EVAL_API_KEY), as for eval runs.
        self.external = (EndpointModels(settings.eval_base_url, settings.eval_api_key,
                                        settings.eval_concurrency)
                         if settings.eval_endpoint else None)

    def models_for(self, project_id: str | None) -> GraderModels:
        """Where this project's grader models are asked: the external endpoint, else the pool."""
        return self.external or PoolGraderModels(self.completions, project_id)

    def run(self, project_id: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
        """OpenAI's RunGraderResponse for ``body`` (grader, model_sample, item or the older
        reference_answer); a grader's own failure is flagged inside it, never raised."""
        models = self.models_for(project_id)
        grader = self.checked(body.get("grader"), models)
        result = grade(grader, Sample(output_text=body["model_sample"]), _item(body), models,
                       limits=self.limits)
        return response(grader, result)

    def validate(self, project_id: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
        self.checked(body.get("grader"), self.models_for(project_id))
        return {"grader": body["grader"]}

    def checked(self, spec: Any, models: GraderModels) -> Grader:
        """The parsed grader, or 400 naming the field that is wrong (a grader model this
        project cannot call included: better now than as a failed grade)."""
        if isinstance(spec, Mapping) and spec.get("type") == "label_model":
            raise InvalidRequest(
                "A label_model grader cannot be run on its own here (as on OpenAI): put it "
                "inside a multi grader, or use it as an eval's testing criterion.",
                param="grader.type", code="invalid_grader")
        try:
            grader = parse_grader(spec, "grader", RUNNABLE)
        except InvalidGrader as invalid:
            raise InvalidRequest(invalid.message, param=clip(invalid.param),
                                 code="invalid_grader") from None
        for param, model in model_fields(grader):
            if not models.exists(model):
                raise InvalidRequest(
                    f"The grader model {clip(model)} does not exist or cannot be served for "
                    "this project.", param=clip(param), code="model_not_found")
        return grader


def _item(body: Mapping[str, Any]) -> Mapping[str, Any]:
    if body.get("item") is not None:
        return body["item"]  # type: ignore[no-any-return]
    if "reference_answer" in body:
        return {"reference_answer": body["reference_answer"]}
    return {}


def response(grader: Grader, result: Grade) -> dict[str, Any]:
    """OpenAI's RunGraderResponse: every key present."""
    tokens = sum(counts.get("total_tokens", 0) for counts in result.usage.values())
    return {
        "reward": result.score,
        "metadata": {
            "name": grader.name, "type": grader.type, "errors": dict(result.errors),
            "execution_time": result.execution_time,
            "scores": {**result.sub_scores, grader.name: result.score},
            "token_usage": tokens if result.usage else None,
            "sampled_model_name": result.sampled_model_name,
        },
        "sub_rewards": dict(result.sub_scores),
        "model_grader_token_usage_per_model": {model: dict(counts)
                                               for model, counts in result.usage.items()},
    }


__all__ = ["Graders", "PoolGraderModels", "response"]
