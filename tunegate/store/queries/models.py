"""The SQL store's fine-tuned models and the permissions that share them with other projects."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import bindparam, delete, exists, insert, or_, select
from sqlalchemy.sql import Select

from tunegate.domain.models import CheckpointPermission
from tunegate.store import schema
from tunegate.store.base import FineTunedModel, Page
from tunegate.store.queries.common import SqlQueries, in_project, project_where
from tunegate.store.rows import as_model, as_permission, model_values


@functools.cache
def _visible_models(*, by_id: bool, of_project: bool) -> Select[Any]:
    """Fine-tuned models (``:id`` only, with ``by_id``) that project ``:project_id`` owns or
    was given a permission for (every project's without ``of_project``), oldest first."""
    table, shared = schema.fine_tuned_models, schema.checkpoint_permissions
    query = select(table)
    if by_id:
        query = query.where(table.c.id == bindparam("id"))
    if of_project:
        project: Any = bindparam("project_id")
        query = query.where(or_(table.c.project_id == project, exists(select(1).where(
            shared.c.model_id == table.c.id, shared.c.project_id == project))))
    return query.order_by(table.c.created_at, table.c.id)


class ModelQueries(SqlQueries):
    """Fine-tuned models and checkpoint permissions: ``Store``'s model and permission methods."""

    def add_model(self, model: FineTunedModel) -> None:
        with self.engine.begin() as connection:
            connection.execute(insert(schema.fine_tuned_models).values(**model_values(model)))

    def get_model(self, project_id: str | None, model_id: str) -> FineTunedModel | None:
        query = _visible_models(by_id=True, of_project=project_id is not None)
        rows = self._read(query, {"id": model_id, **project_where(project_id)})
        return as_model(rows[0]) if rows else None

    def list_models(self, project_id: str | None) -> list[FineTunedModel]:
        query = _visible_models(by_id=False, of_project=project_id is not None)
        return [as_model(row) for row in self._read(query, project_where(project_id))]

    def delete_model(self, project_id: str | None, model_id: str) -> bool:
        table, shared = schema.fine_tuned_models, schema.checkpoint_permissions

        def write() -> bool:
            with self.engine.begin() as connection:
                result = connection.execute(delete(table).where(
                    table.c.id == model_id, in_project(table, project_id)))
                if result.rowcount > 0:
                    connection.execute(delete(shared).where(shared.c.model_id == model_id))
            return result.rowcount > 0

        return self._keeping_room(write)

    # Checkpoint permissions -----------------------------------------------------------------

    def add_permissions(self, model_id: str,
                        permissions: Sequence[CheckpointPermission]) -> list[CheckpointPermission]:
        table = schema.checkpoint_permissions
        projects = sorted({permission.project_id for permission in permissions})
        with self.engine.begin() as connection:
            held = {row.project_id: as_permission(row) for row in connection.execute(
                select(table).where(table.c.model_id == model_id,
                                    table.c.project_id.in_(projects)))}
            granted: list[CheckpointPermission] = []
            for permission in permissions:
                if permission.project_id not in held:
                    connection.execute(insert(table).values(
                        id=permission.id, model_id=model_id, project_id=permission.project_id,
                        created_at=permission.created_at))
                    held[permission.project_id] = replace(permission, model_id=model_id)
                granted.append(held[permission.project_id])
        return granted

    def list_permissions(self, model_id: str, *, project_id: str | None, after: str | None,
                         limit: int, ascending: bool) -> Page[CheckpointPermission]:
        where = {"model_id": model_id, **project_where(project_id)}
        rows, more = self._page(schema.checkpoint_permissions, where, after=after, limit=limit,
                                ascending=ascending)
        return Page([as_permission(row) for row in rows], more)

    def delete_permission(self, model_id: str, permission_id: str) -> bool:
        table = schema.checkpoint_permissions
        with self.engine.begin() as connection:
            result = connection.execute(delete(table).where(
                table.c.id == permission_id, table.c.model_id == model_id))
        return result.rowcount > 0
