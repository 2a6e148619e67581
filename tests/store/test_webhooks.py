"""The webhook outbox on SQLite and PostgreSQL (the ``store`` fixture): a job's or an eval run's
end writes one delivery per subscribed endpoint in the transaction of the status change (and
none when that change is refused), a delivery is claimed once, and recorded attempts retry with
doubling waits, give up after the retry window and disable an endpoint that fails too long; an
update that disables an endpoint gives up its waiting deliveries, and a rotation that keeps the
old secret hands it to the sender until its time."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest

from tests.store.test_contract import PROJECT, add_job, make_event
from tests.store.test_evals import make_eval, make_run
from tunegate import ids
from tunegate.domain.evals import RunStatus
from tunegate.domain.jobs import JobStatus
from tunegate.domain.webhooks import DeliveryStatus, WebhookEndpoint, new_secret
from tunegate.errors import Conflict
from tunegate.store import SqlStore

RETRY = {"first_retry": 10.0, "retry_for": 1000.0, "disable_after": 10_000.0}


def add_endpoint(store: SqlStore, events: list[str], project: str = PROJECT) -> WebhookEndpoint:
    endpoint = WebhookEndpoint(id=ids.new_id(ids.WEBHOOK_ENDPOINT), project_id=project,
                               created_at=1, updated_at=1, name="n", url="http://127.0.0.1:9/",
                               event_types=events, secret=new_secret())
    store.add_webhook_endpoint(endpoint)
    return endpoint


def deliveries(store: SqlStore, endpoint: WebhookEndpoint) -> list:
    return store.list_webhook_deliveries(endpoint.id, after=None, limit=100).items


def test_a_job_end_writes_one_delivery_per_subscribed_endpoint(store: SqlStore) -> None:
    wants_cancel = add_endpoint(store, ["fine_tuning.job.cancelled"])
    wants_success = add_endpoint(store, ["fine_tuning.job.succeeded"])
    elsewhere = add_endpoint(store, ["fine_tuning.job.cancelled"], project="proj-other")
    job = add_job(store)
    store.transition(job.id, JobStatus.QUEUED, events=[make_event(job.id)])
    assert deliveries(store, wants_cancel) == []  # not an end
    store.transition(job.id, JobStatus.CANCELLED, events=[make_event(job.id)])
    [sent] = deliveries(store, wants_cancel)
    assert deliveries(store, wants_success) == [] and deliveries(store, elsewhere) == []
    body = json.loads(sent.body)
    assert body["type"] == "fine_tuning.job.cancelled" and body["data"] == {"id": job.id}
    assert body["object"] == "event" and body["id"] == sent.event_id
    assert sent.id.startswith("wh_") and sent.status is DeliveryStatus.PENDING
    # A refused move writes nothing: the event exists exactly when the status does.
    with pytest.raises(Conflict):
        store.transition(job.id, JobStatus.CANCELLED, events=[])
    assert len(deliveries(store, wants_cancel)) == 1


def test_an_eval_run_end_writes_its_event(store: SqlStore) -> None:
    endpoint = add_endpoint(store, ["eval.run.succeeded", "eval.run.canceled"])
    evaluation = make_eval(project=PROJECT)
    store.evals.add_eval(evaluation)
    done, canceled = make_run(evaluation), make_run(evaluation)
    store.evals.add_run(done)
    store.evals.add_run(canceled)
    store.evals.claim_run("w", 1.0)
    assert store.evals.finish_run(done.id, "w", RunStatus.COMPLETED)
    store.evals.cancel_run(PROJECT, evaluation.id, canceled.id)
    sent = {json.loads(d.body)["data"]["id"]: d.event_type for d in deliveries(store, endpoint)}
    assert sent == {done.id: "eval.run.succeeded", canceled.id: "eval.run.canceled"}


def test_a_run_recorded_already_graded_writes_its_event_once(store: SqlStore) -> None:
    """A reinforcement job's validation run is recorded finished (add_graded_run), never
    claimed or finished by a worker: its event comes with it, as a worker's run's would."""
    endpoint = add_endpoint(store, ["eval.run.succeeded"])
    evaluation = make_eval(project=PROJECT)
    store.evals.add_eval(evaluation)
    graded = replace(make_run(evaluation), status=RunStatus.COMPLETED, name="step 2")
    assert store.evals.add_graded_run(graded, [])
    assert not store.evals.add_graded_run(replace(graded, id=ids.new_id(ids.EVAL_RUN)), [])
    sent = [(json.loads(d.body)["data"]["id"], d.event_type) for d in deliveries(store, endpoint)]
    assert sent == [(graded.id, "eval.run.succeeded")]


def test_attempts_retry_with_doubling_waits_then_give_up(store: SqlStore) -> None:
    endpoint = add_endpoint(store, ["fine_tuning.job.failed"])
    job = add_job(store)
    store.transition(job.id, JobStatus.FAILED, events=[])
    [delivery] = deliveries(store, endpoint)
    now = delivery.created_at + 1.0
    [due] = store.due_webhook_deliveries(now, limit=10)
    assert due.url == endpoint.url and due.secret == endpoint.secret
    assert store.claim_webhook_delivery(due.delivery, now + 60)
    assert not store.claim_webhook_delivery(due.delivery, now + 60)  # taken once
    assert store.due_webhook_deliveries(now, limit=10) == []  # leased
    first = store.record_webhook_attempt(delivery.id, status_code=500, error="HTTP 500",
                                         now=now, **RETRY)
    assert first is not None and first.delivery.next_attempt_at == now + 10
    second = store.record_webhook_attempt(delivery.id, status_code=None, error="refused",
                                          now=now + 10, **RETRY)
    assert second is not None and second.delivery.next_attempt_at == now + 10 + 20
    assert second.delivery.attempts == 2 and second.delivery.last_error == "refused"
    late = store.record_webhook_attempt(delivery.id, status_code=None, error="refused",
                                        now=delivery.created_at + 995.0, **RETRY)
    assert late is not None and late.delivery.status is DeliveryStatus.FAILED
    assert late.delivery.id == delivery.id  # the same webhook-id all along


def test_a_success_delivers_and_an_endpoint_failing_too_long_is_disabled(store: SqlStore) -> None:
    endpoint = add_endpoint(store, ["fine_tuning.job.failed"])
    first, second = add_job(store), add_job(store)
    store.transition(first.id, JobStatus.FAILED, events=[])
    store.transition(second.id, JobStatus.FAILED, events=[])
    later, earlier = deliveries(store, endpoint)
    ok = store.record_webhook_attempt(earlier.id, status_code=204, error=None, now=time.time(),
                                      **RETRY)
    assert ok is not None and ok.delivery.status is DeliveryStatus.DELIVERED
    start = time.time()
    store.record_webhook_attempt(later.id, status_code=503, error="x", now=start, **RETRY)
    gone = store.record_webhook_attempt(later.id, status_code=503, error="x",
                                        now=start + 10_000, **{**RETRY, "retry_for": 1e9})
    assert gone is not None and gone.disabled_endpoint
    assert gone.delivery.status is DeliveryStatus.FAILED
    disabled = store.get_webhook_endpoint(PROJECT, endpoint.id)
    assert disabled is not None and disabled.disabled_at is not None
    third = add_job(store)
    store.transition(third.id, JobStatus.FAILED, events=[])  # a disabled endpoint gets none
    assert len(deliveries(store, endpoint)) == 2


def test_removing_an_endpoint_removes_its_deliveries(store: SqlStore) -> None:
    endpoint = add_endpoint(store, ["fine_tuning.job.failed"])
    job = add_job(store)
    store.transition(job.id, JobStatus.FAILED, events=[])
    assert not store.delete_webhook_endpoint("proj-other", endpoint.id)
    assert store.delete_webhook_endpoint(PROJECT, endpoint.id)
    assert store.due_webhook_deliveries(time.time() + 10, limit=10) == []
    assert store.get_webhook_endpoint(PROJECT, endpoint.id) is None


def test_a_success_writes_its_event_with_the_rows_it_brings(store: SqlStore) -> None:
    endpoint = add_endpoint(store, ["fine_tuning.job.succeeded"])
    job = add_job(store)
    for status in (JobStatus.QUEUED, JobStatus.RUNNING):
        store.transition(job.id, status, events=[])
    assert deliveries(store, endpoint) == []
    store.transition(job.id, JobStatus.SUCCEEDED, events=[make_event(job.id, "done")],
                     changes={"fine_tuned_model": "ft:x"})
    [sent] = deliveries(store, endpoint)
    assert (sent.event_type, sent.object_id) == ("fine_tuning.job.succeeded", job.id)


def test_an_update_that_disables_gives_up_waiting_deliveries_and_enabling_clears_the_streak(
        store: SqlStore) -> None:
    endpoint = add_endpoint(store, ["fine_tuning.job.failed"])
    job = add_job(store)
    store.transition(job.id, JobStatus.FAILED, events=[])
    [delivery] = deliveries(store, endpoint)
    store.record_webhook_attempt(delivery.id, status_code=500, error="HTTP 500",
                                 now=delivery.created_at + 1.0, **RETRY)
    failing = store.get_webhook_endpoint(PROJECT, endpoint.id)
    assert failing is not None and failing.failing_since is not None
    off = replace(failing, disabled_at=50, updated_at=50, url="https://93.184.215.14/new")
    assert store.update_webhook_endpoint(failing, off)
    assert store.get_webhook_endpoint(PROJECT, endpoint.id) == off
    [given_up] = deliveries(store, endpoint)
    assert given_up.status is DeliveryStatus.FAILED and given_up.next_attempt_at is None
    on = replace(off, disabled_at=None, failing_since=None, updated_at=60)
    assert store.update_webhook_endpoint(off, on)
    assert store.get_webhook_endpoint(PROJECT, endpoint.id) == on
    gone = replace(on, id="we_gone")
    assert not store.update_webhook_endpoint(gone, gone)


def test_a_rotated_secret_signs_due_deliveries_with_the_kept_one_until_its_time(
        store: SqlStore) -> None:
    endpoint = add_endpoint(store, ["fine_tuning.job.failed"])
    job = add_job(store)
    store.transition(job.id, JobStatus.FAILED, events=[])
    [delivery] = deliveries(store, endpoint)
    rotated = replace(endpoint, secret=new_secret(), previous_secret=endpoint.secret,
                      previous_secret_until=delivery.created_at + 100, updated_at=2)
    assert store.rotate_webhook_secret(rotated)
    assert store.get_webhook_endpoint(PROJECT, endpoint.id) == rotated
    [due] = store.due_webhook_deliveries(delivery.created_at + 1.0, limit=10)
    assert (due.secret, due.old_secret) == (rotated.secret, endpoint.secret)
    [later] = store.due_webhook_deliveries(delivery.created_at + 100.0, limit=10)
    assert (later.secret, later.old_secret) == (rotated.secret, None)
    assert not store.rotate_webhook_secret(replace(rotated, id="we_gone"))
