"""Contacts: role, tags, and whether the person may receive embargoed previews.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("role", sa.Text))
        batch.add_column(sa.Column("tags", sa.JSON, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("embargo_trusted", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("embargo_trusted")
        batch.drop_column("tags")
        batch.drop_column("role")
