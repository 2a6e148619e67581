"""A full disk during training ends the job without a restart of anything (issue 26).

Before, a trainer that died of ENOSPC left its job ``running`` for good: every write that would
record the end failed (507 inside the worker), the worker stayed alive, so no other worker took
the job over, and its own reaper skipped it, also after space was freed. These run on a real
full disk (a small tmpfs, tests/small_disk.py). The trainer is a test fake of the worker's
trainer process: what the real one does on ENOSPC (it removes what it half wrote and reports
``insufficient_storage``) is tested on the real one in tests/training/test_disk_full.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import chat_lines
from tests.helpers import service_create_job, service_upload
from tests.small_disk import fill, run_on_small_disk
from tests.worker.scripted import ScriptedExecutor, stand_in_export
from tunegate.api.app import build_service
from tunegate.api.service import Service
from tunegate.domain.jobs import JobStatus
from tunegate.errors import InsufficientStorage
from tunegate.settings import Settings
from tunegate.training.messages import StepMetrics, TrainerMessage
from tunegate.training.spec import RunStatus, TrainingSpec
from tunegate.worker.loop import Worker
from tunegate.worker.training_run import Executor, Outcome
from tunegate.worker.training_stage import DISK_FULL_REQUEUES

DISK = 16 << 20


class FakeTrainerOnAFullDisk:
    """Test fake of ``TrainerProcess``: a run whose epoch-1 state is saved, then the disk fills
    up (here: another writer, outside the data folder) and the trainer reports
    ``insufficient_storage``, as the real one does. ``take_reserve``: another process used
    the room the store keeps for recording this, just before."""

    take_reserve = False

    def __init__(self, work_dir: Path, disk: Path):
        self.work_dir = work_dir
        self.disk = disk

    def start(self, standby: object = None) -> None:
        saved = self.work_dir / "run"
        saved.mkdir(parents=True, exist_ok=True)
        (saved / "optimizer.pt").write_bytes(b"\1" * (1 << 20))
        if self.take_reserve:
            (self.disk / "data" / "tunegate.reserve").unlink()
        fill(self.disk)

    running = False
    MESSAGE = "The server's data folder filled up while training saved its state (fake)"

    def drain(self) -> list[TrainerMessage]:
        # The last step's metrics, which the store has no room for.
        return [StepMetrics(step=4, total_steps=8, trained_tokens=40, values={"train_loss": .5})]

    def outcome(self) -> Outcome:
        return Outcome(RunStatus.FAILED, code="insufficient_storage", message=self.MESSAGE)

    def kill(self) -> None:
        pass


class FakeTrainerThroughAFullDisk:
    """Test fake of ``TrainerProcess``: a run that reports step 1 while the disk is full (filled
    by another writer, for two polls) and ends after the disk has room again."""

    def __init__(self, disk: Path, service: Service):
        self.disk = disk
        self.service = service
        self.polls = 0

    def start(self, standby: object = None) -> None:
        # A job to validate meanwhile: the worker tries between two polls, and cannot.
        service_create_job(self.service, service_upload(self.service, chat_lines(12)))
        fill(self.disk)

    @property
    def running(self) -> bool:
        self.polls += 1
        if self.polls == 3:
            (self.disk / "filler").unlink()
        return self.polls <= 3

    def drain(self) -> list[TrainerMessage]:
        if self.polls == 1:
            return [StepMetrics(step=1, total_steps=2, trained_tokens=10,
                                values={"train_loss": 0.5})]
        return []

    def outcome(self) -> Outcome:
        return Outcome(RunStatus.FAILED, code="training_error", message="The fake run ended")

    def kill(self) -> None:
        pass


def _queued_job(mount: Path, trainer: type = FakeTrainerOnAFullDisk,
                ) -> tuple[Service, Worker, str]:
    service = build_service(Settings(data_dir=mount / "data", heartbeat_timeout=3600,
                                     poll_interval=0.05))
    job_id = service_create_job(service, service_upload(service, chat_lines(12)))

    def start_run(spec: TrainingSpec, work_dir: Path) -> Any:
        if trainer is FakeTrainerThroughAFullDisk:
            return FakeTrainerThroughAFullDisk(mount, service)
        return FakeTrainerOnAFullDisk(work_dir, mount)

    worker = Worker(service, executor=Executor(start_run=start_run, export=stand_in_export))
    assert worker.run_once()  # validated: queued
    return service, worker, job_id


def scenario_the_job_waits_for_room_then_fails(mount: Path) -> None:
    service, worker, job_id = _queued_job(mount)
    for attempt in range(1, DISK_FULL_REQUEUES + 1):
        assert worker.run_once()  # claimed, trained on a disk that filled up, ended
        job = service.jobs.get("default", job_id)
        assert job.status is JobStatus.QUEUED, job.status
        last = service.jobs.list_events("default", job_id, after=None, limit=1).items[0]
        assert last.message.startswith(FakeTrainerOnAFullDisk.MESSAGE)  # the trainer's reason
        assert f"try {attempt} of {DISK_FULL_REQUEUES}" in last.message
        assert service.store.owned_jobs() == []
        assert (service.settings.job_dir(job_id) / "run").is_dir()  # resumes from there
        assert not worker.run_once()  # no room: it waits in the queue
        (mount / "filler").unlink()
    assert worker.run_once()  # once too often: it fails, and its state goes
    job = service.jobs.get("default", job_id)
    assert job.status is JobStatus.FAILED, job.status
    assert job.error is not None and job.error.code == "insufficient_storage"
    assert job.error.message.startswith(FakeTrainerOnAFullDisk.MESSAGE)
    assert f"met a full disk {DISK_FULL_REQUEUES + 1} times" in job.error.message
    assert not service.settings.job_dir(job_id).exists()


def test_a_trainer_that_meets_a_full_disk_sends_its_job_back_to_wait_for_room(
        tmp_path: Path) -> None:
    run_on_small_disk(__name__, "scenario_the_job_waits_for_room_then_fails", tmp_path, DISK)


def scenario_the_job_is_requeued_once_there_is_room(mount: Path) -> None:
    service, worker, job_id = _queued_job(mount)
    FakeTrainerOnAFullDisk.take_reserve = True
    with pytest.raises(InsufficientStorage):
        worker.run_once()  # the end of the run cannot be recorded
    assert service.jobs.get("default", job_id).status is JobStatus.RUNNING
    with pytest.raises(InsufficientStorage):
        worker.reap_stale_jobs()  # nor handed back while the disk is full
    (mount / "filler").unlink()
    # Room again: the same worker, still alive, hands the job back to the queue.
    assert worker.reap_stale_jobs() == 1
    job = service.jobs.get("default", job_id)
    assert job.status is JobStatus.QUEUED
    assert service.store.owned_jobs() == []
    last = service.jobs.list_events("default", job_id, after=None, limit=1).items[0]
    assert "could not record how this job's run ended" in last.message
    assert (service.settings.job_dir(job_id) / "run").is_dir()  # resumes from there
    assert service.store.restore_reserve()


def test_a_job_whose_end_cannot_be_recorded_is_requeued_when_there_is_room(
        tmp_path: Path) -> None:
    run_on_small_disk(__name__, "scenario_the_job_is_requeued_once_there_is_room", tmp_path, DISK)


def scenario_a_moment_of_full_disk_loses_no_progress(mount: Path) -> None:
    service, worker, job_id = _queued_job(mount, FakeTrainerThroughAFullDisk)
    assert worker.run_once()
    job = service.jobs.get("default", job_id)
    assert job.error is not None and job.error.code == "training_error"  # the run's own end
    steps = [event.data["step"] for event in service.jobs.list_events(
        "default", job_id, after=None, limit=50).items if event.type == "metrics"]
    assert steps == [1]  # reported while the disk was full, recorded once there was room
    # The other job is validated once there is room (between the last polls, or now).
    other = service.jobs.list("default", after=None, limit=10, metadata=None).items[0]
    assert other.id != job_id
    worker.validate_next()
    assert service.jobs.get("default", other.id).status is JobStatus.QUEUED


def test_a_disk_full_for_a_moment_does_not_end_the_run(tmp_path: Path) -> None:
    """Before, the first progress record that met the full disk killed the trainer child and
    the job ended (or stayed running), though the trainer's own saves would have fit."""
    run_on_small_disk(__name__, "scenario_a_moment_of_full_disk_loses_no_progress", tmp_path,
                      DISK)


