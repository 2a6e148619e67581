"""The Uploads API and checkpoint permissions through the official ``openai`` SDK (issue 14),
against a real ``tunegate serve`` with keys, a worker that only validates (its jobs wait in
``queued``) and a request-body limit far below the file sent in parts.

Each scenario runs with the SDK's loose parsing and with ``_strict_response_validation=True``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai import OpenAI

from tests.api.conftest import ADMIN, ALICE, BOB, TestKey, write_keys_file
from tests.conftest import (
    VALIDATE_ONLY,
    Server,
    chat_lines,
    start_server_afresh,
    stop_server,
)
from tests.helpers import sdk_create_job, sdk_upload, wait_for_status
from tests.servers import sdk_client
from tunegate.domain.catalog import EMBEDDED_MODEL_ID
from tunegate.domain.models import FineTunedModel
from tunegate.settings import Settings
from tunegate.store import open_store

pytestmark = pytest.mark.e2e

REQUEST_LIMIT = 16 * 1024  # TUNEGATE_MAX_UPLOAD_BYTES of the server below
CONTENT = chat_lines(400)  # ~50 kB of valid chat examples: three times the limit
PART_SIZE = 8 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("uploads-sdk")
    keys = write_keys_file(tmp / "keys.json")
    running = start_server_afresh(tmp, "--keys-file", str(keys), env={
        **VALIDATE_ONLY, "TUNEGATE_MAX_UPLOAD_BYTES": str(REQUEST_LIMIT),
        "TUNEGATE_RATE_LIMIT": "0"})
    yield running
    stop_server(running)


@pytest.fixture(params=["loose", "strict"])
def strict(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "strict")


@pytest.fixture
def connect(server: Server, strict: bool) -> Iterator[object]:
    clients: list[OpenAI] = []

    def make(key: TestKey) -> OpenAI:
        client = sdk_client(server, api_key=key.key, max_retries=0,
                        _strict_response_validation=strict)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_upload_file_chunked_beyond_the_request_limit_then_a_job(connect, tmp_path: Path) -> None:
    assert len(CONTENT) > 3 * REQUEST_LIMIT
    alice = connect(ALICE)
    with pytest.raises(openai.APIStatusError) as whole:  # one request of it is too large
        sdk_upload(alice, CONTENT)
    assert whole.value.status_code == 413
    path = tmp_path / "train.jsonl"
    path.write_bytes(CONTENT)
    upload = alice.uploads.upload_file_chunked(file=path, mime_type="text/jsonl",
                                               purpose="fine-tune", part_size=PART_SIZE,
                                               md5=hashlib.md5(CONTENT).hexdigest())
    assert upload.status == "completed" and upload.filename == "train.jsonl"
    assert upload.file is not None and upload.file.bytes == len(CONTENT) == upload.bytes
    assert alice.files.content(upload.file.id).read() == CONTENT
    assert upload.file.id in [f.id for f in alice.files.list()]
    job = sdk_create_job(alice, upload.file.id)
    assert wait_for_status(alice, job.id, "queued", passing=("validating_files",)).status \
        == "queued"


def test_upload_file_chunked_from_memory(connect) -> None:
    alice = connect(ALICE)
    upload = alice.uploads.upload_file_chunked(file=CONTENT, filename="memory.jsonl",
                                               bytes=len(CONTENT), mime_type="text/jsonl",
                                               purpose="fine-tune", part_size=PART_SIZE)
    assert upload.file is not None and alice.files.content(upload.file.id).read() == CONTENT


def test_create_parts_cancel_and_the_refusals(connect) -> None:
    alice, bob = connect(ALICE), connect(BOB)
    upload = alice.uploads.create(bytes=6, filename="six.txt", mime_type="text/plain",
                                  purpose="batch")
    assert upload.status == "pending" and upload.file is None
    first = alice.uploads.parts.create(upload.id, data=b"abc")
    second = alice.uploads.parts.create(upload.id, data=b"def")
    assert first.object == "upload.part" and first.upload_id == upload.id
    with pytest.raises(openai.BadRequestError) as wrong:
        alice.uploads.complete(upload.id, part_ids=[first.id, second.id], md5="0" * 32)
    assert wrong.value.code == "md5_mismatch"
    with pytest.raises(openai.BadRequestError) as short:
        alice.uploads.complete(upload.id, part_ids=[first.id])
    assert short.value.code == "upload_bytes_mismatch"
    with pytest.raises(openai.NotFoundError):  # another project's upload does not exist
        bob.uploads.cancel(upload.id)
    cancelled = alice.uploads.cancel(upload.id)
    assert cancelled.status == "cancelled"
    with pytest.raises(openai.ConflictError) as late:
        alice.uploads.parts.create(upload.id, data=b"ghi")
    assert late.value.code == "invalid_upload_status"


def add_checkpoint(server: Server, project: str, tmp_path: Path) -> str:
    """A checkpoint row of ``project`` in the server's store, as a succeeded job leaves one
    (no training here: the worker only validates)."""
    folder = tmp_path / "checkpoint"
    (folder / "adapter").mkdir(parents=True)
    name = f"ft:{EMBEDDED_MODEL_ID}:org-alice:shared:{int(time.time() * 1e6) % 10**8:08d}" \
           ":ckpt-step-10"
    store = open_store(Settings(data_dir=server.data_dir).sqlalchemy_url)
    try:
        store.add_model(FineTunedModel(id=name, project_id=project, job_id="ftjob-e2e",
                                       base_model=EMBEDDED_MODEL_ID, created_at=int(time.time()),
                                       kind="checkpoint", path=str(folder)))
    finally:
        store.close()
    return name


def test_checkpoint_permissions_share_a_checkpoint_and_take_it_back(
        connect, server: Server, tmp_path: Path) -> None:
    admin, alice, bob = connect(ADMIN), connect(ALICE), connect(BOB)
    checkpoint = add_checkpoint(server, ALICE.project, tmp_path)
    permissions = admin.fine_tuning.checkpoints.permissions
    with pytest.raises(openai.PermissionDeniedError):  # admin keys only, the owner's too
        alice.fine_tuning.checkpoints.permissions.create(checkpoint, project_ids=[BOB.project])
    with pytest.raises(openai.NotFoundError):
        bob.models.retrieve(checkpoint)
    created = permissions.create(checkpoint, project_ids=[BOB.project, "proj-x", "proj-y"])
    granted = {permission.project_id: permission for permission in created.data}
    assert set(granted) == {BOB.project, "proj-x", "proj-y"}
    assert all(p.object == "checkpoint.permission" and p.id.startswith("cp_")
               for p in created.data)
    # Paged one at a time by last_id, newest first, then filtered by project.
    paged = list(permissions.list(checkpoint, limit=1))
    assert [p.id for p in paged] == sorted((p.id for p in created.data), reverse=True)
    only = permissions.list(checkpoint, project_id=BOB.project).data
    assert [p.id for p in only] == [granted[BOB.project].id]
    # Bob sees it, trains from it (the job reaches queued), but cannot delete it.
    assert bob.models.retrieve(checkpoint).owned_by == ALICE.project
    assert checkpoint in [model.id for model in bob.models.list()]
    bob_file = sdk_upload(bob, chat_lines(12)).id
    job = bob.fine_tuning.jobs.create(model=checkpoint, training_file=bob_file)
    wait_for_status(bob, job.id, "queued", passing=("validating_files",))
    with pytest.raises(openai.PermissionDeniedError):
        bob.models.delete(checkpoint)
    deleted = permissions.delete(granted[BOB.project].id, fine_tuned_model_checkpoint=checkpoint)
    assert deleted.deleted and deleted.id == granted[BOB.project].id
    with pytest.raises(openai.NotFoundError):
        bob.models.retrieve(checkpoint)
    with pytest.raises(openai.BadRequestError) as refused:
        bob.fine_tuning.jobs.create(model=checkpoint, training_file=bob_file)
    assert refused.value.param == "model"
    with pytest.raises(openai.NotFoundError):
        permissions.delete(granted[BOB.project].id, fine_tuned_model_checkpoint=checkpoint)
