"""Opt-outs from one category of releases (the unsubscribe page's "only this kind of release" choice).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from pipeline.store import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "category_optouts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("address_hash", sa.String(64), nullable=False),
        sa.Column("category", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("address_hash", "category", name="uq_category_optout"),
    )


def downgrade() -> None:
    op.drop_table("category_optouts")
