"""/v1/evals…"""

from __future__ import annotations

from typing import Any

from handlers import project, service, visible
from tunegate.api.evals import page_to_api

Response = tuple[dict[str, Any], int]


async def list_evals(after: str | None = None, limit: int = 20, order: str = "asc",
                     order_by: str = "created_at") -> Response:
    page = service().evals.list(visible(), after=after, limit=limit, order=order,
                                order_by=order_by)
    return page_to_api(page), 200


def create_eval(body: dict[str, Any]) -> Response:
    return service().evals.create(project(), body).to_api(), 201


async def get_eval(eval_id: str) -> Response:
    return service().evals.get(visible(), eval_id).to_api(), 200


def update_eval(eval_id: str, body: dict[str, Any]) -> Response:
    return service().evals.update(visible(), eval_id, body).to_api(), 200


def delete_eval(eval_id: str) -> Response:
    return service().evals.delete(visible(), eval_id), 200


async def list_runs(eval_id: str, after: str | None = None, limit: int = 20,
                    order: str = "asc", status: str | None = None) -> Response:
    page = service().eval_runs.list(visible(), eval_id, after=after, limit=limit, order=order,
                                    status=status)
    return page_to_api(page), 200


def create_run(eval_id: str, body: dict[str, Any]) -> Response:
    return service().eval_runs.create(project(), eval_id, body).to_api(), 201


async def get_run(eval_id: str, run_id: str) -> Response:
    return service().eval_runs.get(visible(), eval_id, run_id).to_api(), 200


def cancel_run(eval_id: str, run_id: str) -> Response:
    return service().eval_runs.cancel(visible(), eval_id, run_id).to_api(), 200


def delete_run(eval_id: str, run_id: str) -> Response:
    return service().eval_runs.delete(visible(), eval_id, run_id), 200


async def list_output_items(eval_id: str, run_id: str, after: str | None = None,
                            limit: int = 20, order: str = "asc",
                            status: str | None = None) -> Response:
    page = service().eval_runs.list_items(visible(), eval_id, run_id, after=after, limit=limit,
                                          order=order, status=status)
    return page_to_api(page), 200


async def get_output_item(eval_id: str, run_id: str, output_item_id: str) -> Response:
    return service().eval_runs.get_item(visible(), eval_id, run_id, output_item_id).to_api(), 200
