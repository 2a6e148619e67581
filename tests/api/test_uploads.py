"""The Uploads API in process (issue 14): a file sent in parts becomes a normal file.

OpenAI's rules (openai/openai-openapi, ``/uploads`` paths): parts of at most 64 MB, an upload of at
most 8 GB that expires an hour after it was created, parts joined in the order ``complete`` names
them, their total equal to the declared ``bytes``, the optional md5 checked. tunegate answers a
refusal at completion with 400 and keeps the upload pending; an upload that is no longer pending
gets 409 ``invalid_upload_status`` (OpenAI documents no status for it; 409 is tunegate's answer
to every state clash, as for jobs).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import tracemalloc
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from tests.api.test_disk_full import FakeDiskUsage, expect_full
from tests.api.test_errors import expect_error
from tests.conftest import chat_lines
from tests.helpers import (
    add_parts,
    create_job,
    create_upload,
    post_complete,
    post_part,
    post_upload,
    upload_in_parts,
)
from tunegate.api import uploads as api_uploads
from tunegate.api.app import create_app
from tunegate.domain import uploads as domain_uploads
from tunegate.domain.uploads import MAX_PART_BYTES, UPLOAD_LIFETIME_SECONDS
from tunegate.settings import Settings

CONTENT = chat_lines(40)  # 40 valid examples, ~4.8 kB


def part_folder(settings: Settings, upload_id: str) -> list[str]:
    folder = settings.uploads_dir / upload_id
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


# ----------------------------------------------------------------------------- the happy path


def test_parts_make_one_file_usable_by_a_job(client: Any, settings: Settings) -> None:
    created = post_upload(client, len(CONTENT), filename="dir/big.jsonl")
    assert created.status_code == 200, created.text
    upload = created.json()
    assert upload["status"] == "pending" and upload["file"] is None
    assert upload["object"] == "upload" and upload["id"].startswith("upload_")
    assert upload["filename"] == "big.jsonl"  # cleaned as on POST /files
    assert upload["expires_at"] == upload["created_at"] + UPLOAD_LIFETIME_SECONDS
    part_ids = add_parts(client, upload["id"], CONTENT, 1000)
    assert len(part_ids) == 5
    assert part_folder(settings, upload["id"]) == sorted(part_ids)  # parts on disk, own folder
    completed = post_complete(client, upload["id"], part_ids,
                              md5=hashlib.md5(CONTENT).hexdigest().upper())
    assert completed.status_code == 200, completed.text
    body = completed.json()
    assert body["status"] == "completed" and body["id"] == upload["id"]
    file = body["file"]
    assert (file["bytes"], file["filename"], file["purpose"]) == (len(CONTENT), "big.jsonl",
                                                                  "fine-tune")
    assert client.get(f"/v1/files/{file['id']}").json() == file
    assert client.get(f"/v1/files/{file['id']}/content").content == CONTENT
    assert not (settings.uploads_dir / upload["id"]).exists()  # parts gone with completion
    assert create_job(client, file["id"])["training_file"] == file["id"]


def test_the_file_expires_as_expires_after_says(client: Any) -> None:
    upload_id = create_upload(client, len(CONTENT),
                              expires_after={"anchor": "created_at", "seconds": 7200})
    completed = post_complete(client, upload_id, add_parts(client, upload_id, CONTENT, 2000))
    file = completed.json()["file"]
    assert file["expires_at"] == file["created_at"] + 7200


def test_parts_are_joined_in_the_order_given(client: Any) -> None:
    content = b"".join(f'{{"n": {i}}}\n'.encode() for i in range(30))
    upload_id = create_upload(client, len(content), purpose="batch")
    part_ids = add_parts(client, upload_id, content, 100)
    intended = hashlib.md5(content).hexdigest()
    # Out of order the bytes differ: the md5 of the intended file says so, and nothing changes.
    shuffled = part_ids[1:] + part_ids[:1]
    expect_error(client, post_complete(client, upload_id, shuffled, md5=intended), 400,
                 param="md5", code="md5_mismatch", says="out of order")
    # Without an md5 the order given is the order of the file.
    completed = post_complete(client, upload_id, shuffled).json()
    stored = client.get(f"/v1/files/{completed['file']['id']}/content").content
    assert stored == content[100:] + content[:100]


def test_a_text_field_is_a_part_too(client: Any) -> None:
    # OpenAI's own example sends `-F data="..."`: a plain field, taken as its UTF-8 bytes.
    text = '{"a": "é"}\n'
    upload_id = create_upload(client, len(text.encode()), purpose="batch")
    part = client.post(f"/v1/uploads/{upload_id}/parts", files={"data": (None, text)})
    assert part.status_code == 200, part.text
    completed = post_complete(client, upload_id, [part.json()["id"]]).json()
    assert completed["file"]["bytes"] == len(text.encode())


def test_a_part_is_streamed_to_disk_not_held_in_memory(app: Any, client: Any) -> None:
    """The body goes to the app straight from an ASGI ``receive`` (a test client would hold it
    whole itself), in 64 KiB messages, while tracemalloc watches what Python holds at once."""
    size = 16 * 1024 * 1024
    upload_id = create_upload(client, size, purpose="batch")
    boundary = "tunegate-rss"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"data\"; filename=\"b\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    chunk = b"x" * 65536
    messages = [head, *([chunk] * (size // len(chunk))), tail]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        body = messages.pop(0) if messages else b""
        return {"type": "http.request", "body": body, "more_body": bool(messages)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    path = f"/v1/uploads/{upload_id}/parts"
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "server": ("testserver", 80), "client": ("testclient", 1),
        "headers": [(b"host", b"testserver"),
                    (b"content-length", str(len(head) + size + len(tail)).encode()),
                    (b"content-type", f"multipart/form-data; boundary={boundary}".encode())],
    }
    tracemalloc.start()
    try:
        asyncio.run(app(scope, receive, send))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sent[0]["status"] == 200, sent
    print(f"peak traced memory while taking a {size >> 20} MiB part: {peak >> 10} KiB")
    assert peak < size / 4, f"{peak} bytes held at once for a {size}-byte part"
    part = json.loads(b"".join(message.get("body", b"") for message in sent[1:]))
    assert (app.state_service.settings.uploads_dir / upload_id / part["id"]).stat().st_size == size


# ------------------------------------------------------------------------------ refusals


def test_unknown_upload_ids_are_404(client: Any) -> None:
    missing = "upload_00VcbQuodSf3yCyiRXhpLMIY"
    for response in (post_part(client, missing, b"x"), post_complete(client, missing, []),
                     client.post(f"/v1/uploads/{missing}/cancel")):
        expect_error(client, response, 404, param="upload_id", says="No such Upload object")


def test_completion_needs_exactly_the_upload_s_parts(client: Any, settings: Settings) -> None:
    upload_id = create_upload(client, len(CONTENT))
    part_ids = add_parts(client, upload_id, CONTENT, 1000)
    other = create_upload(client, 3, purpose="batch")
    foreign = add_parts(client, other, b"abc", 3)[0]
    cases = [
        (part_ids[:-1], "upload_bytes_mismatch", "list every part"),  # a part missing
        ([*part_ids, part_ids[0]], "duplicate_part", "listed twice"),
        ([*part_ids[:-1], foreign], "unknown_part", "is not a part of upload"),
        ([*part_ids[:-1], "part_00VcbQupFPIjC3WIw5KHetPL"], "unknown_part",
         "is not a part of upload"),
        ([*part_ids[:-1], ""], "unknown_part", "Part '' is not a part of upload"),
        ([], "upload_bytes_mismatch", "hold 0 bytes"),
    ]
    for listed, code, says in cases:
        error = expect_error(client, post_complete(client, upload_id, listed), 400,
                             param="part_ids", code=code, says=says)
        assert "  " not in error["message"], error
    expect_error(client, post_complete(client, upload_id, part_ids, md5="0" * 32), 400,
                 param="md5", code="md5_mismatch")
    expect_error(client, post_complete(client, upload_id, part_ids, md5="not-hex"), 400,
                 param="md5")
    # Every refusal left the upload as it was: pending, with its parts.
    assert part_folder(settings, upload_id) == sorted(part_ids)
    assert post_complete(client, upload_id, part_ids).status_code == 200


def test_more_parts_than_bytes_are_allowed_until_completion(client: Any,
                                                            settings: Settings) -> None:
    """A part sent twice (an SDK retry whose first try did arrive) is only left out."""
    upload_id = create_upload(client, len(CONTENT))
    part_ids = add_parts(client, upload_id, CONTENT, 1000)
    spare = add_parts(client, upload_id, CONTENT[:1000], 1000)
    assert post_complete(client, upload_id, part_ids).status_code == 200
    assert not (settings.uploads_dir / upload_id).exists() and spare


def test_a_fine_tune_upload_must_be_jsonl_and_stays_pending_if_not(client: Any) -> None:
    content = CONTENT + b"not json\n"
    upload_id = create_upload(client, len(content))
    part_ids = add_parts(client, upload_id, content, 1000)
    expect_error(client, post_complete(client, upload_id, part_ids), 400,
                 code="invalid_file_format", says="Line 41")
    assert post_part(client, upload_id, b"more").status_code == 200  # still pending


def test_a_part_over_64_mib_is_413(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_uploads, "MAX_PART_BYTES", 1000)
    upload_id = create_upload(client, 5000, purpose="batch")
    assert post_part(client, upload_id, b"x" * 1000).status_code == 200
    expect_error(client, post_part(client, upload_id, b"x" * 1001), 413, param="data",
                 code="part_too_large")


def test_a_body_too_large_for_a_part_is_413_before_it_is_read(client: Any) -> None:
    upload_id = create_upload(client, 10, purpose="batch")
    declared = MAX_PART_BYTES + 64 * 1024 + 1

    def never() -> Iterator[bytes]:
        raise AssertionError("the body was read")
        yield b""  # pragma: no cover

    response = client.post(f"/v1/uploads/{upload_id}/parts", content=never(), headers={
        "content-type": "multipart/form-data; boundary=x", "content-length": str(declared)})
    expect_error(client, response, 413, param="data", code="part_too_large")


def test_an_upload_holds_at_most_8_gib(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    expect_error(client, post_upload(client, 8 * 1024 ** 3 + 1), 400, param="bytes")
    assert post_upload(client, 8 * 1024 ** 3).status_code == 200
    monkeypatch.setattr(api_uploads, "MAX_UPLOAD_BYTES", 1500)
    upload_id = create_upload(client, 1000, purpose="batch")
    add_parts(client, upload_id, b"x" * 1500, 1000)
    expect_error(client, post_part(client, upload_id, b"x"), 400, param="data",
                 code="upload_too_large")


@pytest.mark.parametrize(("change", "param"), [
    ({"purpose": "fine-tune-results"}, "purpose"),
    ({"bytes": -1}, "bytes"),
    ({"mime_type": ""}, "mime_type"),
    ({"expires_after": {"anchor": "created_at"}}, "expires_after.seconds"),
    ({"expires_after": {"anchor": "created_at", "seconds": 60}}, "expires_after.seconds"),
    ({"colour": "blue"}, "colour"),  # an undeclared field is named (unknown_parameter)
])
def test_create_refuses_what_openai_refuses(client: Any, change: dict[str, Any],
                                            param: str | None) -> None:
    expect_error(client, post_upload(client, 10, **change), 400, param=param)


def test_missing_fields_are_400(client: Any) -> None:
    for field in ("filename", "purpose", "bytes", "mime_type"):
        body = {"filename": "a", "purpose": "batch", "bytes": 1, "mime_type": "text/plain"}
        del body[field]
        expect_error(client, client.post("/v1/uploads", json=body), 400, param=field)


def finished(client: Any, how: str) -> str:
    upload_id = create_upload(client, 3, purpose="batch")
    part_ids = add_parts(client, upload_id, b"abc", 3)
    if how == "completed":
        assert post_complete(client, upload_id, part_ids).status_code == 200
    else:
        assert client.post(f"/v1/uploads/{upload_id}/cancel").json()["status"] == "cancelled"
    return upload_id


@pytest.mark.parametrize("how", ["completed", "cancelled"])
def test_an_upload_that_is_not_pending_is_409(client: Any, settings: Settings, how: str) -> None:
    upload_id = finished(client, how)
    assert not (settings.uploads_dir / upload_id).exists()
    for response in (post_part(client, upload_id, b"x"), post_complete(client, upload_id, []),
                     client.post(f"/v1/uploads/{upload_id}/cancel")):
        expect_error(client, response, 409, param="upload_id", code="invalid_upload_status",
                     says=f"is {how}")
        assert response.headers["x-should-retry"] == "false"


def test_an_upload_expires_an_hour_after_it_was_created(client: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    upload_id = create_upload(client, 3, purpose="batch")
    part_ids = add_parts(client, upload_id, b"abc", 3)
    later = api_uploads.now() + UPLOAD_LIFETIME_SECONDS
    monkeypatch.setattr(api_uploads, "now", lambda: later)
    for response in (post_part(client, upload_id, b"x"),
                     post_complete(client, upload_id, part_ids),
                     client.post(f"/v1/uploads/{upload_id}/cancel")):
        expect_error(client, response, 409, code="invalid_upload_status", says="is expired")


def test_completion_without_room_for_the_file_is_507(app: Any, client: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    upload_id = create_upload(client, len(CONTENT))
    part_ids = add_parts(client, upload_id, CONTENT, 1000)
    monkeypatch.setattr(app.state_service.storage, "free_bytes", lambda: len(CONTENT) - 1)
    expect_full(client, post_complete(client, upload_id, part_ids))
    monkeypatch.undo()
    assert post_complete(client, upload_id, part_ids).status_code == 200  # kept pending


def test_uploads_work_in_gateway_mode(settings: Settings) -> None:
    with create_app(replace(settings, fine_tuning=False),
                    validate_responses=True).test_client() as client:
        assert upload_in_parts(client)["status"] == "completed"


def test_the_upload_s_folder_is_checked_as_an_id(settings: Settings) -> None:
    storage = domain_uploads.UploadStorage(settings.uploads_dir)
    for hostile in ("../files", "upload_../x", "upload_a/b", ""):
        with pytest.raises(ValueError):
            storage.folder(hostile)


def test_a_part_larger_than_the_free_space_is_507_before_it_is_read(
        client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    upload_id = create_upload(client, 10_000, purpose="batch")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: FakeDiskUsage(
        total=60 << 20, used=(60 << 20) - 4096, free=4096))

    def never() -> Iterator[bytes]:
        raise AssertionError("the body was read")
        yield b""  # pragma: no cover

    response = client.post(f"/v1/uploads/{upload_id}/parts", content=never(), headers={
        "content-type": "multipart/form-data; boundary=x", "content-length": "4097"})
    expect_full(client, response)
    assert post_part(client, upload_id, b"x" * 1000).status_code == 200  # one that fits
