"""/v1/models…"""

from __future__ import annotations

from typing import Any

from handlers import project, service

Response = tuple[dict[str, Any], int]


def list_models() -> Response:
    return {"object": "list", "data": service().list_models(project())}, 200


def retrieve_model(model: str) -> Response:
    return service().get_model(project(), model), 200


def delete_model(model: str) -> Response:
    deleted = service().delete_model(project(), model)
    return {"id": deleted, "object": "model", "deleted": True}, 200
