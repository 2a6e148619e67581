"""/v1/fine_tuning/checkpoints/{fine_tuned_model_checkpoint}/permissions…: share a fine-tuned
model or checkpoint with other projects (admin keys only, as OpenAI's).
The spec's operationIds are bound to these functions by ``tunegate.api.operations``.
"""

from __future__ import annotations

from typing import Any

from handlers import caller, service

Response = tuple[dict[str, Any], int]


def create_permissions(fine_tuned_model_checkpoint: str, body: dict[str, Any]) -> Response:
    granted = service().permissions.create(caller().admin, fine_tuned_model_checkpoint,
                                           body["project_ids"])
    return granted.to_api(), 200


async def list_permissions(fine_tuned_model_checkpoint: str, project_id: str | None = None,
                           after: str | None = None, limit: int = 10,
                           order: str = "descending") -> Response:
    page = service().permissions.list(caller().admin, fine_tuned_model_checkpoint,
                                      project_id=project_id, after=after, limit=limit,
                                      order=order)
    return page.to_api(), 200


def delete_permission(fine_tuned_model_checkpoint: str, permission_id: str) -> Response:
    deleted = service().permissions.delete(caller().admin, fine_tuned_model_checkpoint,
                                          permission_id)
    return {"id": deleted, "object": "checkpoint.permission", "deleted": True}, 200


# operationId -> function (see the module docstring).
