"""Webhook endpoints over HTTP in process (responses validated against openapi.yaml): the SDK's
paths and shapes (the secret shown once), the 400s that name the field at fault, projects
isolating endpoints, ``test`` reaching a receiver, and a cancelled job's event delivered by the
worker's delivery code to a receiver that verifies it with the official SDK, retried with the
same ``webhook-id`` while the receiver answers 503."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from tests.api.conftest import ALICE, BOB, write_keys_file
from tests.helpers import create_job, upload
from tests.webhook_receiver import FakeReceiver
from tunegate.api.app import create_app
from tunegate.settings import Settings
from tunegate.store import open_store
from tunegate.worker.webhook_delivery import WebhookDelivery

EVENTS = ["fine_tuning.job.cancelled", "fine_tuning.job.succeeded"]


@pytest.fixture
def hook_settings(settings: Settings, tmp_path: Any) -> Settings:
    return replace(settings, webhook_allow_networks="127.0.0.1/32", webhook_first_retry=0.1,
                   webhook_timeout=2.0, keys_file=write_keys_file(tmp_path / "keys.json"),
                   rate_limit=0)


@pytest.fixture
def hooks(hook_settings: Settings) -> Iterator[Any]:
    app = create_app(hook_settings, validate_responses=True)
    with app.test_client() as test_client:
        yield test_client
    app.state_service.inference.close()


@pytest.fixture
def receiver() -> Iterator[FakeReceiver]:
    started = FakeReceiver().start()
    yield started
    started.stop()


def expect_error(answer: Any, status: int, *, param: str | None = None,
                 code: str | None = None) -> dict[str, Any]:
    """OpenAI's error envelope with ``status``, naming ``param`` and ``code`` when given."""
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param is not None:
        assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    return dict(error)


def add(client: Any, url: str, headers: dict[str, str] = ALICE.headers, **extra: Any) -> Any:
    return client.post("/v1/webhook_endpoints", headers=headers,
                       json={"url": url, "event_types": EVENTS, **extra})


def test_an_endpoint_is_created_listed_and_removed_with_its_secret_shown_once(
        hooks: Any, receiver: FakeReceiver) -> None:
    made = add(hooks, receiver.url, name="ci")
    assert made.status_code == 200, made.text
    endpoint = made.json()
    assert endpoint["object"] == "webhook_endpoint" and endpoint["id"].startswith("we_")
    assert endpoint["signing_secret"].startswith("whsec_")
    assert endpoint["event_types"] == EVENTS and endpoint["status"] == "enabled"
    listed = hooks.get("/v1/webhook_endpoints", headers=ALICE.headers).json()
    assert [item["id"] for item in listed["data"]] == [endpoint["id"]]
    assert "signing_secret" not in listed["data"][0]
    assert listed["data"][0]["signing_secret_hint"].endswith(endpoint["signing_secret"][-4:])
    # Another project's key sees nothing of it.
    assert hooks.get("/v1/webhook_endpoints", headers=BOB.headers).json()["data"] == []
    expect_error(hooks.get(f"/v1/webhook_endpoints/{endpoint['id']}",
                                  headers=BOB.headers), 404, code="webhook_endpoint_not_found")
    gone = hooks.delete(f"/v1/webhook_endpoints/{endpoint['id']}", headers=ALICE.headers)
    assert gone.json() == {"object": "webhook_endpoint.deleted", "id": endpoint["id"],
                           "deleted": True}
    expect_error(hooks.delete(f"/v1/webhook_endpoints/{endpoint['id']}",
                                     headers=ALICE.headers), 404)


