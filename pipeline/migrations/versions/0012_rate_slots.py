"""A message rate shared by every worker: the next free send slot per provider, in seconds since the epoch.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_slots",
        sa.Column("name", sa.String(50), primary_key=True),
        sa.Column("next_free", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rate_slots")
