"""orders: orders, lines, history

Revision ID: 0007_orders
Revises: 0006_payments
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mercato.db

revision = "0007_orders"
down_revision = "0006_payments"
branch_labels = None
depends_on = None

STATUSES = (
    "'pending', 'paid', 'payment_failed', 'cancelled', 'fulfilling', 'shipped', 'delivered', "
    "'return_requested', 'returned', 'refunded'"
)
AMOUNTS = (
    "subtotal >= 0 AND shipping >= 0 AND discount >= 0 AND tax >= 0 AND total >= 0 "
    "AND refunded_total >= 0"
)
LINE_AMOUNTS = "unit_price >= 0 AND subtotal >= 0 AND discount >= 0 AND tax >= 0 AND total >= 0"


def upgrade() -> None:
    op.create_table(
        "orders_orders",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("checkout_id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("previous_status", sa.String(24), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("subtotal", sa.BigInteger(), nullable=False),
        sa.Column("shipping", sa.BigInteger(), nullable=False),
        sa.Column("discount", sa.BigInteger(), nullable=False),
        sa.Column("tax", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("refunded_total", sa.BigInteger(), nullable=False),
        sa.Column("units_shipped", sa.Integer(), nullable=False),
        sa.Column("shipping_address", mercato.db.JSONType, nullable=False),
        sa.Column("shipping_method", sa.String(40), nullable=False),
        sa.Column("promo_code", sa.String(40), nullable=True),
        sa.Column("payment_intent_id", sa.String(40), nullable=False),
        sa.Column("stock_returned_at", mercato.db.UTCDateTime(), nullable=True),
        sa.Column("payment_released_at", mercato.db.UTCDateTime(), nullable=True),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders_orders")),
        sa.UniqueConstraint("checkout_id", name=op.f("uq_orders_orders_checkout_id")),
        sa.CheckConstraint(f"status IN ({STATUSES})", name=op.f("ck_orders_orders_status")),
        sa.CheckConstraint(AMOUNTS, name=op.f("ck_orders_orders_amounts_non_negative")),
        sa.CheckConstraint(
            "refunded_total <= total", name=op.f("ck_orders_orders_refunded_le_total")
        ),
        sa.CheckConstraint(
            "units_shipped >= 0", name=op.f("ck_orders_orders_units_shipped_non_negative")
        ),
    )
    op.create_index(
        "ix_orders_orders_user_id_created_at_id", "orders_orders", ["user_id", "created_at", "id"]
    )
    op.create_index("ix_orders_orders_status_created_at", "orders_orders", ["status", "created_at"])
    op.create_index("ix_orders_orders_email_created_at", "orders_orders", ["email", "created_at"])
    op.create_index("ix_orders_orders_created_at", "orders_orders", ["created_at"])

    op.create_table(
        "orders_lines",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("variant_id", sa.String(40), nullable=False),
        sa.Column("product_id", sa.String(40), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("options", mercato.db.JSONType, nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", sa.BigInteger(), nullable=False),
        sa.Column("subtotal", sa.BigInteger(), nullable=False),
        sa.Column("discount", sa.BigInteger(), nullable=False),
        sa.Column("tax", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("quantity_shipped", sa.Integer(), nullable=False),
        sa.Column("quantity_returned", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders_lines")),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders_orders.id"], name=op.f("fk_orders_lines_order_id_orders_orders")
        ),
        sa.UniqueConstraint("order_id", "position", name=op.f("uq_orders_lines_order_id_position")),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_orders_lines_quantity_positive")),
        sa.CheckConstraint(LINE_AMOUNTS, name=op.f("ck_orders_lines_amounts_non_negative")),
        sa.CheckConstraint(
            "quantity_shipped >= 0 AND quantity_shipped <= quantity",
            name=op.f("ck_orders_lines_shipped_le_quantity"),
        ),
        sa.CheckConstraint(
            "quantity_returned >= 0 AND quantity_returned <= quantity_shipped",
            name=op.f("ck_orders_lines_returned_le_shipped"),
        ),
    )

    op.create_table(
        "orders_history",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("from_status", sa.String(24), nullable=True),
        sa.Column("to_status", sa.String(24), nullable=False),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders_history")),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders_orders.id"],
            name=op.f("fk_orders_history_order_id_orders_orders"),
        ),
        sa.UniqueConstraint("order_id", "seq", name=op.f("uq_orders_history_order_id_seq")),
        sa.CheckConstraint(f"to_status IN ({STATUSES})", name=op.f("ck_orders_history_to_status")),
    )


def downgrade() -> None:
    op.drop_table("orders_history")
    op.drop_table("orders_lines")
    op.drop_table("orders_orders")
