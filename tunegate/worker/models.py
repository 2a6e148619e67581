"""Which base a job trains on: its ``model``, the base an alias stands for, or the base of the
fine-tuned model it continues (torch-free; both stages ask)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunegate.domain import catalog, former_names
from tunegate.domain.jobs import FineTuningJob, base_name_of
from tunegate.domain.model_names import resolve_name
from tunegate.settings import Settings
from tunegate.store.base import Store
from tunegate.training.spec import BaseModelRef


@dataclass(frozen=True)
class ResolvedModel:
    """The base a job trains on, and the adapter it continues from (for ``ft:`` models).

    ``name`` is the ``{base}`` of the fine-tuned model's name when it is not ``base.id``: the
    alias the job named (``gpt-4o-mini-2024-07-18``), or the one its ``ft:`` model was named by.
    ``alias`` is the job's ``model`` when that is an alias.
    """

    base: catalog.BaseModel
    init_adapter: str | None
    name: str | None = None
    alias: str | None = None
    gradient_checkpointing: bool = False  # the memory plan's (tunegate.worker.memory_plan)

    @property
    def public_name(self) -> str:
        """The ``{base}`` of ``ft:{base}:{org}:{suffix}:{id}``."""
        return self.name or self.base.id

    @property
    def ref(self) -> BaseModelRef:
        """The base as the trainer names it."""
        base = self.base
        return BaseModelRef(name=base.id, kind=base.kind,
                            path=str(base.path.parent if base.kind == "gguf" else base.path),
                            gguf_file=base.path.name if base.kind == "gguf" else None)


def resolve_model(settings: Settings, store: Store, job: FineTuningJob) -> ResolvedModel:
    """Raises ``LookupError`` when the model (or a fine-tuned model's base, or the base an
    alias stands for) is gone."""
    resolved = resolve_name(settings.base_models_dir, settings.model_aliases, job.model,
                            former_names.tuned_or_successor(
                                lambda name: store.get_model(job.project_id, name),
                                lambda pairs: store.list_jobs(job.project_id, after=None,
                                                              limit=20, metadata=pairs).items))
    if resolved.is_base and resolved.base is not None:
        return ResolvedModel(resolved.base, None)
    if resolved.alias is not None:
        if resolved.base is None:
            raise LookupError(f"Model {job.model} stands for the base model "
                              f"{resolved.alias.target} (setting TUNEGATE_MODEL_ALIASES), which "
                              "is not available.")
        return ResolvedModel(resolved.base, None, name=job.model, alias=job.model)
    if resolved.tuned is None or resolved.base is None:
        raise LookupError(f"Model {job.model} is no longer available.")
    return ResolvedModel(resolved.base, str(Path(resolved.tuned.path) / "adapter"),
                         name=base_name_of(resolved.tuned.id))
