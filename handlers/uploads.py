"""/v1/uploads…: a file sent in parts (OpenAI's Uploads API). The spec's operationIds
(``createUpload``, …) are bound to these functions by ``tunegate.api.operations``."""

from __future__ import annotations

import io
from typing import Any

from starlette.datastructures import UploadFile

from handlers import project, service, visible
from tunegate.errors import InvalidRequest

Response = tuple[dict[str, Any], int]


def create_upload(body: dict[str, Any]) -> Response:
    return service().uploads.create(project(), body), 200


def add_upload_part(upload_id: str, body: dict[str, Any] | None = None,
                    data: UploadFile | None = None) -> Response:
    if data is not None:
        try:
            size = data.file.seek(0, io.SEEK_END)  # spooled to disk by the form parser
            data.file.seek(0)
            return service().uploads.add_part(visible(), upload_id, data.file, size), 200
        finally:
            data.file.close()  # connexion never closes the form it parsed
    text = (body or {}).get("data")
    if not isinstance(text, str):
        raise InvalidRequest("'data' must be a part of the form (a file part for binary data).",
                             param="data", code="missing_file_part")
    # A plain form field (`curl -F data=...`): text, at most 1 MiB by the form parser's limit.
    raw = text.encode()
    return service().uploads.add_part(visible(), upload_id, io.BytesIO(raw), len(raw)), 200


def complete_upload(upload_id: str, body: dict[str, Any]) -> Response:
    return service().uploads.complete(visible(), upload_id, body["part_ids"],
                                      body.get("md5")), 200


def cancel_upload(upload_id: str) -> Response:
    return service().uploads.cancel(visible(), upload_id), 200


# operationId -> function (see the module docstring).
