"""Which server the client commands talk to and with which key, and how the SDK's errors
reach the user: one line each, no traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from openai import OpenAI

API_BASE = "/v1"
DEFAULT_URL = "http://127.0.0.1:8000" + API_BASE
# An open tunegate server needs no key, but the SDK refuses to start without one.
NO_KEY = "none"


@dataclass(frozen=True)
class Connection:
    url: str
    api_key: str

    @classmethod
    def resolve(cls, url: str | None, environ: Mapping[str, str] = os.environ) -> Connection:
        """``url`` (``--url``), else ``TUNEGATE_URL``, else the local default; the key from
        ``TUNEGATE_API_KEY``, else ``OPENAI_API_KEY``, else a placeholder."""
        return cls(url=api_url(url or environ.get("TUNEGATE_URL") or DEFAULT_URL),
                   api_key=(environ.get("TUNEGATE_API_KEY") or environ.get("OPENAI_API_KEY")
                            or NO_KEY))

    def client(self) -> OpenAI:
        from openai import OpenAI

        return OpenAI(base_url=self.url, api_key=self.api_key)

    def url_flag(self) -> str:
        """``--url …`` for a command line shown to the user; empty for the default server."""
        return "" if self.url == DEFAULT_URL else f" --url {self.url}"


def api_url(url: str) -> str:
    """The API base under ``url``: the server's root (the address the browser shows for the
    dashboard) and its ``/v1`` both name it."""
    url = url.rstrip("/")
    return url if url.endswith(API_BASE) else url + API_BASE


def describe_error(error: Exception, url: str) -> str | None:
    """The one line a user reads for an SDK error; None for anything else (a bug: its
    traceback is worth seeing)."""
    import openai

    if isinstance(error, openai.APIStatusError):
        # The SDK keeps the envelope's inner object as ``body`` ({"message", "code", …});
        # the gateway mode's 501 is FastAPI-shaped ({"detail": …}).
        body = error.body if isinstance(error.body, dict) else {}
        message = body.get("message") or body.get("detail") or error.message
        code = f", code {body['code']}" if body.get("code") else ""
        return f"error: {message} (HTTP {error.status_code}{code})"
    if isinstance(error, openai.APITimeoutError):
        return f"error: the server at {url} did not answer in time"
    if isinstance(error, openai.APIConnectionError):
        return (f"error: cannot reach a server at {url} ({error.__cause__ or error}); "
                "is `tunegate serve` running? (set --url or TUNEGATE_URL)")
    if isinstance(error, openai.APIResponseValidationError | openai.APIError):
        return f"error: unexpected answer from {url}: {error}"
    return None


def run_reporting_errors(command: Callable[[], int], url: str, err: IO[str] = sys.stderr) -> int:
    """Run ``command``; an SDK error becomes its one line on ``err`` and exit code 1."""
    import openai

    try:
        return command()
    except openai.OpenAIError as error:
        line = describe_error(error, url)
        if line is None:
            raise
        err.write(line + "\n")
        return 1


def short_reason(error: Exception) -> str:
    """An SDK error as the reason part of a line that names its item: the server's message and
    HTTP status, or why it could not be reached."""
    import openai

    if isinstance(error, openai.APIStatusError):
        body = error.body if isinstance(error.body, dict) else {}
        message = body.get("message") or body.get("detail") or error.message
        return f"{message} (HTTP {error.status_code})"
    if isinstance(error, openai.APIConnectionError):
        return f"cannot connect ({error.__cause__ or error})"
    return str(error)
