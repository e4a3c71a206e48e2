"""The transactional outbox.

Revision ID: 0001_outbox
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mercato.db

revision = "0001_outbox"
down_revision = None
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "outbox_events",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("type", sa.String(80), nullable=False),
        sa.Column("aggregate_id", sa.String(40), nullable=False),
        sa.Column("payload", mercato.db.JSONType, nullable=False),
        sa.Column("occurred_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_outbox_events")),
        sa.UniqueConstraint("id", name=op.f("uq_outbox_events_id")),
    )
    op.create_index(op.f("ix_outbox_events_type"), "outbox_events", ["type"])
    op.create_table(
        "outbox_deliveries",
        sa.Column("consumer", sa.String(80), nullable=False),
        sa.Column("event_seq", SEQ, nullable=False),
        sa.Column("delivered_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_seq", name=op.f("pk_outbox_deliveries")),
    )
    op.create_index("ix_outbox_deliveries_event_seq", "outbox_deliveries", ["event_seq"])


def downgrade() -> None:
    op.drop_table("outbox_deliveries")
    op.drop_table("outbox_events")
