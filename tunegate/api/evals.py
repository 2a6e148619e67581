"""The evals use cases (``/v1/evals``): create, read, list, update and delete an eval.

Each testing criterion is checked by the graders' own parser (``tunegate.graders``), whose
``InvalidGrader.param`` becomes the 400's ``param`` under ``testing_criteria.<index>``; a grader
model is checked against what this server serves, so a typo is a 400 now and not a failed run
later.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tunegate import ids
from tunegate.domain import eval_requests
from tunegate.domain.evals import Eval
from tunegate.domain.job_requests import check_metadata
from tunegate.domain.jobs import now
from tunegate.errors import InvalidRequest, NotFound, TunegateError, clip
from tunegate.graders import GRADER_TYPES, InvalidGrader, parse_grader
from tunegate.store.base import Page, Store

# Eval criteria take every grader but multi (reinforcement fine-tuning's only, as at OpenAI).
CRITERIA_TYPES = GRADER_TYPES - {"multi"}
MODEL_GRADERS = frozenset({"score_model", "label_model"})
# Whether a model can be called: raises a TunegateError saying why not.
ModelCheck = Callable[[str | None, str], None]


def no_such_eval(eval_id: str) -> NotFound:
    return NotFound(f"No such eval: {clip(eval_id)}", param="eval_id", code="eval_not_found")


def check_model(check: ModelCheck | None, project_id: str | None, model: Any,
                where: str) -> None:
    """400 naming ``where`` when ``model`` cannot be served to the project (``check`` None: the
    models are an external endpoint's, which this server cannot ask)."""
    if not isinstance(model, str) or not model:
        raise InvalidRequest(f"{where} must name a model.", param=where)
    if check is None:
        return
    try:
        check(project_id, model)
    except TunegateError as exc:
        raise InvalidRequest(f"{where}: {exc.message}", param=where,
                             code="model_not_found") from exc


class Evals:
    def __init__(self, store: Store, model_check: ModelCheck | None):
        self.store = store
        self.model_check = model_check

    def create(self, project_id: str, body: Mapping[str, Any]) -> Eval:
        check_metadata(body.get("metadata"))
        config = body["data_source_config"]
        if config.get("type") != "custom":
            raise InvalidRequest("data_source_config.type must be custom: tunegate keeps no "
                                 "logs or stored completions to evaluate.",
                                 param="data_source_config.type",
                                 code="unsupported_data_source")
        criteria = [self._criterion(project_id, spec, f"testing_criteria.{index}")
                    for index, spec in enumerate(body["testing_criteria"])]
        created = now()
        evaluation = Eval(id=ids.new_id(ids.EVAL), project_id=project_id, created_at=created,
                          updated_at=created, name=body.get("name") or "",
                          data_source_config=eval_requests.stored_config(config),
                          testing_criteria=criteria, metadata=body.get("metadata"))
        self.store.evals.add_eval(evaluation)
        return evaluation

    def _criterion(self, project_id: str, spec: Any, where: str) -> dict[str, Any]:
        try:
            grader = parse_grader(spec, where, CRITERIA_TYPES)
        except InvalidGrader as exc:
            raise InvalidRequest(exc.message, param=exc.param, code="invalid_grader") from exc
        stored = dict(grader.spec)
        if grader.type == "text_similarity" and "pass_threshold" not in stored:
            raise InvalidRequest(f"{where}.pass_threshold is required for a text_similarity "
                                 "criterion.", param=f"{where}.pass_threshold",
                                 code="invalid_grader")
        threshold = stored.get("pass_threshold")
        if threshold is not None and (isinstance(threshold, bool)
                                      or not isinstance(threshold, (int, float))):
            raise InvalidRequest(f"{where}.pass_threshold must be a number.",
                                 param=f"{where}.pass_threshold", code="invalid_grader")
        if grader.type in MODEL_GRADERS:
            check_model(self.model_check, project_id, stored.get("model"), f"{where}.model")
            if isinstance(stored.get("input"), list):
                stored["input"] = [eval_requests.eval_item(message, f"{where}.input.{index}")
                                   for index, message in enumerate(stored["input"])]
        return {"id": eval_requests.criterion_id(grader.name), **stored}

    def get(self, project_id: str | None, eval_id: str) -> Eval:
        found = self.store.evals.get_eval(project_id, eval_id)
        if found is None:
            raise no_such_eval(eval_id)
        return found

    def list(self, project_id: str | None, *, after: str | None, limit: int, order: str,
             order_by: str) -> Page[Eval]:
        return self.store.evals.list_evals(project_id, after=after, limit=limit,
                                           ascending=order == "asc",
                                           by_updated=order_by == "updated_at")

    def update(self, project_id: str | None, eval_id: str, body: Mapping[str, Any]) -> Eval:
        check_metadata(body.get("metadata"))
        changes = {key: body[key] for key in ("name", "metadata") if key in body}
        if not changes:
            return self.get(project_id, eval_id)
        changed = self.store.evals.update_eval(project_id, eval_id, changes, now())
        if changed is None:
            raise no_such_eval(eval_id)
        return changed

    def delete(self, project_id: str | None, eval_id: str) -> dict[str, Any]:
        if not self.store.evals.delete_eval(project_id, eval_id):
            raise no_such_eval(eval_id)
        return {"object": "eval.deleted", "deleted": True, "eval_id": eval_id}


def page_to_api(page: Page[Any]) -> dict[str, Any]:
    """An eval-family list: ``first_id``/``last_id`` are strings, empty on an empty page
    (OpenAI's SDK types them as non-null strings)."""
    answer = page.to_api()
    return {**answer, "first_id": answer["first_id"] or "", "last_id": answer["last_id"] or ""}
