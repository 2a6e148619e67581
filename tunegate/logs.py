"""How the server and workers log: text for a terminal (the default), or one JSON object a line
for a log pipeline (``TUNEGATE_LOG_FORMAT=json``): ``time``, ``level``, ``logger``,
``message``, and ``request_id`` / ``job_id`` when the line was written for one.

The ids travel in context variables, set where the work starts (the API's middleware for a
request, the worker for a job it holds) and read by the formatter, so no call site has to pass
them; a request handled in a thread keeps its id (the thread runs in a copy of the context).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

FORMATS = ("text", "json")
ACCESS_LOGGER = "tunegate.access"
TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"

request_id: ContextVar[str | None] = ContextVar("tunegate_request_id", default=None)
job_id: ContextVar[str | None] = ContextVar("tunegate_job_id", default=None)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (a traceback goes in ``exception``)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(), "logger": record.name,
            "message": record.getMessage()}
        for name, variable in (("request_id", request_id), ("job_id", job_id)):
            value = getattr(record, name, None) or variable.get()
            if value:
                line[name] = value
        for name in ("operation", "status", "duration_ms", "method", "path"):
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def parse_format(value: str) -> str:
    """``TUNEGATE_LOG_FORMAT``: ``text`` or ``json``."""
    name = value.strip().lower() or "text"
    if name not in FORMATS:
        raise ValueError(f"TUNEGATE_LOG_FORMAT takes one of {FORMATS}, got {value!r}")
    return name


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is when a line is written, not when logging was set up:
    whoever swaps stderr later (a test harness capturing it, a daemon redirecting it) still gets
    the lines, and a swapped-out stream that was closed is never written to. ``setStream`` pins
    a stream of the caller's choosing."""

    def __init__(self) -> None:
        super().__init__()
        self._pinned: Any = None

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return self._pinned if self._pinned is not None else sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        self._pinned = None if value is sys.stderr else value


def configure(log_format: str) -> None:
    """Send this process's logs to stderr in ``log_format``, INFO and up."""
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else
                         logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    # One line per request with its id: JSON's access log. A terminal has uvicorn's.
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO if log_format == "json"
                                              else logging.WARNING)


@contextlib.contextmanager
def for_job(job: str) -> Iterator[None]:
    """Lines logged inside carry ``job_id``."""
    token = job_id.set(job)
    try:
        yield
    finally:
        job_id.reset(token)
