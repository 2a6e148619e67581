"""Live job events (``GET …/events?stream=true``) from a real server, read with plain httpx.

One real training job on the embedded model, followed from its creation to its end; a
reconnection with ``Last-Event-ID``; the other project's key and no key; and a server that
shuts down (SIGTERM) while a stream is open ends the stream and exits.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.api.conftest import ALICE, BOB, write_keys_file
from tests.conftest import (
    Server,
    chat_lines,
    session_model_cache,
    start_server,
    start_server_afresh,
    stop_server,
)
from tests.e2e.test_training_sdk import fact_lines
from tests.helpers import sdk_create_job, sdk_upload
from tests.servers import sdk_client
from tunegate.domain.catalog import EMBEDDED_MODEL_ID

pytestmark = pytest.mark.e2e


@dataclass
class Stream:
    """What one stream carried: the events' (id line, event line, parsed data), pings, and
    whether the server ended it."""

    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    pings: int = 0
    ended: bool = False


def read_stream(response: httpx.Response, on_event: Any = None) -> Stream:
    """Parse ``text/event-stream`` blocks as they arrive (a tiny SSE reader, on purpose:
    the wire format is the contract)."""
    stream, block = Stream(), []
    for line in response.iter_lines():
        if line:
            block.append(line)
            continue
        if block == [": ping"]:
            stream.pings += 1
        elif block:
            fields = dict(entry.split(": ", 1) for entry in block)
            assert list(fields) == ["id", "event", "data"], block
            data = json.loads(fields["data"])
            stream.events.append((fields["id"], fields["event"], data))
            if on_event is not None:
                on_event(data)
        block = []
    stream.ended = True
    return stream


def events_url(server: Server, job_id: str) -> str:
    return f"{server.api}/fine_tuning/jobs/{job_id}/events"


@pytest.fixture(scope="module")
def keyed_training_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("event-stream")
    cache = session_model_cache(tmp_path_factory)
    server = start_server_afresh(tmp, "--keys-file", str(write_keys_file(tmp / "keys.json")), env={
        "TUNEGATE_MODEL_CACHE": str(cache), "TUNEGATE_RATE_LIMIT": "0",
        "TUNEGATE_SSE_HEARTBEAT_SECONDS": "1"})
    yield server
    stop_server(server)


@pytest.mark.slow
def test_a_real_job_streams_its_events_live_and_resumes(keyed_training_server: Server) -> None:
    server = keyed_training_server
    alice = sdk_client(server, api_key=ALICE.key, max_retries=0)
    job = sdk_create_job(alice, sdk_upload(alice, fact_lines(12)).id, seed=3, method={
        "type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 4}}})
    status_at_first_metrics: list[str] = []

    def on_event(data: dict[str, Any]) -> None:
        if data["type"] == "metrics" and not status_at_first_metrics:
            status_at_first_metrics.append(alice.fine_tuning.jobs.retrieve(job.id).status)

    with httpx.stream("GET", events_url(server, job.id), params={"stream": "true"},
                      headers=ALICE.headers, timeout=httpx.Timeout(10, read=600)) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = read_stream(response, on_event)
    assert stream.ended, server.log()[-3000:]
    ids = [event_id for event_id, _, _ in stream.events]
    objects = [data for _, _, data in stream.events]
    assert {name for _, name, _ in stream.events} == {"fine_tuning.job.event"}
    assert ids == [data["id"] for data in objects] and len(set(ids)) == len(ids)
    assert objects[0]["message"] == f"Created fine-tuning job: {job.id}"
    assert objects[-1]["message"] == "The job has successfully completed", server.log()[-3000:]
    # Live: the first metrics arrived while the job was still training.
    assert status_at_first_metrics == ["running"]
    assert stream.pings >= 1  # model loading alone is longer than the 1 s heartbeat
    metrics = [data["data"] for data in objects if data["type"] == "metrics"]
    assert [m["step"] for m in metrics] == list(range(1, metrics[0]["total_steps"] + 1))
    assert all(m["learning_rate"] > 0 and m["tokens_per_second"] > 0 for m in metrics)
    # Exactly the paged list's objects, oldest first.
    paged = httpx.get(events_url(server, job.id), params={"limit": 1000},
                      headers=ALICE.headers).json()["data"]
    assert objects == list(reversed(paged))
    # tunegate's two additions to `data` pass the SDK's strict validation (`data` is free-form).
    strict = sdk_client(server, api_key=ALICE.key, max_retries=0,
                    _strict_response_validation=True)
    sdk_metrics = [e for e in strict.fine_tuning.jobs.list_events(job.id, limit=100)
                   if e.type == "metrics"]
    assert sdk_metrics and all(
        {"learning_rate", "tokens_per_second"} <= set(e.data) for e in sdk_metrics)  # type: ignore[arg-type]

    # Reconnecting after the third metrics event gives only what followed it, then ends.
    third = next(i for i, data in enumerate(objects)
                 if data["type"] == "metrics" and data["data"]["step"] == 3)
    with httpx.stream("GET", events_url(server, job.id), params={"stream": "true"},
                      headers={**ALICE.headers, "Last-Event-ID": ids[third]},
                      timeout=30) as response:
        assert response.status_code == 200
        resumed = read_stream(response)
    assert [data for _, _, data in resumed.events] == objects[third + 1:]

    # Another project's key: the job does not exist for it; no key: 401. Before any stream.
    other = httpx.get(events_url(server, job.id), params={"stream": "true"},
                      headers=BOB.headers, timeout=10)
    assert other.status_code == 404 and other.json()["error"]["param"] == "fine_tuning_job_id"
    assert other.headers["content-type"] == "application/json"
    anonymous = httpx.get(events_url(server, job.id), params={"stream": "true"}, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "invalid_api_key"


def test_shutting_down_ends_open_streams(tmp_path: Any) -> None:
    """uvicorn waits for open answers on SIGTERM: an open stream must end, not hold it up."""
    server = start_server(tmp_path, "--worker", "external")  # no worker: the job stays put
    try:
        file_id = httpx.post(f"{server.api}/files", data={"purpose": "fine-tune"}, files={
            "file": ("train.jsonl", chat_lines(12), "application/jsonl")}).json()["id"]
        job = httpx.post(f"{server.api}/fine_tuning/jobs", json={
            "model": EMBEDDED_MODEL_ID, "training_file": file_id}).json()
        opened, result = threading.Event(), {}

        def follow() -> None:
            with httpx.stream("GET", events_url(server, job["id"]), params={"stream": "true"},
                              timeout=httpx.Timeout(10, read=60)) as response:
                opened.set()
                result["stream"] = read_stream(response)

        reader = threading.Thread(target=follow)
        reader.start()
        assert opened.wait(30)
        server.process.terminate()
        server.process.wait(timeout=30)  # uvicorn alone would wait for the stream forever
        reader.join(timeout=30)
        stream: Stream = result["stream"]
        assert stream.ended and [data["message"] for _, _, data in stream.events] == [
            f"Created fine-tuning job: {job['id']}"]
        assert "Application shutdown complete" in server.log()  # after every answer ended
    finally:
        stop_server(server)
