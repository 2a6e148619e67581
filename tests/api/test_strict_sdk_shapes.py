"""The official SDK with ``_strict_response_validation=True`` reads the objects whose shape
tests/conformance.py holds to OpenAI's: models (``shutdown_date``) and job events (``data``),
over the in-process app with ``validate_responses=True`` (no server process needed)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from openai import OpenAI

from tests.helpers import create_job, upload
from tunegate.domain.catalog import EMBEDDED_MODEL_ID
from tunegate.domain.jobs import now
from tunegate.domain.models import FineTunedModel

TUNED = f"ft:{EMBEDDED_MODEL_ID}:org-local::abcd1234"


@pytest.fixture
def strict(client: Any, app: Any) -> Iterator[OpenAI]:
    """A strict SDK client whose requests go to the in-process app (the test client is an
    ``httpx.Client``), with one fine-tuned model in the store."""
    app.state_service.store.add_model(FineTunedModel(
        id=TUNED, project_id="default", job_id="ftjob-abcd1234", base_model=EMBEDDED_MODEL_ID,
        created_at=now(), kind="model", path="unused"))
    sdk = OpenAI(base_url="http://testserver/v1", api_key="local", max_retries=0,
                 http_client=client, _strict_response_validation=True)
    yield sdk


def test_models_list_and_retrieve_carry_a_null_shutdown_date(strict: OpenAI) -> None:
    listed = {model.id: model for model in strict.models.list()}
    assert {EMBEDDED_MODEL_ID, TUNED} <= set(listed)
    for model_id in (EMBEDDED_MODEL_ID, TUNED):
        retrieved = strict.models.retrieve(model_id)
        assert retrieved.shutdown_date is None and listed[model_id].shutdown_date is None
        assert "shutdown_date" in retrieved.model_fields_set  # sent as null, not left out


def test_message_events_carry_an_empty_data_object(strict: OpenAI, client: Any) -> None:
    job = create_job(client, upload(client))["id"]
    [created] = list(strict.fine_tuning.jobs.list_events(job))
    assert created.type == "message" and created.data == {}
    assert strict.fine_tuning.jobs.retrieve(job).hyperparameters.n_epochs == "auto"
