"""Forwarding to an upstream through the app (responses validated against the spec), with a
small fake upstream in a thread standing in for OpenAI (``FakeUpstream``: it records what it is
sent and answers what the test tells it). The real thing, a second tunegate server as the
upstream, is tests/inference/test_upstream_sdk.py; this file covers what a fake makes easy to
see: the body and key sent, events passed on one by one, ids, 429 with Retry-After, an error
in the middle of a stream."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tunegate.api.app import create_app
from tunegate.domain.catalog import EMBEDDED_MODEL_ID
from tunegate.settings import Settings, Upstream

KEY = "sk-fake-upstream-key-42"


class FakeUpstream(ThreadingHTTPServer):
    """Answers POSTs with ``self.reply``: (status, headers, body bytes); keeps each request."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FakeHandler)
        self.seen: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self.reply: tuple[int, dict[str, str], bytes] = (200, {}, b"{}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class FakeHandler(BaseHTTPRequestHandler):
    server: FakeUpstream

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.server.seen.append((self.path, dict(self.headers), body))
        status, headers, data = self.server.reply
        self.send_response(status)
        for name, value in {"content-type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    server = FakeUpstream()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def client(settings: Settings, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("FAKE_UPSTREAM_KEY", KEY)
    configured = replace(settings, upstreams=(Upstream(
        "fake", upstream.url, "FAKE_UPSTREAM_KEY", ("old-model", "gpt-4o-mini")),))
    with create_app(configured, validate_responses=True).test_client() as test_client:
        yield test_client


def completion(content: str = "Paris") -> dict[str, Any]:
    return {"id": "chatcmpl-upstreamsown", "object": "chat.completion", "created": 1700000000,
            "model": "old-model-2024", "system_fingerprint": "fp_1",
            "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10},
            "choices": [{"index": 0, "logprobs": None, "finish_reason": "stop", "message": {
                "role": "assistant", "content": content, "refusal": None}}]}


def sse(*events: dict[str, Any], done: bool = True) -> bytes:
    # Raw UTF-8, as llama.cpp's server and others write it (OpenAI escapes it): U+2028 and the
    # like travel unescaped inside the JSON strings.
    text = "".join(f"data: {json.dumps(event, ensure_ascii=False)}\n\n" for event in events)
    return (text + ("data: [DONE]\n\n" if done else "")).encode()


def chunk(content: str | None, finish: str | None = None,
          usage: dict[str, int] | None = None) -> dict[str, Any]:
    choices = [] if usage else [{"index": 0, "delta": {} if content is None else {
        "content": content}, "logprobs": None, "finish_reason": finish}]
    return {"id": "chatcmpl-upstreamsown", "object": "chat.completion.chunk",
            "created": 1700000000, "model": "old-model-2024", "system_fingerprint": None,
            "choices": choices, "usage": usage}


MESSAGES = [{"role": "user", "content": "Capital of France?"}]


def test_forwarded_with_the_key_and_stored_under_our_id(client: Any,
                                                         upstream: FakeUpstream) -> None:
    upstream.reply = (200, {}, json.dumps(completion()).encode())
    answer = client.post("/v1/chat/completions", json={
        "model": "old-model", "messages": MESSAGES, "store": True, "metadata": {"a": "b"},
        "temperature": 0})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["choices"][0]["message"]["content"] == "Paris"
    assert body["id"].startswith("chatcmpl-") and body["id"] != "chatcmpl-upstreamsown"
    path, headers, sent = upstream.seen[0]
    assert path == "/v1/chat/completions" and headers["Authorization"] == f"Bearer {KEY}"
    assert sent == {"model": "old-model", "messages": MESSAGES, "temperature": 0}
    stored = client.get(f"/v1/chat/completions/{body['id']}").json()
    assert stored["metadata"] == {"a": "b"} and stored["model"] == "old-model-2024"
    models = {m["id"]: m["owned_by"] for m in client.get("/v1/models").json()["data"]}
    assert models["old-model"] == "fake" and models["gpt-4o-mini"] == "fake"


def test_a_stream_passes_event_by_event_and_is_stored(client: Any,
                                                      upstream: FakeUpstream) -> None:
    usage = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    upstream.reply = (200, {"content-type": "text/event-stream"}, sse(
        chunk(""), chunk("Par"), chunk("is"), chunk(None, "stop"), chunk(None, usage=usage)))
    answer = client.post("/v1/chat/completions", json={
        "model": "old-model", "messages": MESSAGES, "stream": True, "store": True})
    assert answer.status_code == 200
    events = [json.loads(line[6:]) for line in answer.text.split("\n\n")
              if line.startswith("data: {")]
    assert [e["choices"][0]["delta"].get("content") for e in events] == ["", "Par", "is", None]
    assert answer.text.endswith("data: [DONE]\n\n")
    assert upstream.seen[0][2]["stream_options"] == {"include_usage": True}
    stored = client.get("/v1/chat/completions").json()["data"]
    assert [(s["id"], s["choices"][0]["message"]["content"], s["usage"]) for s in stored] == \
        [(events[0]["id"], "Paris", usage)]


def test_a_stream_splits_events_on_line_feeds_only(client: Any,
                                                 upstream: FakeUpstream) -> None:
    """Text that str.splitlines (and httpx's iter_lines) would cut an event at: U+2028, U+0085
    and U+001C, written raw inside the upstream's JSON strings."""
    upstream.reply = (200, {"content-type": "text/event-stream"}, sse(
        chunk("a\u2028b"), chunk("c\x85d\x1ce"), chunk(None, "stop")))
    answer = client.post("/v1/chat/completions", json={
        "model": "old-model", "messages": MESSAGES, "stream": True})
    assert answer.status_code == 200
    assert answer.text.endswith("data: [DONE]\n\n"), answer.text
    events = [json.loads(line[6:]) for line in answer.text.split("\n\n")
              if line.startswith("data: {")]
    assert [e["choices"][0]["delta"].get("content") for e in events] == [
        "a\u2028b", "c\x85d\x1ce", None]


def test_refusals_in_our_envelope(client: Any, upstream: FakeUpstream) -> None:
    upstream.reply = (429, {"retry-after": "3"}, json.dumps(
        {"error": {"message": "Rate limit reached", "type": "requests", "param": None,
                   "code": "rate_limit_exceeded"}}).encode())
    limited = client.post("/v1/chat/completions", json={"model": "old-model",
                                                         "messages": MESSAGES})
    assert limited.status_code == 429 and limited.headers["retry-after"] == "3"
    assert limited.json()["error"]["code"] == "upstream_rate_limited"
    upstream.reply = (200, {"content-type": "text/event-stream"}, sse(
        chunk("Par"), {"error": {"message": "overloaded", "type": "server_error"}}, done=False))
    broken = client.post("/v1/chat/completions", json={
        "model": "old-model", "messages": MESSAGES, "stream": True, "store": True})
    assert broken.status_code == 200
    assert '"code": "upstream_unavailable"' in broken.text and "[DONE]" not in broken.text
    assert client.get("/v1/chat/completions").json()["data"] == []  # nothing whole to keep


def test_text_completions_forwarded(client: Any, upstream: FakeUpstream) -> None:
    upstream.reply = (200, {}, json.dumps({
        "id": "cmpl-x", "object": "text_completion", "created": 1, "model": "old-model",
        "system_fingerprint": None, "usage": None,
        "choices": [{"index": 0, "text": " Paris", "logprobs": None,
                     "finish_reason": "stop"}]}).encode())
    answer = client.post("/v1/completions", json={"model": "old-model", "prompt": "Capital:"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["text"] == " Paris"
    assert answer.json()["id"].startswith("cmpl-") and upstream.seen[0][0] == "/v1/completions"


def test_a_local_name_wins_over_the_upstream_in_models(settings: Settings,
                                                       upstream: FakeUpstream) -> None:
    """A base model's id, and an alias named one by one, are local models even where the
    upstream setting lists them: /v1/models lists and retrieves them as tunegate's own."""
    configured = replace(
        settings, model_aliases=(*settings.model_aliases, ("old-model", EMBEDDED_MODEL_ID)),
        named_aliases=frozenset({"old-model"}),
        upstreams=(Upstream("fake", upstream.url, "", ("old-model", "gpt-4o-mini",
                                                       EMBEDDED_MODEL_ID)),))
    with create_app(configured, validate_responses=True).test_client() as client:
        listed = [(m["id"], m["owned_by"]) for m in client.get("/v1/models").json()["data"]]
        assert [owner for name, owner in listed if name == EMBEDDED_MODEL_ID] == ["tunegate"]
        assert ("gpt-4o-mini", "fake") in listed and ("old-model", "fake") not in listed
        assert client.get(f"/v1/models/{EMBEDDED_MODEL_ID}").json()["owned_by"] == "tunegate"
        assert client.get("/v1/models/gpt-4o-mini").json()["owned_by"] == "fake"
        assert client.get("/v1/models/old-model").status_code == 404
