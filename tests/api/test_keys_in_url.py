"""An API key sent in the URL (tunegate.api.url_secrets): refused with a 400 that says where
keys go, before the key is checked, and never written to a log in clear."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from tests.api.conftest import ALICE
from tests.conftest import free_port
from tunegate.api.app import create_app
from tunegate.api.server import uvicorn_options
from tunegate.api.url_secrets import REDACTED, key_like, redacted
from tunegate.settings import Settings

KEY_NAMES = ["api_key", "key", "access_token", "X-Api-Key", "apiKey", "token", "auth",
             "client_secret", "password", "api%5Fkey"]


@pytest.mark.parametrize("name", KEY_NAMES)
def test_a_key_in_the_query_is_refused_before_the_key_is_checked(keyed_client: Any,
                                                                 name: str) -> None:
    for headers in ({}, ALICE.headers):  # with or without a valid key in the header
        response = keyed_client.get(f"/v1/models?{name}={ALICE.key}", headers=headers)
        assert response.status_code == 400, response.text
        assert response.headers["x-request-id"].startswith("req_")
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["code"] == "api_key_in_url"
        assert error["param"] == name.replace("%5F", "_")
        assert "'Authorization: Bearer <key>' header" in error["message"]
        assert ALICE.key not in response.text


def test_parameters_that_only_look_alike_are_not_keys(client: Any) -> None:
    assert client.get("/v1/fine_tuning/jobs?metadata[token]=x").status_code == 200
    assert client.get("/v1/files?order=asc&limit=2").status_code == 200
    assert not any(key_like(name) for name in ("after", "limit", "order", "purpose", "metadata",
                                               "stream", "last_event_id", "author", "design"))


def test_redaction_keeps_the_rest_of_the_url() -> None:
    assert redacted("/v1/models?limit=2&api_key=abc&after=sk-tg-0123456789abcdef&key") == \
        f"/v1/models?limit=2&api_key={REDACTED}&after={REDACTED}&key"
    assert redacted("/v1/models/ft:base:org::abcd1234") == "/v1/models/ft:base:org::abcd1234"


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def access_log(settings: Settings) -> Iterator[tuple[int, Records]]:
    """The real app served as ``serve`` serves it, and what its access log writes."""
    settings = Settings(port=free_port(), data_dir=settings.data_dir)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), **uvicorn_options(settings)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    records = Records()  # after uvicorn configured its logging, which replaces handlers
    logging.getLogger("uvicorn.access").addHandler(records)
    try:
        yield settings.port, records
    finally:
        logging.getLogger("uvicorn.access").removeHandler(records)
        server.should_exit = True
        thread.join(10)


def test_a_key_in_the_query_is_not_in_the_access_log(access_log: tuple[int, Records]) -> None:
    import httpx

    port, records = access_log
    secret, other = "sk-tg-secret-0123456789", "plain-secret-value"
    response = httpx.get(f"http://127.0.0.1:{port}/v1/models?limit=1&api_key={secret}"
                         f"&access_token={other}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "api_key_in_url"
    assert httpx.get(f"http://127.0.0.1:{port}/v1/files?after={secret}").status_code == 400
    lines = [line for line in records.lines if "/v1/" in line]
    assert len(lines) == 2, records.lines
    assert all(secret not in line and other not in line for line in lines), lines
    assert f"api_key={REDACTED}" in lines[0] and "limit=1" in lines[0]
    assert f"after={REDACTED}" in lines[1]
