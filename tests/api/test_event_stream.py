"""``GET …/events?stream=true`` on the in-process app (keys on, responses validated).

Events are written straight into the app's store, as a worker would, while a stream is open
(httpx's ASGI transport hands over the answer once the stream has ended, so every stream here
ends: by a terminal event, by the client leaving, or by the server stopping).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest

from tests.api.conftest import ALICE, BOB
from tests.helpers import create_job, expect_error, upload
from tunegate.api.app import create_app
from tunegate.api.event_stream import STOPPING_KEY
from tunegate.domain.jobs import job_event
from tunegate.settings import Settings

EVENT_NAME = "fine_tuning.job.event"


@pytest.fixture
def app(keyed_settings: Settings) -> Any:
    made = create_app(replace(keyed_settings, sse_heartbeat=0.05), validate_responses=True)
    made.state_service.live_events.poll_seconds = 0.02
    return made


@pytest.fixture
def job_id(app: Any) -> str:
    with app.test_client() as client:
        return str(create_job(client, upload(client, headers=ALICE.headers),
                              headers=ALICE.headers)["id"])


def blocks(text: str) -> list[str]:
    assert text.endswith("\n\n") or text == ""
    return [block for block in text.split("\n\n") if block]


def parsed(text: str) -> list[dict[str, Any]]:
    """The event objects of a stream, each block checked against the wire format."""
    objects = []
    for block in blocks(text):
        if block == ": ping":
            continue
        id_line, event_line, data_line = block.split("\n")
        data = json.loads(data_line.removeprefix("data: "))
        assert id_line == f"id: {data['id']}" and event_line == f"event: {EVENT_NAME}"
        assert data_line.startswith("data: ")
        objects.append(data)
    return objects


def paged(app: Any, job: str) -> list[dict[str, Any]]:
    with app.test_client() as client:
        body = client.get(f"/v1/fine_tuning/jobs/{job}/events", params={"limit": 1000},
                          headers=ALICE.headers).json()
    return list(reversed(body["data"]))


async def stream(app: Any, job: str, *, while_open: Callable[[], Any] | None = None,
                 params: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None) -> httpx.Response:
    """One stream request; ``while_open`` runs once the stream listens for live events."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        request = asyncio.create_task(client.get(
            f"/v1/fine_tuning/jobs/{job}/events", params={"stream": "true", **(params or {})},
            headers={**ALICE.headers, **(headers or {})}))
        if while_open is not None:
            feed = app.state_service.live_events
            while feed.listener_count == 0:
                await asyncio.sleep(0.01)
            await while_open()
        return await request


def cancel(app: Any, job: str) -> None:
    app.state_service.jobs.cancel(ALICE.project, job)


def test_a_finished_job_replays_its_events_and_ends(app: Any, job_id: str) -> None:
    cancel(app, job_id)
    response = asyncio.run(stream(app, job_id))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert "content-length" not in response.headers
    first = paged(app, job_id)[0]
    assert response.text.startswith(
        f"id: {first['id']}\nevent: {EVENT_NAME}\ndata: {json.dumps(first)}\n\n")
    assert parsed(response.text) == paged(app, job_id)
    assert parsed(response.text)[-1]["message"] == "Fine-tuning job cancelled"
    assert app.state_service.live_events.listener_count == 0


def test_live_events_arrive_in_order_then_the_terminal_one_ends_the_stream(
        app: Any, job_id: str) -> None:
    store = app.state_service.store

    async def train() -> None:
        for step in (1, 2, 3):
            store.add_events([job_event(job_id, f"Step {step}/3", type="metrics",
                                        data={"step": step, "total_steps": 3})])
            await asyncio.sleep(0.03)
        await asyncio.sleep(0.2)  # quiet for a while: heartbeats
        cancel(app, job_id)

    response = asyncio.run(stream(app, job_id, while_open=train))
    objects = parsed(response.text)
    assert [o["message"] for o in objects] == [
        f"Created fine-tuning job: {job_id}", "Step 1/3", "Step 2/3", "Step 3/3",
        "Fine-tuning job cancelled"]
    assert [o["data"]["step"] for o in objects if o["type"] == "metrics"] == [1, 2, 3]
    assert ": ping" in blocks(response.text)
    assert objects == paged(app, job_id)


def test_last_event_id_resumes_after_that_event(app: Any, job_id: str) -> None:
    store = app.state_service.store
    store.add_events([job_event(job_id, f"e{i}") for i in range(4)])
    cancel(app, job_id)
    events = paged(app, job_id)  # Created, e0..e3, cancelled
    by_header = asyncio.run(stream(app, job_id, headers={"Last-Event-ID": events[2]["id"]}))
    assert parsed(by_header.text) == events[3:]
    by_query = asyncio.run(stream(app, job_id, params={"last_event_id": events[4]["id"]}))
    assert parsed(by_query.text) == events[5:]
    both = asyncio.run(stream(app, job_id, params={"last_event_id": events[0]["id"]},
                              headers={"Last-Event-ID": events[4]["id"]}))
    assert parsed(both.text) == events[5:]  # the header wins: EventSource sends the newest
    last = asyncio.run(stream(app, job_id, headers={"Last-Event-ID": events[-1]["id"]}))
    assert last.text == ""


