"""A full disk is a 507 ``insufficient_storage`` that keeps nothing of the request (issue 13).

Three ways to meet it, none needing a real full disk: a file write that fails with ENOSPC (a
fake copy), an upload whose ``Content-Length`` is more than the free space (a fake
``shutil.disk_usage``), and SQLite's own "database or disk is full" (real, from
``PRAGMA max_page_count`` on the store's file). After each the server keeps serving, and the
same request succeeds once there is room again. And on a real full disk (a small tmpfs), a
file can still be deleted (issue 26).
"""

from __future__ import annotations

import asyncio
import errno
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, NamedTuple

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tests.conftest import chat_lines
from tests.helpers import expect_error, post_file, post_job, upload
from tests.small_disk import fill, run_on_small_disk
from tunegate.api.app import create_app
from tunegate.domain import files as domain_files
from tunegate.errors import is_disk_full
from tunegate.settings import Settings


def expect_full(client: Any, response: Any) -> None:
    expect_error(client, response, 507, param=None, code="insufficient_storage",
                 says="data folder is full")
    assert response.headers["x-should-retry"] == "false"


def stored_names(settings: Settings) -> list[str]:
    return sorted(path.name for path in settings.files_dir.iterdir())


# ----------------------------------------------------------------------- a file write fails


def fake_copy_onto_full_disk(source: IO[bytes], target: IO[bytes], length: int = 0) -> None:
    """What copying onto a full disk does: some bytes land, then the write fails."""
    target.write(source.read(100))
    target.flush()
    raise OSError(errno.ENOSPC, "No space left on device (fake)")


def test_an_upload_that_fills_the_disk_is_507_and_leaves_no_bytes(
        client: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    kept = upload(client)
    with monkeypatch.context() as fake:
        fake.setattr(domain_files.shutil, "copyfileobj", fake_copy_onto_full_disk)
        expect_full(client, post_file(client))
    assert stored_names(settings) == [kept]  # no partial file, no stored row
    assert [f["id"] for f in client.get("/v1/files").json()["data"]] == [kept]
    assert post_file(client).status_code == 200  # room again: the same upload goes through


def test_enospc_anywhere_else_is_507_too(settings: Settings,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # Quota exhaustion reads the same as a full disk.
    def fake_full_quota(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EDQUOT, "Disk quota exceeded (fake)")

    app = create_app(settings, validate_responses=True)
    monkeypatch.setattr(app.state_service.models, "list", fake_full_quota)
    with app.test_client() as client:
        response = client.get("/v1/models")
        assert response.status_code == 507
        assert response.json()["error"]["code"] == "insufficient_storage"
        assert client.get("/v1/files").status_code == 200


# ------------------------------------------------------------ an upload that cannot fit


class FakeDiskUsage(NamedTuple):
    total: int
    used: int
    free: int


def test_an_upload_larger_than_the_free_space_is_507_before_the_body_is_read(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    free = 4096
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda path: FakeDiskUsage(total=60 << 20, used=(60 << 20) - free,
                                                   free=free))
    app = create_app(settings, validate_responses=True)
    reads = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x" * (free + 1), "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/files", "raw_path": b"/v1/files", "query_string": b"",
        "root_path": "", "server": ("testserver", 80), "client": ("testclient", 1),
        "headers": [(b"host", b"testserver"), (b"content-length", str(free + 1).encode()),
                    (b"content-type", b"multipart/form-data; boundary=xyz")],
    }
    asyncio.run(app(scope, receive, send))
    assert reads == 0
    headers = {key.decode(): value.decode() for key, value in sent[0]["headers"]}
    assert sent[0]["status"] == 507
    assert headers["x-should-retry"] == "false" and headers["x-request-id"].startswith("req_")
    error = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))["error"]
    assert error["code"] == "insufficient_storage" and error["type"] == "server_error"
    assert f"only {free} bytes free" in error["message"]
    with app.test_client() as client:
        expect_full(client, post_file(client, chat_lines(100)))
        assert post_file(client, chat_lines(3)).status_code == 200  # one that fits goes through
        # Only uploads are judged by size: a JSON body as large is read as usual.
        response = post_job(client, training_file="file-x", suffix="s" * free)
        assert response.status_code == 400


# ---------------------------------------------------------------------- the database is full


@contextmanager
def full_database(engine: Engine) -> Iterator[None]:
    """The store's SQLite file may not grow past its current pages while inside. SQLite holds
    the limit per connection: the pooled ones are closed so that every new one gets it."""
    with engine.begin() as connection:
        pages = connection.exec_driver_sql("PRAGMA page_count").scalar()

    def no_more_pages(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    event.listen(engine, "connect", no_more_pages)
    engine.dispose()
    try:
        yield
    finally:
        event.remove(engine, "connect", no_more_pages)
        engine.dispose()


# Big enough to need new pages of the database (16 values of 512 characters).
BIG_METADATA = {f"key{i}": "v" * 512 for i in range(16)}


def test_a_full_database_is_507_and_stores_nothing(app: Any, client: Any,
                                                   settings: Settings) -> None:
    file_id = upload(client)
    with full_database(app.state_service.store.engine):
        expect_full(client, post_job(client, training_file=file_id, metadata=BIG_METADATA))
        assert client.get("/v1/fine_tuning/jobs").json()["data"] == []  # rolled back
        # A file's row is small and may still fit in its table's last page: upload until it
        # does not. The bytes go first and the row after; when the row fails, the bytes go too.
        stored = [file_id]
        for _ in range(500):
            response = post_file(client, chat_lines(3))
            if response.status_code != 200:
                break
            stored.append(response.json()["id"])
        expect_full(client, response)
        assert stored_names(settings) == sorted(stored)
    response = post_job(client, training_file=file_id, metadata=BIG_METADATA)
    assert response.status_code == 200, response.text
    assert post_file(client, chat_lines(3)).status_code == 200


# ------------------------------------------------------------- deleting at 0 bytes free


def scenario_a_delete_at_zero_bytes_free(mount: Path) -> None:
    """On a real disk with no byte left, a file can still be deleted: SQLite needs room to
    delete its row, which the store keeps in reserve (tunegate.store.reserve)."""
    settings = Settings(data_dir=mount / "data")
    app = create_app(settings, validate_responses=True)
    try:
        with app.test_client() as client:
            kept = upload(client)
            doomed = upload(client, chat_lines(400))
            filler = fill(mount)
            expect_full(client, post_file(client))  # really full
            response = client.delete(f"/v1/files/{doomed}")
            assert response.status_code == 200, response.text
            assert response.json() == {"id": doomed, "object": "file", "deleted": True}
            assert stored_names(settings) == [kept]
            assert client.delete(f"/v1/files/{kept}").status_code == 200  # the room it freed
            filler.unlink()
            # Room again: the reserve comes back (the worker's sweep does this every minute).
            store = app.state_service.store
            assert store.reserve is not None and not store.reserve.path.exists()
            assert store.restore_reserve() and store.reserve.path.stat().st_blocks > 0
    finally:
        app.state_service.inference.close()


def test_a_file_can_be_deleted_at_zero_bytes_free(tmp_path: Path) -> None:
    run_on_small_disk(__name__, "scenario_a_delete_at_zero_bytes_free", tmp_path, 16 << 20)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_short_write_without_errno_is_a_full_disk() -> None:
    import numpy

    with open("/dev/full", "wb") as full, pytest.raises(OSError) as raised:
        numpy.zeros(1000).tofile(full)
    assert raised.value.errno is None and is_disk_full(raised.value)
    assert not is_disk_full(OSError("a different failure"))
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
