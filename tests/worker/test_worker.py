"""The worker's validation stage, the reaper, and atomic claims across processes."""

from __future__ import annotations

import json
import multiprocessing
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import TEST_DATA, chat_lines
from tests.helpers import service_create_job, service_upload
from tests.worker.scripted import ScriptedExecutor, ending_with
from tunegate.api.app import build_service
from tunegate.api.service import Service
from tunegate.domain.catalog import EMBEDDED_MODEL_ID
from tunegate.domain.jobs import JobStatus
from tunegate.errors import InvalidRequest
from tunegate.settings import Settings
from tunegate.store import open_store
from tunegate.worker.janitor import Janitor
from tunegate.worker.loop import Worker


@pytest.fixture
def service(settings: Settings) -> Service:
    # Some tests queue dozens of jobs at once to race workers over them: no active-job limit.
    return build_service(replace(settings, max_active_jobs=1000))


def create(service: Service, content: bytes, **extra: object) -> str:
    """A job on a new training file of ``content``."""
    return service_create_job(service, service_upload(service, content), **extra)


def messages(service: Service, job_id: str) -> list[str]:
    return [e.message for e in service.store.list_events(job_id, after=None, limit=50).items]


def test_valid_files_move_the_job_to_queued(service: Service) -> None:
    job_id = create(service, chat_lines(12), validation_file=service_upload(service, chat_lines(2)))
    assert Worker(service).run_once()
    job = service.jobs.get("default", job_id)
    assert job.status is JobStatus.QUEUED
    said = messages(service, job_id)
    assert said[0] == "Files validated, moving job to queued state"
    # The worker's plan (tunegate.worker.memory_plan), said as the job is queued.
    assert said[1].startswith("Memory estimate: ") and "the trainer may use" in said[1]
    assert said[2:4] == [f"Validating validation file: {job.validation_file}",
                         f"Validating training file: {job.training_file}"]
    assert service.store.claim_job([JobStatus.QUEUED], "probe", time.time()).id == job_id


def test_too_few_examples_fail_the_job(service: Service) -> None:
    content = (TEST_DATA / "openai-cookbook__toy_chat_fine_tuning.jsonl").read_bytes()
    job_id = create(service, content)
    Worker(service).run_once()
    job = service.jobs.get("default", job_id)
    assert job.status is JobStatus.FAILED and job.finished_at is not None
    assert job.error.code == "invalid_n_examples" and job.error.param == "training_file"
    assert job.error.message == "Training file has 5 example(s), but must have at least 10 examples"


def test_a_bad_line_in_the_validation_file_names_it(service: Service) -> None:
    bad = chat_lines(1) + json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode()
    job_id = create(service, chat_lines(12), validation_file=service_upload(service, bad))
    Worker(service).run_once()
    error = service.jobs.get("default", job_id).error
    assert (error.code, error.param) == ("invalid_validation_file", "validation_file")
    assert "Line 2" in error.message


def test_a_job_cancelled_during_validation_stays_cancelled(service: Service) -> None:
    job_id = create(service, chat_lines(12))
    worker = Worker(service)
    job = service.store.claim_job([JobStatus.VALIDATING_FILES], worker.worker_id, time.time())
    service.jobs.cancel("default", job_id)
    assert worker.validate_files(job) is None
    assert service.jobs.get("default", job_id).status is JobStatus.CANCELLED


def test_the_reaper_requeues_a_running_job_whose_worker_died(service: Service) -> None:
    job_id = create(service, chat_lines(12))
    Worker(service).run_once()
    store = service.store
    store.claim_job([JobStatus.QUEUED], "dead-worker", time.time() - 3600)
    store.transition(job_id, JobStatus.RUNNING, events=[], worker_id="dead-worker")
    assert Worker(service).reap_stale_jobs() == 1
    assert service.jobs.get("default", job_id).status is JobStatus.QUEUED
    assert "stopped responding" in messages(service, job_id)[0]
    assert store.claim_job([JobStatus.QUEUED], "alive", time.time()).id == job_id


def _claim_all(url: str, worker_id: str, out: multiprocessing.Queue) -> None:
    store = open_store(url)
    claimed = []
    while (job := store.claim_job([JobStatus.VALIDATING_FILES], worker_id, time.time())):
        claimed.append(job.id)
    out.put(claimed)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_worker_processes_never_claim_the_same_job(
        backend: str, settings: Settings, request: pytest.FixtureRequest) -> None:
    database = "" if backend == "sqlite" else str(request.getfixturevalue("postgres_url"))
    service = build_service(replace(settings, max_active_jobs=1000, database_url=database))
    file_id = service_upload(service, chat_lines(12))
    job_ids = {service_create_job(service, file_id) for _ in range(40)}
    service.store.close()  # the claims are the worker processes' own
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    url = service.settings.sqlalchemy_url
    processes = [context.Process(target=_claim_all, args=(url, f"w{i}", results))
                 for i in range(2)]
    for process in processes:
        process.start()
    claims = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    assert sorted(claims[0] + claims[1]) == sorted(job_ids)
    assert not set(claims[0]) & set(claims[1])


