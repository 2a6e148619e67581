"""A client generated from the served spec by ``openapi-python-client`` drives a real
``tunegate serve``: upload, create a job, list by metadata, retrieve, events, cancel.

It proves what the spec gives a generator: OpenAI's operation names (``create_fine_tuning_job``,
not ``handlers_fine_tuning_create_job``), the spec's own schema names as classes, about as many
classes as the spec has schemas (connexion's ``$ref``-expanded copy made 838), and answers the
generated parsers accept.

The generator ignores ``style: deepObject``: it sends a metadata filter ``{"team": "x"}`` as
``?team=x``, which tunegate refuses (400, naming ``team``) instead of answering every job; the
filter written with its brackets, ``{"metadata[team]": "x"}``, goes through as the server reads
it (docs/contract.md, "Generated clients").
"""

from __future__ import annotations

import importlib
import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.conftest import (
    VALIDATE_ONLY,
    Server,
    chat_lines,
    start_server_afresh,
    stop_server,
)
from tunegate.api.app import SPEC
from tunegate.domain.catalog import EMBEDDED_MODEL_ID

pytest.importorskip("openapi_python_client",
                    reason="openapi-python-client (pyproject's dev extra) is not installed")
pytestmark = pytest.mark.e2e

GENERATOR = Path(sys.executable).with_name("openapi-python-client")
PACKAGE = "generated_tunegate_client"
SCHEMAS = yaml.safe_load(SPEC.read_text(encoding="utf-8"))["components"]["schemas"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server_afresh(tmp_path_factory.mktemp("generated"), env=VALIDATE_ONLY)
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def generated(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The client package, generated from the server's /v1/openapi.json and importable."""
    root = tmp_path_factory.mktemp("client")
    # The generator formats its output with ruff, which it looks for on PATH.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    done = subprocess.run(
        [str(GENERATOR), "generate", "--url", f"{server.api}/openapi.json", "--meta", "none",
         "--output-path", str(root / PACKAGE), "--fail-on-warning"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PATH": path})
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(root))
    try:
        yield root / PACKAGE
    finally:
        sys.path.remove(str(root))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def part(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


def test_the_generated_models_are_the_spec_s_schemas(generated: Path) -> None:
    classes = re.findall(r"(?m)^class (\w+)", "".join(
        path.read_text() for path in (generated / "models").glob("*.py")))
    # Each schema is one class, plus one per inline enum or object and nullable union member.
    assert len(SCHEMAS) <= len(classes) <= 3 * len(SCHEMAS), (len(classes), len(SCHEMAS))
    assert {"FineTuningJob", "OpenAIFile", "ErrorResponse", "FineTuningJobEvent",
            "CreateFineTuningJobRequest", "Model"} <= set(classes)
    operations = {path.stem for path in (generated / "api").glob("*/*.py") if path.stem != "__init__"}
    assert {"create_fine_tuning_job", "list_paginated_fine_tuning_jobs", "retrieve_fine_tuning_job",
            "cancel_fine_tuning_job", "list_fine_tuning_events", "create_file", "list_files",
            "retrieve_model", "create_chat_completion"} <= operations
    assert not any(name.startswith("handlers") for name in operations)


def test_upload_create_list_retrieve_events_cancel(server: Server, generated: Path) -> None:
    with part("client").Client(base_url=server.api, raise_on_unexpected_status=True) as client:
        run_the_flow(client)


def run_the_flow(client: Any) -> None:
    models = part("models")
    api: Any = type("Api", (), {name: importlib.import_module(f"{PACKAGE}.api.{group}.{name}")
                                for group, name in [
                                    ("files", "create_file"),
                                    ("fine_tuning", "create_fine_tuning_job"),
                                    ("fine_tuning", "list_paginated_fine_tuning_jobs"),
                                    ("fine_tuning", "retrieve_fine_tuning_job"),
                                    ("fine_tuning", "list_fine_tuning_events"),
                                    ("fine_tuning", "cancel_fine_tuning_job")]})
    uploaded = api.create_file.sync(client=client, body=models.CreateFileRequest(
        file=part("types").File(payload=io.BytesIO(chat_lines(12)), file_name="train.jsonl"),
        purpose=models.CreateFileRequestPurpose.FINE_TUNE))
    assert isinstance(uploaded, models.OpenAIFile), uploaded
    assert uploaded.purpose == models.OpenAIFilePurpose.FINE_TUNE

    def create(team: str) -> Any:
        request = models.CreateFineTuningJobRequest.from_dict(
            {"model": EMBEDDED_MODEL_ID, "training_file": uploaded.id, "metadata": {"team": team}})
        job = api.create_fine_tuning_job.sync(client=client, body=request)
        assert isinstance(job, models.FineTuningJob), job
        return job

    job, other = create("generated-kept"), create("generated-other")
    assert job.model == EMBEDDED_MODEL_ID and job.training_file == uploaded.id

    metadata = models.ListPaginatedFineTuningJobsMetadata.from_dict
    # As the generator serializes a dict filter: ?team=..., refused, naming the parameter.
    refused = api.list_paginated_fine_tuning_jobs.sync(
        client=client, metadata=metadata({"team": "generated-kept"}))
    assert isinstance(refused, models.ErrorResponse), refused
    assert (refused.error.param, refused.error.code) == ("team", "unknown_parameter")
    page = api.list_paginated_fine_tuning_jobs.sync(
        client=client, metadata=metadata({"metadata[team]": "generated-kept"}))
    assert isinstance(page, models.FineTuningJobList), page
    assert [listed.id for listed in page.data] == [job.id]
    assert other.id not in [listed.id for listed in page.data]

    retrieved = api.retrieve_fine_tuning_job.sync(job.id, client=client)
    assert isinstance(retrieved, models.FineTuningJob), retrieved
    assert retrieved.id == job.id
    assert retrieved.status.value in ("validating_files", "queued")
    events = api.list_fine_tuning_events.sync(job.id, client=client)
    assert isinstance(events, models.FineTuningJobEventList), events
    assert events.data and all(event.object_.value == "fine_tuning.job.event"
                               for event in events.data)

    cancelled = api.cancel_fine_tuning_job.sync(job.id, client=client)
    assert isinstance(cancelled, models.FineTuningJob), cancelled
    assert cancelled.status == models.FineTuningJobStatus.CANCELLED
    missing = api.retrieve_fine_tuning_job.sync("ftjob-doesnotexist0000", client=client)
    assert isinstance(missing, models.ErrorResponse)
    assert missing.error.type_ == "invalid_request_error"
