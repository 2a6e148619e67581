"""ASGI middleware around the whole API: request ids, the upload size limit, gateway mode.

It runs before connexion reads a byte of the body, which is where a size limit must act.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tunegate import ids
from tunegate.api_errors import envelope

GATEWAY_DETAIL = "Fine-tuning is not implemented in the local llama.cpp gateway"
FINE_TUNING_PREFIX = "/v1/fine_tuning/"
SERVICE_KEY = "tunegate.service"
REQUEST_ID_KEY = "tunegate.request_id"


def _stamped(send: Send, request_id: str) -> Send:
    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            MutableHeaders(scope=message)["x-request-id"] = request_id
        await send(message)

    return send_with_id


async def _send_json(send: Send, status: int, body: dict[str, Any],
                     headers: list[tuple[bytes, bytes]]) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *headers,
    ]})
    await send({"type": "http.response.body", "body": payload})


class TunegateMiddleware:
    """Stamps ``x-request-id``, refuses oversize bodies with 413, answers gateway-mode 501s."""

    def __init__(self, app: ASGIApp, *, service: Any, max_body_bytes: int, fine_tuning: bool):
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes
        self.fine_tuning = fine_tuning

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ids.new_id(ids.REQUEST)
        id_header = [(b"x-request-id", request_id.encode())]
        path: str = scope["path"]
        if not self.fine_tuning and (path + "/").startswith(FINE_TUNING_PREFIX):
            # Never going to work on this server: tell the SDK not to resend (it retries 5xx).
            await _send_json(send, 501, {"detail": GATEWAY_DETAIL},
                             [*id_header, (b"x-should-retry", b"false")])
            return
        length = Headers(scope=scope).get("content-length")
        if length and length.isdigit() and int(length) > self.max_body_bytes:
            await _send_json(send, 413, envelope(
                f"Request body is {int(length)} bytes; the limit is {self.max_body_bytes} bytes "
                "(setting TUNEGATE_MAX_UPLOAD_BYTES).",
                type="invalid_request_error", code="request_too_large"), id_header)
            return
        extensions = scope.setdefault("extensions", {})
        extensions.setdefault("connexion_context", {})[SERVICE_KEY] = self.service
        scope[REQUEST_ID_KEY] = request_id
        await self.app(scope, receive, _stamped(send, request_id))


class RequestIdInside:
    """Stamps the same ``x-request-id`` inside connexion's response validation, which checks
    the header the spec requires (the outer stamp covers errors built outside that layer)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = scope.get(REQUEST_ID_KEY)
        await self.app(scope, receive, _stamped(send, request_id) if request_id else send)
