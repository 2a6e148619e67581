"""What many tests do, written once: upload a file (whole, or in parts through the Uploads API),
create a job, wait for a job's status.

Three kinds of caller, one group of functions each:

- HTTP: the in-process app's test client (``app.test_client()``) or an ``httpx`` client; the
  ``post_*`` functions give the raw response (for tests about errors), the others check the
  200 and give the object; ``expect_error`` checks an error response's envelope.
- The service, without HTTP (the worker tests): ``service_upload``, ``service_create_job``.
- The official ``openai`` SDK against a served app: ``sdk_upload``, ``sdk_create_job``,
  ``wait_for_status``, ``wait_until_finished``.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from tests.conftest import chat_lines
from tunegate.domain.catalog import EMBEDDED_MODEL_ID

if TYPE_CHECKING:  # the SDK is imported by the tests that use it, not by every test
    from openai import OpenAI
    from openai.types import FileObject
    from openai.types.fine_tuning import FineTuningJob

    from tunegate.api.service import Service

FINE_TUNE = "fine-tune"
TRAIN_NAME = "train.jsonl"
FINISHED = ("succeeded", "failed", "cancelled")


def _training(content: bytes | None) -> bytes:
    """The bytes to upload: ``content``, or 12 valid chat examples when none are given."""
    return chat_lines(12) if content is None else content


# HTTP: the test client or httpx ---------------------------------------------------------------


def post_file(client: Any, content: bytes | None = None, *, name: str = TRAIN_NAME,
              purpose: str = FINE_TUNE, headers: Mapping[str, str] | None = None) -> Any:
    """``POST /v1/files`` as a multipart form (12 chat examples by default); the response."""
    return client.post("/v1/files", headers=dict(headers or {}), data={"purpose": purpose},
                       files={"file": (name, _training(content))})


def upload(client: Any, content: bytes | None = None, *, name: str = TRAIN_NAME,
           purpose: str = FINE_TUNE, headers: Mapping[str, str] | None = None) -> str:
    """Upload a file that must be accepted; its id."""
    response = post_file(client, content, name=name, purpose=purpose, headers=headers)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def post_job(client: Any, *, headers: Mapping[str, str] | None = None, **fields: Any) -> Any:
    """``POST /v1/fine_tuning/jobs`` with ``fields`` (``model`` defaults to the embedded
    model); the response."""
    return client.post("/v1/fine_tuning/jobs", headers=dict(headers or {}),
                       json={"model": EMBEDDED_MODEL_ID, **fields})


def create_job(client: Any, training_file: str, *, headers: Mapping[str, str] | None = None,
               **fields: Any) -> dict[str, Any]:
    """Create a job that must be accepted; the job object."""
    response = post_job(client, headers=headers, training_file=training_file, **fields)
    assert response.status_code == 200, response.text
    return dict(response.json())


ANY = object()  # expect_error: any value


def expect_error(client: Any, response: Any, status: int, *, param: Any = ANY, code: Any = ANY,
                 says: str | None = None) -> dict[str, Any]:
    """Assert the envelope, status and request id; then that the server still serves."""
    assert response.status_code == status, response.text
    assert response.headers.get("x-request-id", "").startswith("req_")
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["error"]
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert error["type"] == ("server_error" if status >= 500 else "invalid_request_error")
    if status < 500:  # scripts branch on the code: every 4xx names one
        assert isinstance(error["code"], str) and error["code"], error
    if param is not ANY:
        assert error["param"] == param, error
    if code is not ANY:
        assert error["code"] == code, error
    if says is not None:
        assert says in error["message"], error
    assert client.get("/v1/models").status_code == 200
    return error


def post_upload(client: Any, size: int, *, filename: str = TRAIN_NAME, purpose: str = FINE_TUNE,
                headers: Mapping[str, str] | None = None, **fields: Any) -> Any:
    """``POST /v1/uploads`` for a file of ``size`` bytes; the response."""
    return client.post("/v1/uploads", headers=dict(headers or {}), json={
        "filename": filename, "purpose": purpose, "bytes": size, "mime_type": "text/jsonl",
        **fields})


def create_upload(client: Any, size: int, *, headers: Mapping[str, str] | None = None,
                  **fields: Any) -> str:
    """Start an upload that must be accepted; its id."""
    response = post_upload(client, size, headers=headers, **fields)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def post_part(client: Any, upload_id: str, data: bytes, *,
              headers: Mapping[str, str] | None = None) -> Any:
    """``POST /v1/uploads/{upload_id}/parts`` with ``data`` as the form's file part."""
    return client.post(f"/v1/uploads/{upload_id}/parts", headers=dict(headers or {}),
                       files={"data": ("blob", data, "application/octet-stream")})


