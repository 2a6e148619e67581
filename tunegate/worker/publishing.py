"""Publishing a job whose training succeeded: its adapter (and each kept checkpoint's) exported
to GGUF, its results file written, and then, in one transaction, the job ``succeeded`` with
its fine-tuned models registered, its results file's row and its final events.

Every step may be redone by a worker that takes the job over after a crash: an export skips a
``adapter.gguf`` already written, the results file keeps the id first chosen for it (its bytes
are overwritten, never left without a row), and nothing is published before the transaction.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tunegate import ids
from tunegate.domain.files import (
    FINE_TUNE_RESULTS,
    FileStorage,
    StoredFile,
    results_file_content,
)
from tunegate.domain.jobs import FineTuningJob, JobStatus, job_event, now
from tunegate.store.base import FineTunedModel, Store
from tunegate.training.spec import TrainingResult
from tunegate.worker.faults import freeze_point
from tunegate.worker.models import ResolvedModel
from tunegate.worker.moves import move_as_worker

RESULTS_FILE_ID = "results-file-id"


@dataclass(frozen=True)
class Publisher:
    """Publishes this worker's finished jobs; ``export`` writes a finished adapter folder's GGUF
    (the executor's: ``export_gguf`` or a test's stand-in)."""

    store: Store
    storage: FileStorage
    worker_id: str
    export: Callable[[Path, ResolvedModel, str], None]

    def publish(self, job: FineTuningJob, result: TrainingResult, model: ResolvedModel,
                name: str, work_dir: Path) -> None:
        """Export, write the results file and move the job to ``succeeded`` as fine-tuned model
        ``name`` (nothing moves when the user got there first: a cancel)."""
        checkpoints = self.store.checkpoint_paths(job.id)
        if model.base.kind == "gguf":
            self.store.record_progress(job.id, self.worker_id, [job_event(
                job.id, "Exporting the adapter and its checkpoints to GGUF")])
        self.export(work_dir, model, name)
        freeze_point("export", job.id)
        for checkpoint_name, folder in checkpoints.items():
            self.export(Path(folder), model, checkpoint_name)
        created = now()
        models = [FineTunedModel(id=name, project_id=job.project_id, job_id=job.id,
                                 base_model=model.base.id, created_at=created, kind="model",
                                 path=str(work_dir))]
        models += [FineTunedModel(id=ckpt_name, project_id=job.project_id, job_id=job.id,
                                  base_model=model.base.id, created_at=created,
                                  kind="checkpoint", path=folder)
                   for ckpt_name, folder in checkpoints.items()]
        results = self._results_file(job, work_dir, result.results_csv)
        freeze_point("finalize", job.id)
        move_as_worker(self.store, self.storage, self.worker_id, job, JobStatus.SUCCEEDED,
                       "The job has successfully completed",
                       extra_events=[f"New fine-tuned model created: {name}"],
                       changes={"fine_tuned_model": name, "trained_tokens": result.trained_tokens,
                                "result_files": [results.id] if results else []},
                       new_files=[results] if results else [], new_models=models)

    @staticmethod
    def _results_file_id(work_dir: Path) -> str:
        """The results file's id, chosen once per job and kept in its folder: a publish redone
        after a crash overwrites the same bytes instead of leaving a file without a row."""
        path = work_dir / RESULTS_FILE_ID
        if path.is_file():
            return path.read_text(encoding="ascii").strip()
        file_id = ids.new_id(ids.FILE)
        temporary = path.with_name(f".{RESULTS_FILE_ID}.tmp")
        temporary.write_text(file_id, encoding="ascii")
        temporary.replace(path)
        return file_id

    def _results_file(self, job: FineTuningJob, work_dir: Path,
                      csv_path: str | None) -> StoredFile | None:
        if not csv_path or not Path(csv_path).is_file():
            return None
        file_id = self._results_file_id(work_dir)
        content = results_file_content(Path(csv_path).read_bytes())  # a few KiB: one row a step
        size = self.storage.write(file_id, io.BytesIO(content))
        return StoredFile(id=file_id, project_id=job.project_id, bytes=size, created_at=now(),
                          filename=f"{job.id}-results.csv", purpose=FINE_TUNE_RESULTS)


def export_gguf(folder: Path, model: ResolvedModel, name: str) -> None:
    """Write ``adapter.gguf`` beside the PEFT ``adapter/`` folder (GGUF bases only); one
    written before the worker died is complete (it is renamed into place) and is kept."""
    target = folder / "adapter.gguf"
    if model.base.kind != "gguf" or target.is_file():
        return
    from tunegate.adapters.export import export_lora_gguf

    export_lora_gguf(folder / "adapter", model.base.path, target, name=name)
