"""Use cases behind the HTTP handlers: files, fine-tuning jobs and models.

Handlers call exactly one method here; this layer owns the rules and speaks only in domain
objects and ``tunegate.errors`` exceptions. Job status changes go through ``Store.transition``.

Every method takes the caller's ``project_id``: objects of other projects are answered exactly
like missing ones (404, same message). Reads also take ``None``, an admin key's "every project";
new objects always go into a real project.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from tunegate import ids
from tunegate.adapters import files as adapter_files
from tunegate.api.accepted_files import check_contents, new_file
from tunegate.api.event_feed import EventFeed, Follower
from tunegate.api.uploads import Uploads
from tunegate.domain import catalog, work_dirs
from tunegate.domain.files import FINE_TUNE, FileStorage, StoredFile, clean_filename
from tunegate.domain.job_requests import check_metadata, normalize_method, seed_for
from tunegate.domain.jobs import (
    Checkpoint,
    EventLevel,
    FineTuningJob,
    JobEvent,
    JobStatus,
    job_event,
    now,
)
from tunegate.domain.model_names import ResolvedName, resolve_name
from tunegate.domain.models import CheckpointPermission
from tunegate.domain.uploads import UploadStorage
from tunegate.errors import Conflict, Forbidden, InvalidRequest, NotFound, clip
from tunegate.serving import completions, open_pool
from tunegate.serving.pool import ModelFiles
from tunegate.settings import OPENAI_MODEL_NAMES, Settings
from tunegate.store.base import FineTunedModel, Page, Store


@dataclass(frozen=True)
class Upload:
    """A file as received: its name, a readable body, and the form fields."""

    filename: str
    body: IO[bytes]
    purpose: str
    expires_after_seconds: int | None = None


class Service:
    def __init__(self, settings: Settings, store: Store, storage: FileStorage):
        self.settings = settings
        self.store = store
        self.storage = storage
        # Parts of pending uploads (the Uploads API), and its use cases.
        self.upload_storage = UploadStorage(settings.uploads_dir)
        self.uploads = Uploads(settings, store, storage, self.upload_storage)
        # Model processes start on first use: nothing of llama.cpp runs until a completion.
        self.inference = open_pool(settings)
        # New job events for the live event streams: one poller for all of them.
        self.live_events = EventFeed(store)

    # Files ----------------------------------------------------------------------------------
    # Messages quote ids and names the client sent with clip(): they may be megabytes long.

    def upload_file(self, project_id: str, upload: Upload) -> StoredFile:
        """Store the bytes, check JSONL for fine-tune files, then make the file visible."""
        file_id = ids.new_id(ids.FILE)  # the name on disk: never anything the client sent
        size = self.storage.write(file_id, upload.body)
        try:
            check_contents(self.storage.path(file_id), upload.purpose, self.settings,
                           param="file")
            stored = new_file(file_id, project_id, size=size,
                              filename=clean_filename(upload.filename), purpose=upload.purpose,
                              expires_after_seconds=upload.expires_after_seconds)
            self.store.add_file(stored)
        except BaseException:
            self.storage.delete(file_id)
            raise
        return stored

    def get_file(self, project_id: str | None, file_id: str) -> StoredFile:
        stored = self.store.get_file(project_id, file_id)
        if stored is None or stored.expired(now()):
            raise NotFound(f"No such File object: {clip(file_id)}", param="file_id",
                           code="file_not_found")
        return stored

    def list_files(self, project_id: str | None, *, purpose: str | None, after: str | None,
                   limit: int, order: str) -> Page[StoredFile]:
        # Expired files are hidden here and deleted by the worker's sweep: a read deletes nothing.
        return self.store.list_files(project_id, purpose=purpose, after=after, limit=limit,
                                     ascending=order == "asc", at=now())

    def file_content(self, project_id: str | None, file_id: str) -> tuple[StoredFile, Iterator[bytes]]:
        stored = self.get_file(project_id, file_id)
        return stored, self.storage.read_chunks(file_id)

    def delete_file(self, project_id: str | None, file_id: str) -> str:
        stored = self.get_file(project_id, file_id)
        # The file's own project (an admin's project_id is None: every project).
        users = self.store.unfinished_jobs_using(stored.project_id, file_id=file_id)
        if users:
            raise Conflict(
                f"File {file_id} is used by fine-tuning job {users[0]}, which has not finished; "
                "cancel the job or wait for it to end before deleting the file.",
                param="file_id", code="file_in_use",
            )
        self.store.delete_file(project_id, file_id)
        self.storage.delete(file_id)
        return file_id

    # Jobs -----------------------------------------------------------------------------------

    def _training_input(self, project_id: str, file_id: str | None, param: str) -> None:
        if file_id is None:
            return
        stored = self.store.get_file(project_id, file_id)
        if stored is None:
            raise InvalidRequest(f"invalid {param}: no such file {clip(file_id)}", param=param,
                                 code="file_not_found")
        if stored.expired(now()):
            raise InvalidRequest(
                f"invalid {param}: {file_id} expired at {stored.expires_at} (its expires_after); "
                "upload it again to train on it.", param=param, code="file_expired")
        if stored.purpose != FINE_TUNE:
            raise InvalidRequest(
                f"invalid {param}: {file_id} was uploaded with purpose '{stored.purpose}'; "
                "fine-tuning files need purpose 'fine-tune'.",
                param=param, code="invalid_file_purpose",
            )

    def _check_model(self, project_id: str, model: str) -> None:
        """A base model, an alias of one (TUNEGATE_MODEL_ALIASES), or a fine-tuned model of
        the project; else 400 naming what is available."""
        resolved = self._resolve(project_id, model)
        if resolved.is_base:
            return
        self._refuse_unsupported(model)
        if resolved.alias is not None:
            if resolved.base is not None:
                return
            raise InvalidRequest(
                f"Model {model} stands for the base model {resolved.alias.target} on this server "
                f"(setting TUNEGATE_MODEL_ALIASES), which is not available. Available base "
                f"models: {self._base_model_ids()}.", param="model", code="model_not_available")
        # A fine-tuned model or checkpoint of the project, or one shared with it.
        if resolved.tuned is not None:
            return
        if self.settings.model_aliases:
            aliases = ("; OpenAI model names standing for a local base model (setting "
                       "TUNEGATE_MODEL_ALIASES): "
                       + ", ".join(name for name, _ in self.settings.model_aliases))
        elif model in OPENAI_MODEL_NAMES:
            aliases = ("; OpenAI model names are not accepted on this server (setting "
                       "TUNEGATE_MODEL_ALIASES is off)")
        else:
            aliases = ""
        raise InvalidRequest(
            f"Model {clip(model)} is not available for fine-tuning or does not exist. Available base "
            f"models: {self._base_model_ids()}; fine-tuned models and checkpoints (ft:…) "
            f"of this project, or shared with it, can be trained further{aliases}.",
            param="model", code="model_not_available",
        )

    def _resolve(self, project_id: str | None, model_id: str) -> ResolvedName:
        """What ``model_id`` means to ``project_id`` (its fine-tuned models and those shared
        with it; ``None``: every project's)."""
        return resolve_name(self.settings.base_models_dir, self.settings.model_aliases, model_id,
                            lambda name: self.store.get_model(project_id, name))

    def _refuse_unsupported(self, model_id: str) -> None:
        """400 ``unsupported_base_model`` when ``model_id`` is a refused file of the models
        folder (an architecture tunegate cannot export or serve): why, and what works."""
        refused = catalog.refused_base_model(self.settings.base_models_dir, model_id)
        if refused is not None:
            raise InvalidRequest(refused.message(), param="model", code="unsupported_base_model")

    def _base_model_ids(self) -> str:
        return ", ".join(m.id for m in catalog.base_models(self.settings.base_models_dir)) or "none"

    def create_job(self, project_id: str, body: Mapping[str, Any],
                   organization_id: str | None = None) -> FineTuningJob:
        """Validate the request synchronously, then commit the job and its first event, unless
        the project already has ``max_active_jobs`` waiting or training (429, nothing stored)."""
        request = dict(body)
        method = normalize_method(request)
        self._check_model(project_id, request["model"])
        self._training_input(project_id, request["training_file"], "training_file")
        self._training_input(project_id, request.get("validation_file"), "validation_file")
        check_metadata(request.get("metadata"))
        job = FineTuningJob(
            id=ids.new_id(ids.JOB), project_id=project_id, created_at=now(),
            model=request["model"],
            organization_id=organization_id or self.settings.organization_id,
            status=JobStatus.VALIDATING_FILES, training_file=request["training_file"],
            validation_file=request.get("validation_file"), method=method,
            seed=seed_for(request), suffix=request.get("suffix"),
            metadata=request.get("metadata"), integrations=request.get("integrations"),
        )
        self.store.create_job(job, job_event(job.id, f"Created fine-tuning job: {job.id}"),
                              max_active=self.settings.max_active_jobs)
        if job.integrations:
            self.store.add_events([job_event(
                job.id, "Integrations (e.g. Weights & Biases) are not run by tunegate: this "
                "machine reports no metrics outside. They are kept on the job as given.",
                EventLevel.WARN)])
        return job

    def get_job(self, project_id: str | None, job_id: str) -> FineTuningJob:
        job = self.store.get_job(job_id, project_id)
        if job is None:
            raise NotFound(f"No such fine-tuning job: {clip(job_id)}", param="fine_tuning_job_id",
                           code="fine_tuning_job_not_found")
        return job

    def list_jobs(self, project_id: str | None, *, after: str | None, limit: int,
                  metadata: Mapping[str, str] | None) -> Page[FineTuningJob]:
        return self.store.list_jobs(project_id, after=after, limit=limit, metadata=metadata)

    def cancel_job(self, project_id: str | None, job_id: str) -> FineTuningJob:
        """Cancel any unfinished job. A running one's worker stops its trainer at the next check
        and removes the job's folder then; no process writes to the folder of a job in any
        other status (a worker moves a claimed job to ``running`` before it writes), so it goes
        now."""
        before = self.get_job(project_id, job_id)
        cancelled = self.store.transition(
            job_id, JobStatus.CANCELLED, events=[job_event(job_id, "Fine-tuning job cancelled")])
        if before.status is not JobStatus.RUNNING:
            work_dirs.settle(self.settings.job_dir(job_id), JobStatus.CANCELLED)
        return cancelled

    def pause_job(self, project_id: str | None, job_id: str) -> FineTuningJob:
        self.get_job(project_id, job_id)
        return self.store.transition(
            job_id, JobStatus.PAUSED, events=[job_event(job_id, "Fine-tuning job paused")])

    def resume_job(self, project_id: str | None, job_id: str) -> FineTuningJob:
        """Put a paused job back in the queue; any other status is a 409, and a project already
        at ``max_active_jobs`` gets a 429 (a paused job holds no place; a queued one does)."""
        self.get_job(project_id, job_id)
        return self.store.transition(
            job_id, JobStatus.QUEUED, only_from=frozenset({JobStatus.PAUSED}),
            events=[job_event(job_id, "Fine-tuning job resumed, moving job to queued state")],
            max_active=self.settings.max_active_jobs,
        )

    def list_events(self, project_id: str | None, job_id: str, *, after: str | None,
                    limit: int) -> Page[JobEvent]:
        self.get_job(project_id, job_id)
        return self.store.list_events(job_id, after=after, limit=limit)

    def follow_events(self, project_id: str | None, job_id: str, *,
                      after: str | None) -> Follower:
        """The job's events after ``after`` (all without it), then live ones until its terminal
        event. Checked now, before any stream starts: an unknown or hidden job is a 404 and an
        ``after`` that is not one of the job's events a 400."""
        self.get_job(project_id, job_id)
        if after is not None and not self.store.has_event(job_id, after):
            raise InvalidRequest(
                f"No event {clip(after)} in fine-tuning job {job_id}: resume a stream with the "
                "id of one of the job's events (the `id:` line of the last event received).",
                param="last_event_id", code="unknown_event_id")
        return Follower(self.live_events, job_id, after)

    def list_checkpoints(self, project_id: str | None, job_id: str, *, after: str | None,
                         limit: int) -> Page[Checkpoint]:
        self.get_job(project_id, job_id)
        return self.store.list_checkpoints(job_id, after=after, limit=limit)

    # Models ---------------------------------------------------------------------------------

    def list_models(self, project_id: str | None) -> list[dict[str, Any]]:
        bases = [m.to_api() for m in catalog.base_models(self.settings.base_models_dir)]
        return bases + [m.to_api() for m in self.store.list_models(project_id)]

    def get_model(self, project_id: str | None, model_id: str) -> dict[str, Any]:
        base = catalog.find_base_model(self.settings.base_models_dir, model_id)
        if base is not None:
            return base.to_api()
        return self._tuned_model(project_id, model_id).to_api()

    def _tuned_model(self, project_id: str | None, model_id: str) -> FineTunedModel:
        tuned = self.store.get_model(project_id, model_id)
        if tuned is None:
            raise _no_such_model(model_id)
        return tuned

    def delete_model(self, project_id: str | None, model_id: str) -> str:
        if catalog.find_base_model(self.settings.base_models_dir, model_id):
            raise InvalidRequest(
                f"{model_id} is a base model; only fine-tuned models can be deleted. Remove "
                "the file from the models folder to withdraw a base model.",
                param="model", code="base_model_not_deletable",
            )
        tuned = self._tuned_model(project_id, model_id)
        if project_id is not None and tuned.project_id != project_id:
            raise Forbidden(
                f"The model {model_id} belongs to another project, which shares it with this "
                "one; only its own project (or an admin key) can delete it.",
                param="model", code="model_not_owned")
        # Jobs of the projects it is shared with count too; only the caller's are named.
        users = self.store.unfinished_jobs_using(None, model=model_id)
        if users:
            own = self.store.unfinished_jobs_using(project_id, model=model_id)
            job = (f"fine-tuning job {own[0]}" if own
                   else "a fine-tuning job of a project it is shared with")
            raise Conflict(
                f"Model {model_id} is the starting point of {job}, which has not finished; "
                "cancel the job or wait for it to end first.",
                param="model", code="model_in_use",
            )
        self.store.delete_model(project_id, model_id)
        self.inference.evict(model_id)
        adapter_files.remove(tuned)
        return model_id

    def adapter_download(self, project_id: str | None, model_id: str,
                         format: str) -> adapter_files.Download:
        """A fine-tuned model's adapter as a llama.cpp GGUF (``gguf``) or a zipped PEFT folder."""
        if catalog.find_base_model(self.settings.base_models_dir, model_id):
            raise InvalidRequest(f"{model_id} is a base model; only fine-tuned models and "
                                 "checkpoints have adapters.", param="model", code="no_adapter")
        return adapter_files.download(self._tuned_model(project_id, model_id), format)

    # Checkpoint permissions ------------------------------------------------------------------
    # OpenAI's endpoints "require an admin API key"; so do ours (an admin key is the operator's).

    @staticmethod
    def _require_admin(admin: bool) -> None:
        if not admin:
            raise Forbidden(
                "Checkpoint permissions need an admin API key (a key with \"admin\": true in "
                "the keys file, TUNEGATE_KEYS_FILE).", code="admin_key_required")

    def _shareable(self, model_id: str) -> FineTunedModel:
        tuned = self.store.get_model(None, model_id)
        if tuned is None:
            raise NotFound(f"The model `{clip(model_id)}` does not exist or you do not have access "
                           "to it.", param="fine_tuned_model_checkpoint", code="model_not_found")
        return tuned

    def create_permissions(self, admin: bool, model_id: str,
                           project_ids: list[str]) -> Page[CheckpointPermission]:
        """Share a fine-tuned model or checkpoint with other projects (each at most once);
        the permission of each project named, in the order named (OpenAI answers a list)."""
        self._require_admin(admin)
        tuned = self._shareable(model_id)
        if tuned.project_id in project_ids:
            raise InvalidRequest(f"Project {clip(tuned.project_id)} owns {model_id}: share it with "
                                 "other projects.", param="project_ids",
                                 code="owner_in_project_ids")
        created = now()
        wanted = [CheckpointPermission(id=ids.new_id(ids.PERMISSION), model_id=model_id,
                                       project_id=project, created_at=created)
                  for project in dict.fromkeys(project_ids)]  # each once, in the given order
        return Page(self.store.add_permissions(model_id, wanted))

    def list_permissions(self, admin: bool, model_id: str, *, project_id: str | None,
                         after: str | None, limit: int, order: str) -> Page[CheckpointPermission]:
        self._require_admin(admin)
        self._shareable(model_id)
        return self.store.list_permissions(model_id, project_id=project_id, after=after,
                                           limit=limit, ascending=order == "ascending")

    def delete_permission(self, admin: bool, model_id: str, permission_id: str) -> str:
        """Take a shared model back from a project; it then answers there as if it never
        existed (a job of that project still waiting to train from it fails)."""
        self._require_admin(admin)
        self._shareable(model_id)
        if not self.store.delete_permission(model_id, permission_id):
            raise NotFound(f"No such checkpoint permission: {clip(permission_id)}",
                           param="permission_id", code="permission_not_found")
        return permission_id

    # Inference ------------------------------------------------------------------------------

    def chat_completion(self, project_id: str | None,
                        body: Mapping[str, Any]) -> dict[str, Any] | Iterator[dict[str, Any]]:
        """An OpenAI chat completion; with ``stream``, an iterator of chunk objects."""
        request = completions.chat_request(body)
        return completions.run(self.inference, self._servable(project_id, request.model), request)

    def completion(self, project_id: str | None,
                   body: Mapping[str, Any]) -> dict[str, Any] | Iterator[dict[str, Any]]:
        """An OpenAI (legacy) text completion; with ``stream``, an iterator of chunk objects."""
        request = completions.completion_request(body)
        return completions.run(self.inference, self._servable(project_id, request.model), request)

    def _servable(self, project_id: str | None, model_id: str) -> ModelFiles:
        """What llama.cpp loads for ``model_id``: a GGUF base, plus the adapter for ft models.

        An alias runs the base it stands for, in the base's own process (the reply's ``model``
        is still the name the client sent)."""
        resolved = self._resolve(project_id, model_id)
        if not resolved.is_base:
            self._refuse_unsupported(model_id)
        base, adapter = resolved.base, None
        served_id = model_id  # the pool's key: an alias shares its base's process
        if resolved.alias is not None:
            if base is None:
                raise InvalidRequest(
                    f"The model {model_id} stands for the base model {resolved.alias.target} on "
                    "this server (setting TUNEGATE_MODEL_ALIASES), which is not among the base "
                    "models.", param="model", code="model_not_servable")
            served_id = base.id
        elif resolved.tuned is not None:
            tuned = resolved.tuned
            if base is None:
                raise InvalidRequest(
                    f"The model {model_id} was trained from {tuned.base_model}, which is no "
                    "longer among the base models.", param="model", code="model_not_servable")
            adapter = adapter_files.gguf_file(tuned)
            if adapter is None and base.kind == "gguf":
                raise InvalidRequest(f"The model {model_id} has no llama.cpp adapter "
                                     f"({adapter_files.ADAPTER_GGUF}).", param="model",
                                     code="model_not_servable")
        if base is None:
            raise _no_such_model(model_id)
        if base.kind != "gguf":
            raise InvalidRequest(
                f"{model_id} cannot be served: its base model {base.id} is a Hugging Face folder, "
                "and tunegate serves completions with llama.cpp, which runs GGUF files only. "
                "Add the folder with `tunegate models add FOLDER` instead (it converts it to a "
                "GGUF with llama.cpp's convert_hf_to_gguf.py) to serve it and to fine-tune "
                "servable models from it.",
                param="model", code="model_not_servable")
        return ModelFiles(served_id, base.path, adapter)


def _no_such_model(model_id: str) -> NotFound:
    return NotFound(f"The model `{clip(model_id)}` does not exist or you do not have access to it.",
                    param="model", code="model_not_found")
