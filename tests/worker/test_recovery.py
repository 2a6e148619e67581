"""What makes a crash cheap: local liveness, the janitor's sweep, typed messages, crash reports."""

from __future__ import annotations

import base64
import fcntl
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import chat_lines
from tests.helpers import service_create_job, service_upload
from tunegate.api.app import build_service
from tunegate.api.service import Service
from tunegate.domain.jobs import JobStatus
from tunegate.settings import Settings
from tunegate.training.messages import (
    CheckpointSaved,
    Failed,
    HyperparametersResolved,
    Note,
    StepMetrics,
    from_line,
    to_line,
)
from tunegate.training.spec import RunStatus, TrainingResult
from tunegate.worker import identity, janitor
from tunegate.worker.janitor import Janitor
from tunegate.worker.loop import Worker
from tunegate.worker.trainer_process import Crash


@pytest.fixture
def service(settings: Settings) -> Service:
    return build_service(replace(settings, heartbeat_timeout=3600))


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _local_id(pid: int) -> str:
    return f"here:{identity.machine_key()}:{pid}:abcdef"


# Liveness ---------------------------------------------------------------------------------


def test_a_local_worker_whose_process_is_gone_is_known_dead() -> None:
    assert identity.known_dead(_local_id(_dead_pid()))
    assert not identity.known_dead(_local_id(os.getpid()))
    assert identity.WorkerId.parse(identity.new_worker_id()).pid == os.getpid()


def test_workers_elsewhere_or_in_the_old_format_are_left_to_the_heartbeat() -> None:
    assert not identity.known_dead(f"there:0123456789:{_dead_pid()}:abcdef")
    assert not identity.known_dead(f"myhost-{_dead_pid()}-abcdef")


def test_a_zombie_worker_is_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 60  # exited, not collected: a zombie until wait()
    while Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline, "the child never exited"
        time.sleep(0.05)
    try:
        assert identity.known_dead(_local_id(child.pid))
    finally:
        child.wait()


def _running_job_of(service: Service, worker_id: str) -> str:
    job_id = service_create_job(service, service_upload(service, chat_lines(12)))
    Worker(service).run_once()  # validates: queued
    store = service.store
    store.claim_job([JobStatus.QUEUED], worker_id, time.time())  # a fresh heartbeat
    store.transition(job_id, JobStatus.RUNNING, events=[], worker_id=worker_id)
    return job_id


def test_the_reaper_takes_a_dead_local_workers_job_at_once(service: Service) -> None:
    job_id = _running_job_of(service, _local_id(_dead_pid()))
    assert Worker(service).reap_stale_jobs() == 1
    job = service.jobs.get("default", job_id)
    assert job.status is JobStatus.QUEUED
    events = service.jobs.list_events("default", job_id, after=None, limit=1).items
    assert "The worker running this job died" in events[0].message


def test_the_reaper_leaves_a_live_workers_job_alone(service: Service) -> None:
    job_id = _running_job_of(service, _local_id(os.getpid()))
    assert Worker(service).reap_stale_jobs() == 0
    assert service.jobs.get("default", job_id).status is JobStatus.RUNNING


# The janitor --------------------------------------------------------------------------------


def _age(path: Path, seconds: float = 3600) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_the_janitor_removes_dead_uploads_and_row_less_files(service: Service) -> None:
    storage = service.storage
    kept = service_upload(service, chat_lines(12))
    _age(storage.path(kept))
    abandoned = storage.root / ".partial-file-dead"
    abandoned.write_bytes(b"half an upload")
    _age(abandoned)
    live = storage.root / ".partial-file-live"
    orphan = storage.path("file-norow")
    orphan.write_bytes(b"bytes whose row never came")
    _age(orphan)
    young = storage.path("file-young")
    young.write_bytes(b"its row is about to be committed")
    with live.open("wb") as writer:
        fcntl.flock(writer, fcntl.LOCK_EX)  # an upload in progress
        _age(live)
        swept = Janitor(service).sweep()
        assert live.exists()
    assert (swept.abandoned_partials, swept.orphan_files) == (1, 1)
    assert not abandoned.exists() and not orphan.exists()
    assert young.exists() and storage.path(kept).exists()


