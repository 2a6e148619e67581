"""A webhook receiver for tests (a fake: a real HTTP server on 127.0.0.1 that stands in for a
user's): it records what each POST carried and answers the status it is told to, can go down
(refusing connections) and come back on the same port, and verifies each message with the
official SDK's ``client.webhooks.unwrap`` when given the secret: on arrival, as a real receiver
does (``verify_on_arrival``; the SDK refuses a message more than 5 minutes old, so one that
arrived long before a test reads it is checked then), or when a test asks (``events``)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from openai import OpenAI


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes


class FakeReceiver:
    def __init__(self, port: int = 0):
        self.received: list[Received] = []
        self.verified: list[Any] = []  # per message, on arrival: the SDK's event, or its error
        self.secret: str | None = None
        self.status = 200
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self.changed = threading.Condition()

    def start(self) -> FakeReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                message = Received({key.lower(): value for key, value in self.headers.items()},
                                   body)
                checked = receiver._verify(message) if receiver.secret else None
                with receiver.changed:
                    receiver.received.append(message)
                    if receiver.secret:
                        receiver.verified.append(checked)
                    receiver.changed.notify_all()
                self.send_response(receiver.status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}/hook"

    def wait_for(self, count: int, timeout: float) -> list[Received]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.received) >= count, timeout=timeout)
            return list(self.received)

    def verify_on_arrival(self, secret: str) -> None:
        """From now on, unwrap each message with ``secret`` as it arrives (``verified``)."""
        self.secret = secret

    def _verify(self, message: Received) -> Any:
        try:
            return _unwrapper().webhooks.unwrap(message.body, message.headers,
                                                secret=self.secret)
        except Exception as exc:  # kept for the test to see, not raised in the server thread
            return exc

    def verified_events(self) -> list[Any]:
        """The events verified on arrival; raises the first verification's error."""
        for outcome in self.verified:
            if isinstance(outcome, Exception):
                raise outcome
        return list(self.verified)

    def events(self, secret: str) -> list[Any]:
        """Every message received, verified and parsed by the official SDK (raises if one
        does not verify)."""
        client = _unwrapper()
        return [client.webhooks.unwrap(item.body, item.headers, secret=secret)
                for item in list(self.received)]


def _unwrapper() -> OpenAI:
    """An SDK client used only for ``webhooks.unwrap`` (it sends nothing; its connection pool
    is never opened)."""
    return OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1")
