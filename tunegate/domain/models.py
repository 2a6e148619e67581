"""Fine-tuned models: what a job produces, servable under its id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FineTunedModel:
    """A model (or checkpoint) produced by a job, servable under ``id``."""

    id: str
    project_id: str
    job_id: str
    base_model: str
    created_at: int
    kind: str  # "model" | "checkpoint"
    path: str

    def to_api(self) -> dict[str, Any]:
        return {"id": self.id, "object": "model", "created": self.created_at,
                "owned_by": self.project_id, "shutdown_date": None, "served_by": None}


@dataclass(frozen=True)
class CheckpointPermission:
    """Project ``project_id`` may use fine-tuned model (or checkpoint) ``model_id`` of another
    project: see it, serve it, and train from it. Granted and taken back by admin keys."""

    id: str
    model_id: str
    project_id: str
    created_at: int

    def to_api(self) -> dict[str, Any]:
        return {"id": self.id, "object": "checkpoint.permission", "created_at": self.created_at,
                "project_id": self.project_id}
