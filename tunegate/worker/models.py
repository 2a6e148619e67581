"""Which base a job trains on: its ``model``, or the base of the fine-tuned model it continues
(torch-free; both stages ask)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunegate.domain import catalog
from tunegate.domain.jobs import FineTuningJob
from tunegate.settings import Settings
from tunegate.store.base import Store
from tunegate.training.spec import BaseModelRef


@dataclass(frozen=True)
class ResolvedModel:
    """The base a job trains on, and the adapter it continues from (for ``ft:`` models)."""

    base: catalog.BaseModel
    init_adapter: str | None

    @property
    def ref(self) -> BaseModelRef:
        """The base as the trainer names it."""
        base = self.base
        return BaseModelRef(name=base.id, kind=base.kind,
                            path=str(base.path.parent if base.kind == "gguf" else base.path),
                            gguf_file=base.path.name if base.kind == "gguf" else None)


def resolve_model(settings: Settings, store: Store, job: FineTuningJob) -> ResolvedModel:
    """Raises ``LookupError`` when the model (or a fine-tuned model's base) is gone."""
    models_dir = settings.base_models_dir
    base = catalog.find_base_model(models_dir, job.model)
    if base is not None:
        return ResolvedModel(base, None)
    tuned = store.get_model(job.project_id, job.model)
    base = catalog.find_base_model(models_dir, tuned.base_model) if tuned else None
    if tuned is None or base is None:
        raise LookupError(f"Model {job.model} is no longer available.")
    return ResolvedModel(base, str(Path(tuned.path) / "adapter"))
