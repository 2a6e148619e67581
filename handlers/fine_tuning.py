"""/v1/fine_tuning/jobs…"""

from __future__ import annotations

from typing import Any

from handlers import caller, service, visible

Response = tuple[dict[str, Any], int]


def create_job(body: dict[str, Any]) -> Response:
    who = caller()
    return service().create_job(who.project_id, body, who.organization_id).to_api(), 200


async def list_jobs(after: str | None = None, limit: int = 20,
                    metadata: dict[str, str] | None = None) -> Response:
    return service().list_jobs(visible(), after=after, limit=limit, metadata=metadata).to_api(), 200


async def retrieve_job(fine_tuning_job_id: str) -> Response:
    return service().get_job(visible(), fine_tuning_job_id).to_api(), 200


def cancel_job(fine_tuning_job_id: str) -> Response:
    return service().cancel_job(visible(), fine_tuning_job_id).to_api(), 200


def pause_job(fine_tuning_job_id: str) -> Response:
    return service().pause_job(visible(), fine_tuning_job_id).to_api(), 200


def resume_job(fine_tuning_job_id: str) -> Response:
    return service().resume_job(visible(), fine_tuning_job_id).to_api(), 200


async def list_events(fine_tuning_job_id: str, after: str | None = None,
                      limit: int = 20) -> Response:
    page = service().list_events(visible(), fine_tuning_job_id, after=after, limit=limit)
    return page.to_api(), 200


async def list_checkpoints(fine_tuning_job_id: str, after: str | None = None,
                           limit: int = 10) -> Response:
    page = service().list_checkpoints(visible(), fine_tuning_job_id, after=after, limit=limit)
    return page.to_api(), 200
