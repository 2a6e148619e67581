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


EXPIRES_AFTER = ("expires_after[anchor]", "expires_after[seconds]")


def _expires_after_seconds(body: dict[str, Any]) -> int | None:
    """The expiry policy's lifetime: both of its fields or neither (OpenAI requires both)."""
    given = [name for name in EXPIRES_AFTER if body.get(name) is not None]
    if len(given) == 1:
        (missing,) = set(EXPIRES_AFTER) - set(given)
        raise InvalidRequest(f"'{given[0]}' was sent without '{missing}': an expiry policy "
                             "needs both form fields (or neither).", param=missing,
                             code="incomplete_expiry_policy")
    return body.get("expires_after[seconds]")


def create_file(body: dict[str, Any], file: UploadFile | None = None) -> Response:
    try:
        if file is None:
            # A `file` part without a filename (e.g. filename="") arrives as a text field.
            raise InvalidRequest("'file' must be a file part (with a filename) of the form.",
                                 param="file", code="missing_file_part")
        upload = Upload(
            filename=file.filename or "",  # the service names nameless files
            body=file.file,
            purpose=body["purpose"],
            expires_after_seconds=_expires_after_seconds(body),
        )
        return service().files.upload(project(), upload).to_api(), 200
    finally:
        # connexion never closes the form it parsed: release the spooled temporary file now.
        if file is not None:
            file.file.close()


async def list_files(purpose: str | None = None, limit: int = 10000, order: str = "desc",
                     after: str | None = None) -> Response:
    page = service().files.list(visible(), purpose=purpose, after=after, limit=limit, order=order)
    return page.to_api(), 200


async def retrieve_file(file_id: str) -> Response:
    return service().files.get(visible(), file_id).to_api(), 200


def delete_file(file_id: str) -> Response:
    deleted = service().files.delete(visible(), file_id)
    return {"id": deleted, "object": "file", "deleted": True}, 200


def download_file(file_id: str) -> StreamingResponse:
    stored, chunks = service().files.content(visible(), file_id)
    return StreamingResponse(chunks, media_type="application/octet-stream", headers={
        "content-length": str(stored.bytes),
        # RFC 6266/5987 form: any filename (quotes, non-ASCII) survives the header.
        "content-disposition": f"attachment; filename*=UTF-8''{quote(stored.filename)}",
    })
