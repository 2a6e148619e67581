"""The database's identity: one random id, made once, that the data folder records.

A data folder's files and job folders only make sense beside the database whose rows own them;
the janitor deletes what no row of *its* database owns. ``tunegate.domain.data_folder`` compares this
id with the one the folder records, so that a server started on another database refuses the
folder instead of sweeping it.

Revision ID: 0003
Revises: 0002
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table("store_identity", sa.Column("id", sa.String(64), primary_key=True))
    op.bulk_insert(table, [{"id": f"store-{secrets.token_hex(12)}"}])


def downgrade() -> None:
    op.drop_table("store_identity")