def _upload(service: Service, created_at: int | None = None) -> str:
    from tunegate import ids
    from tunegate.domain.jobs import now
    from tunegate.domain.uploads import UPLOAD_LIFETIME_SECONDS, StoredUpload

    created = now() if created_at is None else created_at
    upload = StoredUpload(id=ids.new_id(ids.UPLOAD), project_id="default", created_at=created,
                          expires_at=created + UPLOAD_LIFETIME_SECONDS, filename="big.jsonl",
                          purpose="fine-tune", bytes=10, mime_type="text/jsonl")
    service.store.add_upload(upload)
    return upload.id


def _part(service: Service, upload_id: str, content: bytes = b"abcde") -> Path:
    """A part on disk and in the store, as ``POST /v1/uploads/{id}/parts`` leaves it, aged."""
    import io

    from tunegate import ids
    from tunegate.domain.jobs import now
    from tunegate.domain.uploads import UploadPart

    part_id = ids.new_id(ids.UPLOAD_PART)
    size = service.upload_storage.write_part(upload_id, part_id, io.BytesIO(content))
    service.store.add_upload_part(UploadPart(part_id, upload_id, now(), size), at=now(),
                                  max_total=1 << 30)
    path = service.upload_storage.folder(upload_id) / part_id
    _age(path)
    _age(path.parent)
    return path


def test_the_janitor_keeps_pending_parts_and_removes_ended_uploads_parts(
        service: Service) -> None:
    from tunegate.domain.jobs import now
    from tunegate.domain.uploads import UPLOAD_LIFETIME_SECONDS, UploadStatus

    uploads = service.upload_storage
    pending = _part(service, _upload(service))
    # Parts of an upload that expired since (the store refuses parts of an expired one).
    expired_id = _upload(service, created_at=now() - UPLOAD_LIFETIME_SECONDS - 1)
    uploads.folder(expired_id).mkdir()
    (uploads.folder(expired_id) / "part_writtenbeforeitexpired").write_bytes(b"old")
    cancelled_id = _upload(service)
    _part(service, cancelled_id)
    service.store.cancel_upload(cancelled_id, at=now())  # the API died before removing them
    rowless = uploads.folder("upload_NeverHadARow")
    rowless.mkdir()
    dead = pending.parent / ".partial-part_whosewriterdied"
    dead.write_bytes(b"half a part")
    _age(dead)
    swept = Janitor(service).sweep()
    assert pending.is_file()  # older than the row-less grace, but parts are not files/ bytes
    assert not dead.exists()
    assert not uploads.folder(expired_id).exists() and not uploads.folder(cancelled_id).exists()
    assert not rowless.exists()
    assert (swept.expired_uploads, swept.upload_folders, swept.abandoned_partials) == (1, 3, 1)
    assert swept.orphan_files == 0
    assert service.store.get_upload(None, expired_id).status is UploadStatus.EXPIRED
    assert Janitor(service).sweep().upload_folders == 0  # nothing left to do


def test_the_janitor_settles_folders_of_finished_jobs_no_worker_holds(service: Service) -> None:
    failed = service_create_job(service, service_upload(service, chat_lines(12)))
    service.store.transition(failed, JobStatus.FAILED, events=[])
    held = _running_job_of(service, _local_id(os.getpid()))
    for job_id in (failed, held, "ftjob-neverexisted"):
        (service.settings.job_dir(job_id) / "run").mkdir(parents=True)
    Janitor(service).sweep()
    assert not service.settings.job_dir(failed).exists()
    assert not service.settings.job_dir("ftjob-neverexisted").exists()
    assert (service.settings.job_dir(held) / "run").is_dir()