def test_a_failing_heartbeat_does_not_stop_the_heartbeat() -> None:
    """A heartbeat that meets a full disk is tried again at the next beat; before, the
    thread died, and another worker would soon take over a job that was training."""
    from tunegate.worker.heartbeats import beating

    beats: list[float] = []

    def heartbeat_on_a_full_disk() -> bool:
        beats.append(time.monotonic())
        raise InsufficientStorage()

    with beating(heartbeat_on_a_full_disk, timeout=0.15, what="job ftjob-x"):  # a beat in 0.05 s
        deadline = time.monotonic() + 30
        while len(beats) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(beats) >= 3


def test_a_short_write_without_errno_sends_the_job_back_to_wait_for_room(
        settings: Settings) -> None:
    """numpy's tofile (the GGUF export's) reports a full disk as a short write with no errno;
    before, the job failed with internal_error (chaos: the export after the last step)."""
    short_write = ScriptedExecutor(start_error=OSError("9216 requested and 960 written"))
    service = build_service(settings)
    job_id = service_create_job(service, service_upload(service, chat_lines(12)))
    worker = Worker(service, executor=short_write.executor())
    assert worker.run_once()  # validated
    assert worker.run_once()  # claimed, met the "full disk", back in the queue
    assert service.jobs.get("default", job_id).status is JobStatus.QUEUED
    last = service.jobs.list_events("default", job_id, after=None, limit=1).items[0]
    assert "waits in the queue for room" in last.message and "try 1 of" in last.message
