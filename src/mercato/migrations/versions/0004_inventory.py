"""inventory: warehouses, stock, reservations, movements

Revision ID: 0004_inventory
Revises: 0003_catalog
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mercato.db

revision = "0004_inventory"
down_revision = "0003_catalog"
branch_labels = None
depends_on = None

RESERVATION_STATES = "state IN ('active', 'committed', 'released', 'expired')"
MOVEMENT_KINDS = (
    "kind IN ('receive', 'adjust', 'reserve', 'release', 'commit', 'expire', 'restock')"
)


def upgrade() -> None:
    op.create_table(
        "inventory_warehouses",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("code", sa.String(16), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("countries", mercato.db.JSONType, nullable=False),
        sa.Column("region", sa.String(80), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inventory_warehouses")),
        sa.UniqueConstraint("code", name=op.f("uq_inventory_warehouses_code")),
    )
    op.create_table(
        "inventory_stock",
        sa.Column("variant_id", sa.String(40), nullable=False),
        sa.Column("warehouse_id", sa.String(40), nullable=False),
        sa.Column("on_hand", sa.Integer(), nullable=False),
        sa.Column("reserved", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("variant_id", "warehouse_id", name=op.f("pk_inventory_stock")),
        sa.CheckConstraint("on_hand >= 0", name=op.f("ck_inventory_stock_on_hand_not_negative")),
        sa.CheckConstraint("reserved >= 0", name=op.f("ck_inventory_stock_reserved_not_negative")),
        sa.CheckConstraint(
            "reserved <= on_hand", name=op.f("ck_inventory_stock_reserved_within_on_hand")
        ),
    )
    op.create_index("ix_inventory_stock_warehouse_id", "inventory_stock", ["warehouse_id"])
    op.create_table(
        "inventory_reservations",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("owner", sa.String(80), nullable=False),
        sa.Column("variant_id", sa.String(40), nullable=False),
        sa.Column("warehouse_id", sa.String(40), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("expires_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inventory_reservations")),
        sa.CheckConstraint(
            "quantity > 0", name=op.f("ck_inventory_reservations_quantity_positive")
        ),
        sa.CheckConstraint(RESERVATION_STATES, name=op.f("ck_inventory_reservations_state_known")),
    )
    op.create_index(
        "ix_inventory_reservations_state_expires_at",
        "inventory_reservations",
        ["state", "expires_at"],
    )
    op.create_index("ix_inventory_reservations_owner", "inventory_reservations", ["owner"])
    op.create_index(
        "ix_inventory_reservations_variant_id_state",
        "inventory_reservations",
        ["variant_id", "state"],
    )
    op.create_table(
        "inventory_movements",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("variant_id", sa.String(40), nullable=False),
        sa.Column("warehouse_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(200), nullable=True),
        sa.Column("reference", sa.String(80), nullable=True),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inventory_movements")),
        sa.CheckConstraint(MOVEMENT_KINDS, name=op.f("ck_inventory_movements_kind_known")),
        sa.CheckConstraint("quantity <> 0", name=op.f("ck_inventory_movements_quantity_not_zero")),
    )
    op.create_index(
        "ix_inventory_movements_variant_id_warehouse_id",
        "inventory_movements",
        ["variant_id", "warehouse_id"],
    )
    op.create_index("ix_inventory_movements_reference", "inventory_movements", ["reference"])


def downgrade() -> None:
    op.drop_table("inventory_movements")
    op.drop_table("inventory_reservations")
    op.drop_table("inventory_stock")
    op.drop_table("inventory_warehouses")
