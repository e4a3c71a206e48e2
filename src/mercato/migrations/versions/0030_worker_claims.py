"""worker claims: one holder at a time for each outbox consumer and periodic job

Revision ID: 0030_worker_claims
Revises: 0029_order_parts
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mercato.db

revision = "0030_worker_claims"
down_revision = "0029_order_parts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worker_claims",
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("holder", sa.String(120), nullable=True),
        sa.Column("lease_until", mercato.db.UTCDateTime(), nullable=True),
        sa.Column("due_at", mercato.db.UTCDateTime(), nullable=True),
        sa.Column("taken_at", mercato.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_worker_claims")),
    )


def downgrade() -> None:
    op.drop_table("worker_claims")
