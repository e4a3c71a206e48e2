"""search: synonyms

Revision ID: 0009_search
Revises: 0008_checkout
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mercato.db

revision = "0009_search"
down_revision = "0008_checkout"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "search_synonyms",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("terms", mercato.db.JSONType, nullable=False),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_synonyms")),
    )


def downgrade() -> None:
    op.drop_table("search_synonyms")
