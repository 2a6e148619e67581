"""schemathesis hooks for a run against a real tunegate server (the ``hooks`` that
``schemathesis.toml`` names): every generated request is rewritten by
``tunegate.contract.rules`` before it is sent, so that schema-valid requests meet the rules
JSON Schema cannot state.

The rules need two things from the server, read over HTTP with the run's own headers (an
``Authorization`` given with ``-H`` included): its base models (``GET /models``) and one
uploaded ``fine-tune`` file for the jobs to name (uploaded on first use, and again should the
run have deleted it), and a fresh one-part upload for each completion it sends. That file
holds a single example, so each job the run creates fails its validation at once and nothing
trains. The webhook endpoints the run registers point at a receiver the hooks start on
127.0.0.1 (it answers every delivery 200).

A server with keys limits each key's request rate: its ``429`` says in ``Retry-After`` when to
ask again, and these requests wait that long instead of failing the run (schemathesis' own
requests are paced by its ``--rate-limit``).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import schemathesis

from tunegate.contract.rules import COMPLETABLE, acceptable, one_example

# A 429 without a usable Retry-After is retried after this many seconds.
DEFAULT_WAIT_SECONDS = 1.0
# No single wait is longer (a key limited to 1 request a minute still makes progress).
MAX_WAIT_SECONDS = 60.0
# Requests per call, the first included, before a 429 is given up as the answer.
RATE_LIMITED_TRIES = 10
TIMEOUT_SECONDS = 30


def retry_after(answer: httpx.Response) -> float:
    """Seconds a ``429`` asks the client to wait: its ``Retry-After`` in seconds (the form
    tunegate sends), else ``DEFAULT_WAIT_SECONDS``; at most ``MAX_WAIT_SECONDS``."""
    try:
        seconds = float(answer.headers.get("retry-after", ""))
    except ValueError:
        return DEFAULT_WAIT_SECONDS
    return min(max(seconds, 0.0), MAX_WAIT_SECONDS)


class Server:
    """What the rules need to know about the server at ``base_url``.

    ``client`` and ``sleep`` are the HTTP client and the waiting (tests pass their own)."""

    def __init__(self, base_url: str, headers: dict[str, str], *,
                 client: httpx.Client | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = base_url
        self.headers = headers
        self.client = client or httpx.Client(timeout=TIMEOUT_SECONDS)
        self.sleep = sleep
        self._training_file: str | None = None
        self._base_models: list[str] | None = None

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """``method`` ``path`` with the run's headers; a ``429`` is waited out as its
        ``Retry-After`` says and the request sent again (``RATE_LIMITED_TRIES`` times in all)."""
        for _ in range(RATE_LIMITED_TRIES - 1):
            answer = self.client.request(method, f"{self.base_url}{path}", headers=self.headers,
                                         **kwargs)
            if answer.status_code != 429:
                return answer
            self.sleep(retry_after(answer))
        return self.client.request(method, f"{self.base_url}{path}", headers=self.headers,
                                   **kwargs)

    def base_models(self) -> list[str]:
        if self._base_models is None:
            answer = self.send("GET", "/models")
            answer.raise_for_status()
            self._base_models = [model["id"] for model in answer.json()["data"]
                                 if not model["id"].startswith("ft:")]
        return self._base_models

    def training_file(self) -> str:
        known = self._training_file
        if known is not None and self.send("GET", f"/files/{known}").status_code == 200:
            return known
        answer = self.send("POST", "/files", data={"purpose": "fine-tune"},
                           files={"file": ("schemathesis.jsonl", one_example())})
        answer.raise_for_status()
        self._training_file = str(answer.json()["id"])
        return self._training_file

    def completable_upload(self) -> tuple[str, list[str]]:
        """A fresh pending upload whose one part makes it whole: (its id, its part ids)."""
        answer = self.send("POST", "/uploads",
                           json={"filename": "part.jsonl", "purpose": "batch",
                                 "bytes": len(COMPLETABLE), "mime_type": "text/jsonl"})
        answer.raise_for_status()
        upload_id = str(answer.json()["id"])
        part = self.send("POST", f"/uploads/{upload_id}/parts",
                         files={"data": ("part", COMPLETABLE)})
        part.raise_for_status()
        return upload_id, [str(part.json()["id"])]


_SERVERS: dict[str, Server] = {}


class _Accepting(BaseHTTPRequestHandler):
    """Answers every delivery 200 (its body read and dropped), logging nothing."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@functools.cache
def _receiver_url() -> str:
    """The run's webhook receiver on 127.0.0.1, started on first use (a daemon thread)."""
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Accepting)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{receiver.server_address[1]}/tunegate-contract"


def _server(case: Any) -> Server:
    schema = case.operation.schema
    base_url = schema.get_base_url()
    if base_url not in _SERVERS:
        headers = dict(schema.config.headers_for(operation=case.operation))
        _SERVERS[base_url] = Server(base_url, headers)
    return _SERVERS[base_url]


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if case.operation.app is not None or "app" in kwargs:
        # An in-process app (tests/api/test_schemathesis.py, where schemathesis' pytest plugin
        # reads schemathesis.toml too): that test applies the rules itself, with its own server.
        return
    server = _server(case)
    acceptable(case, training_file=server.training_file, base_models=server.base_models(),
               training_content=one_example(), completable_upload=server.completable_upload,
               webhook_url=_receiver_url())
