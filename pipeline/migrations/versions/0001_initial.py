"""Initial schema: releases, distributions, the delivery ledger, contacts, suppressions.

Spelled out here rather than taken from store.metadata, so that later revisions of the tables do not change
what this revision creates.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

from pipeline.store import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "releases",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("slug", sa.String(120), nullable=False, unique=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("source", sa.Text),
        sa.Column("headline", sa.Text, nullable=False),
        sa.Column("language", sa.String(8)),
        sa.Column("release_date", sa.Date),
        sa.Column("embargo", UTCDateTime),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("published_at", UTCDateTime),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "distributions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("release_id", sa.Integer, sa.ForeignKey("releases.id"), nullable=False, index=True),
        sa.Column("audiences", sa.JSON, nullable=False),
        sa.Column("channel", sa.String(20), nullable=False, server_default="email"),
        sa.Column("due_at", UTCDateTime, nullable=False, index=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("origin", sa.String(200), unique=True),
        sa.Column("note", sa.Text),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("distribution_id", sa.Integer, sa.ForeignKey("distributions.id"), nullable=False),
        sa.Column("release_id", sa.Integer, sa.ForeignKey("releases.id"), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("name", sa.Text),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("claimed_by", sa.String(100)),
        sa.Column("lease_until", UTCDateTime),
        sa.Column("provider_id", sa.String(200)),
        sa.Column("error", sa.Text),
        sa.Column("sent_at", UTCDateTime),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("release_id", "channel", "address", name="uq_delivery_once"),
    )
    op.create_index("ix_deliveries_distribution_status", "deliveries", ["distribution_id", "status"])
    op.create_table(
        "contacts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("name", sa.Text),
        sa.Column("outlet", sa.Text),
        sa.Column("beats", sa.JSON, nullable=False),
        sa.Column("regions", sa.JSON, nullable=False),
        sa.Column("language", sa.String(8)),
        sa.Column("consent_basis", sa.String(40)),
        sa.Column("consent_source", sa.Text),
        sa.Column("consent_date", sa.Date),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "suppressions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("address_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("address", sa.String(320)),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    for table in ("suppressions", "contacts", "deliveries", "distributions", "releases"):
        op.drop_table(table)
