"""Deliveries: index only what claiming needs, so recording a batch's outcome touches no index.

The composite (distribution_id, status) index moved with every status change (pending → claimed →
submitting → accepted): three index updates per recipient. Claiming only looks for *pending* rows of one
distribution, in id order, so a partial index on those serves it, and counts per distribution use a plain
distribution_id index.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.drop_index("ix_deliveries_distribution_status", table_name="deliveries")
    op.create_index("ix_deliveries_distribution", "deliveries", ["distribution_id"])
    op.create_index(
        "ix_deliveries_pending",
        "deliveries",
        ["distribution_id", "id"],
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_pending", table_name="deliveries")
    op.drop_index("ix_deliveries_distribution", table_name="deliveries")
    op.create_index("ix_deliveries_distribution_status", "deliveries", ["distribution_id", "status"])
