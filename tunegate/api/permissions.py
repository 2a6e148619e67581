"""The checkpoint permissions use cases (``/v1/fine_tuning/checkpoints/{id}/permissions``):
share a fine-tuned model or checkpoint with other projects, list and take back the shares.
OpenAI's endpoints "require an admin API key"; so do ours (an admin key is the operator's)."""

from __future__ import annotations

from tunegate import ids
from tunegate.domain.jobs import now
from tunegate.domain.models import CheckpointPermission
from tunegate.errors import Forbidden, InvalidRequest, NotFound, clip
from tunegate.store.base import FineTunedModel, Page, Store


class Permissions:
    def __init__(self, store: Store):
        self.store = store

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

    def create(self, admin: bool, model_id: str,
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

    def list(self, admin: bool, model_id: str, *, project_id: str | None,
                         after: str | None, limit: int, order: str) -> Page[CheckpointPermission]:
        self._require_admin(admin)
        self._shareable(model_id)
        return self.store.list_permissions(model_id, project_id=project_id, after=after,
                                           limit=limit, ascending=order == "ascending")

    def delete(self, admin: bool, model_id: str, permission_id: str) -> str:
        """Take a shared model back from a project; it then answers there as if it never
        existed (a job of that project still waiting to train from it fails)."""
        self._require_admin(admin)
        self._shareable(model_id)
        if not self.store.delete_permission(model_id, permission_id):
            raise NotFound(f"No such checkpoint permission: {clip(permission_id)}",
                           param="permission_id", code="permission_not_found")
        return permission_id
