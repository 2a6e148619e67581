"""Each limit at its edge: the last request it allows passes, the first one over gets the
documented status (413 body size, 400 line length and example count, 429 active jobs and
request rate, both with ``Retry-After``), and a refusal stores nothing. Every 429 (a full model
queue's too) has the same ``type``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

from starlette.exceptions import HTTPException

from tests.api.conftest import ALICE, BOB
from tests.conftest import chat_lines
from tests.helpers import create_job, post_job, upload
from tunegate.api.app import create_app
from tunegate.api.errors import http_problem
from tunegate.api.rate_limit import RateLimiter
from tunegate.domain.catalog import EMBEDDED_MODEL_ID
from tunegate.domain.jobs import JobStatus, job_event
from tunegate.serving.pool import ModelBusy, ModelFiles
from tunegate.settings import Settings

BOUNDARY = "tunegate-limit-test"


def multipart(content: bytes, name: str = "train.jsonl") -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n"
            f"fine-tune\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{name}\"\r\nContent-Type: application/jsonl\r\n\r\n").encode() + \
        content + f"\r\n--{BOUNDARY}--\r\n".encode()


def post_multipart(client: Any, body: bytes, headers: dict[str, str] | None = None) -> Any:
    return client.post("/v1/files", content=body, headers={
        **(headers or {}), "content-type": f"multipart/form-data; boundary={BOUNDARY}"})


def jsonl_of_width(width: int, count: int = 1) -> bytes:
    """``count`` JSON object lines, each exactly ``width`` bytes before its newline."""
    line = json.dumps({"p": ""})
    padded = json.dumps({"p": "x" * (width - len(line))}).encode()
    assert len(padded) == width
    return (padded + b"\n") * count


def test_body_size_at_the_limit_passes_one_byte_more_is_413(settings: Settings) -> None:
    base = multipart(chat_lines(12))
    limit = len(base) + 10
    exactly = multipart(chat_lines(12) + b" " * 10)
    assert len(exactly) == limit
    with create_app(replace(settings, max_upload_bytes=limit),
                    validate_responses=True).test_client() as client:
        assert post_multipart(client, exactly).status_code == 200
        over = post_multipart(client, multipart(chat_lines(12) + b" " * 11))
        assert over.status_code == 413
        assert over.json()["error"]["code"] == "request_too_large"
        assert len(client.get("/v1/files").json()["data"]) == 1


def test_line_length_at_the_limit_passes_one_byte_more_is_400(settings: Settings) -> None:
    with create_app(replace(settings, max_line_bytes=300),
                    validate_responses=True).test_client() as client:
        assert post_multipart(client, multipart(jsonl_of_width(299, 3))).status_code == 200
        assert post_multipart(client, multipart(jsonl_of_width(300, 3))).status_code == 200
        over = post_multipart(client, multipart(jsonl_of_width(300) + jsonl_of_width(301)))
        assert over.status_code == 400
        error = over.json()["error"]
        assert (error["code"], error["param"]) == ("invalid_file_format", "file")
        assert "Line 2 is longer than 300 bytes" in error["message"]
        assert len(client.get("/v1/files").json()["data"]) == 2
        assert len(list(settings.files_dir.iterdir())) == 2  # the refused bytes are gone


def test_example_count_at_the_limit_passes_one_more_is_400(settings: Settings) -> None:
    with create_app(replace(settings, max_examples=12),
                    validate_responses=True).test_client() as client:
        assert post_multipart(client, multipart(chat_lines(11))).status_code == 200
        assert post_multipart(client, multipart(chat_lines(12) + b"\n\n")).status_code == 200
        over = post_multipart(client, multipart(chat_lines(13)))
        assert over.status_code == 400
        assert "more than 12 examples" in over.json()["error"]["message"]
        assert "TUNEGATE_MAX_EXAMPLES" in over.json()["error"]["message"]


def test_active_jobs_at_the_limit_pass_one_more_is_429_and_stores_nothing(
        keyed_settings: Settings) -> None:
    app = create_app(replace(keyed_settings, max_active_jobs=3), validate_responses=True)
    with app.test_client() as client:
        training = upload(client, headers=ALICE.headers)
        jobs = [post_job(client, headers=ALICE.headers, training_file=training) for _ in range(3)]
        assert [job.status_code for job in jobs] == [200, 200, 200]
        over = post_job(client, headers=ALICE.headers, training_file=training)
        assert over.status_code == 429
        assert over.headers["retry-after"] == "30"
        error = over.json()["error"]
        assert error["code"] == "too_many_active_jobs"
        assert "TUNEGATE_MAX_ACTIVE_JOBS" in error["message"]
        listed = client.get("/v1/fine_tuning/jobs", headers=ALICE.headers).json()["data"]
        assert len(listed) == 3  # nothing was committed: the SDK's resend cannot duplicate
        # Another project has its own budget; a finished job frees a place.
        bobs = upload(client, headers=BOB.headers)
        assert post_job(client, headers=BOB.headers, training_file=bobs).status_code == 200
        first = jobs[0].json()["id"]
        assert client.post(f"/v1/fine_tuning/jobs/{first}/cancel",
                           headers=ALICE.headers).status_code == 200
        assert post_job(client, headers=ALICE.headers, training_file=training).status_code == 200


def test_resume_counts_against_the_active_job_limit(keyed_settings: Settings) -> None:
    """A paused job holds no place; resuming it takes one, so it can be refused too."""
    app = create_app(replace(keyed_settings, max_active_jobs=2), validate_responses=True)
    store = app.state_service.store
    with app.test_client() as client:
        training = upload(client, headers=ALICE.headers)
        paused = post_job(client, headers=ALICE.headers, training_file=training).json()["id"]
        store.transition(paused, JobStatus.QUEUED, events=[job_event(paused, "queued")])
        assert client.post(f"/v1/fine_tuning/jobs/{paused}/pause",
                           headers=ALICE.headers).status_code == 200
        others = [post_job(client, headers=ALICE.headers, training_file=training) for _ in range(2)]
        assert [job.status_code for job in others] == [200, 200]
        resume = f"/v1/fine_tuning/jobs/{paused}/resume"
        refused = client.post(resume, headers=ALICE.headers)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "30"
        assert client.get(f"/v1/fine_tuning/jobs/{paused}",
                          headers=ALICE.headers).json()["status"] == "paused"
        client.post(f"/v1/fine_tuning/jobs/{others[0].json()['id']}/cancel", headers=ALICE.headers)
        assert client.post(resume, headers=ALICE.headers).json()["status"] == "queued"


def test_request_rate_at_the_limit_passes_one_more_is_429(keyed_settings: Settings) -> None:
    # A clock that stands still: the bucket refills only when the test says so, however long
    # the requests take on a busy machine.
    app = create_app(replace(keyed_settings, rate_limit=5), validate_responses=True,
                     rate=RateLimiter(5, clock=lambda: 0.0))
    with app.test_client() as client:
        answers = [client.get("/v1/models", headers=ALICE.headers).status_code for _ in range(5)]
        assert answers == [200] * 5
        over = client.get("/v1/models", headers=ALICE.headers)
        assert over.status_code == 429
        assert over.headers["retry-after"] == "12"  # one request back every 60/5 s
        assert over.json()["error"] == {
            "message": over.json()["error"]["message"], "type": "requests", "param": None,
            "code": "rate_limit_exceeded"}
        # Per key: another key still has its whole budget; the contract stays readable.
        assert client.get("/v1/models", headers=BOB.headers).status_code == 200
        assert client.get("/v1/openapi.json").status_code == 200


def test_the_bucket_refills_evenly() -> None:
    now = [100.0]
    limiter = RateLimiter(6, clock=lambda: now[0])  # one token every 10 s
    assert [limiter.take("k") for _ in range(6)] == [0] * 6
    assert limiter.take("k") == 10
    now[0] += 9.9
    assert limiter.take("k") == 1
    now[0] += 0.2
    assert limiter.take("k") == 0
    now[0] += 3600
    assert [limiter.take("k") for _ in range(7)] == [0] * 6 + [10]  # never above the burst
    assert RateLimiter(0).take("k") == 0  # 0 switches it off


class FullQueues:
    """Test fake for the app's model pool: every model's queue is already full."""

    @contextmanager
    def use(self, files: ModelFiles) -> Iterator[Any]:
        raise ModelBusy(f"16 requests are already running or waiting for {files.model_id}")
        yield  # a generator, as the real pool's lease is

    def evict(self, model_id: str) -> bool:
        return False

    def close(self) -> None:
        pass


def test_every_429_has_the_same_type_and_a_code_naming_its_limit(
        keyed_settings: Settings) -> None:
    """One rule (tunegate.errors.TooManyRequests): ``type: "requests"``, OpenAI's type for a
    rate limit on requests, whichever limit answered; the ``code`` tells them apart."""
    answers: dict[str, Any] = {}
    limited = create_app(replace(keyed_settings, rate_limit=1), validate_responses=True,
                         rate=RateLimiter(1, clock=lambda: 0.0))
    with limited.test_client() as client:
        client.get("/v1/models", headers=ALICE.headers)
        answers["request rate"] = client.get("/v1/models", headers=ALICE.headers)

    app = create_app(replace(keyed_settings, max_active_jobs=1), validate_responses=True)
    app.state_service.completions.pool = FullQueues()  # what generation runs on
    with app.test_client() as client:
        training = upload(client, headers=ALICE.headers)
        first = create_job(client, training, headers=ALICE.headers)["id"]
        answers["active jobs, on create"] = post_job(client, headers=ALICE.headers,
                                                     training_file=training)
        app.state_service.store.transition(first, JobStatus.QUEUED,
                                           events=[job_event(first, "queued")])
        assert client.post(f"/v1/fine_tuning/jobs/{first}/pause",
                           headers=ALICE.headers).status_code == 200
        create_job(client, training, headers=ALICE.headers)  # takes the paused job's place
        answers["active jobs, on resume"] = client.post(f"/v1/fine_tuning/jobs/{first}/resume",
                                                        headers=ALICE.headers)
        ask = {"model": EMBEDDED_MODEL_ID, "messages": [{"role": "user", "content": "Hi"}]}
        answers["model busy"] = client.post("/v1/chat/completions", headers=ALICE.headers,
                                            json=ask)
        answers["model busy, streamed"] = client.post(
            "/v1/chat/completions", headers=ALICE.headers, json={**ask, "stream": True})
        answers["model busy, text completion"] = client.post(
            "/v1/completions", headers=ALICE.headers,
            json={"model": EMBEDDED_MODEL_ID, "prompt": "Hi"})

    assert {name: answer.status_code for name, answer in answers.items()} == dict.fromkeys(
        answers, 429)
    errors = {name: answer.json()["error"] for name, answer in answers.items()}
    assert {name: error["type"] for name, error in errors.items()} == dict.fromkeys(
        answers, "requests")
    assert {name: error["code"] for name, error in errors.items()} == {
        "request rate": "rate_limit_exceeded",
        "active jobs, on create": "too_many_active_jobs",
        "active jobs, on resume": "too_many_active_jobs",
        "model busy": "model_busy",
        "model busy, streamed": "model_busy",
        "model busy, text completion": "model_busy",
    }
    # A 429 that did not come from one of our limits would be mapped the same way.
    request = SimpleNamespace(method="GET", url=SimpleNamespace(path="/v1/models"))
    mapped = http_problem(request, HTTPException(429))  # type: ignore[arg-type]
    assert json.loads(mapped.body)["error"]["type"] == "requests"