def add_parts(client: Any, upload_id: str, content: bytes, part_size: int, *,
              headers: Mapping[str, str] | None = None) -> list[str]:
    """Send ``content`` as parts of ``part_size`` bytes, in order; the part ids."""
    part_ids = []
    for start in range(0, len(content), part_size):
        response = post_part(client, upload_id, content[start:start + part_size],
                             headers=headers)
        assert response.status_code == 200, response.text
        part_ids.append(str(response.json()["id"]))
    return part_ids


def post_complete(client: Any, upload_id: str, part_ids: list[str], *,
                  headers: Mapping[str, str] | None = None, **fields: Any) -> Any:
    """``POST /v1/uploads/{upload_id}/complete``; the response."""
    return client.post(f"/v1/uploads/{upload_id}/complete", headers=dict(headers or {}),
                       json={"part_ids": part_ids, **fields})


def upload_in_parts(client: Any, content: bytes | None = None, *, part_size: int = 512,
                    headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The whole Uploads API round (create, parts, complete), which must succeed; the
    completed upload (its ``file`` is the new file)."""
    content = _training(content)
    upload_id = create_upload(client, len(content), headers=headers)
    part_ids = add_parts(client, upload_id, content, part_size, headers=headers)
    response = post_complete(client, upload_id, part_ids, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


# The service, without HTTP --------------------------------------------------------------------


def service_upload(service: Service, content: bytes | None = None, *, project: str = "default",
                   name: str = TRAIN_NAME, purpose: str = FINE_TUNE,
                   expires_after_seconds: int | None = None) -> str:
    """Store a file through the service, as ``POST /v1/files`` does; its id."""
    from tunegate.api.service import Upload

    upload = Upload(name, io.BytesIO(_training(content)), purpose, expires_after_seconds)
    return service.files.upload(project, upload).id


def service_create_job(service: Service, training_file: str, *, project: str = "default",
                       **fields: Any) -> str:
    """Create a job through the service, as ``POST /v1/fine_tuning/jobs`` does; its id."""
    body = {"model": EMBEDDED_MODEL_ID, "training_file": training_file, **fields}
    return service.jobs.create(project, body).id


# The official openai SDK ----------------------------------------------------------------------


def sdk_upload(client: OpenAI, content: bytes, *, name: str = TRAIN_NAME,
               purpose: Any = FINE_TUNE) -> FileObject:
    """``client.files.create`` with ``content`` sent as a JSONL file called ``name``."""
    return client.files.create(file=(name, content, "application/jsonl"), purpose=purpose)


def sdk_create_job(client: OpenAI, training_file: str, **options: Any) -> FineTuningJob:
    """``client.fine_tuning.jobs.create`` on the embedded model."""
    return client.fine_tuning.jobs.create(model=EMBEDDED_MODEL_ID, training_file=training_file,
                                          **options)


def wait_for_status(client: OpenAI, job_id: str, *statuses: str, timeout: float = 30.0,
                    interval: float = 0.1,
                    passing: Collection[str] | None = None) -> FineTuningJob:
    """Poll ``retrieve`` until the job is in one of ``statuses``; the job then.

    With ``passing``, any other status seen on the way fails at once (a job that must go from
    ``validating_files`` straight to ``queued`` or ``failed``, say); after ``timeout`` seconds
    the wait fails naming the last status.
    """
    deadline = time.monotonic() + timeout
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in statuses:
            return job
        assert passing is None or job.status in passing, f"unexpected status {job.status}: {job}"
        assert time.monotonic() < deadline, (
            f"job {job_id} did not reach {statuses} in {timeout} s: last status {job.status}")
        time.sleep(interval)


def wait_until_finished(client: OpenAI, job_id: str, *, timeout: float = 900.0) -> FineTuningJob:
    """Wait for a training job to succeed, fail or be cancelled (polling every half second,
    not to slow the training it waits for); the job then."""
    return wait_for_status(client, job_id, *FINISHED, timeout=timeout, interval=0.5)


def until(predicate: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll ``predicate`` every 0.2 s until it gives something true, and return that; fail
    saying ``what`` was awaited after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")