def test_expired_files_are_swept(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    stored = service_upload(service, b'{"a": 1}\n', name="a.jsonl", expires_after_seconds=3600)
    janitor = Janitor(service)
    assert janitor.delete_expired_files() == 0
    later = time.time() + 3601
    monkeypatch.setattr("tunegate.domain.jobs.time.time", lambda: later)
    assert janitor.delete_expired_files() == 1
    assert not service.storage.path(stored).exists()
    assert service.store.get_file("default", stored) is None


@pytest.mark.parametrize("param", ["training_file", "validation_file"])
def test_no_job_starts_on_an_expired_file(service: Service, monkeypatch: pytest.MonkeyPatch,
                                          param: str) -> None:
    """Expired but not yet swept: hidden from reads, so refused to a new job too (before, job
    creation read the store directly and accepted it)."""
    files = {"training_file": service_upload(service, chat_lines(12)),
             "validation_file": service_upload(service, chat_lines(2))}
    files[param] = service_upload(service, chat_lines(12), expires_after_seconds=3600)
    later = time.time() + 3601
    monkeypatch.setattr("tunegate.domain.jobs.time.time", lambda: later)
    with pytest.raises(InvalidRequest) as refused:
        service.jobs.create("default", {"model": EMBEDDED_MODEL_ID, **files})
    assert (refused.value.param, refused.value.code) == (param, "file_expired")
    assert "upload it again" in refused.value.message
    assert service.store.get_file("default", files[param]) is not None  # refused, not deleted


def test_no_sweep_deletes_an_expired_file_that_an_unfinished_job_uses(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file uploaded with ``expires_after`` under a job that waits or trains for longer stays
    until the job ends (a resume or a restart still reads it), then goes with the next sweep.
    Before, the sweep deleted it under the job while ``DELETE /v1/files`` refused to (409)."""
    used = service_upload(service, chat_lines(12), expires_after_seconds=3600)
    job_id = service_create_job(service, used)
    Worker(service).run_once()  # validated: queued, not yet trained
    later = time.time() + 3601
    monkeypatch.setattr("tunegate.domain.jobs.time.time", lambda: later)
    janitor = Janitor(service)
    assert janitor.delete_expired_files() == 0
    assert service.storage.path(used).exists()
    assert service.store.get_file("default", used) is not None
    service.jobs.cancel("default", job_id)
    assert janitor.delete_expired_files() == 1
    assert not service.storage.path(used).exists()
    assert service.store.get_file("default", used) is None


def test_a_job_whose_trainer_cannot_start_fails_instead_of_running_forever(
        service: Service) -> None:
    """An exception after `running` (here: the trainer child cannot be spawned) ends the job
    as failed with the reason; before, the worker gave the job up still `running`, and no
    reaper ever looked at it again."""
    cannot_spawn = ScriptedExecutor(
        start_error=OSError("[Errno 11] Resource temporarily unavailable"))
    job_id = create(service, chat_lines(12))
    worker = Worker(service, executor=cannot_spawn.executor())
    assert worker.run_once()  # validated
    assert worker.run_once()  # claimed, started, failed
    job = service.jobs.get("default", job_id)
    assert job.status is JobStatus.FAILED and job.finished_at is not None
    assert job.error.code == "internal_error"
    assert "OSError: [Errno 11] Resource temporarily unavailable" in job.error.message
    assert service.store.claim_job([JobStatus.QUEUED], "other", time.time()) is None


def test_cancelling_a_paused_job_removes_its_saved_state(service: Service) -> None:
    job_id = create(service, chat_lines(12))
    Worker(service).run_once()  # queued
    service.jobs.pause("default", job_id)
    saved = service.settings.job_dir(job_id) / "run"
    saved.mkdir(parents=True)
    (saved / "optimizer.pt").write_bytes(b"state")
    assert service.jobs.cancel("default", job_id).status is JobStatus.CANCELLED
    assert not service.settings.job_dir(job_id).exists()


def test_a_pause_saved_after_a_cancel_leaves_no_state_and_no_resume_event(
        service: Service) -> None:
    """The run finished saving its pause after the user cancelled: its files go, and no event
    promises a resume."""
    from tunegate.training.spec import RunStatus
    from tunegate.worker.trainer_process import Outcome
    from tunegate.worker.training_stage import TrainingStage

    job_id = create(service, chat_lines(12))
    Worker(service).run_once()
    service.jobs.cancel("default", job_id)
    (service.settings.job_dir(job_id) / "run").mkdir(parents=True)
    stage = TrainingStage(service, "w1")
    stage._finish(service.jobs.get("default", job_id), Outcome(RunStatus.PAUSED), model=None)  # type: ignore[arg-type]
    stage._settle_work_dir(job_id)  # what run() does last
    assert not service.settings.job_dir(job_id).exists()
    assert not any("resume continues" in text for text in messages(service, job_id))


# Example lengths at validation ---------------------------------------------------------------

LONG = "".join(json.dumps({"messages": [{"role": "user", "content": "word " * (100 + i)},
                                        {"role": "assistant", "content": "lost"}]}) + "\n"
               for i in range(12)).encode()


def save_tiny_tokenizer(folder: Path, *, converted: bool) -> None:
    """The training tests' tiny tokenizer in ``folder``, as an HF base folder or a GGUF base's
    converted copy would hold it (no weights: validation never reads them)."""
    pytest.importorskip("transformers")
    from tests.training.conftest import build_tokenizer

    build_tokenizer().save_pretrained(folder)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    if converted:
        (folder / "tunegate-source.json").write_text("{}")


@pytest.fixture
def short_service(settings: Settings) -> Service:
    return build_service(replace(settings, max_seq_len=64))


@pytest.mark.model
def test_examples_all_over_the_limit_fail_at_validation_when_the_tokenizer_is_on_disk(
        short_service: Service) -> None:
    """The embedded GGUF base converted by an earlier run: its copy's tokenizer is used."""
    save_tiny_tokenizer(short_service.settings.model_cache / EMBEDDED_MODEL_ID, converted=True)
    job_id = create(short_service, LONG)
    Worker(short_service).run_once()
    job = short_service.jobs.get("default", job_id)
    assert job.status is JobStatus.FAILED
    assert (job.error.code, job.error.param) == ("invalid_training_file", "training_file")
    assert job.error.message.startswith(
        "The job failed due to an invalid training file. No example of the training file fits "
        "the maximum sequence length of 64 tokens (setting TUNEGATE_MAX_SEQ_LEN): all 12 are "
        "longer")
    assert "The longest is line 12 (" in job.error.message
    assert messages(short_service, job_id)[0] == job.error.message


@pytest.mark.model
def test_a_long_validation_file_of_an_hf_base_fails_at_validation(short_service: Service) -> None:
    save_tiny_tokenizer(short_service.settings.base_models_dir / "tiny", converted=False)
    body = {"model": "tiny", "training_file": service_upload(short_service, chat_lines(12)),
            "validation_file": service_upload(short_service, LONG[:LONG.index(b"\n") + 1])}
    job_id = short_service.jobs.create("default", body).id
    Worker(short_service).run_once()
    error = short_service.jobs.get("default", job_id).error
    assert (error.code, error.param) == ("invalid_validation_file", "validation_file")
    assert "64 tokens" in error.message and "The longest is line 1 (" in error.message


def test_without_a_tokenizer_on_disk_the_trainer_checks_lengths(short_service: Service) -> None:
    """A GGUF base not converted yet: validation passes; the trainer checks before loading."""
    job_id = create(short_service, LONG)
    Worker(short_service).run_once()
    assert short_service.jobs.get("default", job_id).status is JobStatus.QUEUED


def test_a_trainer_failure_keeps_the_parameter_it_names(
        service: Service) -> None:
    from tunegate.training.spec import RunStatus
    from tunegate.worker.training_run import Outcome

    failed = Outcome(status=RunStatus.FAILED, code="invalid_training_file", message="Too long.",
                     param="training_file")
    job_id = create(service, chat_lines(12))
    worker = Worker(service, executor=ScriptedExecutor(ending=ending_with(failed)).executor())
    assert worker.run_once() and worker.run_once()  # validated; trained (failed)
    error = service.jobs.get("default", job_id).error
    assert (error.code, error.param, error.message) == ("invalid_training_file",
                                                        "training_file", "Too long.")


def test_a_job_trains_from_a_shared_model_only_while_it_is_shared(service: Service,
                                                                   tmp_path: Path) -> None:
    """What the training stage asks before it starts a run: the model of a job of Bob's project
    that was shared with Bob resolves to its base and adapter; once the permission is deleted it
    is gone (the stage then fails the job, ``model_not_available``)."""
    from tunegate import ids
    from tunegate.domain.models import CheckpointPermission, FineTunedModel
    from tunegate.worker.models import resolve_model

    model = FineTunedModel(id=f"ft:{EMBEDDED_MODEL_ID}:org-a:s:abcd1234:ckpt-step-10",
                           project_id="proj-alice", job_id="ftjob-x", base_model=EMBEDDED_MODEL_ID,
                           created_at=1, kind="checkpoint", path=str(tmp_path / "step-10"))
    service.store.add_model(model)
    [granted] = service.store.add_permissions(model.id, [CheckpointPermission(
        ids.new_id(ids.PERMISSION), model.id, "proj-bob", 1)])
    job = service.jobs.get(None, service_create_job(
        service, service_upload(service, chat_lines(12), project="proj-bob"), project="proj-bob",
        model=model.id))
    resolved = resolve_model(service.settings, service.store, job)
    assert resolved.base.id == EMBEDDED_MODEL_ID
    assert resolved.init_adapter == str(tmp_path / "step-10" / "adapter")
    service.store.delete_permission(model.id, granted.id)
    with pytest.raises(LookupError, match="no longer available"):
        resolve_model(service.settings, service.store, job)
