"""The official ``openai`` SDK against a real ``tunegate serve``: chat and completions on the base
model and on fine-tuned models served through their adapters.

Each call that returns a completion runs with the SDK's loose parsing and with
``_strict_response_validation=True`` (every response, and every streamed chunk, validated
against the SDK's own types). One server is shared by the module; fine-tuned model rows are
written into its store the way the worker writes them after a job.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from tests.conftest import Server
from tests.inference.conftest import BASE, FRANCE, STRONG, ZERO, add_model
from tunegate.domain import catalog
from tunegate.store import SqlStore, Store, open_store

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server_store(server: Server) -> Iterator[SqlStore]:
    store = open_store(f"sqlite:///{(server.data_dir / 'tunegate.sqlite3').resolve()}")
    yield store
    store.close()


@pytest.fixture(scope="module")
def tuned(server_store: Store, adapters: dict[float, Path]) -> dict[float, str]:
    """Fine-tuned model ids in the server's store, by adapter strength."""
    return {strength: add_model(server_store, folder, f"sdk{index}").id
            for index, (strength, folder) in enumerate(adapters.items())}


def ask(client: OpenAI, model: str = BASE, **params) -> str:
    completion = client.chat.completions.create(model=model, messages=FRANCE, temperature=0,
                                                max_tokens=12, **params)
    assert completion.object == "chat.completion" and completion.model == model
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert completion._request_id and completion._request_id.startswith("req_")
    return completion.choices[0].message.content or ""


def test_chat_on_the_base_model(clients: list[OpenAI]) -> None:
    answers = [ask(client) for client in clients]
    assert answers[0].strip() and answers[0] == answers[1]  # greedy: the same text twice


def test_streamed_chat_on_the_base_model(clients: list[OpenAI]) -> None:
    expected = ask(clients[0])
    for client in clients:
        stream = client.chat.completions.create(
            model=BASE, messages=FRANCE, temperature=0, max_tokens=12, stream=True,
            stream_options={"include_usage": True})
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == expected
        assert chunks[-2].choices[0].finish_reason in ("stop", "length")
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens > 0


def test_completions_on_the_base_model(clients: list[OpenAI]) -> None:
    for client in clients:
        completion = client.completions.create(model=BASE, prompt="The capital of France is",
                                               temperature=0, max_tokens=6)
        assert completion.choices[0].text.strip()
        assert completion.usage is not None and completion.usage.prompt_tokens == 5
    stream = clients[0].completions.create(
        model=BASE, prompt="The capital of France is", temperature=0, max_tokens=6, stream=True)
    assert "".join(chunk.choices[0].text for chunk in stream) == completion.choices[0].text


def test_fine_tuned_models_are_served_through_their_adapters(
        clients: list[OpenAI], tuned: dict[float, str]) -> None:
    base = ask(clients[0])
    listed = {model.id for model in clients[0].models.list()}
    assert set(tuned.values()) <= listed
    for client in clients:
        assert ask(client, tuned[ZERO]) == base  # a zero adapter changes nothing
        assert ask(client, tuned[STRONG]) != base
    stream = clients[1].chat.completions.create(
        model=tuned[STRONG], messages=FRANCE, temperature=0, max_tokens=12, stream=True)
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert streamed == ask(clients[0], tuned[STRONG])
    prompt = {"prompt": "The capital of France is", "temperature": 0, "max_tokens": 6}
    tuned_text = clients[1].completions.create(model=tuned[STRONG], **prompt).choices[0].text
    assert tuned_text != clients[1].completions.create(model=BASE, **prompt).choices[0].text


def test_concurrent_requests_all_succeed_with_their_own_answers(
        clients: list[OpenAI], tuned: dict[float, str]) -> None:
    client = clients[0]
    models = [BASE, tuned[STRONG], BASE, tuned[STRONG]]
    alone = {model: ask(client, model) for model in set(models)}
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda model: ask(client, model), models))
    assert together == [alone[model] for model in models]


QUESTIONS = ["What is the capital of France?", "Name three colours.", "What is 2+2?",
             "Write one sentence about the sea."]


def test_four_concurrent_requests_to_one_model_are_decoded_together(
        clients: list[OpenAI]) -> None:
    """One llama-server process decodes the four at once (continuous batching over its slots).
    Measured on this build: batched greedy decoding gives each request exactly the tokens it
    gets alone, so the answers must be equal, not merely plausible."""
    client = clients[1]

    def answer(question: str) -> str:
        completion = client.chat.completions.create(
            model=BASE, temperature=0, max_tokens=24,
            messages=[{"role": "user", "content": question}])
        return completion.choices[0].message.content or ""

    alone = [answer(question) for question in QUESTIONS]
    with ThreadPoolExecutor(max_workers=len(QUESTIONS)) as pool:
        together = list(pool.map(answer, QUESTIONS))
    assert all(text.strip() for text in together)
    assert together == alone


