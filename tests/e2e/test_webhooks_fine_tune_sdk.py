"""Issue 32's proof that a job's success is told: the session's real fine-tune
(tests/finetuned.py, a job that trains SmolLM2 to its end) had three webhook endpoints
registered before it was created, each with its own receiver on 127.0.0.1. The success reaches
each endpoint subscribed to ``fine_tuning.job.succeeded`` exactly once, verified by the official
SDK's ``client.webhooks.unwrap`` with that endpoint's secret as it arrived, and the endpoint
subscribed only to other events gets nothing.

The receivers run the whole session, so each message of the job is checked by its content (its
``data.id`` and ``webhook-id``), not by its arrival time.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.finetuned import FineTune
from tests.helpers import until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SETTLE = 3.0  # seconds after the first arrival in which a duplicate would arrive (1 s polls)


def test_a_real_jobs_success_arrives_once_per_subscribed_endpoint(fine_tune: FineTune) -> None:
    job = fine_tune.job
    subscribed = [fine_tune.webhooks["success"], fine_tune.webhooks["job_ends"]]
    for subscriber in subscribed:
        subscriber.receiver.wait_for(1, timeout=60)
    time.sleep(SETTLE)

    for subscriber in subscribed:
        events = subscriber.receiver.verified_events()  # raises unless each verified
        assert [(event.type, event.data.id) for event in events] == [
            ("fine_tuning.job.succeeded", job.id)], subscriber.endpoint_id
        [event] = events
        assert event.object == "event" and event.id.startswith("evt_")
        assert event.created_at >= job.created_at
    # One event, one delivery per endpoint: the same event id, each with its own webhook-id.
    [first], [second] = (s.receiver.received for s in subscribed)
    assert json.loads(first.body)["id"] == json.loads(second.body)["id"]
    assert first.headers["webhook-id"] != second.headers["webhook-id"]
    assert fine_tune.webhooks["other"].receiver.received == []

    # The server lists each as delivered on the first attempt, under the id the receiver saw.
    for subscriber, received in zip(subscribed, (first, second), strict=True):
        def delivered(endpoint: str = subscriber.endpoint_id) -> list[dict[str, object]]:
            page = fine_tune.client.get(f"/webhook_endpoints/{endpoint}/deliveries",
                                        cast_to=object)
            rows = list(page["data"])  # type: ignore[index]
            return rows if rows and rows[0]["status"] == "delivered" else []
        [row] = until(delivered, "the delivery recorded")
        assert row["id"] == received.headers["webhook-id"] and row["attempts"] == 1
        assert row["data_id"] == job.id and row["last_status_code"] == 200
    other = fine_tune.webhooks["other"].endpoint_id
    assert fine_tune.client.get(f"/webhook_endpoints/{other}/deliveries",
                                cast_to=object)["data"] == []  # type: ignore[index]
