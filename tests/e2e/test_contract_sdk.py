"""The contract's edges through the official ``openai`` SDK against a real ``tunegate serve``:
strict clients (``_strict_response_validation=True``) read back whatever another client stored,
and what the contract does not declare is refused loudly instead of ignored.

One module-scoped server, open (no keys), whose worker only validates files.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import httpx
import openai
import pytest
import yaml
from openai import OpenAI
from openai.types import FileObject

from tests.conftest import (
    VALIDATE_ONLY,
    Server,
    chat_lines,
    start_server_afresh,
    stop_server,
)
from tests.helpers import sdk_create_job, sdk_upload
from tests.servers import sdk_client
from tunegate import ids
from tunegate.api.app import SPEC
from tunegate.domain.files import SHOWN_PURPOSE, StoredFile
from tunegate.store import open_store

pytestmark = pytest.mark.e2e

SCHEMAS = yaml.safe_load(SPEC.read_text(encoding="utf-8"))["components"]["schemas"]
UPLOAD_PURPOSES = SCHEMAS["CreateFileRequest"]["properties"]["purpose"]["enum"]
# What the installed SDK's FileObject.purpose can hold: every purpose a strict client reads.
SDK_PURPOSES = set(get_args(FileObject.model_fields["purpose"].annotation))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server_afresh(tmp_path_factory.mktemp("contract"), env=VALIDATE_ONLY)
    yield running
    stop_server(running)


@pytest.fixture
def strict(server: Server) -> Iterator[OpenAI]:
    with sdk_client(server, api_key="any", max_retries=0,
                _strict_response_validation=True) as client:
        yield client


def test_the_contract_s_purposes_are_the_sdk_s(strict: OpenAI) -> None:
    """Every purpose tunegate answers is one the SDK's FileObject holds (evals, taken at
    upload, is not: it is shown as user_data)."""
    answered = set(SCHEMAS["OpenAIFile"]["properties"]["purpose"]["enum"])
    assert answered == SDK_PURPOSES
    assert set(UPLOAD_PURPOSES) - set(SHOWN_PURPOSE) <= SDK_PURPOSES
    assert "evals" not in SDK_PURPOSES and SHOWN_PURPOSE["evals"] in SDK_PURPOSES


def test_a_strict_client_lists_files_after_every_upload_the_server_accepts(strict: OpenAI) -> None:
    uploaded = {}
    for purpose in UPLOAD_PURPOSES:
        content = chat_lines(12) if purpose == "fine-tune" else f"{purpose} bytes".encode()
        stored = sdk_upload(strict, content, name=f"{purpose}.jsonl", purpose=purpose)
        shown = SHOWN_PURPOSE.get(purpose, purpose)
        assert stored.purpose == shown
        uploaded[stored.id] = shown
    listed = {file.id: file.purpose for file in strict.files.list()}
    assert uploaded.items() <= listed.items()
    for file_id, purpose in uploaded.items():
        assert strict.files.retrieve(file_id).purpose == purpose


def test_an_evals_upload_reads_as_user_data_and_filters_as_evals(strict: OpenAI) -> None:
    stored = sdk_upload(strict, b'{"item": {"q": 1}}\n', name="eval.jsonl", purpose="evals")
    plain = sdk_upload(strict, b'{"q": 1}\n', name="plain.jsonl", purpose="user_data")
    assert stored.purpose == "user_data"
    # Other evals files of this module's server may be listed too (an upload the SDK retried
    # on a loaded machine): the filter keeps evals files, and only those.
    listed = strict.files.list(purpose="evals")
    assert stored.id in [file.id for file in listed]
    assert plain.id not in [file.id for file in listed]
    assert all("eval" in file.filename for file in listed)
    assert all(file.purpose != "evals" for file in strict.files.list())


def test_an_evals_file_an_older_tunegate_stored_reads_as_user_data(server: Server,
                                                                   strict: OpenAI) -> None:
    file_id = ids.new_id(ids.FILE)
    (server.data_dir / "files" / file_id).write_bytes(b'{"item": 1}\n')
    store = open_store(f"sqlite:///{(server.data_dir / 'tunegate.sqlite3').resolve()}")
    try:
        store.add_file(StoredFile(id=file_id, project_id="default", bytes=12, created_at=1,
                                  filename="old-eval.jsonl", purpose="evals"))
    finally:
        store.close()
    assert strict.files.retrieve(file_id).purpose == "user_data"
    assert {file.id: file.purpose for file in strict.files.list()}[file_id] == "user_data"


def test_an_unknown_query_parameter_fails_loudly(strict: OpenAI) -> None:
    training = sdk_upload(strict, chat_lines(12)).id
    kept = sdk_create_job(strict, training, metadata={"team": "kept"}).id
    other = sdk_create_job(strict, training, metadata={"team": "other"}).id
    with pytest.raises(openai.BadRequestError) as caught:
        strict.fine_tuning.jobs.list(extra_query={"team": "kept"})  # not a filter
    error: Any = caught.value.body
    assert (error["param"], error["code"]) == ("team", "unknown_parameter")
    assert "metadata[team]=<value>" in error["message"]
    listed = [job.id for job in strict.fine_tuning.jobs.list(metadata={"team": "kept"})]
    assert kept in listed and other not in listed


def test_half_an_expiry_policy_fails_loudly(strict: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        strict.files.create(file=("train.jsonl", io.BytesIO(chat_lines(12))), purpose="fine-tune",
                            expires_after={"anchor": "created_at"})  # type: ignore[typeddict-item]
    error: Any = caught.value.body
    assert error["param"] == "expires_after[seconds]"
    whole = strict.files.create(file=("train.jsonl", io.BytesIO(chat_lines(12))),
                                purpose="fine-tune",
                                expires_after={"anchor": "created_at", "seconds": 3600})
    assert whole.expires_at == whole.created_at + 3600


def test_the_server_serves_its_spec(server: Server) -> None:
    assert httpx.get(f"{server.api}/openapi.yaml").content == Path(SPEC).read_bytes()
    assert httpx.get(f"{server.api}/openapi.json").json() == yaml.safe_load(SPEC.read_bytes())
