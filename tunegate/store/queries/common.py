"""What every query module of the SQL store shares: its engines (writes, and lock-free reads of
one statement), the retry of a write that must work on a full disk, keyset paging, and the
statements of the frequent reads, built once (``select_by``) with bound parameters, which
spares SQLAlchemy rebuilding and re-keying them on every request."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Integer, Row, Table, bindparam, exists, func, or_, select, true
from sqlalchemy.engine import Engine
from sqlalchemy.sql import ColumnElement, Select

from tunegate.errors import InsufficientStorage
from tunegate.store.reserve import DiskReserve

T = TypeVar("T")


def in_project(table: Any, project_id: str | None) -> Any:
    """The row filter of a project; ``None`` (an admin's reads) matches every project."""
    return true() if project_id is None else table.c.project_id == project_id


def project_where(project_id: str | None) -> dict[str, str]:
    """The ``where`` of ``select_by`` for a project's rows; ``{}`` (every project) for ``None``."""
    return {} if project_id is None else {"project_id": project_id}


@functools.cache
def select_by(table: Table, equal: tuple[str, ...], *, after: str | None = None,
              order: tuple[str, ...] = (), page: bool = False,
              unexpired: bool = False) -> Select[Any]:
    """``SELECT * FROM table WHERE column = :column (each of equal) [AND id > / < :after]
    [AND (expires_at IS NULL OR expires_at > :at)] ORDER BY ... [LIMIT :limit]``, built once
    per shape and executed with the values as parameters. ``after`` is ">" or "<"; ``order``
    names columns, "-" first for descending."""
    query = select(table).where(*(table.c[name] == bindparam(name) for name in equal))
    if after is not None:
        bound: Any = bindparam("after")
        query = query.where(table.c.id > bound if after == ">" else table.c.id < bound)
    if unexpired:
        query = query.where(or_(table.c.expires_at.is_(None),
                                table.c.expires_at > bindparam("at")))
    for name in order:
        query = query.order_by(table.c[name[1:]].desc() if name[0] == "-" else table.c[name])
    return query.limit(bindparam("limit", type_=Integer)) if page else query


class SqlQueries:
    """The engines every query module of ``SqlStore`` runs on, and what their queries share."""

    def __init__(self, engine: Engine, reads: Engine | None = None,
                 reserve: DiskReserve | None = None):
        """``reads``: the engine of single-statement reads (default: ``engine``); ``reserve``:
        the space kept for writes that must work on a full disk (SQLite)."""
        self.engine = engine
        self._reads = reads or engine
        self.reserve = reserve

    def close(self) -> None:
        self.engine.dispose()
        if self._reads is not self.engine:
            self._reads.dispose()

    def _read(self, query: Select[Any], values: Mapping[str, Any]) -> list[Row[Any]]:
        """All rows of one read-only statement."""
        with self._reads.connect() as connection:
            return list(connection.execute(query, dict(values)).all())

    def _keeping_room(self, write: Callable[[], T]) -> T:
        """``write()``, which frees space or records how a job stopped: on a full disk, once
        more after releasing the reserve (tunegate.store.reserve)."""
        try:
            return write()
        except InsufficientStorage:
            if self.reserve is None or not self.reserve.release():
                raise
        return write()

    def _page(self, table: Table, where: Mapping[str, Any], *, after: str | None, limit: int,
              ascending: bool = False, unexpired_at: int | None = None,
              extra: Sequence[ColumnElement[bool]] = ()) -> tuple[list[Row[Any]], bool]:
        """Keyset paging on time-ordered ids: ``after`` needs no lookup and survives deletes.

        ``where``: column = value filters; ``unexpired_at``: only rows whose ``expires_at`` is
        unset or later; ``extra``: further conditions (a statement with them is built per
        call)."""
        query = select_by(table, tuple(where), after=None if after is None else
                          ">" if ascending else "<", order=("id" if ascending else "-id",),
                          page=True, unexpired=unexpired_at is not None)
        if extra:
            query = query.where(*extra)
        values = {**where, "limit": limit + 1, **({} if after is None else {"after": after}),
                  **({} if unexpired_at is None else {"at": unexpired_at})}
        rows = self._read(query, values)
        return rows[:limit], len(rows) > limit

    def _metadata_is(self, column: Any, key: str, value: str) -> Any:
        """``column`` (a JSON object) holds ``key`` with exactly ``value``."""
        if self.engine.dialect.name != "sqlite":
            return column[key].as_string() == value
        # SQLite's JSON paths cannot name every key (a '"' or NUL in one is a path error, a 500):
        # look the key up among the object's entries instead.
        entries = func.json_each(column).table_valued("key", "value")
        return exists(select(1).select_from(entries).where(
            entries.c.key == key, entries.c.value == value))