def test_bad_resume_points_are_400_before_any_stream(app: Any, job_id: str) -> None:
    with app.test_client(headers=ALICE.headers) as client:
        other = create_job(client, upload(client, headers=ALICE.headers), headers=ALICE.headers)
        others_event = client.get(f"/v1/fine_tuning/jobs/{other['id']}/events",
                                  headers=ALICE.headers).json()["data"][0]["id"]
        url = f"/v1/fine_tuning/jobs/{job_id}/events"
        for resume in ("ftevent-00000000000000000000000", others_event):
            expect_error(client, client.get(url, params={"stream": "true"}, headers={
                **ALICE.headers, "Last-Event-ID": resume}), 400, param="last_event_id",
                code="unknown_event_id", says=resume)
            expect_error(client, client.get(url, params={"stream": "true", "last_event_id": resume},
                                            headers=ALICE.headers),
                         400, param="last_event_id", code="unknown_event_id")
        expect_error(client, client.get(url, params={"stream": "true", "after": others_event},
                                        headers=ALICE.headers),
                     400, param="after", code="unsupported_parameter", says="Last-Event-ID")
        expect_error(client, client.get(url, params={"stream": "maybe"}, headers=ALICE.headers),
                     400, param="stream")
        expect_error(client, client.get(url, params={"stream": "true"}, headers={
            **ALICE.headers, "Last-Event-ID": "not an id"}), 400, param="last_event_id",
            code="unknown_event_id")


def test_keys_and_projects_apply_before_the_stream_starts(app: Any, job_id: str) -> None:
    with app.test_client(headers=ALICE.headers) as client:
        url = f"/v1/fine_tuning/jobs/{job_id}/events"
        paged_answer = client.get(url, headers=BOB.headers)
        streamed = client.get(url, params={"stream": "true"}, headers=BOB.headers)
        assert streamed.status_code == paged_answer.status_code == 404
        assert streamed.json() == paged_answer.json()
        expect_error(client, client.get(url, params={"stream": "true"},
                                        headers={"Authorization": ""}), 401,
                     code="invalid_api_key")
        expect_error(client, client.get("/v1/fine_tuning/jobs/ftjob-nope/events",
                                        params={"stream": "true"}, headers=ALICE.headers),
                     404, param="fine_tuning_job_id")
    assert app.state_service.live_events.listener_count == 0


def test_stream_false_is_the_paged_list(app: Any, job_id: str) -> None:
    with app.test_client() as client:
        url = f"/v1/fine_tuning/jobs/{job_id}/events"
        plain = client.get(url, headers=ALICE.headers)
        unstreamed = client.get(url, params={"stream": "false"}, headers=ALICE.headers)
        assert plain.headers["content-type"] == unstreamed.headers["content-type"] == (
            "application/json")
        assert plain.json() == unstreamed.json() and plain.json()["object"] == "list"


def asgi_request(job: str) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1", "method": "GET", "scheme": "http", "server": ("test", 80),
            "client": ("test", 1), "root_path": "", "path": f"/v1/fine_tuning/jobs/{job}/events",
            "raw_path": f"/v1/fine_tuning/jobs/{job}/events".encode(),
            "query_string": b"stream=true",
            "headers": [(b"host", b"test"), (b"authorization", f"Bearer {ALICE.key}".encode())]}


def test_a_client_that_leaves_releases_its_listener(app: Any, job_id: str) -> None:
    sent: list[dict[str, Any]] = []

    async def scenario() -> None:
        gone = asyncio.Event()

        async def receive() -> dict[str, Any]:
            if not sent:
                return {"type": "http.request", "body": b"", "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        call = asyncio.create_task(app(asgi_request(job_id), receive, send))
        feed = app.state_service.live_events
        while not any(m.get("body") for m in sent):  # the replay went out
            await asyncio.sleep(0.01)
        assert feed.listener_count == 1
        gone.set()
        await asyncio.wait_for(call, 10)
        assert feed.listener_count == 0
        await asyncio.sleep(feed.poll_seconds * 3)
        assert feed._task is None or feed._task.done()  # the poller ends with its last listener

    asyncio.run(scenario())
    assert sent[0]["status"] == 200
    assert not any(m.get("more_body") is False for m in sent)  # nothing written after leaving


def test_a_stopping_server_ends_open_streams(app: Any, job_id: str) -> None:
    """What ``tunegate.api.server.Protocol`` does on SIGTERM: the stream ends, completed."""
    sent: list[dict[str, Any]] = []

    async def scenario() -> None:
        stopping, never = asyncio.Event(), asyncio.Event()
        scope = {**asgi_request(job_id), STOPPING_KEY: stopping}

        async def receive() -> dict[str, Any]:
            if not sent:
                return {"type": "http.request", "body": b"", "more_body": False}
            await never.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        call = asyncio.create_task(app(scope, receive, send))
        while app.state_service.live_events.listener_count == 0:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # a few heartbeats
        stopping.set()
        await asyncio.wait_for(call, 10)

    asyncio.run(scenario())
    body = b"".join(m.get("body", b"") for m in sent).decode()
    assert [o["message"] for o in parsed(body)] == [f"Created fine-tuning job: {job_id}"]
    assert ": ping" in blocks(body)
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert app.state_service.live_events.listener_count == 0
