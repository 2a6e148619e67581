"""Apply the numbered migrations in ``versions/`` up to the newest, idempotently."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

# Any fixed number: the key of PostgreSQL's advisory lock that migrations take.
POSTGRES_MIGRATION_LOCK = 0x7475_6E65  # "tune"


def migrate(engine: Engine) -> None:
    """Bring the database behind ``engine`` to the newest schema (a no-op when it is there)."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # `serve` and workers on several hosts may start at once on a new database: one
            # migrates, the others wait and then find it done (two would create the same
            # tables in parallel, and one would fail). SQLite's BEGIN IMMEDIATE serializes.
            connection.execute(select(func.pg_advisory_xact_lock(POSTGRES_MIGRATION_LOCK)))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
