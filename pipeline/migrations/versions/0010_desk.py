"""The web desk: its users (argon2 password hashes) and an audit trail of who did what, when.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from pipeline.store import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("email", sa.String(320)),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("user", sa.String(100), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("release_id", sa.Integer, sa.ForeignKey("releases.id")),
        sa.Column("distribution_id", sa.Integer, sa.ForeignKey("distributions.id")),
        sa.Column("detail", sa.Text),
    )
    op.create_index("ix_audit_distribution", "audit", ["distribution_id"])


def downgrade() -> None:
    op.drop_index("ix_audit_distribution", "audit")
    op.drop_table("audit")
    op.drop_table("users")
