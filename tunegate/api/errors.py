"""The one error mapper: every failure becomes OpenAI's ``{"error": {...}}`` envelope.

Domain errors carry their own status/type/code; connexion's problems (validation 400s, 404,
405, 415, response-validation 500s) are translated here, keeping their headers (405's
``Allow``); a full disk (``OSError`` ENOSPC/EDQUOT, wherever it is met) is a 507. The seed
gateway's 501 body is the one deliberate exception (tunegate.api.middleware).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from starlette.exceptions import HTTPException

from tunegate.errors import (
    MESSAGE_CHARS,
    InsufficientStorage,
    TooManyRequests,
    TunegateError,
    clip,
    is_disk_full,
)

log = logging.getLogger("tunegate.api")

# Creating operations: once committed, a retry would duplicate the object (the SDK retries 5xx).
CREATE_PATHS = ("/v1/fine_tuning/jobs", "/v1/files", "/v1/uploads")

_TYPE_BY_STATUS = {
    401: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: TooManyRequests.type,
}
# connexion's own problems carry no code; scripts branch on one, so each status gets OpenAI's
# (``unknown_url``) or a plain name of what went wrong.
_CODE_BY_STATUS = {
    400: "invalid_request",
    401: "invalid_api_key",
    404: "unknown_url",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
}
_PARAM_IN_MESSAGE = re.compile(r"parameter '([^']+)'|- '([^']+)'$")
# connexion's 415: "Invalid Content-type (text/plain), expected ['application/json']".
_MEDIA_TYPES = re.compile(r"\(([^)]*)\), expected \[([^\]]*)\]")


def envelope(message: str, *, type: str, param: str | None = None,
             code: str | None = None) -> dict[str, Any]:
    # Messages quote client values short where they are made; this is the net under them.
    return {"error": {"message": clip(message, MESSAGE_CHARS), "type": type, "param": param,
                      "code": code}}


def _response(request: ConnexionRequest, status: int, body: dict[str, Any],
              headers: dict[str, str] | None = None) -> ConnexionResponse:
    headers = dict(headers or {})
    if status >= 500 and request.method == "POST" and request.url.path in CREATE_PATHS:
        headers["x-should-retry"] = "false"
    return ConnexionResponse(status_code=status, body=json.dumps(body), headers=headers,
                             content_type="application/json")


def tunegate_error(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    assert isinstance(exc, TunegateError)
    headers = {} if exc.retryable is None else {"x-should-retry": str(exc.retryable).lower()}
    if exc.retry_after is not None:
        headers["retry-after"] = str(exc.retry_after)
    return _response(request, exc.status, {"error": exc.to_api()}, headers)


def http_problem(request: ConnexionRequest, exc: Exception,
                 allowed: Callable[[str], str | None] | None = None) -> ConnexionResponse:
    """connexion's and Starlette's HTTP exceptions (400/404/405/415/500...)."""
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    headers = dict(exc.headers or {})
    message = str(getattr(exc, "detail", None) or getattr(exc, "title", "") or "Error")
    if status == 404 and message == "Not Found":
        message = f"Unknown request URL: {request.method} {clip(request.url.path)}."
    elif status == 405:
        message = f"Method {request.method} is not allowed for {clip(request.url.path)}."
        # Starlette names only the methods of the first route matching the path; RFC 9110
        # wants every method the resource supports, which is what the contract declares.
        allow = allowed(request.url.path) if allowed else None
        if allow:
            headers = {key: value for key, value in headers.items() if key.lower() != "allow"}
            headers["Allow"] = allow
    elif status == 415:
        message = _unsupported_media_type(message)
    match = _PARAM_IN_MESSAGE.search(message)
    param = (match.group(1) or match.group(2)) if match else None
    error_type = "server_error" if status >= 500 else _TYPE_BY_STATUS.get(
        status, "invalid_request_error")
    if status >= 500:
        log.error("HTTP %s on %s %s: %s", status, request.method, request.url.path, message)
    code = None if status >= 500 else _CODE_BY_STATUS.get(status, "invalid_request")
    return _response(request, status, envelope(message, type=error_type, param=param, code=code),
                     headers)


def _unsupported_media_type(message: str) -> str:
    """connexion's 415 as a sentence, without Python's list syntax."""
    match = _MEDIA_TYPES.search(message)
    if not match:
        return message
    expected = [each.strip().strip("'\"") for each in match.group(2).split(",") if each.strip()]
    sent = (f"the request's Content-Type is {clip(match.group(1))}" if match.group(1)
            else "the request has no Content-Type")
    return f"This operation reads a body of type {' or '.join(expected)}; {sent}."


def allowed_methods(paths: Mapping[str, Mapping[str, Any]],
                    base_path: str) -> Callable[[str], str | None]:
    """``path -> "HEAD, GET, ..."``: the methods the contract declares for the resource at path."""
    verbs = ("get", "put", "post", "delete", "patch")
    routes = []
    for template, item in paths.items():
        methods = [verb.upper() for verb in verbs if verb in item]
        if "GET" in methods:
            methods.insert(0, "HEAD")  # Starlette answers HEAD wherever GET is routed
        pattern = re.sub(r"\\\{[^}/]+\\\}", "[^/]+", re.escape(base_path + template))
        routes.append((re.compile(pattern), ", ".join(methods)))

    def allowed(path: str) -> str | None:
        return next((methods for regex, methods in routes if regex.fullmatch(path)), None)

    return allowed


def os_error(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    """A full disk is a 507 whichever write met it (an upload, a spool, a merged model);
    any other ``OSError`` is a bug of ours (500)."""
    if not is_disk_full(exc):
        return unexpected(request, exc)
    log.error("Disk full on %s %s: %s", request.method, request.url.path, exc)
    return tunegate_error(request, InsufficientStorage())


def unexpected(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    log.exception("Unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _response(request, 500, envelope(
        "The server had an error while processing your request.", type="server_error"))


def install(app: Any, paths: Mapping[str, Mapping[str, Any]] | None = None,
            base_path: str = "") -> None:
    """Register the mapper on a connexion app, most specific first.

    ``paths`` (the contract's ``paths``) lets a 405 list every method of the resource in ``Allow``.
    """
    allowed = allowed_methods(paths, base_path) if paths is not None else None

    def problem(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        return http_problem(request, exc, allowed)

    app.add_error_handler(TunegateError, tunegate_error)
    # connexion registers its own ProblemException handler (problem+json): override it too.
    app.add_error_handler(ProblemException, problem)
    app.add_error_handler(HTTPException, problem)
    app.add_error_handler(OSError, os_error)
    app.add_error_handler(Exception, unexpected)
