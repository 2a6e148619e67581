"""/v1/models…"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from starlette.responses import StreamingResponse

from handlers import service, visible

Response = tuple[dict[str, Any], int]


async def list_models() -> Response:
    return {"object": "list", "data": service().models.list(visible())}, 200


async def retrieve_model(model: str) -> Response:
    return service().models.get(visible(), model), 200


def delete_model(model: str) -> Response:
    deleted = service().models.delete(visible(), model)
    return {"id": deleted, "object": "model", "deleted": True}, 200


def download_adapter(model: str, format: str = "gguf") -> StreamingResponse:
    adapter = service().models.adapter_download(visible(), model, format)
    # A plain ASCII name for tools that ignore RFC 5987's filename* (curl -J), then the exact one.
    ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", adapter.filename)
    return StreamingResponse(adapter.chunks, media_type=adapter.media_type, headers={
        "content-length": str(adapter.size),
        "content-disposition": f"attachment; filename=\"{ascii_name}\"; "
                               f"filename*=UTF-8''{quote(adapter.filename)}",
        "x-tunegate-base-model": adapter.base_model,
    })
