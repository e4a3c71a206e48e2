"""returns: return requests and their lines

Revision ID: 0011_returns
Revises: 0010_fulfilment
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mercato.db

revision = "0011_returns"
down_revision = "0010_fulfilment"
branch_labels = None
depends_on = None

RETURN_STATUSES = "status IN ('requested', 'approved', 'rejected', 'received', 'refunded')"
DISPOSITIONS = "disposition IS NULL OR disposition IN ('restock', 'write_off')"


def upgrade() -> None:
    op.create_table(
        "returns_requests",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("staff_note", sa.String(500), nullable=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("refund_amount", sa.BigInteger(), nullable=False),
        sa.Column("refund_shipping", sa.Boolean(), nullable=False),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("decided_at", mercato.db.UTCDateTime(), nullable=True),
        sa.Column("received_at", mercato.db.UTCDateTime(), nullable=True),
        sa.Column("refunded_at", mercato.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_returns_requests")),
        sa.CheckConstraint(RETURN_STATUSES, name=op.f("ck_returns_requests_status")),
        sa.CheckConstraint(
            "refund_amount >= 0", name=op.f("ck_returns_requests_refund_amount_not_negative")
        ),
    )
    op.create_index("ix_returns_requests_order_id", "returns_requests", ["order_id"])
    op.create_index(
        "ix_returns_requests_status_created_at", "returns_requests", ["status", "created_at"]
    )

    op.create_table(
        "returns_lines",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("request_id", sa.String(40), nullable=False),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("order_line_id", sa.String(40), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("disposition", sa.String(16), nullable=True),
        sa.Column("warehouse_code", sa.String(16), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_returns_lines")),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["returns_requests.id"],
            name=op.f("fk_returns_lines_request_id_returns_requests"),
        ),
        sa.UniqueConstraint(
            "request_id", "order_line_id", name=op.f("uq_returns_lines_request_id_order_line_id")
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_returns_lines_quantity_positive")),
        sa.CheckConstraint("amount >= 0", name=op.f("ck_returns_lines_amount_not_negative")),
        sa.CheckConstraint(DISPOSITIONS, name=op.f("ck_returns_lines_disposition")),
    )
    op.create_index(
        "ix_returns_lines_order_id_order_line_id", "returns_lines", ["order_id", "order_line_id"]
    )


def downgrade() -> None:
    op.drop_table("returns_lines")
    op.drop_table("returns_requests")
