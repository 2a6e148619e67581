"""The eval runs use cases (``/v1/evals/{eval_id}/runs``) and their output items.

Creating a run checks everything that can be checked without grading: the data source's shape,
its rows (inline, or the ``evals`` file's lines), the model of a ``completions`` source; then
the run is queued for a worker (tunegate.worker.eval_stage), which moves it on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunegate import ids
from tunegate.api.evals import Evals, ModelCheck, check_model
from tunegate.api.files import EVAL_INPUT, input_file
from tunegate.domain import eval_requests
from tunegate.domain.evals import (
    OUTPUT_ITEM_STATUSES,
    EvalRun,
    OutputItem,
    RunStatus,
    RunTotals,
    no_error,
)
from tunegate.domain.files import FileStorage
from tunegate.domain.job_requests import check_metadata
from tunegate.domain.jobs import now
from tunegate.errors import InvalidRequest, NotFound, clip
from tunegate.store.base import Page, Store


def no_such_run(run_id: str) -> NotFound:
    return NotFound(f"No such eval run: {clip(run_id)}", param="run_id", code="eval_run_not_found")


def run_page(dashboard_url: str, eval_id: str, run_id: str) -> str:
    """A run's ``report_url``: its page in this server's dashboard (``dashboard_url``, the
    dashboard's address ending in ``/``), as OpenAI's names its page on the platform."""
    return f"{dashboard_url}#/evals/{eval_id}/runs/{run_id}"


class EvalRuns:
    def __init__(self, store: Store, storage: FileStorage, evals: Evals,
                 model_check: ModelCheck | None, dashboard_url: str, max_line_bytes: int):
        self.store = store
        self.storage = storage
        self.evals = evals
        self.model_check = model_check
        self.dashboard_url = dashboard_url
        self.max_line_bytes = max_line_bytes

    def create(self, project_id: str, eval_id: str, body: Mapping[str, Any]) -> EvalRun:
        evaluation = self.evals.get(project_id, eval_id)
        check_metadata(body.get("metadata"))
        source = dict(body["data_source"])
        self._check_rows(project_id, source.get("source"))
        model = source["type"]  # a jsonl run has no model: its type stands in (strict SDKs)
        if source["type"] == "completions":
            check_model(self.model_check, project_id, source.get("model"), "data_source.model")
            eval_requests.check_input_messages(source.get("input_messages"),
                                               "data_source.input_messages")
            model = source["model"]
            source.setdefault("sampling_params", None)
        run_id = ids.new_id(ids.EVAL_RUN)
        run = EvalRun(id=run_id, eval_id=evaluation.id,
                      project_id=project_id, created_at=now(), status=RunStatus.QUEUED,
                      model=model, name=body.get("name") or model, data_source=source,
                      metadata=body.get("metadata"), error=no_error(), totals=RunTotals(),
                      report_url=run_page(self.dashboard_url, evaluation.id, run_id))
        self.store.evals.add_run(run)
        return run

    def _check_rows(self, project_id: str, source: Any) -> None:
        where = "data_source.source"
        if not isinstance(source, Mapping):
            raise InvalidRequest(f"{where} is required.", param=where)
        if source.get("type") == "file_content":
            eval_requests.check_rows(source.get("content"), f"{where}.content")
            return
        file_id = source.get("id")
        if not isinstance(file_id, str):
            raise InvalidRequest(f"{where}.id: no such file {clip(str(file_id))}",
                                 param=f"{where}.id", code="file_not_found")
        input_file(self.store, project_id, file_id, f"{where}.id", f"{where}.id", EVAL_INPUT)
        eval_requests.read_rows(self.storage.path(file_id), self.max_line_bytes, f"{where}.id")

    def get(self, project_id: str | None, eval_id: str, run_id: str) -> EvalRun:
        self.evals.get(project_id, eval_id)
        run = self.store.evals.get_run(project_id, eval_id, run_id)
        if run is None:
            raise no_such_run(run_id)
        return run

    def list(self, project_id: str | None, eval_id: str, *, after: str | None, limit: int,
             order: str, status: str | None) -> Page[EvalRun]:
        self.evals.get(project_id, eval_id)
        return self.store.evals.list_runs(project_id, eval_id, after=after, limit=limit,
                                          ascending=order == "asc", status=status)

    def cancel(self, project_id: str | None, eval_id: str, run_id: str) -> EvalRun:
        self.evals.get(project_id, eval_id)
        canceled = self.store.evals.cancel_run(project_id, eval_id, run_id)
        if canceled is None:
            raise no_such_run(run_id)
        return canceled

    def delete(self, project_id: str | None, eval_id: str, run_id: str) -> dict[str, Any]:
        self.evals.get(project_id, eval_id)
        if not self.store.evals.delete_run(project_id, eval_id, run_id):
            raise no_such_run(run_id)
        return {"object": "eval.run.deleted", "deleted": True, "run_id": run_id}

    def list_items(self, project_id: str | None, eval_id: str, run_id: str, *,
                   after: str | None, limit: int, order: str,
                   status: str | None) -> Page[OutputItem]:
        self.get(project_id, eval_id, run_id)
        if status is not None and status not in OUTPUT_ITEM_STATUSES:
            raise InvalidRequest("status must be pass or fail.", param="status")
        return self.store.evals.list_items(project_id, eval_id, run_id, after=after,
                                           limit=limit, ascending=order == "asc", status=status)

    def get_item(self, project_id: str | None, eval_id: str, run_id: str,
                 item_id: str) -> OutputItem:
        self.get(project_id, eval_id, run_id)
        item = self.store.evals.get_item(project_id, eval_id, run_id, item_id)
        if item is None:
            raise NotFound(f"No such output item: {clip(item_id)}", param="output_item_id",
                           code="output_item_not_found")
        return item
