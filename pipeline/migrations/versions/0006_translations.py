"""Releases: the slug of the release a document is a translation of (its versions share one mailing).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("releases") as batch:
        batch.add_column(sa.Column("translation_of", sa.String(120)))
    op.create_index("ix_releases_translation_of", "releases", ["translation_of"])


def downgrade() -> None:
    op.drop_index("ix_releases_translation_of", table_name="releases")
    with op.batch_alter_table("releases") as batch:
        batch.drop_column("translation_of")
