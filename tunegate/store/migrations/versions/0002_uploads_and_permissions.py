"""Uploads, their parts, and checkpoint permissions; file sizes as 64-bit integers.

An upload may be up to 8 GiB, and so may the file it becomes: ``files.bytes`` was a 32-bit
``INTEGER`` on PostgreSQL (SQLite's integers are 64-bit either way).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

# Ids compare byte-wise everywhere (PostgreSQL's locale collations would not).
ID = sa.String(64).with_variant(sa.String(64, collation="C"), "postgresql")

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("files") as files:
        files.alter_column("bytes", type_=sa.BigInteger, existing_type=sa.Integer,
                           existing_nullable=False)
    op.create_table(
        "uploads",
        sa.Column("id", ID, primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Integer, nullable=False),
        sa.Column("expires_at", sa.Integer, nullable=False),
        sa.Column("filename", sa.Text, nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("mime_type", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("file_expires_after", sa.Integer),
        sa.Column("file_id", sa.String(64)),
    )
    op.create_index("ix_uploads_project", "uploads", ["project_id", "id"])
    op.create_index("ix_uploads_status", "uploads", ["status", "expires_at"])
    op.create_table(
        "upload_parts",
        sa.Column("id", ID, primary_key=True),
        sa.Column("upload_id", ID, nullable=False),
        sa.Column("created_at", sa.Integer, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_upload_parts_upload", "upload_parts", ["upload_id", "id"])
    op.create_table(
        "checkpoint_permissions",
        sa.Column("id", ID, primary_key=True),
        sa.Column("model_id", sa.String(255), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Integer, nullable=False),
    )
    op.create_index("ix_permissions_model_project", "checkpoint_permissions",
                    ["model_id", "project_id"], unique=True)
    op.create_index("ix_permissions_project", "checkpoint_permissions",
                    ["project_id", "model_id"])


def downgrade() -> None:
    for table in ("checkpoint_permissions", "upload_parts", "uploads"):
        op.drop_table(table)
    with op.batch_alter_table("files") as files:
        files.alter_column("bytes", type_=sa.Integer, existing_type=sa.BigInteger,
                           existing_nullable=False)