@pytest.mark.parametrize(("body", "param", "code"), [
    ({"url": "not a url", "event_types": EVENTS}, "url", "invalid_url"),
    ({"url": "ftp://93.184.215.14/x", "event_types": EVENTS}, "url", "invalid_url"),
    ({"url": "http://169.254.169.254/latest", "event_types": EVENTS}, "url",
     "webhook_url_refused"),
    ({"url": "http://10.0.0.5/hook", "event_types": EVENTS}, "url", "webhook_url_refused"),
    ({"url": "https://93.184.215.14/x", "event_types": ["fine_tuning.job.done"]}, "event_types",
     "invalid_event_types"),
    ({"url": "https://93.184.215.14/x", "event_types": EVENTS, "signing_secret": "secret"},
     "signing_secret", "invalid_signing_secret"),
])
def test_bad_input_is_a_400_naming_it(hooks: Any, body: dict[str, Any], param: str,
                                      code: str) -> None:
    answer = hooks.post("/v1/webhook_endpoints", headers=ALICE.headers, json=body)
    error = expect_error(answer, 400, param=param, code=code)
    if code == "webhook_url_refused":
        assert "TUNEGATE_WEBHOOK_ALLOW_NETWORKS" in error["message"]


def test_test_sends_a_verifiable_sample_and_says_what_the_endpoint_answered(
        hooks: Any, receiver: FakeReceiver) -> None:
    endpoint = add(hooks, receiver.url).json()
    receiver.status = 418
    answer = hooks.post(f"/v1/webhook_endpoints/{endpoint['id']}/test", headers=ALICE.headers,
                        json={"event_type": "eval.run.failed"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status_code"] == 418
    [event] = receiver.events(endpoint["signing_secret"])
    assert event.type == "eval.run.failed"
    receiver.stop()
    expect_error(hooks.post(f"/v1/webhook_endpoints/{endpoint['id']}/test",
                                   headers=ALICE.headers, json={"event_type": "eval.run.failed"}),
                 400, code="webhook_unreachable")


def test_a_cancelled_job_is_delivered_and_retried_with_the_same_id(
        hooks: Any, hook_settings: Settings, receiver: FakeReceiver) -> None:
    endpoint = add(hooks, receiver.url).json()
    file_id = upload(hooks, headers=ALICE.headers)
    job = create_job(hooks, file_id, headers=ALICE.headers)
    cancelled = hooks.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel", headers=ALICE.headers)
    assert cancelled.json()["status"] == "cancelled"
    # The worker's delivery code, on its own connection to the same database.
    store = open_store(hook_settings.sqlalchemy_url)
    sender = WebhookDelivery(hook_settings, store)
    receiver.status = 503
    assert sender.dispatch_due() == 1
    receiver.wait_for(1, timeout=10)
    deliveries = _deliveries(hooks, endpoint["id"], after_attempts=1)
    assert deliveries[0]["status"] == "pending" and deliveries[0]["last_status_code"] == 503
    receiver.status = 204
    time.sleep(0.3)  # past the first retry's wait
    assert sender.dispatch_due() == 1
    receiver.wait_for(2, timeout=10)
    [delivery] = _deliveries(hooks, endpoint["id"], after_attempts=2)
    assert delivery["status"] == "delivered" and delivery["attempts"] == 2
    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery["id"]
    assert first.body == second.body
    events = receiver.events(endpoint["signing_secret"])
    assert [(e.type, e.data.id) for e in events] == [("fine_tuning.job.cancelled", job["id"])] * 2
    assert json.loads(second.body)["id"] == delivery["event_id"]
    store.close()


def _deliveries(client: Any, endpoint_id: str, *, after_attempts: int) -> list[dict[str, Any]]:
    """The endpoint's deliveries once the newest has ``after_attempts`` recorded attempts (the
    attempt runs in the sender's pool)."""
    deadline = time.monotonic() + 10
    while True:
        page = client.get(f"/v1/webhook_endpoints/{endpoint_id}/deliveries",
                          headers=ALICE.headers).json()["data"]
        if page and page[0]["attempts"] >= after_attempts or time.monotonic() > deadline:
            return list(page)
        time.sleep(0.05)


def test_a_redirect_is_a_failure_and_is_not_followed(receiver: FakeReceiver) -> None:
    from tunegate.domain.webhook_sender import parse_networks, send
    from tunegate.domain.webhooks import new_secret

    receiver.status = 302
    attempt = send(receiver.url, new_secret(), "wh_1", "{}", timeout=2.0,
                   allowed=parse_networks("127.0.0.1/32"))
    assert not attempt.delivered and attempt.status_code == 302
    assert len(receiver.received) == 1
    refused = send(receiver.url, new_secret(), "wh_1", "{}", timeout=2.0, allowed=())
    assert refused.status_code is None and "TUNEGATE_WEBHOOK_ALLOW_NETWORKS" in str(refused.error)
    assert len(receiver.received) == 1  # the refused address was never contacted


# Updating and rotating ---------------------------------------------------------------------

def update(client: Any, endpoint_id: str, headers: dict[str, str] = ALICE.headers,
           **body: Any) -> Any:
    return client.post(f"/v1/webhook_endpoints/{endpoint_id}", headers=headers, json=body)


def cancelled_job(client: Any) -> str:
    """A job of ALICE's project, cancelled: one fine_tuning.job.cancelled event."""
    job = create_job(client, upload(client, headers=ALICE.headers), headers=ALICE.headers)
    assert client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel",
                       headers=ALICE.headers).status_code == 200
    return str(job["id"])


def deliveries_of(client: Any, endpoint_id: str) -> list[dict[str, Any]]:
    return list(client.get(f"/v1/webhook_endpoints/{endpoint_id}/deliveries",
                           headers=ALICE.headers).json()["data"])


def test_an_update_changes_only_the_fields_it_names(hooks: Any, receiver: FakeReceiver,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = add(hooks, receiver.url, name="ci").json()
    other = FakeReceiver().start()
    try:
        monkeypatch.setattr("tunegate.api.webhooks.now", lambda: endpoint["created_at"] + 60)
        changed = update(hooks, endpoint["id"], url=other.url,
                         event_types=["eval.run.failed", "eval.run.failed"])
        assert changed.status_code == 200, changed.text
        body = changed.json()
        assert "signing_secret" not in body
        assert body["url"] == other.url and body["event_types"] == ["eval.run.failed"]
        assert body["name"] == "ci" and body["updated_at"] == endpoint["created_at"] + 60
        assert body["signing_secret_hint"] == endpoint["signing_secret_hint"]
        assert hooks.get(f"/v1/webhook_endpoints/{endpoint['id']}",
                         headers=ALICE.headers).json() == body
        # The same values again change nothing, so updated_at stays.
        monkeypatch.setattr("tunegate.api.webhooks.now", lambda: endpoint["created_at"] + 120)
        again = update(hooks, endpoint["id"], url=other.url, name="ci")
        assert again.json()["updated_at"] == endpoint["created_at"] + 60
        # The test event goes to the new URL.
        answer = hooks.post(f"/v1/webhook_endpoints/{endpoint['id']}/test",
                            headers=ALICE.headers, json={"event_type": "eval.run.failed"})
        assert answer.json()["status_code"] == 200
        assert len(other.received) == 1 and receiver.received == []
    finally:
        other.stop()


def test_a_disabled_endpoint_gives_up_its_waiting_deliveries_and_gets_nothing_until_enabled(
        hooks: Any, receiver: FakeReceiver) -> None:
    endpoint = add(hooks, receiver.url).json()
    first = cancelled_job(hooks)
    [waiting] = deliveries_of(hooks, endpoint["id"])
    assert waiting["status"] == "pending"

    disabled = update(hooks, endpoint["id"], status="disabled").json()
    assert disabled["status"] == "disabled" and disabled["disabled_at"] is not None
    [given_up] = deliveries_of(hooks, endpoint["id"])
    assert (given_up["data_id"], given_up["status"]) == (first, "failed")
    assert given_up["next_attempt_at"] is None and "disabled" in given_up["last_error"]
    cancelled_job(hooks)
    assert len(deliveries_of(hooks, endpoint["id"])) == 1  # none for the disabled endpoint

    enabled = update(hooks, endpoint["id"], status="enabled").json()
    assert enabled["status"] == "enabled" and enabled["disabled_at"] is None
    third = cancelled_job(hooks)
    newest = deliveries_of(hooks, endpoint["id"])[0]
    assert (newest["data_id"], newest["status"]) == (third, "pending")


@pytest.mark.parametrize(("body", "param", "code"), [
    ({"url": "not a url"}, "url", "invalid_url"),
    ({"url": "http://169.254.169.254/latest"}, "url", "webhook_url_refused"),
    ({"event_types": ["fine_tuning.job.done"]}, "event_types", "invalid_event_types"),
    ({"event_types": []}, "event_types", None),
    ({"status": "paused"}, "status", None),
    ({"signing_secret": "whsec_" + "A" * 44}, "signing_secret", "unknown_parameter"),
])
def test_a_bad_update_is_a_400_naming_it_and_changes_nothing(
        hooks: Any, receiver: FakeReceiver, body: dict[str, Any], param: str,
        code: str | None) -> None:
    endpoint = add(hooks, receiver.url).json()
    expect_error(update(hooks, endpoint["id"], **body), 400, param=param, code=code)
    kept = hooks.get(f"/v1/webhook_endpoints/{endpoint['id']}", headers=ALICE.headers).json()
    assert kept == {key: value for key, value in endpoint.items() if key != "signing_secret"}


def test_another_projects_endpoint_cannot_be_updated_or_rotated(hooks: Any,
                                                                receiver: FakeReceiver) -> None:
    endpoint = add(hooks, receiver.url).json()
    expect_error(update(hooks, endpoint["id"], headers=BOB.headers, name="mine"), 404,
                 code="webhook_endpoint_not_found")
    expect_error(hooks.post(f"/v1/webhook_endpoints/{endpoint['id']}/rotate_secret",
                            headers=BOB.headers, json={}), 404,
                 code="webhook_endpoint_not_found")
    expect_error(update(hooks, "we_missing", name="x"), 404, code="webhook_endpoint_not_found")


def test_a_rotated_secret_is_shown_once_and_signs_from_then_on(hooks: Any,
                                                               receiver: FakeReceiver) -> None:
    endpoint = add(hooks, receiver.url).json()
    rotated = hooks.post(f"/v1/webhook_endpoints/{endpoint['id']}/rotate_secret",
                         headers=ALICE.headers)  # no body: the old secret stops at once
    assert rotated.status_code == 200, rotated.text
    fresh = rotated.json()
    assert fresh["signing_secret"].startswith("whsec_")
    assert fresh["signing_secret"] != endpoint["signing_secret"]
    assert fresh["signing_secret_hint"].endswith(fresh["signing_secret"][-4:])
    listed = hooks.get(f"/v1/webhook_endpoints/{endpoint['id']}", headers=ALICE.headers).json()
    assert "signing_secret" not in listed
    assert listed["signing_secret_hint"] == fresh["signing_secret_hint"]

    hooks.post(f"/v1/webhook_endpoints/{endpoint['id']}/test", headers=ALICE.headers,
               json={"event_type": "eval.run.failed"})
    [event] = receiver.events(fresh["signing_secret"])
    assert event.type == "eval.run.failed"
    with pytest.raises(Exception, match="signature"):
        receiver.events(endpoint["signing_secret"])


def test_a_rotation_that_keeps_the_old_secret_signs_with_both(
        hooks: Any, hook_settings: Settings, receiver: FakeReceiver) -> None:
    endpoint = add(hooks, receiver.url).json()
    cancelled_job(hooks)  # a delivery written before the rotation, sent after it
    fresh = hooks.post(f"/v1/webhook_endpoints/{endpoint['id']}/rotate_secret",
                       headers=ALICE.headers,
                       json={"keep_old_secret_active_for_24_hours": True}).json()
    store = open_store(hook_settings.sqlalchemy_url)
    try:
        assert WebhookDelivery(hook_settings, store).dispatch_due() == 1
        receiver.wait_for(1, timeout=10)
    finally:
        store.close()
    hooks.post(f"/v1/webhook_endpoints/{endpoint['id']}/test", headers=ALICE.headers,
               json={"event_type": "eval.run.failed"})
    assert len(receiver.received) == 2
    assert all(len(r.headers["webhook-signature"].split()) == 2 for r in receiver.received)
    for secret in (fresh["signing_secret"], endpoint["signing_secret"]):
        assert [e.type for e in receiver.events(secret)] == ["fine_tuning.job.cancelled",
                                                             "eval.run.failed"]
    expect_error(hooks.post(f"/v1/webhook_endpoints/{endpoint['id']}/rotate_secret",
                            headers=ALICE.headers, json={"keep_old": True}), 400,
                 code="unknown_parameter")
