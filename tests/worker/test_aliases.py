"""A job that names an alias (an OpenAI model name, setting TUNEGATE_MODEL_ALIASES) trains the
local base it stands for, says so, and names its model after the alias; so does a job that
continues from that model. The run is scripted here (tests/worker/scripted.py); tests/e2e
trains for real."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.conftest import chat_lines
from tests.helpers import service_create_job, service_upload
from tests.worker.scripted import ScriptedExecutor
from tunegate.api.app import build_service
from tunegate.api.service import Service
from tunegate.domain.catalog import EMBEDDED_MODEL_ID
from tunegate.domain.jobs import JobStatus
from tunegate.settings import Settings
from tunegate.worker.loop import Worker
from tunegate.worker.models import resolve_model

ALIAS = "gpt-4o-mini-2024-07-18"


@pytest.fixture
def service(settings: Settings) -> Service:
    return build_service(settings)


def events(service: Service, job_id: str) -> list[tuple[str, str]]:
    page = service.store.list_events(job_id, after=None, limit=50)
    return [(e.level.value, e.message) for e in reversed(page.items)]


@pytest.fixture
def trained() -> ScriptedExecutor:
    """Every run succeeds at once (a scripted run, a stand-in export); it keeps the specs the
    stage built."""
    return ScriptedExecutor()


def run_job(service: Service, model: str, trained: ScriptedExecutor,
            suffix: str | None = None) -> str:
    job_id = service_create_job(service, service_upload(service, chat_lines(12)), model=model,
                                suffix=suffix)
    worker = Worker(service, executor=trained.executor())
    assert worker.run_once() and worker.run_once()  # validated; trained
    return job_id


def test_a_job_on_an_alias_trains_the_base_it_stands_for(service: Service,
                                                         trained: ScriptedExecutor) -> None:
    job_id = run_job(service, ALIAS, trained)
    job = service.jobs.get("default", job_id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.model == ALIAS  # as the client sent it
    assert job.fine_tuned_model == f"ft:{ALIAS}:org-local::{job_id[-8:]}"
    [spec] = trained.specs
    assert spec.base_model.name == EMBEDDED_MODEL_ID and spec.init_adapter is None
    model = service.store.get_model("default", job.fine_tuned_model)
    assert model is not None and model.base_model == EMBEDDED_MODEL_ID  # what serving loads
    warnings = [text for level, text in events(service, job_id) if level == "warn"]
    assert warnings == [
        f"{ALIAS} is an alias (setting TUNEGATE_MODEL_ALIASES): this server trains its local "
        f"base model {EMBEDDED_MODEL_ID} in its place. The fine-tuned model is named after "
        f"{ALIAS} (ft:{ALIAS}:…) and runs on {EMBEDDED_MODEL_ID}."]
    messages = [text for _, text in events(service, job_id)]
    assert messages.index(warnings[0]) < messages.index(
        f"Validating training file: {job.training_file}")


def test_a_job_on_the_base_itself_has_no_alias_warning(service: Service,
                                                       trained: ScriptedExecutor) -> None:
    job_id = run_job(service, EMBEDDED_MODEL_ID, trained, suffix="plain")
    job = service.jobs.get("default", job_id)
    assert job.fine_tuned_model == f"ft:{EMBEDDED_MODEL_ID}:org-local:plain:{job_id[-8:]}"
    assert [text for level, text in events(service, job_id) if level == "warn"] == []


def test_a_job_continuing_an_aliased_model_keeps_the_alias_in_its_name(
        service: Service, trained: ScriptedExecutor) -> None:
    first = service.jobs.get("default", run_job(service, ALIAS, trained, suffix="one"))
    assert first.fine_tuned_model is not None
    second = service.jobs.get("default", run_job(service, first.fine_tuned_model, trained, suffix="two"))
    assert second.status is JobStatus.SUCCEEDED, second.error
    assert second.model == first.fine_tuned_model
    assert second.fine_tuned_model == f"ft:{ALIAS}:org-local:two:{second.id[-8:]}"
    spec = trained.specs[-1]
    assert spec.base_model.name == EMBEDDED_MODEL_ID
    assert spec.init_adapter == str(service.settings.job_dir(first.id) / "adapter")
    assert [text for level, text in events(service, second.id) if level == "warn"] == []


def test_an_alias_of_a_missing_base_fails_the_job_naming_both(settings: Settings,
                                                              trained: ScriptedExecutor) -> None:
    """The API checked the alias when the job was created; the models changed since."""
    service = build_service(settings)
    job_id = service_create_job(service, service_upload(service, chat_lines(12)), model=ALIAS)
    worker_service = build_service(replace(settings, model_aliases=((ALIAS, "gone"),)))
    job = service.jobs.get("default", job_id)
    with pytest.raises(LookupError, match=f"{ALIAS} stands for the base model gone"):
        resolve_model(worker_service.settings, worker_service.store, job)
    worker = Worker(worker_service, executor=trained.executor())
    assert worker.run_once() and worker.run_once()
    failed = service.jobs.get("default", job_id)
    assert failed.status is JobStatus.FAILED and failed.error is not None
    assert failed.error.code == "model_not_available"
    assert "TUNEGATE_MODEL_ALIASES" in failed.error.message and trained.specs == []
