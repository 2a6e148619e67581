"""``GET /metrics`` in process: Prometheus' text format read back with prometheus_client's own
parser, job counts by status and method equal to what the jobs list says, the queue's depth and
age, webhook deliveries by outcome, request counts and latency by operationId and status, and
with keys configured only an admin key may scrape."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import ADMIN, ALICE, write_keys_file
from tests.helpers import create_job, upload
from tunegate.api.app import create_app
from tunegate.settings import Settings


def scrape(client: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Sample name and labels -> value, parsed by prometheus_client."""
    answer = client.get("/metrics", headers=headers or {})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.headers["x-request-id"].startswith("req_")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(answer.text)
            for sample in family.samples}


def test_job_counts_match_the_api_and_requests_are_counted(client: Any) -> None:
    file_id = upload(client)
    jobs = [create_job(client, file_id) for _ in range(3)]
    client.post(f"/v1/fine_tuning/jobs/{jobs[0]['id']}/cancel")
    client.get("/v1/fine_tuning/jobs/ftjob-missing")
    figures = scrape(client)
    listed = client.get("/v1/fine_tuning/jobs?limit=100").json()["data"]
    by_status: dict[str, int] = {}
    for job in listed:
        by_status[job["status"]] = by_status.get(job["status"], 0) + 1
    counted = {labels[1][1]: value for (name, labels), value in figures.items()
               if name == "tunegate_fine_tuning_jobs"}
    assert counted == by_status == {"cancelled": 1, "validating_files": 2}
    assert figures[("tunegate_fine_tuning_jobs",
                    (("method", "supervised"), ("status", "cancelled")))] == 1
    assert figures[("tunegate_queue_depth", ())] == 2
    assert figures[("tunegate_queue_oldest_age_seconds", ())] >= 0
    assert figures[("tunegate_serving_processes", ())] == 0  # no chat yet: nothing started
    key = (("operation", "createFineTuningJob"), ("status", "200"))
    assert figures[("tunegate_http_requests_total", key)] == 3
    assert figures[("tunegate_http_request_duration_seconds_count", key)] == 3
    missing = (("operation", "retrieveFineTuningJob"), ("status", "404"))
    assert figures[("tunegate_http_requests_total", missing)] == 1


def test_only_an_admin_key_scrapes_when_keys_are_on(settings: Settings, tmp_path: Any) -> None:
    keyed = replace(settings, keys_file=write_keys_file(tmp_path / "keys.json"), rate_limit=0)
    app = create_app(keyed, validate_responses=True)
    with app.test_client() as client:
        assert client.get("/metrics").status_code == 401
        refused = client.get("/metrics", headers=ALICE.headers)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "admin_key_required"
        figures = scrape(client, ADMIN.headers)
        assert figures[("tunegate_queue_depth", ())] == 0
        assert ("tunegate_http_requests_total",
                (("operation", "none"), ("status", "401"))) not in figures  # scrapes not counted
    app.state_service.inference.close()
