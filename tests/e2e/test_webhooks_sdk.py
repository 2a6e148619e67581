"""Webhooks end to end: a real ``tunegate serve`` with its embedded worker (validating and
evaluating, not training: the events are what matters), endpoints registered with the official
SDK's ``client.webhooks`` (strict response validation too) and receivers on 127.0.0.1 that
verify every message with the SDK's ``client.webhooks.unwrap``:

- a cancelled job, a job that fails validation and a completed eval run each arrive once per
  subscribed endpoint, and never at an endpoint not subscribed to them;
- a receiver down while a job is cancelled, the worker killed with kill -9 while the delivery
  waits for its retry, the receiver up again: the event arrives after the worker's restart,
  with the webhook-id its delivery row had from the start;
- an endpoint moved, disabled, enabled and its secret rotated with the SDK's
  ``client.webhooks.update`` and ``rotate_secret`` (strict): the events follow;
- the command line: ``tunegate webhooks add|list|update|rotate-secret|deliveries|test|remove``;
- the dashboard's Webhooks view on this server (a real headless Chromium): an endpoint added
  there, its secret shown once, a delivery seen as delivered;
- the server's log (``TUNEGATE_LOG_FORMAT=json``): JSON lines, a request's with the
  ``x-request-id`` its client saw, a worker's with its job's id.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai import InvalidWebhookSignatureError, OpenAI

from tests.conftest import chat_lines
from tests.e2e.test_chaos import worker_pid
from tests.helpers import until
from tests.servers import Server, sdk_client, start_server_afresh, stop_server
from tests.webhook_receiver import FakeReceiver

pytestmark = [pytest.mark.e2e, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:The Evals API is deprecated:DeprecationWarning")]

ENV = {"TUNEGATE_WORKER_STAGES": "validate,evaluate", "TUNEGATE_TRAINER_STANDBY": "disabled",
       "TUNEGATE_WEBHOOK_ALLOW_NETWORKS": "127.0.0.1/32", "TUNEGATE_WEBHOOK_FIRST_RETRY": "1",
       "TUNEGATE_WEBHOOK_TIMEOUT": "2", "TUNEGATE_LOG_FORMAT": "json"}
CRITERION = {"type": "string_check", "name": "exact", "input": "{{ sample.output_text }}",
             "reference": "{{ item.answer }}", "operation": "eq"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = start_server_afresh(tmp_path_factory.mktemp("webhooks"), env=ENV)
    yield started
    stop_server(started)


@pytest.fixture
def receivers() -> Iterator[list[FakeReceiver]]:
    made: list[FakeReceiver] = []
    yield made
    for receiver in made:
        receiver.stop()


@pytest.fixture
def clients() -> Iterator[list[OpenAI]]:
    """SDK clients a test made, closed after it (their connections with them)."""
    made: list[OpenAI] = []
    yield made
    for client in made:
        client.close()


def add_endpoint(client: OpenAI, receiver: FakeReceiver, events: list[str]) -> Any:
    return client.webhooks.create(url=receiver.url, event_types=events,  # type: ignore[arg-type]
                                  name="test")


def new_job(client: OpenAI, lines: int = 12) -> str:
    training = client.files.create(file=("t.jsonl", chat_lines(lines)), purpose="fine-tune")
    return client.fine_tuning.jobs.create(model="SmolLM2-135M-Instruct",
                                          training_file=training.id).id


def test_each_end_arrives_once_per_subscribed_endpoint(server: Server,
                                                       receivers: list[FakeReceiver],
                                                       clients: list[OpenAI]) -> None:
    client = sdk_client(server, _strict_response_validation=True)
    clients.append(client)
    everything, cancels = FakeReceiver().start(), FakeReceiver().start()
    receivers += [everything, cancels]
    wide = add_endpoint(client, everything, ["fine_tuning.job.cancelled",
                                             "fine_tuning.job.failed", "eval.run.succeeded"])
    narrow = add_endpoint(client, cancels, ["fine_tuning.job.cancelled"])
    assert wide.signing_secret.startswith("whsec_") and wide.id.startswith("we_")

    cancelled = new_job(client)
    client.fine_tuning.jobs.cancel(cancelled)
    failed = new_job(client, lines=3)  # fewer examples than a job needs: fails validation
    until(lambda: client.fine_tuning.jobs.retrieve(failed).status == "failed", "the failure")
    evaluation = client.evals.create(name="e", data_source_config={  # type: ignore[arg-type]
        "type": "custom", "item_schema": {"type": "object", "properties": {
            "answer": {"type": "string"}}}, "include_sample_schema": True},
        testing_criteria=[CRITERION])  # type: ignore[list-item]
    run = client.evals.runs.create(evaluation.id, data_source={  # type: ignore[arg-type]
        "type": "jsonl", "source": {"type": "file_content", "content": [
            {"item": {"answer": "4"}, "sample": {"output_text": "4"}}]}})

    everything.wait_for(3, timeout=60)
    cancels.wait_for(1, timeout=30)
    time.sleep(2)  # anything extra (a duplicate, an unsubscribed event) would arrive by now
    got = {(event.type, event.data.id) for event in everything.events(wide.signing_secret)}
    assert got == {("fine_tuning.job.cancelled", cancelled), ("fine_tuning.job.failed", failed),
                   ("eval.run.succeeded", run.id)}
    assert len(everything.received) == 3
    [event] = cancels.events(narrow.signing_secret)
    assert (event.type, event.data.id) == ("fine_tuning.job.cancelled", cancelled)
    # Each delivery's webhook-id is its row's, listed with what its attempt got.
    rows = client.get(f"/webhook_endpoints/{wide.id}/deliveries", cast_to=object)["data"]
    assert {row["id"] for row in rows} == {r.headers["webhook-id"] for r in everything.received}
    assert {row["status"] for row in rows} == {"delivered"}


def test_a_delivery_survives_a_receiver_outage_and_kill_9_of_the_worker(
        server: Server, receivers: list[FakeReceiver], clients: list[OpenAI]) -> None:
    client = sdk_client(server)
    clients.append(client)
    receiver = FakeReceiver().start()
    receivers.append(receiver)
    endpoint = add_endpoint(client, receiver, ["fine_tuning.job.cancelled"])
    receiver.stop()  # down: connections refused

    job = new_job(client)
    client.fine_tuning.jobs.cancel(job)

    def deliveries() -> list[dict[str, Any]]:
        return list(client.get(f"/webhook_endpoints/{endpoint.id}/deliveries",
                               cast_to=object)["data"])
    until(lambda: [d for d in deliveries() if d["attempts"] >= 1], "a failed attempt")
    [waiting] = deliveries()
    assert waiting["status"] == "pending" and waiting["last_status_code"] is None
    assert waiting["last_error"] and waiting["next_attempt_at"] is not None

    os.kill(worker_pid(server), signal.SIGKILL)  # serve starts a new worker
    back = FakeReceiver(port=int(receiver.url.split(":")[2].split("/")[0])).start()
    receivers.append(back)
    back.wait_for(1, timeout=90)
    [event] = back.events(endpoint.signing_secret)
    assert (event.type, event.data.id) == ("fine_tuning.job.cancelled", job)
    assert back.received[0].headers["webhook-id"] == waiting["id"]
    assert json.loads(back.received[0].body)["id"] == waiting["event_id"]
    until(lambda: deliveries()[0]["status"] == "delivered", "the delivery recorded")


def test_an_endpoint_is_moved_disabled_enabled_and_its_secret_rotated_with_the_sdk(
        server: Server, receivers: list[FakeReceiver], clients: list[OpenAI]) -> None:
    client = sdk_client(server, _strict_response_validation=True)
    clients.append(client)
    old, new = FakeReceiver().start(), FakeReceiver().start()
    receivers += [old, new]
    endpoint = add_endpoint(client, old, ["fine_tuning.job.cancelled"])

    moved = client.webhooks.update(endpoint.id, url=new.url, name="moved")
    assert (moved.url, moved.name, moved.event_types) == (new.url, "moved",
                                                          ["fine_tuning.job.cancelled"])
    assert moved.signing_secret_hint == endpoint.signing_secret_hint
    off = client.webhooks.update(endpoint.id, extra_body={"status": "disabled"})
    assert (off.model_extra or {})["status"] == "disabled"
    unsent = new_job(client)
    client.fine_tuning.jobs.cancel(unsent)
    on = client.webhooks.update(endpoint.id, extra_body={"status": "enabled"})
    assert (on.model_extra or {})["status"] == "enabled"

    rotated = client.webhooks.rotate_secret(endpoint.id, keep_old_secret_active_for_24_hours=True)
    assert rotated.signing_secret.startswith("whsec_")
    assert rotated.signing_secret != endpoint.signing_secret
    sent = new_job(client)
    client.fine_tuning.jobs.cancel(sent)
    new.wait_for(1, timeout=60)
    time.sleep(2)  # an event of the job cancelled while disabled would arrive by now
    for secret in (rotated.signing_secret, endpoint.signing_secret):  # either verifies
        assert [(e.type, e.data.id) for e in new.events(secret)] == [
            ("fine_tuning.job.cancelled", sent)]
    assert old.received == []

    final = client.webhooks.rotate_secret(endpoint.id)  # the old ones stop at once
    new.received.clear()  # signed with the secrets just replaced
    assert client.webhooks.test(endpoint.id, event_type="fine_tuning.job.succeeded"
                                ).status_code == 200
    assert new.received[-1].headers["webhook-signature"].count("v1,") == 1
    [event] = new.events(final.signing_secret)
    assert event.type == "fine_tuning.job.succeeded"
    with pytest.raises(InvalidWebhookSignatureError):
        new.events(rotated.signing_secret)


def test_the_command_line_manages_endpoints(server: Server, tmp_path: Path,
                                            receivers: list[FakeReceiver]) -> None:
    receiver = FakeReceiver().start()
    receivers.append(receiver)

    def tunegate(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tunegate", "webhooks", *args,
                               "--url", server.base_url], capture_output=True, text=True,
                              timeout=60, check=False)

    added = tunegate("add", receiver.url, "--events", "eval.run.failed")
    assert added.returncode == 0, added.stderr
    endpoint_id, url = added.stdout.split()[:2]
    secret = added.stdout.splitlines()[1]
    assert url == receiver.url  # the endpoint's URL, not the server's (--url)
    assert secret.startswith("whsec_") and "shown this once" in added.stderr
    assert endpoint_id in tunegate("list").stdout
    tested = tunegate("test", endpoint_id, "--event", "eval.run.failed")
    assert tested.returncode == 0 and "HTTP 200" in tested.stdout, tested.stderr
    [event] = receiver.events(secret)
    assert event.type == "eval.run.failed"
    assert tunegate("deliveries", endpoint_id).returncode == 0
    disabled = tunegate("update", endpoint_id, "--disable", "--name", "paused")
    assert disabled.returncode == 0 and "disabled" in disabled.stdout, disabled.stderr
    assert "disabled" in tunegate("list").stdout
    assert tunegate("update", endpoint_id).returncode == 2  # nothing to change
    enabled = tunegate("update", endpoint_id, "--enable", "--events", "eval.run.canceled")
    assert "enabled" in enabled.stdout and "eval.run.canceled" in enabled.stdout
    receiver.received.clear()  # signed with the secret about to be replaced
    rotated = tunegate("rotate-secret", endpoint_id)
    new_secret = rotated.stdout.strip()
    assert rotated.returncode == 0 and new_secret.startswith("whsec_") and new_secret != secret
    assert "shown this once" in rotated.stderr
    assert tunegate("test", endpoint_id, "--event", "eval.run.canceled").returncode == 0
    [event] = receiver.events(new_secret)
    assert event.type == "eval.run.canceled"
    refused = tunegate("add", "http://169.254.169.254/latest/")
    assert refused.returncode != 0 and "TUNEGATE_WEBHOOK_ALLOW_NETWORKS" in refused.stderr
    assert tunegate("remove", endpoint_id).returncode == 0
    assert endpoint_id not in tunegate("list").stdout


def test_the_dashboard_adds_an_endpoint_and_shows_its_delivery(
        server: Server, receivers: list[FakeReceiver], clients: list[OpenAI],
        browser: Any) -> None:
    client = sdk_client(server)
    clients.append(client)
    receiver = FakeReceiver().start()
    receivers.append(receiver)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{server.base_url}/dashboard/#/webhooks")
        page.fill("input[name=url]", receiver.url)
        page.fill("input[name=name]", "from the dashboard")
        page.click("form.add-endpoint button[type=submit]")
        notice = page.locator(".secret-notice")
        notice.wait_for()
        secret = notice.locator(".signing-secret").inner_text()
        endpoint_id = notice.get_attribute("data-endpoint-id")
        assert secret.startswith("whsec_") and endpoint_id

        job = new_job(client)
        client.fine_tuning.jobs.cancel(job)
        receiver.wait_for(1, timeout=60)
        [event] = receiver.events(secret)
        assert (event.type, event.data.id) == ("fine_tuning.job.cancelled", job)
        row = page.locator(f"tr[data-endpoint-id={endpoint_id}]")
        row.locator("td.last-delivery .status-delivered").wait_for()  # seen on a refresh
        assert "HTTP 200" in row.inner_text() and secret not in row.inner_text()

        page.once("dialog", lambda dialog: dialog.accept())
        row.locator("button.remove-endpoint").click()
        row.wait_for(state="detached")
        assert endpoint_id not in [e.id for e in client.webhooks.list()]
    finally:
        context.close()
    assert not errors, errors


def test_the_server_and_its_worker_log_json_lines(server: Server,
                                                  clients: list[OpenAI]) -> None:
    client = sdk_client(server)
    clients.append(client)
    job = new_job(client)
    until(lambda: client.fine_tuning.jobs.retrieve(job).status == "queued", "validation")
    answer = client.fine_tuning.jobs.with_raw_response.retrieve(job)
    request_id = answer.headers["x-request-id"]

    def logged() -> list[dict[str, Any]]:
        return [json.loads(line) for line in server.log().splitlines() if line.strip()]
    lines = until(lambda: [line for line in logged() if line.get("request_id") == request_id]
                  and logged(), "the request's line")
    [access] = [line for line in lines if line.get("request_id") == request_id]
    assert access["logger"] == "tunegate.access"
    assert access["operation"] == "retrieveFineTuningJob" and access["status"] == 200
    assert any(line.get("job_id") == job and line["logger"] == "tunegate.worker"
               for line in lines)
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
