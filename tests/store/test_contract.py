"""The store contract: what any backend must do, tested through the protocol only."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from tunegate import ids
from tunegate.domain.files import StoredFile
from tunegate.domain.jobs import (
    TRANSITIONS,
    Checkpoint,
    EventLevel,
    FineTuningJob,
    JobError,
    JobEvent,
    JobStatus,
)
from tunegate.domain.methods import Method
from tunegate.domain.models import CheckpointPermission
from tunegate.domain.uploads import UPLOAD_LIFETIME_SECONDS, StoredUpload, UploadPart, UploadStatus
from tunegate.errors import Conflict, InvalidRequest, NotFound, TooManyRequests
from tunegate.store import SqlStore
from tunegate.store.base import FineTunedModel

PROJECT = "default"


def make_job(status: JobStatus = JobStatus.VALIDATING_FILES, project: str = PROJECT,
             metadata: dict[str, str] | None = None) -> FineTuningJob:
    return FineTuningJob(
        id=ids.new_id(ids.JOB), project_id=project, created_at=int(time.time()),
        model="SmolLM2-135M-Instruct", organization_id="org-local", status=status,
        training_file="file-x", validation_file=None,
        method=Method.of("supervised", {"n_epochs": 4}),
        seed=7, metadata=metadata,
    )


def make_event(job_id: str, message: str = "hello") -> JobEvent:
    return JobEvent(id=ids.new_id(ids.EVENT), job_id=job_id, created_at=int(time.time()),
                    level=EventLevel.INFO, message=message)


def make_file(project: str = PROJECT, purpose: str = "fine-tune",
              expires_at: int | None = None) -> StoredFile:
    return StoredFile(id=ids.new_id(ids.FILE), project_id=project, bytes=3,
                      created_at=int(time.time()), filename="a.jsonl", purpose=purpose,
                      expires_at=expires_at)


def add_job(store: SqlStore, **kwargs) -> FineTuningJob:
    job = make_job(**kwargs)
    store.create_job(job, make_event(job.id, "Created"))
    return job


class TestFiles:
    def test_round_trip(self, store: SqlStore) -> None:
        stored = make_file()
        store.add_file(stored)
        assert store.get_file(PROJECT, stored.id) == stored

    def test_files_are_private_to_their_project(self, store: SqlStore) -> None:
        stored = make_file(project="other")
        store.add_file(stored)
        assert store.get_file(PROJECT, stored.id) is None
        assert store.list_files(PROJECT, purpose=None, after=None, limit=10,
                                ascending=False).items == []
        assert not store.delete_file(PROJECT, stored.id)

    def test_list_pages_newest_first_and_ascending(self, store: SqlStore) -> None:
        made = [make_file() for _ in range(5)]
        for stored in made:
            store.add_file(stored)
        first = store.list_files(PROJECT, purpose=None, after=None, limit=2, ascending=False)
        assert [f.id for f in first.items] == [made[4].id, made[3].id] and first.has_more
        rest = store.list_files(PROJECT, purpose=None, after=made[3].id, limit=10,
                                ascending=False)
        assert [f.id for f in rest.items] == [made[2].id, made[1].id, made[0].id]
        assert not rest.has_more
        ascending = store.list_files(PROJECT, purpose=None, after=made[1].id, limit=10,
                                     ascending=True)
        assert [f.id for f in ascending.items] == [m.id for m in made[2:]]

    def test_after_the_last_id_is_an_empty_page(self, store: SqlStore) -> None:
        stored = make_file()
        store.add_file(stored)
        page = store.list_files(PROJECT, purpose=None, after=stored.id, limit=10,
                                ascending=False)
        assert page.items == [] and not page.has_more

    def test_a_deleted_cursor_keeps_its_place(self, store: SqlStore) -> None:
        made = [make_file() for _ in range(3)]
        for stored in made:
            store.add_file(stored)
        assert store.delete_file(PROJECT, made[1].id)
        page = store.list_files(PROJECT, purpose=None, after=made[1].id, limit=10,
                                ascending=False)
        assert [f.id for f in page.items] == [made[0].id]

    def test_purpose_filter_and_expiry(self, store: SqlStore) -> None:
        tuned = make_file()
        batch = make_file(purpose="batch", expires_at=100)
        store.add_file(tuned)
        store.add_file(batch)
        page = store.list_files(PROJECT, purpose="batch", after=None, limit=10, ascending=False)
        assert [f.id for f in page.items] == [batch.id]
        assert [f.id for f in store.expired_files(now=100)] == [batch.id]
        assert store.expired_files(now=99) == []
        hidden = store.list_files(PROJECT, purpose=None, after=None, limit=10, ascending=True,
                                  at=100)
        assert [f.id for f in hidden.items] == [tuned.id]  # expired: not listed, still stored
        assert store.known_file_ids([tuned.id, batch.id, "file-gone"]) == {tuned.id, batch.id}


class TestJobs:
    def test_create_writes_job_and_event_together(self, store: SqlStore) -> None:
        job = add_job(store, metadata={"team": "a"})
        assert store.get_job(job.id) == job
        assert store.get_job(job.id, PROJECT) == job
        assert store.get_job(job.id, "other") is None
        events = store.list_events(job.id, after=None, limit=10).items
        assert [e.message for e in events] == ["Created"]

    def test_metadata_filter(self, store: SqlStore) -> None:
        tagged = add_job(store, metadata={"team": "a"})
        add_job(store, metadata={"team": "b"})
        add_job(store)
        page = store.list_jobs(PROJECT, after=None, limit=10, metadata={"team": "a"})
        assert [j.id for j in page.items] == [tagged.id]

    def test_transition_is_compare_and_set_with_events(self, store: SqlStore) -> None:
        job = add_job(store)
        moved = store.transition(job.id, JobStatus.QUEUED, events=[make_event(job.id, "queued")])
        assert moved.status is JobStatus.QUEUED
        with pytest.raises(Conflict, match="is queued and cannot be moved to succeeded"):
            store.transition(job.id, JobStatus.SUCCEEDED, events=[make_event(job.id, "no")])
        messages = [e.message for e in store.list_events(job.id, after=None, limit=10).items]
        assert messages == ["queued", "Created"]  # the refused transition wrote nothing

    def test_transition_of_unknown_job(self, store: SqlStore) -> None:
        with pytest.raises(NotFound):
            store.transition("ftjob-missing", JobStatus.CANCELLED, events=[])

    def test_transition_applies_changes(self, store: SqlStore) -> None:
        job = add_job(store)
        failed = store.transition(job.id, JobStatus.FAILED, events=[], changes={
            "error": JobError("invalid_n_examples", "too few", "training_file"),
            "finished_at": 123})
        assert failed.error == JobError("invalid_n_examples", "too few", "training_file")
        assert failed.finished_at == 123
        assert store.get_job(job.id) == failed

    def test_a_resolved_method_is_stored_and_read_back_typed(self, store: SqlStore) -> None:
        job = add_job(store)
        resolved = job.method.resolved({"n_epochs": 4, "batch_size": 1,
                                        "learning_rate_multiplier": 0.5})
        store.update_job(job.id, {"method": resolved})
        stored = store.get_job(job.id)
        assert stored is not None and stored.method == resolved
        assert stored.to_api()["method"]["supervised"]["hyperparameters"] == {
            "batch_size": 1, "learning_rate_multiplier": 0.5, "n_epochs": 4}

    def test_status_cannot_be_written_around_the_table(self, store: SqlStore) -> None:
        job = add_job(store)
        with pytest.raises(ValueError):
            store.update_job(job.id, {"status": "succeeded"})

    def test_worker_guard(self, store: SqlStore) -> None:
        job = add_job(store)
        claimed = store.claim_job([JobStatus.VALIDATING_FILES], "w1", time.time())
        assert claimed is not None and claimed.id == job.id
        with pytest.raises(Conflict):
            store.transition(job.id, JobStatus.QUEUED, events=[], worker_id="w2")
        assert store.transition(job.id, JobStatus.QUEUED, events=[], worker_id="w1")


class TestOwnership:
    def test_claims_oldest_first_and_never_twice(self, store: SqlStore) -> None:
        older = add_job(store)
        newer = add_job(store)
        first = store.claim_job([JobStatus.VALIDATING_FILES], "w1", time.time())
        second = store.claim_job([JobStatus.VALIDATING_FILES], "w2", time.time())
        third = store.claim_job([JobStatus.VALIDATING_FILES], "w3", time.time())
        assert (first.id, second.id, third) == (older.id, newer.id, None)

    def test_release_makes_the_job_claimable_again(self, store: SqlStore) -> None:
        job = add_job(store)
        store.claim_job([JobStatus.VALIDATING_FILES], "w1", time.time())
        store.disown_job(job.id, "w1")
        again = store.claim_job([JobStatus.VALIDATING_FILES], "w2", time.time())
        assert again is not None and again.id == job.id

    def test_unfinished_jobs_using_a_file_or_model(self, store: SqlStore) -> None:
        def add(**fields: object) -> FineTuningJob:
            job = replace(make_job(), **fields)
            store.create_job(job, make_event(job.id, "Created"))
            return job

        training = add(training_file="file-a")
        validating = add(validation_file="file-a", model="ft:m")
        add(training_file="file-a", status=JobStatus.CANCELLED)
        assert store.unfinished_jobs_using(PROJECT, file_id="file-a") == [
            training.id, validating.id]
        assert store.unfinished_jobs_using(None, file_id="file-a") == [training.id, validating.id]
        assert store.unfinished_jobs_using("other", file_id="file-a") == []
        assert store.unfinished_jobs_using(PROJECT, file_id="file-none") == []
        assert store.unfinished_jobs_using(PROJECT, model="ft:m") == [validating.id]

    def test_owned_jobs_show_owner_and_heartbeat(self, store: SqlStore) -> None:
        job = add_job(store)
        add_job(store)  # unowned: not listed
        store.claim_job([JobStatus.VALIDATING_FILES], "w1", 1000.0)
        assert [(o.job.id, o.worker_id, o.heartbeat_at) for o in store.owned_jobs()] == [
            (job.id, "w1", 1000.0)]
        assert store.heartbeat(job.id, "w1", 2000.0)
        assert store.owned_jobs()[0].heartbeat_at == 2000.0
        assert not store.heartbeat(job.id, "someone-else", 3000.0)
        assert store.disown_job(job.id, "w1")
        assert store.owned_jobs() == []

    def test_progress_is_recorded_only_while_running_under_its_worker(
            self, store: SqlStore) -> None:
        job = add_job(store, status=JobStatus.QUEUED)
        store.claim_job([JobStatus.QUEUED], "w1", 1.0)
        assert not store.record_progress(job.id, "w1", [make_event(job.id, "early")])
        store.transition(job.id, JobStatus.RUNNING, events=[], worker_id="w1")
        assert store.record_progress(job.id, "w1", [make_event(job.id, "step")],
                                     {"trained_tokens": 7})
        assert not store.record_progress(job.id, "w2", [make_event(job.id, "not mine")])
        store.transition(job.id, JobStatus.PAUSED, events=[])
        # The step in flight when the pause came: the saved state resumes after it.
        assert store.record_progress(job.id, "w1", [make_event(job.id, "last step")])
        store.transition(job.id, JobStatus.CANCELLED, events=[])
        assert not store.record_progress(job.id, "w1", [make_event(job.id, "late")],
                                         {"trained_tokens": 9})
        messages = [e.message for e in store.list_events(job.id, after=None, limit=10).items]
        assert {"step", "last step"} <= set(messages)
        assert not {"early", "not mine", "late"} & set(messages)
        assert store.get_job(job.id).trained_tokens == 7

    def test_last_metrics_step_is_the_newest_metrics_event(self, store: SqlStore) -> None:
        job = add_job(store)
        assert store.last_metrics_step(job.id) == 0
        for step in (1, 2, 3):
            store.add_events([JobEvent(id=ids.new_id(ids.EVENT), job_id=job.id, created_at=1,
                                       level=EventLevel.INFO, message=f"Step {step}",
                                       type="metrics", data={"step": step})])
        store.add_events([make_event(job.id, "a message after them")])
        assert store.last_metrics_step(job.id) == 3

    @pytest.mark.parametrize("target", sorted(TRANSITIONS[JobStatus.RUNNING]))
    def test_every_way_out_of_running_clears_the_estimate(self, store: SqlStore,
                                                          target: JobStatus) -> None:
        job = add_job(store, status=JobStatus.QUEUED)
        store.claim_job([JobStatus.QUEUED], "w1", 1.0)
        store.transition(job.id, JobStatus.RUNNING, events=[], worker_id="w1")
        assert store.record_progress(job.id, "w1", [], {"estimated_finish": 99})
        assert store.get_job(job.id).estimated_finish == 99
        assert store.transition(job.id, target, events=[]).estimated_finish is None
        # The step in flight when a pause came is still recorded, its estimate is not.
        store.record_progress(job.id, "w1", [make_event(job.id, "step")],
                              {"estimated_finish": 120, "trained_tokens": 5})
        assert store.get_job(job.id).estimated_finish is None

    def test_a_validated_job_enters_the_queue_with_the_finish_the_move_estimates(
            self, store: SqlStore) -> None:
        """Entering ``queued`` clears an old estimate; the validation's move sets a new one in
        the same transaction (tunegate.worker.loop)."""
        job = add_job(store)  # validating_files
        queued = store.transition(job.id, JobStatus.QUEUED, events=[],
                                  changes={"estimated_finish": 1234})
        assert queued.estimated_finish == 1234 and store.get_job(job.id).estimated_finish == 1234
        # Progress a queued job may not record leaves it as estimated.
        store.record_progress(job.id, "w1", [], {"estimated_finish": 99})
        assert store.get_job(job.id).estimated_finish == 1234
        store.claim_job([JobStatus.QUEUED], "w1", 1.0)
        running = store.transition(job.id, JobStatus.RUNNING, events=[], worker_id="w1")
        assert running.estimated_finish == 1234  # until the start refines it

    def test_entering_a_status_applies_its_stamps(self, store: SqlStore) -> None:
        job = add_job(store, status=JobStatus.QUEUED)
        store.update_job(job.id, {"estimated_finish": 99})
        paused = store.transition(job.id, JobStatus.PAUSED, events=[])
        assert paused.estimated_finish is None and paused.finished_at is None
        done = store.transition(job.id, JobStatus.CANCELLED, events=[])
        assert done.finished_at is not None and abs(done.finished_at - time.time()) < 60


class TestEventsCheckpointsModels:
    def test_events_after_reads_several_jobs_oldest_first(self, store: SqlStore) -> None:
        first, second = add_job(store), add_job(store, status=JobStatus.QUEUED)
        store.add_events([make_event(first.id, f"a{i}") for i in range(3)])
        store.add_events([make_event(second.id, f"b{i}") for i in range(2)])
        mine = store.list_events(first.id, after=None, limit=10).items[::-1]  # Created, a0..a2
        read = store.events_after({first.id: mine[1].id, second.id: None, "ftjob-gone": None},
                                  limit=10)
        assert read.statuses == {first.id: JobStatus.VALIDATING_FILES,
                                 second.id: JobStatus.QUEUED}
        assert [e.message for e in read.events if e.job_id == first.id] == ["a1", "a2"]
        assert [e.message for e in read.events if e.job_id == second.id] == [
            "Created", "b0", "b1"]
        assert [e.id for e in read.events] == sorted(e.id for e in read.events)
        assert not read.has_more
        cut = store.events_after({first.id: None}, limit=2)
        assert [e.message for e in cut.events] == ["Created", "a0"] and cut.has_more
        assert store.events_after({}, limit=5).events == []

    def test_has_event_names_an_event_of_that_job(self, store: SqlStore) -> None:
        job, other = add_job(store), add_job(store)
        event = make_event(job.id)
        store.add_events([event])
        assert store.has_event(job.id, event.id)
        assert not store.has_event(other.id, event.id)
        assert not store.has_event(job.id, ids.new_id(ids.EVENT))

    def test_events_page_newest_first(self, store: SqlStore) -> None:
        job = add_job(store)
        store.add_events([make_event(job.id, f"e{i}") for i in range(3)])
        first = store.list_events(job.id, after=None, limit=2)
        assert [e.message for e in first.items] == ["e2", "e1"] and first.has_more
        rest = store.list_events(job.id, after=first.items[-1].id, limit=2)
        assert [e.message for e in rest.items] == ["e0", "Created"] and not rest.has_more

    def test_checkpoints(self, store: SqlStore) -> None:
        job = add_job(store)
        checkpoint = Checkpoint(id=ids.new_id(ids.CHECKPOINT), job_id=job.id, created_at=1,
                                fine_tuned_model_checkpoint="ft:a:b::c:ckpt-step-2",
                                step_number=2, metrics={"step": 2, "train_loss": 0.5})
        assert store.add_checkpoint(checkpoint, "/tmp/ckpt")
        assert store.list_checkpoints(job.id, after=None, limit=10).items == [checkpoint]
        again = Checkpoint(id=ids.new_id(ids.CHECKPOINT), job_id=job.id, created_at=2,
                           fine_tuned_model_checkpoint="ft:a:b::c:ckpt-step-2", step_number=2,
                           metrics={"step": 2, "train_loss": 0.5})
        assert not store.add_checkpoint(again, "/tmp/ckpt")  # a resumed run saved it again
        assert store.list_checkpoints(job.id, after=None, limit=10).items == [checkpoint]

    def test_models(self, store: SqlStore) -> None:
        model = FineTunedModel(id="ft:SmolLM2-135M-Instruct:default::abcd1234",
                               project_id=PROJECT, job_id="ftjob-x", base_model="SmolLM2",
                               created_at=5, kind="model", path="/tmp/m")
        store.add_model(model)
        assert store.get_model(PROJECT, model.id) == model
        assert store.get_model("other", model.id) is None
        assert store.list_models(PROJECT) == [model]
        assert store.delete_model(PROJECT, model.id)
        assert not store.delete_model(PROJECT, model.id)


class TestProjects:
    """``None`` as the project is an admin's view: every project's rows."""

    def test_none_sees_every_project(self, store: SqlStore) -> None:
        mine, theirs = make_file(), make_file(project="other")
        for stored in (mine, theirs):
            store.add_file(stored)
        assert store.get_file(None, theirs.id) == theirs
        listed = store.list_files(None, purpose=None, after=None, limit=10, ascending=True)
        assert [f.id for f in listed.items] == [mine.id, theirs.id]
        job = add_job(store, project="other")
        assert store.get_job(job.id, None) == job
        assert [j.id for j in store.list_jobs(None, after=None, limit=10, metadata=None).items] \
            == [job.id]
        model = FineTunedModel(id="ft:b:o::zz", project_id="other", job_id=job.id,
                               base_model="b", created_at=1, kind="model", path="/nowhere")
        store.add_model(model)
        assert store.get_model(PROJECT, model.id) is None
        assert store.get_model(None, model.id) == model
        assert store.list_models(None) == [model]
        assert store.delete_model(None, model.id) and store.delete_file(None, theirs.id)


class TestActiveJobLimit:
    def test_the_limit_counts_the_project_s_waiting_and_running_jobs(self, store: SqlStore) -> None:
        for status in (JobStatus.VALIDATING_FILES, JobStatus.QUEUED, JobStatus.RUNNING):
            job = make_job(status=status)
            store.create_job(job, make_event(job.id), max_active=3)
        for status in (JobStatus.PAUSED, JobStatus.SUCCEEDED, JobStatus.FAILED,
                       JobStatus.CANCELLED):
            add_job(store, status=status)  # finished or paused: no place taken
        add_job(store, project="other")
        refused = make_job()
        with pytest.raises(TooManyRequests) as error:
            store.create_job(refused, make_event(refused.id), max_active=3)
        assert error.value.status == 429 and error.value.retry_after
        assert store.get_job(refused.id) is None  # nothing of it was stored
        assert store.list_events(refused.id, after=None, limit=10).items == []
        store.create_job(refused, make_event(refused.id), max_active=4)


# Uploads and checkpoint permissions (issue 14) ----------------------------------------------

NOW = 1_800_000_000


def make_upload(project: str = PROJECT, size: int = 10, created_at: int = NOW) -> StoredUpload:
    return StoredUpload(id=ids.new_id(ids.UPLOAD), project_id=project, created_at=created_at,
                        expires_at=created_at + UPLOAD_LIFETIME_SECONDS, filename="big.jsonl",
                        purpose="fine-tune", bytes=size, mime_type="text/jsonl",
                        file_expires_after=7200)


def make_part(upload: StoredUpload, size: int = 5) -> UploadPart:
    return UploadPart(id=ids.new_id(ids.UPLOAD_PART), upload_id=upload.id, created_at=NOW,
                      bytes=size)


class TestUploads:
    def test_round_trip_and_projects(self, store: SqlStore) -> None:
        upload = make_upload()
        store.add_upload(upload)
        assert store.get_upload(PROJECT, upload.id) == upload
        assert store.get_upload(None, upload.id) == upload
        assert store.get_upload("other", upload.id) is None

    def test_parts_are_kept_in_creation_order_until_the_upload_ends(self, store: SqlStore) -> None:
        upload = make_upload()
        store.add_upload(upload)
        parts = [make_part(upload), make_part(upload, 3)]
        for part in parts:
            store.add_upload_part(part, at=NOW, max_total=100)
        assert store.upload_parts(upload.id) == parts
        file = replace(make_file(), bytes=10)
        completed = store.complete_upload(upload.id, file, at=NOW + 1)
        assert completed.status is UploadStatus.COMPLETED and completed.file_id == file.id
        assert store.get_file(PROJECT, file.id) == file  # in the same transaction
        assert store.upload_parts(upload.id) == []

    def test_parts_only_while_pending_and_within_the_total(self, store: SqlStore) -> None:
        upload = make_upload()
        store.add_upload(upload)
        store.add_upload_part(make_part(upload, 60), at=NOW, max_total=100)
        with pytest.raises(InvalidRequest, match="past the 100 bytes"):
            store.add_upload_part(make_part(upload, 41), at=NOW, max_total=100)
        store.add_upload_part(make_part(upload, 40), at=NOW, max_total=100)  # exactly the limit
        with pytest.raises(Conflict, match="is expired"):
            store.add_upload_part(make_part(upload), at=upload.expires_at, max_total=100)
        assert store.cancel_upload(upload.id, at=NOW).status is UploadStatus.CANCELLED
        with pytest.raises(Conflict, match="is cancelled"):
            store.add_upload_part(make_part(upload), at=NOW, max_total=100)
        assert store.upload_parts(upload.id) == []
        with pytest.raises(NotFound):
            store.add_upload_part(make_part(make_upload()), at=NOW, max_total=100)

    def test_complete_and_cancel_are_compare_and_set(self, store: SqlStore) -> None:
        upload = make_upload()
        store.add_upload(upload)
        first = make_file()
        store.complete_upload(upload.id, first, at=NOW)
        second = make_file()
        with pytest.raises(Conflict, match="is completed"):
            store.complete_upload(upload.id, second, at=NOW)
        assert store.get_file(PROJECT, second.id) is None  # rolled back with the refusal
        with pytest.raises(Conflict, match="is completed"):
            store.cancel_upload(upload.id, at=NOW)
        late = make_upload()
        store.add_upload(late)
        with pytest.raises(Conflict, match="is expired"):
            store.complete_upload(late.id, make_file(), at=late.expires_at + 1)

    def test_expiry_is_recorded_by_expire_uploads_only(self, store: SqlStore) -> None:
        old, young = make_upload(created_at=NOW - 4000), make_upload()
        done = make_upload(created_at=NOW - 4000)
        for upload in (old, young, done):
            store.add_upload(upload)
        store.add_upload_part(make_part(old), at=NOW - 3000, max_total=100)
        store.cancel_upload(done.id, at=NOW - 3000)
        ids_ = [old.id, young.id, done.id, "upload_neverexisted"]
        assert store.pending_upload_ids(ids_, at=NOW) == {young.id}
        assert store.get_upload(PROJECT, old.id).status is UploadStatus.PENDING  # reads change nothing
        assert store.expire_uploads(NOW) == 1
        assert store.get_upload(PROJECT, old.id).status is UploadStatus.EXPIRED
        assert store.get_upload(PROJECT, done.id).status is UploadStatus.CANCELLED
        assert store.upload_parts(old.id) == []
        assert store.expire_uploads(NOW) == 0

    def test_sizes_past_32_bits(self, store: SqlStore) -> None:
        upload = make_upload(size=8 * 1024 ** 3)
        store.add_upload(upload)
        store.add_upload_part(make_part(upload, 3 * 1024 ** 3), at=NOW, max_total=8 * 1024 ** 3)
        big = replace(make_file(), bytes=8 * 1024 ** 3)
        store.complete_upload(upload.id, big, at=NOW)
        assert store.get_file(PROJECT, big.id).bytes == 8 * 1024 ** 3


def make_model(project: str = PROJECT, suffix: str = "m") -> FineTunedModel:
    return FineTunedModel(id=f"ft:SmolLM2-135M-Instruct:org:{suffix}:{ids.short_id()}",
                          project_id=project, job_id="ftjob-x", base_model="SmolLM2",
                          created_at=5, kind="model", path="/tmp/m")


def permission(model: FineTunedModel, project: str) -> CheckpointPermission:
    return CheckpointPermission(id=ids.new_id(ids.PERMISSION), model_id=model.id,
                                project_id=project, created_at=NOW)


class TestCheckpointPermissions:
    def test_a_permission_shares_the_model_for_reading_not_deleting(self, store: SqlStore) -> None:
        model, other = make_model(), make_model(suffix="other")
        store.add_model(model)
        store.add_model(other)
        assert store.get_model("bob", model.id) is None
        [granted] = store.add_permissions(model.id, [permission(model, "bob")])
        assert store.get_model("bob", model.id) == model
        assert store.list_models("bob") == [model]
        assert store.get_model("carol", model.id) is None and store.list_models("carol") == []
        assert not store.delete_model("bob", model.id)
        assert store.delete_permission(model.id, granted.id)
        assert not store.delete_permission(model.id, granted.id)
        assert store.get_model("bob", model.id) is None and store.list_models("bob") == []

    def test_each_project_is_granted_once(self, store: SqlStore) -> None:
        model = make_model()
        store.add_model(model)
        first = store.add_permissions(model.id, [permission(model, "bob")])
        again = store.add_permissions(model.id, [permission(model, "carol"),
                                                 permission(model, "bob")])
        assert [p.project_id for p in again] == ["carol", "bob"] and again[1] == first[0]
        listed = store.list_permissions(model.id, project_id=None, after=None, limit=10,
                                        ascending=True)
        assert [p.project_id for p in listed.items] == ["bob", "carol"]

    def test_list_pages_filters_and_orders(self, store: SqlStore) -> None:
        model = make_model()
        store.add_model(model)
        granted = store.add_permissions(model.id, [permission(model, f"p{i}") for i in range(5)])
        newest = store.list_permissions(model.id, project_id=None, after=None, limit=2,
                                        ascending=False)
        assert newest.items == granted[:2:-1] and newest.has_more
        rest = store.list_permissions(model.id, project_id=None, after=granted[3].id, limit=10,
                                      ascending=False)
        assert rest.items == granted[2::-1] and not rest.has_more
        only = store.list_permissions(model.id, project_id="p1", after=None, limit=10,
                                      ascending=True)
        assert only.items == [granted[1]]

    def test_a_permission_belongs_to_its_model(self, store: SqlStore) -> None:
        model, other = make_model(), make_model(suffix="other")
        store.add_model(model)
        store.add_model(other)
        [granted] = store.add_permissions(model.id, [permission(model, "bob")])
        assert not store.delete_permission(other.id, granted.id)
        assert store.list_permissions(other.id, project_id=None, after=None, limit=10,
                                      ascending=True).items == []

    def test_deleting_the_model_ends_its_permissions(self, store: SqlStore) -> None:
        model = make_model()
        store.add_model(model)
        store.add_permissions(model.id, [permission(model, "bob")])
        assert store.delete_model(PROJECT, model.id)
        assert store.list_permissions(model.id, project_id=None, after=None, limit=10,
                                      ascending=True).items == []
        store.add_model(model)  # the same name again (a restored backup, say): not shared
        assert store.get_model("bob", model.id) is None
