"""Webhook secret rotation: an endpoint's previous secret, still signing until a time (a rotation
that keeps the old secret active for 24 hours).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_endpoints") as table:
        table.add_column(sa.Column("previous_secret", sa.Text))
        table.add_column(sa.Column("previous_secret_until", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("webhook_endpoints") as table:
        table.drop_column("previous_secret_until")
        table.drop_column("previous_secret")
