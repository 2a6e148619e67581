"""A migrated job's former model name (``ft:gpt-4o-mini-…``, in the job's metadata) answers for
the job's new model once the job has succeeded: listed and retrieved by ``/v1/models`` with
``served_by``, served from the new model's files, accepted by eval runs; for its own project
only. A real chat through a former name: tests/e2e/test_migrate_e2e.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI

from tests.api.conftest import ALICE, BOB
from tests.api.test_isolation import succeed
from tests.helpers import create_job, upload
from tunegate.errors import NotFound
from tunegate.ids import FORMER_MODEL_KEY, SOURCE_JOB_KEY

OLD = "ft:gpt-4o-mini-2024-07-18:acme:support:AbC123"


def migrated_job(client: Any, *, old: str = OLD) -> str:
    training = upload(client, headers=ALICE.headers)
    return str(create_job(client, training, headers=ALICE.headers, suffix="support",
                          metadata={FORMER_MODEL_KEY: old, SOURCE_JOB_KEY: "ftjob-x"})["id"])


@pytest.fixture
def migrated(keyed_app: Any, keyed_client: Any, tmp_path: Path) -> str:
    """Alice's migrated job, succeeded: its new model's name."""
    job = migrated_job(keyed_client)
    model, _, _ = succeed(keyed_app.state_service, job, ALICE, tmp_path / "job")
    return model


def sdk(client: Any, key: str) -> OpenAI:
    return OpenAI(base_url="http://testserver/v1", api_key=key, http_client=client,
                  _strict_response_validation=True)


def test_the_models_list_shows_the_former_name_and_what_serves_it(keyed_client: Any,
                                                                  migrated: str) -> None:
    listed = {model.id: model for model in sdk(keyed_client, ALICE.key).models.list()}
    assert (listed[OLD].model_extra or {})["served_by"] == migrated
    assert listed[OLD].owned_by == ALICE.project
    retrieved = sdk(keyed_client, ALICE.key).models.retrieve(OLD)
    assert (retrieved.model_extra or {})["served_by"] == migrated


def test_another_project_does_not_see_it(keyed_client: Any, migrated: str) -> None:
    assert OLD not in {model.id for model in sdk(keyed_client, BOB.key).models.list()}
    answer = keyed_client.get(f"/v1/models/{OLD}", headers=BOB.headers)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "model_not_found"


def test_the_former_name_runs_the_new_models_files(keyed_app: Any, migrated: str,
                                                   tmp_path: Path) -> None:
    completions = keyed_app.state_service.completions
    files = completions.servable(ALICE.project, OLD)
    assert files.model_id == migrated  # one process for both names
    assert files.adapter == tmp_path / "job" / "adapter.gguf"
    with pytest.raises(NotFound):
        completions.servable(BOB.project, OLD)


def test_an_unfinished_migrated_job_gives_the_name_no_meaning(keyed_app: Any,
                                                              keyed_client: Any) -> None:
    migrated_job(keyed_client)
    with pytest.raises(NotFound):
        keyed_app.state_service.completions.servable(ALICE.project, OLD)
    assert keyed_client.get(f"/v1/models/{OLD}", headers=ALICE.headers).status_code == 404


def test_an_eval_run_accepts_the_former_name(keyed_client: Any, migrated: str) -> None:
    evaluation = keyed_client.post("/v1/evals", headers=ALICE.headers, json={
        "data_source_config": {"type": "custom", "item_schema": {
            "type": "object", "properties": {"q": {"type": "string"}}}},
        "testing_criteria": [{"type": "string_check", "name": "says yes",
                              "input": "{{ sample.output_text }}", "reference": "yes",
                              "operation": "ilike"}]}).json()
    run = {"data_source": {
        "type": "completions", "model": OLD,
        "source": {"type": "file_content", "content": [{"item": {"q": "yes?"}}]},
        "input_messages": {"type": "template", "template": [
            {"role": "user", "content": "{{ item.q }}"}]}}}
    created = keyed_client.post(f"/v1/evals/{evaluation['id']}/runs", headers=ALICE.headers,
                                json=run)
    assert created.status_code == 201, created.json()
    assert created.json()["model"] == OLD
