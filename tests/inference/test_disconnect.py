"""A streaming client that goes away frees its model at once.

Drives the ASGI app directly, so the test controls when the client disconnects: after a few
chunks, in both ways a server can report it (ASGI 2.3: ``http.disconnect`` from ``receive``;
2.4: ``send`` raising ``OSError``). Afterwards nothing may hold the model and llama.cpp must
have stopped far short of ``max_tokens``.
"""

from __future__ import annotations

import json
import time

import anyio
import pytest

from tests.inference.conftest import BASE

MAX_TOKENS = 400
CHUNKS_BEFORE_LEAVING = 3


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
def test_disconnect_mid_stream_releases_the_model(app, client, spec_version: str) -> None:
    body = json.dumps({
        "model": BASE, "stream": True, "max_tokens": MAX_TOKENS, "temperature": 1.0, "seed": 3,
        "messages": [{"role": "user", "content": "Write a very long story about a dragon."}],
    }).encode()
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": spec_version},
        "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
        "query_string": b"", "root_path": "", "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
    }
    chunks: list[bytes] = []

    async def run() -> None:
        gone = anyio.Event()
        sent_request = False

        async def receive() -> dict:
            nonlocal sent_request
            if not sent_request:
                sent_request = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                assert message["status"] == 200
            if message["type"] == "http.response.body" and message.get("body"):
                if gone.is_set() and spec_version == "2.4":
                    raise OSError("client went away")
                chunks.append(message["body"])
                if len(chunks) >= CHUNKS_BEFORE_LEAVING:
                    gone.set()

        with anyio.fail_after(120):
            await app(scope, receive, send)

    anyio.run(run)
    assert len(chunks) >= CHUNKS_BEFORE_LEAVING and b"[DONE]" not in b"".join(chunks)
    entry = app.state_service.inference._entries[BASE]
    assert entry.users == 0
    # llama.cpp drops the request (its slot goes idle: it notices the closed connection at its
    # next token) far short of max_tokens.
    deadline = time.monotonic() + 10
    slots = entry.model.engine.slots()
    while any(slot["is_processing"] for slot in slots):
        assert time.monotonic() < deadline, slots
        time.sleep(0.05)
        slots = entry.model.engine.slots()
    decoded = [slot["next_token"][0]["n_decoded"] for slot in slots if "next_token" in slot]
    assert decoded and max(decoded) < MAX_TOKENS / 4
