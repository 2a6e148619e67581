"""/v1/webhook_endpoints…: a project's webhook receivers (the SDK's ``client.webhooks``) and,
tunegate's own, the deliveries of one. The spec's operationIds are bound to these functions by
``tunegate.api.operations``."""

from __future__ import annotations

from typing import Any

from handlers import project, service, visible

Response = tuple[dict[str, Any], int]


def create_endpoint(body: dict[str, Any]) -> Response:
    return service().webhooks.create(project(), body).to_api(with_secret=True), 200


async def list_endpoints(after: str | None = None, limit: int = 20) -> Response:
    return service().webhooks.list(visible(), after=after, limit=limit).to_api(), 200


async def retrieve_endpoint(webhook_endpoint_id: str) -> Response:
    return service().webhooks.get(visible(), webhook_endpoint_id).to_api(), 200


def delete_endpoint(webhook_endpoint_id: str) -> Response:
    return service().webhooks.delete(visible(), webhook_endpoint_id), 200


def update_endpoint(webhook_endpoint_id: str, body: dict[str, Any]) -> Response:
    return service().webhooks.update(visible(), webhook_endpoint_id, body).to_api(), 200


def rotate_secret(webhook_endpoint_id: str, body: dict[str, Any] | bytes | None = None) -> Response:
    # No body at all (curl -X POST) reaches here as the spec's default, unparsed: b"{}".
    options = body if isinstance(body, dict) else {}
    keep_old = bool(options.get("keep_old_secret_active_for_24_hours", False))
    rotated = service().webhooks.rotate_secret(visible(), webhook_endpoint_id, keep_old=keep_old)
    return rotated.to_api(with_secret=True), 200


def test_endpoint(webhook_endpoint_id: str, body: dict[str, Any]) -> Response:
    return service().webhooks.test(visible(), webhook_endpoint_id, body["event_type"]), 200


async def list_deliveries(webhook_endpoint_id: str, after: str | None = None,
                          limit: int = 20) -> Response:
    page = service().webhooks.deliveries(visible(), webhook_endpoint_id, after=after,
                                         limit=limit)
    return page.to_api(), 200
