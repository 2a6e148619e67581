"""Apply the numbered migrations in ``versions/`` up to the newest, idempotently."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine


def migrate(engine: Engine) -> None:
    """Bring the database behind ``engine`` to the newest schema (a no-op when it is there)."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
