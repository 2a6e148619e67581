"""Initial schema: files, jobs, job events, checkpoints, fine-tuned models.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

# Ids compare byte-wise everywhere (PostgreSQL's locale collations would not).
ID = sa.String(64).with_variant(sa.String(64, collation="C"), "postgresql")

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("id", ID, primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("bytes", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Integer, nullable=False),
        sa.Column("filename", sa.Text, nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("expires_at", sa.Integer),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_details", sa.Text),
    )
    op.create_index("ix_files_project", "files", ["project_id", "id"])
    op.create_table(
        "jobs",
        sa.Column("id", ID, primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Integer, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("training_file", sa.String(64), nullable=False),
        sa.Column("validation_file", sa.String(64)),
        sa.Column("method", sa.JSON, nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("suffix", sa.String(64)),
        sa.Column("metadata", sa.JSON),
        sa.Column("integrations", sa.JSON),
        sa.Column("fine_tuned_model", sa.Text),
        sa.Column("finished_at", sa.Integer),
        sa.Column("trained_tokens", sa.Integer),
        sa.Column("error", sa.JSON),
        sa.Column("result_files", sa.JSON, nullable=False),
        sa.Column("estimated_finish", sa.Integer),
        sa.Column("worker_id", sa.String(64)),
        sa.Column("heartbeat_at", sa.Float),
    )
    op.create_index("ix_jobs_project", "jobs", ["project_id", "id"])
    op.create_index("ix_jobs_status", "jobs", ["status", "id"])
    op.create_table(
        "job_events",
        sa.Column("id", ID, primary_key=True),
        sa.Column("job_id", ID, nullable=False),
        sa.Column("created_at", sa.Integer, nullable=False),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("data", sa.JSON),
    )
    op.create_index("ix_job_events_job", "job_events", ["job_id", "id"])
    op.create_table(
        "checkpoints",
        sa.Column("id", ID, primary_key=True),
        sa.Column("job_id", ID, nullable=False),
        sa.Column("created_at", sa.Integer, nullable=False),
        sa.Column("fine_tuned_model_checkpoint", sa.Text, nullable=False),
        sa.Column("step_number", sa.Integer, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
    )
    op.create_index("ix_checkpoints_job", "checkpoints", ["job_id", "id"])
    op.create_table(
        "fine_tuned_models",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("job_id", ID, nullable=False),
        sa.Column("base_model", sa.Text, nullable=False),
        sa.Column("created_at", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
    )
    op.create_index("ix_models_project", "fine_tuned_models", ["project_id", "id"])


def downgrade() -> None:
    for table in ("fine_tuned_models", "checkpoints", "job_events", "jobs", "files"):
        op.drop_table(table)
