"""Every error path answers OpenAI's envelope, and the server keeps serving afterwards.

Each error is ``{"error": {"message", "type", "param", "code"}}`` (all four keys), with the right
status and an ``x-request-id``; after each bad request a ``GET /v1/models`` still answers 200.
The gateway-mode 501 (the seed's fixed body), ``x-should-retry: false`` on a failed create,
the bodyless SDK-style POST and the pagination rules live here too.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import pytest

from tests.conftest import chat_lines
from tests.helpers import (
    create_job,
    expect_error,
    post_file,
    post_job,
    service_upload,
    upload,
)
from tunegate import ids
from tunegate.api.app import build_service, create_app
from tunegate.api.middleware import GATEWAY_DETAIL
from tunegate.api.service import Service
from tunegate.domain.catalog import EMBEDDED_MODEL_ID
from tunegate.domain.jobs import JobStatus
from tunegate.settings import Settings

# ---------------------------------------------------------------------------- unknown things


@pytest.mark.parametrize(("method", "path", "param"), [
    ("GET", "/v1/fine_tuning/jobs/ftjob-nope", "fine_tuning_job_id"),
    ("POST", "/v1/fine_tuning/jobs/ftjob-nope/cancel", "fine_tuning_job_id"),
    ("POST", "/v1/fine_tuning/jobs/ftjob-nope/pause", "fine_tuning_job_id"),
    ("POST", "/v1/fine_tuning/jobs/ftjob-nope/resume", "fine_tuning_job_id"),
    ("GET", "/v1/fine_tuning/jobs/ftjob-nope/events", "fine_tuning_job_id"),
    ("GET", "/v1/fine_tuning/jobs/ftjob-nope/checkpoints", "fine_tuning_job_id"),
    ("GET", "/v1/files/file-nope", "file_id"),
    ("DELETE", "/v1/files/file-nope", "file_id"),
    ("GET", "/v1/files/file-nope/content", "file_id"),
    ("GET", f"/v1/models/ft:{EMBEDDED_MODEL_ID}:org-local::abc12345", "model"),
    ("DELETE", f"/v1/models/ft:{EMBEDDED_MODEL_ID}:org-local::abc12345", "model"),
])
def test_unknown_ids_are_404(client: Any, method: str, path: str, param: str) -> None:
    error = expect_error(client, client.request(method, path), 404, param=param)
    assert path.rsplit("/", 1)[-1] in error["message"] or "nope" in error["message"]


@pytest.mark.parametrize("path", ["/v1/nope", "/nope", "/v1/fine_tuning/jobs/ftjob-x/nope"])
def test_unknown_url_is_404(client: Any, path: str) -> None:
    expect_error(client, client.get(path), 404, param=None, says=path)


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("PUT", "/v1/files", {"GET", "HEAD", "POST"}),
    ("PATCH", "/v1/files/file-x", {"GET", "HEAD", "DELETE"}),
    ("DELETE", "/v1/fine_tuning/jobs/ftjob-x/cancel", {"POST"}),
    ("POST", "/v1/models", {"GET", "HEAD"}),
    ("PUT", "/v1/fine_tuning/jobs", {"GET", "HEAD", "POST"}),
])
def test_wrong_method_is_405_with_allow(client: Any, method: str, path: str,
                                         allowed: set[str]) -> None:
    response = client.request(method, path)
    expect_error(client, response, 405, param=None, says=method)
    assert {m.strip() for m in response.headers["allow"].split(",")} == allowed


# ------------------------------------------------------------------------------ bad bodies


def test_wrong_content_type_is_415(client: Any) -> None:
    response = client.post("/v1/fine_tuning/jobs", content=b"model=x",
                           headers={"content-type": "text/plain"})
    error = expect_error(client, response, 415, says="text/plain",
                         code="unsupported_media_type")
    assert "application/json" in error["message"] and "[" not in error["message"]
    error = expect_error(client, client.post("/v1/fine_tuning/jobs", content=b"x",
                                             headers={"content-type": ""}), 415)
    assert error["message"].endswith("application/json; the request has no Content-Type.")
    error = expect_error(client, client.post("/v1/files", json={"purpose": "fine-tune"}), 415)
    assert error["message"] == ("This operation reads a body of type multipart/form-data; the "
                                "request's Content-Type is application/json.")


def test_non_utf8_json_body_is_400(client: Any) -> None:
    response = client.post("/v1/fine_tuning/jobs", content=b'{"model": "\xff\xfe"}',
                           headers={"content-type": "application/json"})
    expect_error(client, response, 400, says="utf-8")


def test_invalid_json_is_400(client: Any) -> None:
    response = client.post("/v1/fine_tuning/jobs", content=b'{"model": ',
                           headers={"content-type": "application/json"})
    expect_error(client, response, 400, says="not valid JSON")


@pytest.mark.parametrize(("fields", "param"), [
    ({"suffix": "a" * 65}, "suffix"),
    ({"suffix": "has:colon"}, "suffix"),
    ({"method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 0}}}},
     "method.supervised.hyperparameters.n_epochs"),
    ({"method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 3}}}},
     "method.dpo.hyperparameters.beta"),
    ({"seed": -1}, "seed"),
    ({"training_file": 7}, "training_file"),
])
def test_schema_errors_name_the_field(client: Any, fields: dict[str, Any], param: str) -> None:
    body = {"training_file": "file-x", **fields}
    expect_error(client, post_job(client, **body), 400, param=param)


def test_missing_required_field_is_named(client: Any) -> None:
    expect_error(client, post_job(client), 400, param="training_file")


@pytest.mark.parametrize(("path", "param"), [
    ("/v1/fine_tuning/jobs?limit=0", "limit"),
    ("/v1/files?limit=10001", "limit"),
    ("/v1/files?order=sideways", "order"),
    ("/v1/fine_tuning/jobs?after=file-abc", "after"),
    ("/v1/files?after=ftjob-abc", "after"),
    ("/v1/fine_tuning/jobs/ftjob-x/events?after=nope", "after"),
    ("/v1/fine_tuning/jobs/ftjob-x/checkpoints?after=ftevent-x", "after"),
])
def test_query_errors_name_the_parameter(client: Any, path: str, param: str) -> None:
    expect_error(client, client.get(path), 400, param=param)


@pytest.mark.parametrize(("query", "param"), [
    ("limit=3&limit=4", "limit"),
    ("after=ftjob-a&after=ftjob-b", "after"),
    ("metadata%5Bteam%5D=a&metadata%5Bteam%5D=b", "metadata"),
])
def test_a_query_parameter_given_twice_is_400(client: Any, query: str, param: str) -> None:
    """connexion would silently keep one of the values; the client meant something else."""
    response = client.get(f"/v1/fine_tuning/jobs?{query}")
    expect_error(client, response, 400, param=param, says="more than once")
    assert client.get("/v1/fine_tuning/jobs?metadata%5Ba%5D=1&metadata%5Bb%5D=2").status_code == 200


def test_a_form_field_given_twice_is_400(client: Any) -> None:
    response = client.post("/v1/files", data={"purpose": ["batch", "fine-tune"]},
                           files={"file": ("a.jsonl", chat_lines(12))})
    expect_error(client, response, 400, param="purpose", says="more than once")
    response = client.post("/v1/files", data={"purpose": "batch"}, files=[
        ("file", ("a.jsonl", chat_lines(12))), ("file", ("b.jsonl", chat_lines(1)))])
    expect_error(client, response, 400, param="file")
    assert client.get("/v1/files").json()["data"] == []


@pytest.mark.parametrize(("content", "content_type"), [
    (b"garbage", "multipart/form-data; boundary=xyz"),
    (b"--xyz\r\nContent-Disposition: form-data; name=\"file\"\r\n", "multipart/form-data; "
                                                                       "boundary=xyz"),
    (b"--xyz--\r\n", "multipart/form-data"),  # no boundary in the header
])
def test_malformed_multipart_is_400(client: Any, content: bytes, content_type: str) -> None:
    response = client.post("/v1/files", content=content, headers={"content-type": content_type})
    expect_error(client, response, 400)


def test_upload_without_purpose_is_400(client: Any) -> None:
    response = client.post("/v1/files", files={"file": ("a.jsonl", chat_lines(12))})
    expect_error(client, response, 400, param="purpose")


def test_upload_with_unknown_purpose_is_400(client: Any) -> None:
    expect_error(client, post_file(client, purpose="training"), 400, param="purpose")


def test_fine_tune_upload_that_is_not_jsonl_names_the_line(client: Any) -> None:
    content = chat_lines(3) + b"[1, 2, 3]\n" + chat_lines(2)
    error = expect_error(client, post_file(client, content), 400, param="file",
                         code="invalid_file_format")
    assert "Line 4" in error["message"]
    error = expect_error(client, post_file(client, chat_lines(2) + b"{not json\n"), 400)
    assert "Line 3" in error["message"]
    # Nothing of a refused upload is visible.
    assert client.get("/v1/files").json()["data"] == []


def test_garbage_bytes_upload_is_400(client: Any) -> None:
    error = expect_error(client, post_file(client, bytes(range(256)) * 4), 400, param="file")
    assert "Line 1" in error["message"]


def test_empty_fine_tune_file_is_400(client: Any) -> None:
    expect_error(client, post_file(client, b"", name="empty.jsonl"), 400, param="file",
                 says="empty")


def test_huge_single_line(client: Any, settings: Settings) -> None:
    # A 2 MB line that is not JSON: refused, naming line 1.
    huge = b"x" * (2 * 1024 * 1024)
    expect_error(client, post_file(client, huge), 400, param="file", says="Line 1")
    # A line over the limit is refused without being read whole (limit made small).
    with create_app(replace(settings, max_line_bytes=1024)).test_client() as small:
        line = json.dumps({"messages": [{"role": "user", "content": "y" * 4096}]}).encode()
        expect_error(small, post_file(small, chat_lines(1) + line + b"\n"), 400, param="file",
                     says="Line 2 is longer than 1024 bytes")


def test_oversize_upload_is_413_before_the_body_is_read(settings: Settings) -> None:
    app = create_app(replace(settings, max_upload_bytes=1024), validate_responses=True)
    reads = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x" * 4096, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/files", "raw_path": b"/v1/files", "query_string": b"",
        "root_path": "", "server": ("testserver", 80), "client": ("testclient", 1),
        "headers": [(b"host", b"testserver"), (b"content-length", b"4096"),
                    (b"content-type", b"multipart/form-data; boundary=xyz")],
    }
    asyncio.run(app(scope, receive, send))
    assert reads == 0
    start = sent[0]
    headers = {key.decode(): value.decode() for key, value in start["headers"]}
    assert start["status"] == 413
    assert headers["x-request-id"].startswith("req_")
    error = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "1024" in error["message"] and error["type"] == "invalid_request_error"
    # The same app keeps serving, and a body under the limit goes through.
    with app.test_client() as client:
        expect_error(client, post_file(client, chat_lines(40)), 413)
        assert post_file(client, chat_lines(3)).status_code == 200


# ------------------------------------------------------------------------ job creation rules


def test_unknown_training_file_is_400(client: Any) -> None:
    response = post_job(client, training_file="file-doesnotexist")
    expect_error(client, response, 400, param="training_file", says="file-doesnotexist")


def test_wrong_purpose_training_file_is_400(client: Any) -> None:
    file_id = upload(client, b"a,b\n1,2\n", purpose="assistants", name="table.csv")
    expect_error(client, post_job(client, training_file=file_id), 400,
                 param="training_file", says="purpose")


def test_unknown_validation_file_is_400(client: Any) -> None:
    response = post_job(client, training_file=upload(client),
                          validation_file="file-gone")
    expect_error(client, response, 400, param="validation_file")


def test_unknown_model_lists_the_available_ones(client: Any) -> None:
    response = post_job(client, model="gpt-9", training_file=upload(client))
    expect_error(client, response, 400, param="model", code="model_not_available",
                 says=EMBEDDED_MODEL_ID)


def test_both_hyperparameter_places_is_400(client: Any) -> None:
    method = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}}
    response = post_job(client, training_file=upload(client), method=method,
                          hyperparameters={"n_epochs": 3})
    expect_error(client, response, 400, param="hyperparameters")


def test_legacy_hyperparameters_with_dpo_is_400(client: Any) -> None:
    response = post_job(client, training_file=upload(client), method={"type": "dpo"},
                          hyperparameters={"n_epochs": 3})
    expect_error(client, response, 400, param="hyperparameters")


def test_metadata_key_over_64_characters_is_400(client: Any) -> None:
    file_id = upload(client)
    response = post_job(client, training_file=file_id, metadata={"k" * 65: "v"})
    expect_error(client, response, 400, param="metadata")
    assert post_job(client, training_file=file_id, metadata={"k" * 64: "v"}).status_code == 200


def test_too_many_metadata_pairs_is_400(client: Any) -> None:
    metadata = {f"key{i}": "v" for i in range(17)}
    response = post_job(client, training_file=upload(client), metadata=metadata)
    expect_error(client, response, 400, param="metadata")


# ---------------------------------------------------------------------------- state conflicts


def test_cancel_of_a_cancelled_job_is_409(client: Any) -> None:
    job = create_job(client, upload(client))
    cancelled = client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    response = client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel")
    expect_error(client, response, 409, param="fine_tuning_job_id", code="invalid_job_status",
                 says="cancelled")
    assert response.headers["x-should-retry"] == "false"


def test_pause_and_resume_of_a_validating_job_are_409(client: Any) -> None:
    job = create_job(client, upload(client))
    assert job["status"] == "validating_files"  # no worker in this app
    for action in ("pause", "resume"):
        response = client.post(f"/v1/fine_tuning/jobs/{job['id']}/{action}")
        expect_error(client, response, 409, param="fine_tuning_job_id", says="validating_files")
    # Neither moved it: in particular resume did not skip file validation.
    assert client.get(f"/v1/fine_tuning/jobs/{job['id']}").json()["status"] == "validating_files"


def test_pause_and_resume_follow_the_table(app: Any, client: Any) -> None:
    job = create_job(client, upload(client))
    # Stand in for the worker that validated the files (this app runs none).
    app.state_service.store.transition(job["id"], JobStatus.QUEUED, events=[])
    base = f"/v1/fine_tuning/jobs/{job['id']}"
    expect_error(client, client.post(f"{base}/resume"), 409, says="queued")
    paused = client.post(f"{base}/pause")
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    expect_error(client, client.post(f"{base}/pause"), 409, says="paused")
    resumed = client.post(f"{base}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "queued"
    messages = [e["message"] for e in client.get(f"{base}/events").json()["data"]]
    assert messages[:2] == ["Fine-tuning job resumed, moving job to queued state",
                            "Fine-tuning job paused"]


def test_delete_of_a_file_used_by_an_active_job_is_409(client: Any) -> None:
    file_id = upload(client)
    job = create_job(client, file_id)
    response = client.delete(f"/v1/files/{file_id}")
    expect_error(client, response, 409, param="file_id", code="file_in_use", says=job["id"])
    assert client.get(f"/v1/files/{file_id}").status_code == 200
    # Once the job is over, the file can go.
    assert client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel").status_code == 200
    assert client.delete(f"/v1/files/{file_id}").json() == {
        "id": file_id, "object": "file", "deleted": True}


def test_delete_of_a_base_model_is_400(client: Any) -> None:
    response = client.delete(f"/v1/models/{EMBEDDED_MODEL_ID}")
    expect_error(client, response, 400, param="model", code="base_model_not_deletable")
    assert client.get(f"/v1/models/{EMBEDDED_MODEL_ID}").status_code == 200


# ------------------------------------------------------------- SDK habits and server failures


@pytest.mark.parametrize("action", ["cancel", "pause", "resume"])
def test_bodyless_json_post_is_accepted(client: Any, action: str) -> None:
    """The SDK sends ``Content-Type: application/json`` and no body to cancel/pause/resume."""
    job = create_job(client, upload(client))
    response = client.post(f"/v1/fine_tuning/jobs/{job['id']}/{action}",
                           headers={"content-type": "application/json"})
    if action == "cancel":
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "cancelled"
    else:  # reaches the handler: the state rule answers, not the body parser
        expect_error(client, response, 409, code="invalid_job_status")


FINE_TUNING_OPERATIONS = [
    ("POST", "/v1/fine_tuning/jobs", {"model": EMBEDDED_MODEL_ID, "training_file": "file-x"}),
    ("GET", "/v1/fine_tuning/jobs", None),
    ("GET", "/v1/fine_tuning/jobs/ftjob-x", None),
    ("POST", "/v1/fine_tuning/jobs/ftjob-x/cancel", None),
    ("POST", "/v1/fine_tuning/jobs/ftjob-x/pause", None),
    ("POST", "/v1/fine_tuning/jobs/ftjob-x/resume", None),
    ("GET", "/v1/fine_tuning/jobs/ftjob-x/events", None),
    ("GET", "/v1/fine_tuning/jobs/ftjob-x/checkpoints", None),
    ("POST", "/v1/fine_tuning/checkpoints/ft:x:y::z/permissions", {"project_ids": ["p"]}),
    ("GET", "/v1/fine_tuning/checkpoints/ft:x:y::z/permissions", None),
    ("DELETE", "/v1/fine_tuning/checkpoints/ft:x:y::z/permissions/cp_x", None),
    ("POST", "/v1/fine_tuning/alpha/graders/run", {"grader": {"type": "x"}, "model_sample": ""}),
    ("POST", "/v1/fine_tuning/alpha/graders/validate", {"grader": {"type": "x"}}),
]


def test_gateway_mode_answers_501_on_all_fine_tuning_operations(settings: Settings) -> None:
    app = create_app(replace(settings, fine_tuning=False), validate_responses=True)
    with app.test_client() as client:
        for method, path, body in FINE_TUNING_OPERATIONS:
            response = client.request(method, path, json=body)
            assert response.status_code == 501, (method, path, response.text)
            assert response.json() == {"detail": GATEWAY_DETAIL}
            assert response.json() == {
                "detail": "Fine-tuning is not implemented in the local llama.cpp gateway"}
            assert response.headers["x-request-id"].startswith("req_")
        # Files and models keep working.
        file_id = upload(client)
        assert client.get(f"/v1/files/{file_id}").status_code == 200
        assert client.get(f"/v1/files/{file_id}/content").content == chat_lines(12)
        assert client.get("/v1/files").json()["data"][0]["id"] == file_id
        assert client.delete(f"/v1/files/{file_id}").status_code == 200
        assert EMBEDDED_MODEL_ID in [m["id"] for m in client.get("/v1/models").json()["data"]]
        assert client.get(f"/v1/models/{EMBEDDED_MODEL_ID}").status_code == 200


class FailingStore:
    """A fake store whose writes of new jobs and files fail, as a broken disk would."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def create_job(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk I/O error (fake)")

    def add_file(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk I/O error (fake)")


def test_5xx_on_create_tells_the_sdk_not_to_retry(settings: Settings) -> None:
    real = build_service(settings)
    seeded = service_upload(real, project=settings.project_id)
    service = Service(settings, FailingStore(real.store), real.storage)  # type: ignore[arg-type]
    app = create_app(settings, service=service, validate_responses=True)
    with app.test_client(raise_server_exceptions=False) as client:
        response = post_job(client, training_file=seeded)
        error = expect_error(client, response, 500, param=None)
        assert "disk" not in error["message"]  # internals stay in the log
        assert response.headers["x-should-retry"] == "false"
        response = post_file(client)
        expect_error(client, response, 500)
        assert response.headers["x-should-retry"] == "false"
        # The failed upload left no bytes behind.
        assert [path.name for path in settings.files_dir.iterdir()] == [seeded]
        assert client.get("/v1/fine_tuning/jobs").json()["data"] == []
    real.store.close()


# ------------------------------------------------------------------------------- pagination


def test_after_the_last_id_is_an_empty_page(client: Any) -> None:
    job = create_job(client, upload(client))
    files = client.get("/v1/files").json()["data"]
    events = client.get(f"/v1/fine_tuning/jobs/{job['id']}/events").json()["data"]
    for path, last in [("/v1/fine_tuning/jobs", job["id"]), ("/v1/files", files[-1]["id"]),
                       (f"/v1/fine_tuning/jobs/{job['id']}/events", events[-1]["id"])]:
        page = client.get(path, params={"after": last}).json()
        assert page["data"] == [] and page["has_more"] is False, (path, page)
        assert page["first_id"] is None and page["last_id"] is None


def test_limit_and_has_more_page_through_jobs(client: Any) -> None:
    file_id = upload(client)
    created = [create_job(client, file_id)["id"] for _ in range(5)]
    newest_first = created[::-1]
    seen: list[str] = []
    after = None
    while True:
        params = {"limit": 2, **({"after": after} if after else {})}
        page = client.get("/v1/fine_tuning/jobs", params=params).json()
        assert len(page["data"]) <= 2
        seen += [job["id"] for job in page["data"]]
        if not page["has_more"]:
            break
        assert len(page["data"]) == 2 and page["last_id"] == page["data"][-1]["id"]
        after = page["last_id"]
    assert seen == newest_first


def test_unknown_well_formed_after_keeps_its_place(client: Any) -> None:
    file_id = upload(client)
    older = create_job(client, file_id)["id"]
    cursor = ids.new_id(ids.JOB)  # made between the two jobs, never stored
    newer = create_job(client, file_id)["id"]
    page = client.get("/v1/fine_tuning/jobs", params={"after": cursor}).json()
    assert [job["id"] for job in page["data"]] == [older]
    assert newer not in [job["id"] for job in page["data"]]


def test_deleted_file_cursor_keeps_its_place_in_both_orders(client: Any) -> None:
    first, middle, last = (upload(client) for _ in range(3))
    assert client.delete(f"/v1/files/{middle}").status_code == 200
    desc = client.get("/v1/files", params={"after": middle}).json()
    assert [f["id"] for f in desc["data"]] == [first] and desc["has_more"] is False
    asc = client.get("/v1/files", params={"after": middle, "order": "asc"}).json()
    assert [f["id"] for f in asc["data"]] == [last] and asc["has_more"] is False


def test_files_order_limit_and_has_more(client: Any) -> None:
    uploaded = [upload(client) for _ in range(4)]
    desc = client.get("/v1/files").json()
    assert [f["id"] for f in desc["data"]] == uploaded[::-1] and desc["has_more"] is False
    asc = client.get("/v1/files", params={"order": "asc"}).json()
    assert [f["id"] for f in asc["data"]] == uploaded
    page = client.get("/v1/files", params={"order": "asc", "limit": 3}).json()
    assert [f["id"] for f in page["data"]] == uploaded[:3] and page["has_more"] is True
    assert (page["first_id"], page["last_id"]) == (uploaded[0], uploaded[2])
    rest = client.get("/v1/files", params={"order": "asc", "limit": 3,
                                          "after": page["last_id"]}).json()
    assert [f["id"] for f in rest["data"]] == uploaded[3:] and rest["has_more"] is False
    assert client.get("/v1/files", params={"purpose": "assistants"}).json()["data"] == []


def test_malformed_after_is_400(client: Any) -> None:
    for path in ("/v1/fine_tuning/jobs", "/v1/files"):
        expect_error(client, client.get(path, params={"after": "not-an-id"}), 400,
                     param="after")


def test_metadata_filter_takes_any_key(client: Any) -> None:
    """Keys with '"' or NUL once made SQLite's JSON path fail: a 500 for a valid filter."""
    file_id = upload(client)
    tagged = create_job(client, file_id, metadata={'team "a"': "x", "plain": "y"})["id"]
    create_job(client, file_id, metadata={"plain": "z"})
    for params, expected in [({'metadata[team "a"]': "x"}, [tagged]),
                             ({"metadata[plain]": "y"}, [tagged]),
                             ({"metadata[a\x00b]": "x"}, []),
                             ({'metadata[team "a"]': "x", "metadata[plain]": "z"}, [])]:
        response = client.get("/v1/fine_tuning/jobs", params=params)
        assert response.status_code == 200, (params, response.text)
        assert [job["id"] for job in response.json()["data"]] == expected, params
