"""inventory: each warehouse's handling time in business days (delivery estimates)

Revision ID: 0022_delivery_estimates
Revises: 0018_sales_ranks
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022_delivery_estimates"
down_revision = "0020_guest_orders"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing warehouses take a day to hand a parcel over, the usual figure; staff can change it.
    with op.batch_alter_table("inventory_warehouses") as batch:
        batch.add_column(
            sa.Column("handling_days", sa.Integer(), nullable=False, server_default="1")
        )
        batch.create_check_constraint(
            op.f("ck_inventory_warehouses_handling_days_in_range"),
            "handling_days BETWEEN 0 AND 30",
        )


def downgrade() -> None:
    with op.batch_alter_table("inventory_warehouses") as batch:
        batch.drop_constraint(op.f("ck_inventory_warehouses_handling_days_in_range"), type_="check")
        batch.drop_column("handling_days")
