"""Recurring digests: one row per digest name and period, sent or skipped, so a period is never done twice.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from pipeline.store import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "digests",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("period_start", UTCDateTime, nullable=False),
        sa.Column("period_end", UTCDateTime, nullable=False),
        sa.Column("release_ids", sa.JSON, nullable=False),
        sa.Column("release_id", sa.Integer, sa.ForeignKey("releases.id")),
        sa.Column("distribution_id", sa.Integer, sa.ForeignKey("distributions.id")),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("name", "period_end", name="uq_digest_once"),
    )


def downgrade() -> None:
    op.drop_table("digests")
