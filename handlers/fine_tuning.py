"""/v1/fine_tuning/jobs…"""

from __future__ import annotations

from typing import Any

from connexion import request

from handlers import caller, service, visible
from tunegate.api.event_stream import JobEventStream
from tunegate.errors import InvalidRequest

Response = tuple[dict[str, Any], int]
# The events operation declares two media types for 200, so its JSON answer names its own.
JSONResponse = tuple[dict[str, Any], int, dict[str, str]]
JSON = {"content-type": "application/json"}


def create_job(body: dict[str, Any]) -> Response:
    who = caller()
    return service().jobs.create(who.project_id, body, who.organization_id).to_api(), 200


async def list_jobs(after: str | None = None, limit: int = 20,
                    metadata: dict[str, str] | None = None) -> Response:
    return service().jobs.list(visible(), after=after, limit=limit, metadata=metadata).to_api(), 200


async def retrieve_job(fine_tuning_job_id: str) -> Response:
    return service().jobs.get(visible(), fine_tuning_job_id).to_api(), 200


def cancel_job(fine_tuning_job_id: str) -> Response:
    return service().jobs.cancel(visible(), fine_tuning_job_id).to_api(), 200


def pause_job(fine_tuning_job_id: str) -> Response:
    return service().jobs.pause(visible(), fine_tuning_job_id).to_api(), 200


def resume_job(fine_tuning_job_id: str) -> Response:
    return service().jobs.resume(visible(), fine_tuning_job_id).to_api(), 200


def list_events(fine_tuning_job_id: str, after: str | None = None, limit: int = 20,
                stream: bool = False,
                last_event_id: str | None = None) -> JSONResponse | JobEventStream:
    """The paged list (JSON), or with ``stream`` the live events (``text/event-stream``),
    resumed after the ``Last-Event-ID`` header, else the ``last_event_id`` parameter."""
    if not stream:
        page = service().jobs.list_events(visible(), fine_tuning_job_id, after=after, limit=limit)
        return page.to_api(), 200, JSON
    if after is not None:
        raise InvalidRequest(
            "`after` pages the JSON list (newest first); a stream resumes after the event named "
            "by the Last-Event-ID header or the `last_event_id` parameter.", param="after",
            code="unsupported_parameter")
    resume = request.headers.get("last-event-id") or last_event_id
    follower = service().jobs.follow_events(visible(), fine_tuning_job_id, after=resume)
    return JobEventStream(follower, heartbeat=service().settings.sse_heartbeat)


async def list_checkpoints(fine_tuning_job_id: str, after: str | None = None,
                           limit: int = 10) -> Response:
    page = service().jobs.list_checkpoints(visible(), fine_tuning_job_id, after=after, limit=limit)
    return page.to_api(), 200