def test_a_worker_sweeps_when_it_starts(service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(janitor.Janitor, "sweep", lambda self: calls.append(1))
    worker = Worker(service)
    worker.run_once()
    worker.run_once()
    assert calls == [1]  # at start, then every SWEEP_SECONDS


def test_listing_files_hides_expired_ones_and_deletes_nothing(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    stored = service_upload(service, b'{"a": 1}\n', purpose="batch", expires_after_seconds=10)
    later = time.time() + 11
    monkeypatch.setattr("tunegate.domain.jobs.time.time", lambda: later)
    page = service.files.list("default", purpose=None, after=None, limit=10, order="desc")
    assert stored not in [f.id for f in page.items]
    assert service.storage.path(stored).exists()
    assert service.store.get_file("default", stored) is not None


# Messages and crash reports -----------------------------------------------------------------


@pytest.mark.parametrize("message", [
    Note("hello", "warn"),
    HyperparametersResolved({"n_epochs": 3, "batch_size": 1}),
    StepMetrics(step=2, total_steps=9, trained_tokens=120,
                values={"train_loss": 1.5, "valid_loss": None}, estimated_finish_seconds=3.5,
                learning_rate=2e-4, tokens_per_second=812.5),
    CheckpointSaved(step=3, path="/w/checkpoints/step-3", metrics={"step": 3, "train_loss": 1}),
    TrainingResult(RunStatus.PAUSED, None, 10, None, {"n_epochs": 1}),
    Failed("out_of_memory", "Training ran out of memory."),
])
def test_trainer_messages_round_trip(message: object) -> None:
    line = to_line(message)  # type: ignore[arg-type]
    assert line.endswith("\n") and line.count("\n") == 1
    assert from_line(line) == message


def test_an_unknown_message_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown trainer message kind"):
        from_line('{"kind": "telemetry", "x": 1}')
    with pytest.raises(ValueError, match="unexpected fields"):
        from_line('{"kind": "message", "message": "m", "level": "info", "extra": 1}')


def test_metrics_event_data_is_openais_shape() -> None:
    metrics = StepMetrics(step=4, total_steps=9, trained_tokens=1,
                          values={"train_loss": 0.5, "train_mean_token_accuracy": 0.75})
    assert list(metrics.event_data()) == ["step", "train_loss", "train_mean_token_accuracy",
                                          "learning_rate", "tokens_per_second", "total_steps"]


def test_a_crash_report_names_the_signal_and_the_memory() -> None:
    text = Crash(returncode=-9, peak_rss_bytes=512 * 2**20, oom_killed=True).describe()
    assert "signal 9 (SIGKILL)" in text and "512 MiB" in text and "out-of-memory killer" in text
    assert "exited with status 3" in Crash(3, None, None).describe()


def test_a_job_cancelled_while_it_publishes_leaves_nothing(service: Service,
                                                           tmp_path: Path) -> None:
    """The cancel lands between the end of training and the final commit: the job stays
    cancelled, its folder goes, and the results file written for the publish goes too."""
    from tunegate.domain.catalog import BaseModel
    from tunegate.worker.trainer_process import Outcome
    from tunegate.worker.training_stage import ResolvedModel, TrainingStage

    job_id = _running_job_of(service, "w1")
    folder = service.settings.job_dir(job_id)
    (folder / "adapter").mkdir(parents=True)
    csv = folder / "results.csv"
    csv.write_text("step,train_loss\n1,0.5\n")
    service.jobs.cancel("default", job_id)
    files_before = set(os.listdir(service.storage.root))
    stage = TrainingStage(service, "w1")
    model = ResolvedModel(BaseModel("tiny", "hf", tmp_path, 0, "test"), None)
    result = TrainingResult(RunStatus.SUCCEEDED, str(folder / "adapter"), 10, str(csv), {})
    stage._finish(service.jobs.get("default", job_id), Outcome(RunStatus.SUCCEEDED, result),
                  model)
    stage._settle_work_dir(job_id)  # what run() does last
    job = service.jobs.get("default", job_id)
    assert job.status is JobStatus.CANCELLED and job.fine_tuned_model is None
    assert not folder.exists()
    assert set(os.listdir(service.storage.root)) == files_before
    messages = [e.message for e in service.jobs.list_events("default", job_id, after=None,
                                                        limit=20).items]
    assert "The job has successfully completed" not in messages


def test_the_results_file_is_the_csv_base64_encoded_as_openai_serves_it(
        service: Service, tmp_path: Path) -> None:
    """Code written for OpenAI reads a results file with ``base64.b64decode``."""
    from tunegate.domain.catalog import BaseModel
    from tunegate.worker.trainer_process import Outcome
    from tunegate.worker.training_stage import ResolvedModel, TrainingStage

    job_id = _running_job_of(service, "w1")
    folder = service.settings.job_dir(job_id)
    (folder / "adapter").mkdir(parents=True)
    csv = b"step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy\n1,0.5,0.25,,\n"
    (folder / "results.csv").write_bytes(csv)
    stage = TrainingStage(service, "w1")
    model = ResolvedModel(BaseModel("tiny", "hf", tmp_path, 0, "test"), None)
    result = TrainingResult(RunStatus.SUCCEEDED, str(folder / "adapter"), 10,
                            str(folder / "results.csv"), {})
    stage._finish(service.jobs.get("default", job_id), Outcome(RunStatus.SUCCEEDED, result),
                  model)
    job = service.jobs.get("default", job_id)
    assert job.status is JobStatus.SUCCEEDED
    stored, chunks = service.files.content("default", job.result_files[0])
    content = b"".join(chunks)
    assert content == base64.b64encode(csv) and stored.bytes == len(content)
    assert base64.b64decode(content) == csv


def _step(step: int) -> StepMetrics:
    return StepMetrics(step=step, total_steps=6, trained_tokens=10 * step,
                       values={"train_loss": 1.0 / step})


def test_a_taking_over_worker_records_what_the_dead_one_never_read(service: Service,
                                                                  tmp_path: Path) -> None:
    """The worker died after the trainer saved step 3's state, having recorded step 1 only:
    the journal beside the state gives the next worker steps 2 and 3 and the step-3
    checkpoint, once, at this folder's path (the trainer's was a Ray node's); a checkpoint
    pruned since is skipped."""
    from tunegate.domain.catalog import BaseModel
    from tunegate.training import journal
    from tunegate.worker.training_stage import ResolvedModel, TrainingStage

    job_id = _running_job_of(service, "w1")
    folder = service.settings.job_dir(job_id)
    (folder / "checkpoints" / "step-3" / "adapter").mkdir(parents=True)
    elsewhere = "/tmp/ray-node/jobs/x/checkpoints"
    journal.save(folder, [_step(1), CheckpointSaved(1, f"{elsewhere}/step-1", {}), _step(2),
                          _step(3), CheckpointSaved(3, f"{elsewhere}/step-3", {"train_loss": .3})])
    stage = TrainingStage(service, "w1")
    model = ResolvedModel(BaseModel("tiny", "hf", tmp_path, 0, "test"), None)
    job = service.jobs.get("default", job_id)
    stage._record_one(job, model, _step(1))  # what the dead worker did read

    stage._record_journal(job, model)
    stage._record_journal(job, model)  # a second takeover adds nothing
    events = service.store.list_events(job_id, after=None, limit=50).items
    assert sorted(e.data["step"] for e in events if e.type == "metrics") == [1, 2, 3]
    assert [e.message for e in events if e.message.startswith("Checkpoint")] == [
        "Checkpoint created at step 3"]
    assert service.store.checkpoint_paths(job_id) == {
        f"ft:tiny:org-local::{job_id[-8:]}:ckpt-step-3": str(folder / "checkpoints" / "step-3")}
    assert stage.recorded_through == 3  # the child's repeats of steps 1-3 are not recorded