def test_errors_come_back_as_openai_errors(clients: list[OpenAI]) -> None:
    client = clients[1]
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-model", messages=FRANCE)
    assert missing.value.code == "model_not_found"
    long = [{"role": "user", "content": "Paris is lovely. " * 700}]
    with pytest.raises(openai.BadRequestError) as too_long:
        client.chat.completions.create(model=BASE, messages=long)
    assert too_long.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as many:
        client.chat.completions.create(model=BASE, messages=FRANCE, n=1000)
    assert many.value.param == "n"


def test_adapter_download_over_http(server: Server, tuned: dict[float, str],
                                    adapters: dict[float, Path]) -> None:
    response = httpx.get(f"{server.api}/models/{tuned[STRONG]}/adapter", timeout=30)
    assert response.status_code == 200
    assert response.headers["x-tunegate-base-model"] == BASE
    assert response.content == (adapters[STRONG] / "adapter.gguf").read_bytes()


def test_a_deleted_model_stops_being_served(clients: list[OpenAI], server_store: Store,
                                           adapters: dict[float, Path]) -> None:
    client = clients[1]
    model = add_model(server_store, adapters[STRONG], "doomed").id
    assert ask(client, model)
    assert client.models.delete(model).deleted
    with pytest.raises(openai.NotFoundError) as gone:
        ask(client, model)
    assert gone.value.code == "model_not_found"


def test_a_client_leaving_a_stream_frees_the_model_at_once(server: Server) -> None:
    """The abandoned generation (up to 1,500 tokens, tens of seconds here) must stop, so a
    short request right after it is answered in about its own time."""
    story = {"model": BASE, "temperature": 1.0, "seed": 3,
             "messages": [{"role": "user", "content": "Write a very long story about a dragon."}]}
    with httpx.stream("POST", f"{server.api}/chat/completions", timeout=60,
                      json={**story, "stream": True, "max_tokens": 1500}) as response:
        for index, _ in enumerate(response.iter_lines()):
            if index > 10:
                break
    started = time.monotonic()
    after = httpx.post(f"{server.api}/chat/completions", json={**story, "max_tokens": 3},
                       timeout=120)
    assert after.status_code == 200
    assert time.monotonic() - started < 10


def _model_processes(server: Server, gguf_name: str) -> list[int]:
    """Pids of the server process's llama-server children that run ``gguf_name``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            argv = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue  # ended while we looked
        if (parent == server.process.pid and argv[0].endswith(b"llama-server")
                and any(arg.endswith(gguf_name.encode()) for arg in argv)):
            found.append(int(stat.parent.name))
    return found


def test_a_killed_model_process_costs_its_requests_only(server: Server,
                                                        clients: list[OpenAI]) -> None:
    """SIGKILL the model's process mid-stream: the stream ends with an error event (or a
    closed connection), the API answers at once, and the next request starts it again."""
    story = {"model": BASE, "temperature": 1.0, "seed": 5, "stream": True, "max_tokens": 1500,
             "messages": [{"role": "user", "content": "Write a very long story about a dragon."}]}
    events: list[str] = []
    with httpx.stream("POST", f"{server.api}/chat/completions", json=story,
                      timeout=60) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        for line in lines:
            events.append(line)
            if len([event for event in events if event.startswith("data: ")]) == 5:
                break
        [pid] = _model_processes(server, catalog.EMBEDDED_GGUF_NAME)
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(httpx.HTTPError):  # a closed connection is a fine end too
            events.extend(lines)
    data = [event[len("data: "):] for event in events if event.startswith("data: ")]
    assert "[DONE]" not in data
    errors = [json.loads(item)["error"] for item in data if '"error"' in item]
    assert errors and errors[-1]["code"] == "model_process_died", data[-3:]
    assert errors[-1]["type"] == "server_error"
    assert server.process.poll() is None  # the API lives on
    models = httpx.get(f"{server.api}/models", timeout=5)
    assert models.status_code == 200 and BASE in {m["id"] for m in models.json()["data"]}
    assert ask(clients[1]).strip()  # started again, no retry needed
    assert pid not in _model_processes(server, catalog.EMBEDDED_GGUF_NAME)
