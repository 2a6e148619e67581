"""Rows <-> domain objects: the store's only mapping between its tables and ``tunegate.domain``.

Rows of ``select(table)`` are read by position (a Row's attribute access costs ~0.3 us a field,
which a listing of 50 jobs pays 950 times): the columns named like the domain class's fields,
in the order of its fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from operator import itemgetter
from typing import Any, TypeVar

from sqlalchemy import Row, Table

from tunegate.domain.files import StoredFile
from tunegate.domain.jobs import Checkpoint, EventLevel, FineTuningJob, JobError, JobEvent, JobStatus
from tunegate.domain.models import CheckpointPermission
from tunegate.domain.uploads import StoredUpload, UploadPart, UploadStatus
from tunegate.store import schema
from tunegate.store.base import FineTunedModel

Domain = TypeVar("Domain")


def from_row(table: Table, domain_class: type[Domain],
             **convert: Callable[[Any], Any]) -> Callable[[Row[Any]], Domain]:
    """``row of select(table) -> domain_class(...)``, each field from the column of its name,
    passed through ``convert[name]`` where given."""
    names = [field.name for field in dataclasses.fields(domain_class)]  # type: ignore[arg-type]
    columns = list(table.c.keys())
    values_of = itemgetter(*(columns.index(name) for name in names))
    converters = [(names.index(name), function) for name, function in convert.items()]

    def build(row: Row[Any]) -> Domain:
        values = list(values_of(row))
        for index, function in converters:
            values[index] = function(values[index])
        return domain_class(*values)

    return build


as_file = from_row(schema.files, StoredFile)


def file_values(file: StoredFile) -> dict[str, Any]:
    """The column values of a new file row."""
    return {
        "id": file.id, "project_id": file.project_id, "bytes": file.bytes,
        "created_at": file.created_at, "filename": file.filename, "purpose": file.purpose,
        "expires_at": file.expires_at, "status": file.status,
        "status_details": file.status_details,
    }


def model_values(model: FineTunedModel) -> dict[str, Any]:
    """The column values of a new fine-tuned model row."""
    return {
        "id": model.id, "project_id": model.project_id, "job_id": model.job_id,
        "base_model": model.base_model, "created_at": model.created_at, "kind": model.kind,
        "path": model.path,
    }


as_job = from_row(schema.jobs, FineTuningJob, status=JobStatus,
                  error=lambda error: JobError(**error) if error else None,
                  result_files=lambda files: list(files or []))


def job_values(job: FineTuningJob) -> dict[str, Any]:
    """The column values of a new job row."""
    return {
        "id": job.id, "project_id": job.project_id, "created_at": job.created_at,
        "model": job.model, "organization_id": job.organization_id, "status": job.status.value,
        "training_file": job.training_file, "validation_file": job.validation_file,
        "method": job.method, "seed": job.seed, "suffix": job.suffix, "metadata": job.metadata,
        "integrations": job.integrations, "fine_tuned_model": job.fine_tuned_model,
        "finished_at": job.finished_at, "trained_tokens": job.trained_tokens,
        "error": job.error.to_api() if job.error else None, "result_files": job.result_files,
        "estimated_finish": job.estimated_finish,
    }


as_event = from_row(schema.job_events, JobEvent, level=EventLevel)


def event_values(item: JobEvent) -> dict[str, Any]:
    """The column values of a new job event row."""
    return {
        "id": item.id, "job_id": item.job_id, "created_at": item.created_at,
        "level": item.level.value, "message": item.message, "type": item.type, "data": item.data,
    }


as_checkpoint = from_row(schema.checkpoints, Checkpoint)
as_model = from_row(schema.fine_tuned_models, FineTunedModel)
as_upload = from_row(schema.uploads, StoredUpload, status=UploadStatus)
as_upload_part = from_row(schema.upload_parts, UploadPart)
as_permission = from_row(schema.checkpoint_permissions, CheckpointPermission)


def change_values(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Domain values -> column values (errors to dicts); ``status`` is not changeable here."""
    if "status" in changes:
        raise ValueError("status changes only through Store.transition")
    values = dict(changes)
    if isinstance(values.get("error"), JobError):
        values["error"] = values["error"].to_api()
    return values

