"""orders: per-product sales rank (net units over a trailing window, decayed score)

Revision ID: 0018_sales_ranks
Revises: 0017_reviews
Create Date: 2026-12-11
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mercato.db

revision = "0018_sales_ranks"
down_revision = "0017_reviews"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "orders_sales_ranks",
        sa.Column("product_id", sa.String(40), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("updated_at", mercato.db.UTCDateTime(), nullable=False),
        sa.CheckConstraint("units > 0 AND score >= 0", name=op.f("ck_orders_sales_ranks_positive")),
        sa.PrimaryKeyConstraint("product_id", name=op.f("pk_orders_sales_ranks")),
    )
    op.create_index("ix_orders_sales_ranks_score", "orders_sales_ranks", ["score"])


def downgrade() -> None:
    op.drop_index("ix_orders_sales_ranks_score", table_name="orders_sales_ranks")
    op.drop_table("orders_sales_ranks")
