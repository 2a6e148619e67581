"""/v1/files…"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.datastructures import UploadFile
from starlette.responses import StreamingResponse

from handlers import project, service, visible
from tunegate.api.service import Upload
from tunegate.errors import InvalidRequest

Response = tuple[dict[str, Any], int]


def create_file(body: dict[str, Any], file: UploadFile | None = None) -> Response:
    if file is None:
        # A `file` part without a filename (e.g. filename="") arrives as a text field.
        raise InvalidRequest("'file' must be a file part (with a filename) of the form.",
                             param="file")
    upload = Upload(
        filename=file.filename or "",  # the service names nameless files
        body=file.file,
        purpose=body["purpose"],
        expires_after_seconds=body.get("expires_after[seconds]"),
    )
    try:
        return service().upload_file(project(), upload).to_api(), 200
    finally:
        # connexion never closes the form it parsed: release the spooled temporary file now.
        file.file.close()


def list_files(purpose: str | None = None, limit: int = 10000, order: str = "desc",
               after: str | None = None) -> Response:
    page = service().list_files(visible(), purpose=purpose, after=after, limit=limit, order=order)
    return page.to_api(), 200


def retrieve_file(file_id: str) -> Response:
    return service().get_file(visible(), file_id).to_api(), 200


def delete_file(file_id: str) -> Response:
    deleted = service().delete_file(visible(), file_id)
    return {"id": deleted, "object": "file", "deleted": True}, 200


def download_file(file_id: str) -> StreamingResponse:
    stored, chunks = service().file_content(visible(), file_id)
    return StreamingResponse(chunks, media_type="application/octet-stream", headers={
        "content-length": str(stored.bytes),
        # RFC 6266/5987 form: any filename (quotes, non-ASCII) survives the header.
        "content-disposition": f"attachment; filename*=UTF-8''{quote(stored.filename)}",
    })
