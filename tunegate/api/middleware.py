"""ASGI middleware around the whole API: request ids, security headers, keys sent in the URL,
API keys, the request rate, gateway mode, the upload size limit and the disk's room for an
upload, in that order.

It runs before connexion reads a byte of the body, which is where a size limit must act, and
before routing, so an unauthenticated caller learns nothing (not even which routes exist).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tunegate import ids, logs
from tunegate.api.dashboard import is_dashboard
from tunegate.api.errors import envelope
from tunegate.api.keys import Caller, KeyRing
from tunegate.api.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from tunegate.api.rate_limit import RateLimiter
from tunegate.api.url_secrets import key_parameters
from tunegate.domain.uploads import MAX_PART_BYTES
from tunegate.errors import InsufficientStorage, TooManyRequests, clip

GATEWAY_DETAIL = "Fine-tuning is not implemented in the local llama.cpp gateway"
FINE_TUNING_PREFIX = "/v1/fine_tuning/"
# The routes whose body is stored in the data folder (and needs its room there): uploads, and
# the parts of an upload (the Uploads API).
UPLOAD_ROUTES = (("POST", "/v1/files"),)
UPLOAD_PART_ROUTE = re.compile(r"/v1/uploads/[^/]+/parts")
# What a part's form may add to its bytes (boundaries, part headers) before the size alone says
# it is too large; the exact check is on the part's bytes (tunegate.api.uploads).
PART_FORM_BYTES = 64 * 1024
SERVICE_KEY = "tunegate.service"
CALLER_KEY = "tunegate.caller"
REQUEST_ID_KEY = "tunegate.request_id"
access_log = logging.getLogger(logs.ACCESS_LOGGER)
METRICS_PATH = "/metrics"
# Readable without a key: the contract and Swagger UI (whose "Authorize" button takes the key);
# the dashboard too, being outside /v1 (its page asks for the key).
PUBLIC_PATHS = ("/v1/openapi.json", "/v1/openapi.yaml")
DOCS_PREFIXES = ("/v1/docs", "/docs")
INVALID_KEY = ("Incorrect or missing API key. Send it as 'Authorization: Bearer <key>' "
               "(the SDK's api_key).")

# An API answers JSON, files and event streams: nothing may run, embed or frame them.
API_CSP = "default-src 'none'; frame-ancestors 'none'"
# Swagger UI's page has an inline script and style, data: images, and fetches the spec itself.
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'")
# The dashboard's page: its own files only (no inline script or style), and calls to this
# server alone, so that the page cannot load anything from, or send anything to, another host.
DASHBOARD_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                 "connect-src 'self'; base-uri 'none'; form-action 'none'; "
                 "frame-ancestors 'none'")


# An answer given by the middleware itself: status, JSON body, extra headers.
Refusal = tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]


def _is_docs(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in DOCS_PREFIXES)


def _needs_key(path: str) -> bool:
    return path.startswith("/v1/") and path not in PUBLIC_PATHS and not _is_docs(path)


def _security_headers(path: str) -> list[tuple[bytes, bytes]]:
    csp = DOCS_CSP if _is_docs(path) else DASHBOARD_CSP if is_dashboard(path) else API_CSP
    return [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"), (b"content-security-policy", csp.encode())]


def _stamped(send: Send, request_id: str, path: str | None = None) -> Send:
    """``send`` that sets ``x-request-id`` (and, given the path, the security headers),
    replacing any the response had, on raw header lists (no ``MutableHeaders``: every response
    passes here twice)."""
    stamp = [(b"x-request-id", request_id.encode("latin-1"))]
    if path is not None:
        stamp += _security_headers(path)
    replaced = {name for name, _ in stamp}
    # Answers hold private data: never keep a copy, unless the response says otherwise.
    no_store = path is not None and not _is_docs(path)

    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [item for item in message.get("headers", ()) if item[0] not in replaced]
            headers += stamp
            if no_store and all(name != b"cache-control" for name, _ in headers):
                headers.append((b"cache-control", b"no-store"))
            message["headers"] = headers
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


def _key_in_url(query_string: bytes) -> Refusal | None:
    """A 400 for a query that carries a credential (``?api_key=``): refused whether or not it
    is a valid key, so that a client learns at once to send it where no log records it."""
    names = key_parameters(query_string)
    if not names:
        return None
    quoted = ", ".join(f"'{clip(name)}'" for name in names)
    return 400, envelope(
        f"API keys are not accepted in the URL (query parameter {quoted}): URLs end up in "
        "logs and browser histories. Send the key in the 'Authorization: Bearer <key>' header "
        "(the SDK's api_key), and consider this key exposed.",
        type="invalid_request_error", param=clip(names[0]), code="api_key_in_url"), []


def _timed(send: Send, answered: list[float], started: float) -> Send:
    """``send`` that notes the answer's status and the seconds to its start in ``answered``."""

    async def send_timed(message: Message) -> None:
        if message["type"] == "http.response.start":
            answered[:] = [message["status"], time.perf_counter() - started]
        await send(message)

    return send_timed


