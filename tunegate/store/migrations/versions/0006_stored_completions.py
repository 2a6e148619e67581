"""Stored chat completions: the exchanges a ``store: true`` chat completion keeps.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

# Ids compare byte-wise everywhere (PostgreSQL's locale collations would not).
ID = sa.String(64).with_variant(sa.String(64, collation="C"), "postgresql")

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stored_completions",
        sa.Column("id", ID, primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Integer, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("messages", sa.JSON, nullable=False),
        sa.Column("tools", sa.JSON),
        sa.Column("completion", sa.JSON, nullable=False),
    )
    op.create_index("ix_stored_completions_project", "stored_completions", ["project_id", "id"])


def downgrade() -> None:
    op.drop_table("stored_completions")
