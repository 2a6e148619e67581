"""Domain errors. Each carries the HTTP status and OpenAI error ``type``/``code`` it maps to.

The API layer turns any of these into ``{"error": {"message", "type", "param", "code"}}`` in one
place (``tunegate.api.errors``); nothing else builds error bodies.
"""

from __future__ import annotations

import errno
import re

# A client value quoted in a message shows at most this many characters: a 20 MB ``suffix``
# must not come back as a 20 MB answer (nor sit whole in the server log).
QUOTE_CHARS = 100
# The net under every message, for a value quoted whole by mistake; ours stay well below it.
MESSAGE_CHARS = 2000
# What the operating system says when a write finds the disk (or the user's quota) full.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
DISK_FULL = ("The server's data folder is full: there is no disk space left to store this "
             "request. Free space in the data folder (TUNEGATE_DATA) and send it again.")


def clip(text: str, limit: int = QUOTE_CHARS) -> str:
    """``text`` cut to its first ``limit`` characters, marked with "…" when cut."""
    return text if len(text) <= limit else text[:limit] + "…"


# numpy's ``ndarray.tofile`` (the GGUF writer's) says a write came up short with no errno; on a
# file that is a disk with no room left.
SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


def is_disk_full(exc: BaseException) -> bool:
    if not isinstance(exc, OSError):
        return False
    if exc.errno is None:
        return SHORT_WRITE.fullmatch(str(exc)) is not None
    return exc.errno in DISK_FULL_ERRNOS


class TunegateError(Exception):
    """Base class: a failure the client can be told about."""

    status = 400
    type = "invalid_request_error"
    # Every 4xx names a code (scripts branch on it); each subclass sets a general one, and the
    # places that raise name a specific one where there is something specific to say.
    code: str | None = None
    # Sent as ``x-should-retry`` when set, overriding the SDK's rule (it resends 408/409/429/5xx).
    retryable: bool | None = None
    # Sent as ``Retry-After`` (seconds) when set.
    retry_after: int | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        message = clip(message, MESSAGE_CHARS)
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def to_api(self) -> dict:
        return {"message": self.message, "type": self.type, "param": self.param, "code": self.code}


class InvalidRequest(TunegateError):
    """The request is well-formed for the spec but breaks a rule of ours (400)."""

    code = "invalid_request"


class Forbidden(TunegateError):
    """The key is valid but may not do this (403): an operation that needs an admin key, or a
    change to an object the caller may only read."""

    status = 403
    code = "forbidden"
    retryable = False


class NotFound(TunegateError):
    status = 404
    code = "not_found"


class Conflict(TunegateError):
    """The object is in a state that does not allow the operation (409).

    Resending the same request cannot succeed, so the SDK is told not to retry it.
    """

    status = 409
    code = "conflict"
    retryable = False


class PayloadTooLarge(TunegateError):
    status = 413
    code = "request_too_large"


class UnsupportedMediaType(TunegateError):
    status = 415
    code = "unsupported_media_type"


class TooManyRequests(TunegateError):
    """A limit that frees up with time (429, with ``Retry-After`` when the wait is known).
    Raised before anything is committed, so the SDK's automatic resend is safe.

    Every 429 of tunegate is one of these, and every one says ``type: "requests"``: OpenAI's
    type for a rate limit on requests (its other rate-limit type, ``tokens``, counts tokens, and
    ``insufficient_quota`` is billing; tunegate counts neither). The ``code`` names the limit:
    ``rate_limit_exceeded``, ``too_many_active_jobs``, ``model_busy``.
    """

    status = 429
    type = "requests"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: int | None = None,
                 param: str | None = None, code: str | None = None):
        super().__init__(message, param=param, code=code)
        self.retry_after = retry_after


class ServerError(TunegateError):
    status = 500
    type = "server_error"


class InsufficientStorage(TunegateError):
    """The disk under the data folder is full (507). Nothing of the request is kept; resending
    at once cannot succeed, so the SDK is told not to (it resends 5xx twice, seconds apart)."""

    status = 507
    type = "server_error"
    code = "insufficient_storage"
    retryable = False

    def __init__(self, message: str = DISK_FULL, *, param: str | None = None,
                 code: str | None = None):
        super().__init__(message, param=param, code=code)