class TunegateMiddleware:
    """Stamps ``x-request-id`` and security headers, refuses keys sent in the URL (400), checks
    the API key (401) and its request
    rate (429), answers gateway-mode 501s, refuses oversize bodies with 413 and uploads the
    disk has no room for with 507, and hands the caller to the handlers.

    ``upload_room()`` is the free space, in bytes, where uploads are stored.
    """

    def __init__(self, app: ASGIApp, *, service: Any, keys: KeyRing, rate: RateLimiter,
                 open_caller: Caller, max_body_bytes: int, fine_tuning: bool,
                 upload_room: Callable[[], int]):
        self.app = app
        self.service = service
        self.keys = keys
        self.rate = rate
        self.open_caller = open_caller
        self.max_body_bytes = max_body_bytes
        self.fine_tuning = fine_tuning
        self.upload_room = upload_room

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ids.new_id(ids.REQUEST)
        path: str = scope["path"]
        send = _stamped(send, request_id, path)
        request_headers = Headers(scope=scope)
        if path == METRICS_PATH and scope["method"] in ("GET", "HEAD"):
            await self._metrics(request_headers, send)
            return
        request_token = logs.request_id.set(request_id)
        started = time.perf_counter()
        answered: list[float] = []  # the status and the seconds to it, once the answer starts
        timed = _timed(send, answered, started)
        extensions = scope.setdefault("extensions", {})
        try:
            caller = self._caller(request_headers, path)
            refusal = _key_in_url(scope.get("query_string", b"")) or self._refusal(
                request_headers, scope["method"], path, caller)
            if refusal is not None:
                status, body, headers = refusal
                await _send_json(timed, status, body, headers)
                return
            context = extensions.setdefault("connexion_context", {})
            context[SERVICE_KEY] = self.service
            context[CALLER_KEY] = caller
            scope[REQUEST_ID_KEY] = request_id
            await self.app(scope, receive, timed)
        finally:
            # connexion's routing writes the operationId into this same dict.
            operation = extensions.get("connexion_routing", {}).get("operation_id")
            status = int(answered[0]) if answered else 500
            seconds = answered[1] if answered else time.perf_counter() - started
            self.service.metrics.observe(operation, status, seconds)
            access_log.info("%s %s %d", scope["method"], path, status, extra={
                "method": scope["method"], "path": path, "status": status,
                "operation": operation, "duration_ms": round(seconds * 1000, 1)})
            logs.request_id.reset(request_token)

    async def _metrics(self, headers: Headers, send: Send) -> None:
        """Prometheus' scrape: open without keys, an admin key's with them (it counts every
        project's jobs)."""
        if self.keys.enabled:
            caller = self.keys.caller(headers.get("authorization"))
            if caller is None:
                await _send_json(send, 401, envelope(INVALID_KEY, type="invalid_request_error",
                                                     code="invalid_api_key"),
                                 [(b"www-authenticate", b"Bearer")])
                return
            if not caller.admin:
                await _send_json(send, 403, envelope(
                    "/metrics needs an admin API key (\"admin\": true in the keys file).",
                    type="invalid_request_error", code="admin_key_required"), [])
                return
        body = self.service.metrics.render()
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", METRICS_CONTENT_TYPE.encode()),
            (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def _caller(self, headers: Headers, path: str) -> Caller | None:
        """Whom the request acts for; None when keys are required and it has no valid one."""
        if not self.keys.enabled or not _needs_key(path):
            return self.open_caller
        return self.keys.caller(headers.get("authorization"))

    def _refusal(self, headers: Headers, method: str, path: str,
                 caller: Caller | None) -> Refusal | None:
        """The answer that ends the request here, checked in order: key, rate, gateway, size,
        room on disk."""
        if caller is None:
            return 401, envelope(INVALID_KEY, type="invalid_request_error",
                                 code="invalid_api_key"), [(b"www-authenticate", b"Bearer")]
        wait = self.rate.take(caller.key_hash) if caller.key_hash else 0
        if wait:
            limited = TooManyRequests(
                f"Too many requests for this API key; retry in {wait} s (setting "
                "TUNEGATE_RATE_LIMIT).", retry_after=wait, code="rate_limit_exceeded")
            return limited.status, {"error": limited.to_api()}, [
                (b"retry-after", str(wait).encode())]
        if not self.fine_tuning and (path + "/").startswith(FINE_TUNING_PREFIX):
            # Never going to work on this server: tell the SDK not to resend (it retries 5xx).
            return 501, {"detail": GATEWAY_DETAIL}, [(b"x-should-retry", b"false")]
        length = headers.get("content-length")
        size = int(length) if length and length.isdigit() else None
        if size is not None and size > self.max_body_bytes:
            return 413, envelope(
                f"Request body is {size} bytes; the limit is {self.max_body_bytes} bytes "
                "(setting TUNEGATE_MAX_UPLOAD_BYTES).",
                type="invalid_request_error", code="request_too_large"), []
        is_part = method == "POST" and UPLOAD_PART_ROUTE.fullmatch(path) is not None
        if size is not None and is_part and size > MAX_PART_BYTES + PART_FORM_BYTES:
            return 413, envelope(
                f"Request body is {size} bytes; a part of an upload holds at most "
                f"{MAX_PART_BYTES} bytes (64 MiB). Split the file into smaller parts.",
                type="invalid_request_error", param="data", code="part_too_large"), []
        if size is not None and ((method, path) in UPLOAD_ROUTES or is_part):
            return self._no_room(size)
        return None

    def _no_room(self, size: int) -> Refusal | None:
        """A 507 before the body is read, when the upload cannot fit: otherwise the disk would
        fill up while it streams in, and the client would learn it only at the end."""
        free = self.upload_room()
        if size <= free:
            return None
        full = InsufficientStorage(
            f"The server's data folder is full: this upload is {size} bytes and its disk has "
            f"only {free} bytes free. Free space in the data folder (TUNEGATE_DATA) and send "
            "it again.")
        return full.status, {"error": full.to_api()}, [(b"x-should-retry", b"false")]


class RequestIdInside:
    """Stamps the same ``x-request-id`` inside connexion's response validation, which checks
    the header the spec requires (the outer stamp covers errors built outside that layer)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = scope.get(REQUEST_ID_KEY)
        await self.app(scope, receive, _stamped(send, request_id) if request_id else send)
