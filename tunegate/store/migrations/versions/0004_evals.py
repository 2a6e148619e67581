"""The Evals API: evals, their runs and the runs' output items.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

# Ids compare byte-wise everywhere (PostgreSQL's locale collations would not).
ID = sa.String(64).with_variant(sa.String(64, collation="C"), "postgresql")

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evals",
        sa.Column("id", ID, primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Integer, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("data_source_config", sa.JSON, nullable=False),
        sa.Column("testing_criteria", sa.JSON, nullable=False),
        sa.Column("metadata", sa.JSON),
    )
    op.create_index("ix_evals_project", "evals", ["project_id", "id"])
    op.create_table(
        "eval_runs",
        sa.Column("id", ID, primary_key=True),
        sa.Column("eval_id", ID, nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("data_source", sa.JSON, nullable=False),
        sa.Column("metadata", sa.JSON),
        sa.Column("error", sa.JSON, nullable=False),
        sa.Column("totals", sa.JSON, nullable=False),
        sa.Column("report_url", sa.Text, nullable=False),
        sa.Column("worker_id", sa.String(64)),
        sa.Column("heartbeat_at", sa.Float),
    )
    op.create_index("ix_eval_runs_eval", "eval_runs", ["eval_id", "id"])
    op.create_index("ix_eval_runs_status", "eval_runs", ["status", "id"])
    op.create_table(
        "eval_output_items",
        sa.Column("id", ID, primary_key=True),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("eval_id", ID, nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Integer, nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("datasource_item_id", sa.Integer, nullable=False),
        sa.Column("datasource_item", sa.JSON, nullable=False),
        sa.Column("results", sa.JSON, nullable=False),
        sa.Column("sample", sa.JSON, nullable=False),
        sa.Column("usage", sa.JSON, nullable=False),
        sa.Column("errored", sa.Integer, nullable=False),
    )
    op.create_index("ix_eval_output_items_run", "eval_output_items", ["run_id", "id"])
    op.create_index("ix_eval_output_items_row", "eval_output_items",
                    ["run_id", "datasource_item_id"], unique=True)


def downgrade() -> None:
    op.drop_table("eval_output_items")
    op.drop_table("eval_runs")
    op.drop_table("evals")
