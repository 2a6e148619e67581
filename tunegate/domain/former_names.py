"""A migrated fine-tune's former name: the id its model had at the provider it came from
(``ft:gpt-4o-mini-2024-07-18:org:suffix:abc123``). ``tunegate migrate`` recreates the job here
with that name in its metadata (``ids.FORMER_MODEL_KEY``); once the job has succeeded, the former
name means the new local fine-tuned model, so an application changes only its base URL.

The job's metadata is the record, not a table of its own: it belongs to the job's project (a key
of another project never sees it), it goes when the job's project is gone, and it is what the
migration itself finds again when it is run a second time."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tunegate.domain.jobs import FineTuningJob, JobStatus
from tunegate.domain.models import FineTunedModel
from tunegate.ids import FORMER_MODEL_KEY

FindTuned = Callable[[str], FineTunedModel | None]
# The project's jobs whose metadata has these pairs, newest first.
JobsWith = Callable[[Mapping[str, str]], Sequence[FineTuningJob]]


def may_be_former(name: str) -> bool:
    """Only fine-tuned names (``ft:…``) are looked up as former names: a base or alias never is."""
    return name.startswith("ft:")


def former_name(job: FineTuningJob) -> str | None:
    """The former name a succeeded job's model answers to, if the job was migrated."""
    name = (job.metadata or {}).get(FORMER_MODEL_KEY)
    if name and may_be_former(name) and job.status is JobStatus.SUCCEEDED and job.fine_tuned_model:
        return name
    return None


def successor(name: str, find_tuned: FindTuned, jobs_with: JobsWith) -> FineTunedModel | None:
    """The local fine-tuned model ``name`` now means: the model of the newest succeeded job
    migrated from it (a later migration of the same model wins)."""
    if not may_be_former(name):
        return None
    for job in jobs_with({FORMER_MODEL_KEY: name}):
        if former_name(job) == name and job.fine_tuned_model:
            model = find_tuned(job.fine_tuned_model)
            if model is not None:
                return model
    return None


def tuned_or_successor(find_tuned: FindTuned, jobs_with: JobsWith) -> FindTuned:
    """``find_tuned`` that also knows former names: a model's own id first."""
    return lambda name: find_tuned(name) or successor(name, find_tuned, jobs_with)


@dataclass(frozen=True)
class FormerName:
    """A former name as ``GET /v1/models`` lists it: OpenAI's model object under the old id,
    with ``served_by`` naming the local model that answers for it."""

    name: str
    model: FineTunedModel
    created_at: int

    def to_api(self) -> dict[str, Any]:
        return {"id": self.name, "object": "model", "created": self.created_at,
                "owned_by": self.model.project_id, "shutdown_date": None,
                "served_by": self.model.id}
