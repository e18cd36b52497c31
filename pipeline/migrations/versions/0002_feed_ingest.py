"""Partner feeds: each feed's HTTP validators, and every entry already ingested from it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from pipeline.store import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feed_sources",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("url", sa.String(1000), nullable=False, unique=True),
        sa.Column("title", sa.Text),
        sa.Column("etag", sa.Text),
        sa.Column("last_modified", sa.Text),
        sa.Column("fetched_at", UTCDateTime),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "feed_entries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source_id", sa.Integer, sa.ForeignKey("feed_sources.id"), nullable=False),
        sa.Column("entry_key", sa.String(500), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("release_id", sa.Integer, sa.ForeignKey("releases.id")),
        sa.Column("seen_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("source_id", "entry_key", name="uq_feed_entry"),
    )


def downgrade() -> None:
    op.drop_table("feed_entries")
    op.drop_table("feed_sources")
