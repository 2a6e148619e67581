"""``POST /v1/fine_tuning/alpha/graders/run`` with ``TUNEGATE_EVAL_ENDPOINT`` naming an external
OpenAI-compatible endpoint: the grader models are asked there (a grader model this server does
not serve is no 400), checked there (one it does not serve is), and a ``multi`` grader's
model parts are asked at once. The endpoint is ``FakeExternalEndpoint``, a real HTTP server in a
thread that answers as an OpenAI-compatible one would; read through the strict SDK too."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from openai import OpenAI

from tunegate.api.app import create_app
from tunegate.settings import Settings

RUN = "/v1/fine_tuning/alpha/graders/run"
JUDGE = "judge-on-another-host"
SCORE = {"type": "score_model", "name": "judge", "model": JUDGE, "range": [0, 1],
         "input": [{"role": "user", "content": "Is {{sample.output_text}} {{item.answer}}?"}]}
LABEL = {"type": "label_model", "name": "tone", "model": JUDGE, "labels": ["good", "bad"],
         "passing_labels": ["good"], "input": [{"role": "user", "content": "{{sample.output_text}}"}]}


class FakeExternalEndpoint:
    """An OpenAI-compatible endpoint in a thread: ``GET /v1/models/{id}`` knows ``JUDGE`` only;
    ``POST /v1/chat/completions`` answers the schema asked for (``score`` 0.75, ``label``
    ``good``), and holds each answer until ``together`` requests are in flight or 5 s passed,
    recording the most it saw at once and every request body."""

    def __init__(self, together: int = 1):
        self.together = together
        self.bodies: list[dict[str, Any]] = []
        self.in_flight = self.most_in_flight = 0
        self.changed = threading.Condition()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path == f"/v1/models/{JUDGE}":
                    self._json(200, {"id": JUDGE, "object": "model", "created": 0,
                                     "owned_by": "elsewhere"})
                else:
                    self._json(404, {"error": {"message": "no such model", "type":
                                               "invalid_request_error", "param": None,
                                               "code": "model_not_found"}})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                self._json(200, endpoint.answer(body))

        return Handler

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.changed:
            self.bodies.append(body)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.changed.notify_all()
            self.changed.wait_for(lambda: self.most_in_flight >= self.together, timeout=5)
        name = body["response_format"]["json_schema"]["name"]
        result: Any = 0.75 if name == "score" else "good"
        with self.changed:
            self.in_flight -= 1
        content = json.dumps({"steps": [], "result": result})
        return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0,
                "model": body["model"], "choices": [{
                    "index": 0, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}

    def __enter__(self) -> FakeExternalEndpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[FakeExternalEndpoint]:
    with FakeExternalEndpoint(together=3) as running:
        yield running


@pytest.fixture
def external_client(settings: Settings, endpoint: FakeExternalEndpoint) -> Iterator[Any]:
    app = create_app(replace(settings, eval_endpoint=endpoint.url), validate_responses=True)
    try:
        with app.test_client() as client:
            yield client
    finally:
        app.state_service.inference.close()


def test_a_grader_model_of_the_external_endpoint_is_asked_there(
        external_client: Any, endpoint: FakeExternalEndpoint) -> None:
    endpoint.together = 1
    answer = external_client.post(RUN, json={"grader": SCORE, "model_sample": "Paris",
                                              "item": {"answer": "the capital"}})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["reward"] == 0.75
    assert body["model_grader_token_usage_per_model"][JUDGE]["total_tokens"] == 10
    [asked] = endpoint.bodies
    assert asked["model"] == JUDGE
    assert asked["messages"] == [{"role": "user", "content": "Is Paris the capital?"}]


def test_a_model_the_endpoint_does_not_serve_is_400_naming_the_field(
        external_client: Any, endpoint: FakeExternalEndpoint) -> None:
    grader = {"type": "multi", "name": "m", "calculate_output": "judge",
              "graders": {"judge": {**SCORE, "model": "nobody-serves-this"}}}
    answer = external_client.post(RUN, json={"grader": grader, "model_sample": "x"})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert (error["code"], error["param"]) == ("model_not_found", "grader.graders.judge.model")
    assert endpoint.bodies == []


def test_a_multi_asks_its_three_judges_at_once(
        external_client: Any, endpoint: FakeExternalEndpoint) -> None:
    """The endpoint answers none before three are in flight: asked one at a time, the first
    would wait its 5 s out alone."""
    grader = {"type": "multi", "name": "m", "calculate_output": "a + b + tone",
              "graders": {"a": {**SCORE, "name": "a"}, "b": {**SCORE, "name": "b"},
                          "tone": LABEL}}
    strict = OpenAI(base_url="http://testserver/v1", api_key="local", max_retries=0,
                    http_client=external_client, _strict_response_validation=True)
    result = strict.fine_tuning.alpha.graders.run(grader=grader, model_sample="Paris",
                                                  item={"answer": "the capital"})
    assert endpoint.most_in_flight == 3
    assert result.reward == pytest.approx(2.5)
    assert result.sub_rewards == {"a": 0.75, "b": 0.75, "tone": 1.0}
    assert result.metadata.token_usage == 30  # three requests of 10 tokens
    assert len(endpoint.bodies) == 3
