"""fulfilment: fulfilments, shipments, tracking events

Revision ID: 0010_fulfilment
Revises: 0009_search
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mercato.db

revision = "0010_fulfilment"
down_revision = "0009_search"
branch_labels = None
depends_on = None

FULFILMENT_STATUSES = (
    "status IN ('pending', 'picked', 'packed', 'partially_shipped', 'shipped', 'delivered', "
    "'cancelled')"
)
SHIPMENT_STATUSES = "status IN ('pending', 'in_transit', 'delivered')"


def upgrade() -> None:
    op.create_table(
        "fulfilment_fulfilments",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("warehouse_code", sa.String(16), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("picked_at", mercato.db.UTCDateTime(), nullable=True),
        sa.Column("packed_at", mercato.db.UTCDateTime(), nullable=True),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fulfilment_fulfilments")),
        sa.UniqueConstraint(
            "order_id",
            "warehouse_code",
            name=op.f("uq_fulfilment_fulfilments_order_id_warehouse_code"),
        ),
        sa.CheckConstraint(FULFILMENT_STATUSES, name=op.f("ck_fulfilment_fulfilments_status")),
    )
    op.create_index(
        "ix_fulfilment_fulfilments_warehouse_code_status",
        "fulfilment_fulfilments",
        ["warehouse_code", "status"],
    )
    op.create_index(
        "ix_fulfilment_fulfilments_status_created_at",
        "fulfilment_fulfilments",
        ["status", "created_at"],
    )

    op.create_table(
        "fulfilment_items",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("fulfilment_id", sa.String(40), nullable=False),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("order_line_id", sa.String(40), nullable=False),
        sa.Column("variant_id", sa.String(40), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("quantity_claimed", sa.Integer(), nullable=False),
        sa.Column("quantity_shipped", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fulfilment_items")),
        sa.ForeignKeyConstraint(
            ["fulfilment_id"],
            ["fulfilment_fulfilments.id"],
            name=op.f("fk_fulfilment_items_fulfilment_id_fulfilment_fulfilments"),
        ),
        sa.UniqueConstraint(
            "fulfilment_id",
            "order_line_id",
            name=op.f("uq_fulfilment_items_fulfilment_id_order_line_id"),
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_fulfilment_items_quantity_positive")),
        sa.CheckConstraint(
            "quantity_claimed >= 0 AND quantity_claimed <= quantity",
            name=op.f("ck_fulfilment_items_claimed_le_quantity"),
        ),
        sa.CheckConstraint(
            "quantity_shipped >= 0 AND quantity_shipped <= quantity_claimed",
            name=op.f("ck_fulfilment_items_shipped_le_claimed"),
        ),
    )
    op.create_index("ix_fulfilment_items_order_id", "fulfilment_items", ["order_id"])

    op.create_table(
        "fulfilment_shipments",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("fulfilment_id", sa.String(40), nullable=True),
        sa.Column("carrier", sa.String(40), nullable=False),
        sa.Column("service", sa.String(40), nullable=True),
        sa.Column("tracking_number", sa.String(80), nullable=False),
        sa.Column("tracking_url", sa.String(500), nullable=True),
        sa.Column("label", sa.Text(), nullable=True),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("capture_amount", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(80), nullable=False),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("shipped_at", mercato.db.UTCDateTime(), nullable=True),
        sa.Column("delivered_at", mercato.db.UTCDateTime(), nullable=True),
        sa.Column("updated_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fulfilment_shipments")),
        sa.CheckConstraint(SHIPMENT_STATUSES, name=op.f("ck_fulfilment_shipments_status")),
        sa.CheckConstraint(
            "capture_amount >= 0",
            name=op.f("ck_fulfilment_shipments_capture_amount_not_negative"),
        ),
    )
    op.create_index("ix_fulfilment_shipments_order_id", "fulfilment_shipments", ["order_id"])
    op.create_index(
        "ix_fulfilment_shipments_status_carrier", "fulfilment_shipments", ["status", "carrier"]
    )

    op.create_table(
        "fulfilment_shipment_items",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("shipment_id", sa.String(40), nullable=False),
        sa.Column("fulfilment_item_id", sa.String(40), nullable=False),
        sa.Column("order_line_id", sa.String(40), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fulfilment_shipment_items")),
        sa.ForeignKeyConstraint(
            ["shipment_id"],
            ["fulfilment_shipments.id"],
            name=op.f("fk_fulfilment_shipment_items_shipment_id_fulfilment_shipments"),
        ),
        sa.ForeignKeyConstraint(
            ["fulfilment_item_id"],
            ["fulfilment_items.id"],
            name=op.f("fk_fulfilment_shipment_items_fulfilment_item_id_fulfilment_items"),
        ),
        sa.UniqueConstraint(
            "shipment_id",
            "fulfilment_item_id",
            name=op.f("uq_fulfilment_shipment_items_shipment_id_fulfilment_item_id"),
        ),
        sa.CheckConstraint(
            "quantity > 0", name=op.f("ck_fulfilment_shipment_items_quantity_positive")
        ),
    )

    op.create_table(
        "fulfilment_tracking_events",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("shipment_id", sa.String(40), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("description", sa.String(200), nullable=False),
        sa.Column("location", sa.String(120), nullable=True),
        sa.Column("occurred_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fulfilment_tracking_events")),
        sa.ForeignKeyConstraint(
            ["shipment_id"],
            ["fulfilment_shipments.id"],
            name=op.f("fk_fulfilment_tracking_events_shipment_id_fulfilment_shipments"),
        ),
        sa.UniqueConstraint(
            "shipment_id", "status", name=op.f("uq_fulfilment_tracking_events_shipment_id_status")
        ),
    )


def downgrade() -> None:
    op.drop_table("fulfilment_tracking_events")
    op.drop_table("fulfilment_shipment_items")
    op.drop_table("fulfilment_shipments")
    op.drop_table("fulfilment_items")
    op.drop_table("fulfilment_fulfilments")
